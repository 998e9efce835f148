"""Random exports with realistic value ranges, for tests and RTL checks that need no trained network.

Weights fill the signed range with a bell shape, biases are small against the accumulators, and each
channel's shift S is chosen from the accumulators that random images actually produce, so the
requantized activations spread over 0 .. 2^A - 1 (some zero, some saturated) instead of collapsing to
one end. Bounds are the min/max over those same images, like a trained export's. Never used to report
accuracy.
"""

from __future__ import annotations

import numpy as np

from models.export import LayerExport, ModelExport
from models.integer import IntegerModel
from models.nets import get_net
from quasar.arithmetic import MAX_SHIFT, acc_bits, weight_range
from quasar.errors import check_range


def random_export(net: str, act_bits: int, weight_bits: int, seed: int = 0, images: int = 16) -> ModelExport:
    """A ModelExport of `net` with random integer parameters of realistic ranges (deterministic in seed)."""
    check_range("act_bits", act_bits, 2, 16)
    check_range("weight_bits", weight_bits, 2, 16)
    spec = get_net(net)
    rng = np.random.default_rng(seed)
    w_lo, w_hi = weight_range(weight_bits)
    act_max = (1 << act_bits) - 1
    acc = acc_bits(act_bits, weight_bits, spec.max_reduction)
    layers: list[LayerExport] = []
    for g in spec.geometry():
        n = g.out_channels
        weight = np.clip(np.rint(rng.normal(0.0, max(w_hi / 2.5, 0.6), (g.reduction, n))), w_lo, w_hi)
        layers.append(
            LayerExport.from_geometry(
                g,
                weight=weight.astype(np.int64),
                bias=np.zeros(n, np.int64),
                mult=rng.integers(1 << 15, 1 << 16, n).astype(np.int64),
                shift=np.zeros(n, np.int64),
                weight_scale=np.ones(n),
            )
        )
    export = ModelExport(
        net=net,
        act_bits=act_bits,
        weight_bits=weight_bits,
        dataset="random",
        layers=layers,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        max_reduction=spec.max_reduction,
        input_levels=act_max,
        config={"random_seed": seed},
    )
    # Images: smooth random blobs with many zero pixels, like digits on a black background.
    x = rng.random((images, *spec.input_shape))
    x = np.where(x < 0.5, 0.0, x)
    model = IntegerModel(export)
    a = model.quantize_input(x)
    for i, layer in enumerate(layers):
        xs = model.lower(i, a)
        accs = np.rint(xs.astype(np.float64) @ layer.weight.astype(np.float64)).astype(np.int64)
        spread = np.percentile(np.abs(accs).reshape(-1, layer.out_channels), 90, axis=0) + 1.0
        bias = np.rint(rng.normal(0.0, 0.1, layer.out_channels) * spread)
        layer.bias = np.clip(bias, -(1 << (acc - 1)), (1 << (acc - 1)) - 1).astype(np.int64)
        if layer.is_last:
            layer.mult = np.ones(layer.out_channels, np.int64)
            break
        # v * M / 2^S ~ act_max at the 90th percentile of |acc|: a spread over the whole code range.
        target = np.log2(spread * layer.mult / act_max)
        layer.shift = np.clip(np.rint(target), 0, MAX_SHIFT).astype(np.int64)
        model = IntegerModel(export)  # the constructor derives arrays from the shifts: rebuild it
        y = model.layer_output(i, xs)
        n = layer.out_channels
        layer.lo_ch, layer.hi_ch = y.reshape(-1, n).min(axis=0), y.reshape(-1, n).max(axis=0)
        layer.lo, layer.hi = int(layer.lo_ch.min()), int(layer.hi_ch.max())
        a = model.next_input(i, y)
    export.check()
    return export
