"""The integer reference model against the literal oracle (tests/models/oracle.py), layer by layer."""

import dataclasses

import numpy as np
import pytest

from models.export import LayerExport, ModelExport
from models.integer import IntegerModel, has_acc_bounds, set_acc_bounds
from models.synthetic import random_export
from quasar import arithmetic
from quasar.errors import ConfigError
from tests.models import oracle


def _images(export, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *export.input_shape))
    return np.where(x < 0.4, 0.0, x)


def _narrow_bounds(export, seed):
    """Bounds tighter than the observed range, so the protection clamps on ordinary inputs."""
    rng = np.random.default_rng(seed)
    top = (1 << export.act_bits) - 1
    for layer in export.layers[:-1]:
        n = layer.out_channels
        layer.lo_ch = rng.integers(0, max(1, top // 8) + 1, n).astype(np.int64)
        layer.hi_ch = np.maximum(layer.lo_ch, rng.integers(top // 2, top + 1, n)).astype(np.int64)
        layer.lo, layer.hi = int(rng.integers(0, top // 8 + 1)), int(rng.integers(top // 2, top))
    return export


def _assert_matches_oracle(export, x, protection="none", per_channel=False):
    model = IntegerModel(export, protection=protection, per_channel=per_channel)
    codes = model.quantize_input(x)
    trace = model.trace(codes)
    for b in range(len(x)):
        expect = oracle.run_image(export, codes[b], protection, per_channel)
        for i, (lt, ex) in enumerate(zip(trace.layers, expect, strict=True)):
            np.testing.assert_array_equal(lt.X[b], ex["X"], err_msg=f"layer {i} X, image {b}")
            np.testing.assert_array_equal(lt.V[b], ex["v"], err_msg=f"layer {i} v, image {b}")
            np.testing.assert_array_equal(lt.Y[b], ex["z"], err_msg=f"layer {i} Y, image {b}")
            assert lt.violations[b] == ex["violations"], f"layer {i} violations, image {b}"
        np.testing.assert_array_equal(trace.logits[b], expect[-1]["v"][0])
    return trace


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("net", ["lenet", "tiny"])
def test_every_layer_matches_the_oracle(net, bits):
    export = random_export(net, bits, bits, seed=bits)
    trace = _assert_matches_oracle(export, _images(export, 2, seed=bits))
    # The random export is realistic: hidden outputs use more than the two ends of the code range.
    for lt in trace.layers[:-1]:
        assert len(np.unique(lt.Y)) > min(3, (1 << bits) - 1)


@pytest.mark.parametrize(("act_bits", "weight_bits"), [(3, 7), (9, 2), (16, 5)])
def test_mixed_widths_match_the_oracle(act_bits, weight_bits):
    export = random_export("tiny", act_bits, weight_bits, seed=act_bits)
    _assert_matches_oracle(export, _images(export, 3, seed=1))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [2, 8])
def test_protection_clamps_like_the_oracle(bits, per_channel):
    export = _narrow_bounds(random_export("tiny", bits, bits, seed=3), seed=bits)
    trace = _assert_matches_oracle(export, _images(export, 4, seed=2), "range", per_channel)
    assert sum(int(lt.violations.sum()) for lt in trace.layers) > 0  # the bounds did bite
    for layer, lt in zip(export.layers[:-1], trace.layers[:-1], strict=True):
        lo, hi = (layer.lo_ch, layer.hi_ch) if per_channel else (layer.lo, layer.hi)
        assert np.all(lt.Y >= lo) and np.all(lt.Y <= hi)


def _narrow_acc_bounds(export, x, seed):
    """Accumulator bounds from images x, then narrowed on random channels so that they bite."""
    set_acc_bounds(export, x)
    rng = np.random.default_rng(seed)
    for layer in export.layers:
        span = np.maximum(1, (layer.v_hi_ch - layer.v_lo_ch) // 4)
        layer.v_lo_ch = layer.v_lo_ch + rng.integers(0, 2, layer.out_channels) * span
        layer.v_hi_ch = np.maximum(layer.v_lo_ch, layer.v_hi_ch - rng.integers(0, 2, layer.out_channels) * span)
        low = int(layer.v_lo_ch.min()) + 1
        layer.v_lo, layer.v_hi = low, max(low, int(layer.v_hi_ch.max()) - 1)
    return export


@pytest.mark.parametrize("spec", ["range:zero", "range:zero:channel", "range:acc", "range:zero:acc:channel"])
def test_protection_variants_match_the_oracle(spec):
    export = _narrow_bounds(random_export("tiny", 4, 4, seed=3), seed=4)
    x = _images(export, 4, seed=2)
    _narrow_acc_bounds(export, x, seed=5)
    trace = _assert_matches_oracle(export, x, spec)
    assert sum(int(lt.violations.sum()) for lt in trace.layers) > 0  # the bounds did bite
    if "acc" in spec:  # the logits are protected too
        assert int(trace.layers[-1].violations.sum()) > 0


def test_acc_bounds_from_the_same_images_change_nothing_and_need_extraction():
    export = random_export("tiny", 8, 8, seed=9, images=6)
    x = _images(export, 6, seed=123)
    with pytest.raises(ValueError, match=r"protection 'range:clamp:acc:layer' needs accumulator bounds"):
        IntegerModel(export, "range:acc")
    assert not has_acc_bounds(export)
    set_acc_bounds(export, x)
    assert has_acc_bounds(export) and export.layers[-1].v_lo is not None  # the logits have bounds too
    for spec in ("range:acc", "range:zero:acc:channel"):
        model = IntegerModel(export, spec)
        trace = model.trace(model.quantize_input(x))
        assert all(int(lt.violations.sum()) == 0 for lt in trace.layers)
        np.testing.assert_array_equal(trace.logits, IntegerModel(export).logits(x))
    assert ModelExport.from_dict(export.to_dict()).layers[0].v_hi == export.layers[0].v_hi  # JSON round trip


def test_lenet_protection_matches_the_oracle():
    export = _narrow_bounds(random_export("lenet", 8, 8, seed=5), seed=5)
    _assert_matches_oracle(export, _images(export, 1, seed=5), "range", per_channel=True)


def test_protection_with_export_bounds_changes_nothing_on_the_same_images():
    export = random_export("lenet", 4, 4, seed=9, images=6)
    x = _images(export, 6, seed=123)  # not the images the bounds came from
    plain = IntegerModel(export).trace(IntegerModel(export).quantize_input(x))
    bounds = IntegerModel(export).output_ranges(x)
    for layer, (lo, hi) in zip(export.layers, bounds[:-1], strict=False):
        layer.lo_ch, layer.hi_ch, layer.lo, layer.hi = lo, hi, int(lo.min()), int(hi.max())
    guarded = IntegerModel(export, "range", per_channel=True)
    trace = guarded.trace(guarded.quantize_input(x))
    assert all(int(lt.violations.sum()) == 0 for lt in trace.layers)
    np.testing.assert_array_equal(trace.logits, plain.logits)


def test_strided_padded_conv_matches_the_oracle():
    """Stride 2 and padding 1 (no net uses them yet; the lowering must still be right)."""
    rng = np.random.default_rng(0)
    conv = LayerExport(
        name="c",
        kind="conv",
        in_channels=2,
        out_channels=3,
        kernel=3,
        stride=2,
        padding=1,
        in_hw=(7, 6),
        out_hw=(4, 3),
        pool=1,
        pooled_hw=(4, 3),
        flatten=True,
        is_last=False,
        weight=rng.integers(-7, 8, (18, 3)),
        bias=rng.integers(-20, 20, 3),
        mult=rng.integers(1 << 15, 1 << 16, 3),
        shift=np.full(3, 19),
        lo=0,
        hi=15,
        lo_ch=np.zeros(3, np.int64),
        hi_ch=np.full(3, 15),
    )
    fc = LayerExport(
        name="f",
        kind="fc",
        in_channels=36,
        out_channels=10,
        kernel=1,
        stride=1,
        padding=0,
        in_hw=(1, 1),
        out_hw=(1, 1),
        pool=1,
        pooled_hw=(1, 1),
        flatten=False,
        is_last=True,
        weight=rng.integers(-7, 8, (36, 10)),
        bias=rng.integers(-20, 20, 10),
        mult=np.ones(10, np.int64),
        shift=np.zeros(10, np.int64),
    )
    export = ModelExport(
        net="custom",
        act_bits=4,
        weight_bits=4,
        dataset="none",
        layers=[conv, fc],
        input_shape=(2, 7, 6),
        num_classes=10,
        max_reduction=36,
        input_levels=15,
    )
    _assert_matches_oracle(export, _images(export, 3, seed=4))


def test_forward_from_equals_the_trace_and_carries_a_changed_output():
    export = random_export("lenet", 8, 8, seed=2)
    model = IntegerModel(export)
    x = _images(export, 5, seed=8)
    trace = model.trace(model.quantize_input(x))
    for i, lt in enumerate(trace.layers):
        np.testing.assert_array_equal(model.forward_from(i, lt.Y), trace.logits)
    # A flipped activation in conv1 of image 0 changes only image 0, exactly as the oracle says.
    y = trace.layers[0].Y.copy()
    y[0, 100, 3] ^= 1 << 7
    logits = model.forward_from(0, y)
    np.testing.assert_array_equal(logits[1:], trace.logits[1:])
    layers = export.layers
    a = oracle.maxpool(y[0].T.reshape(6, 28, 28), 2)
    for layer in layers[1:]:
        xs = oracle.im2col(a, layer.kernel, 1, 0) if layer.kind == "conv" else a.reshape(1, -1)
        r = arithmetic.layer(xs, layer.weight, layer.bias, layer.mult, layer.shift, 8)
        z = r["v"] if layer.is_last else r["z"]
        a = oracle.maxpool(z.T.reshape(layer.out_channels, *layer.out_hw), 2) if layer.kind == "conv" else z
    np.testing.assert_array_equal(logits[0], a.reshape(-1))


def test_forward_from_counts_downstream_violations():
    export = _narrow_bounds(random_export("tiny", 4, 4, seed=1), seed=1)
    model = IntegerModel(export, "range")
    trace = model.trace(model.quantize_input(_images(export, 4, seed=3)))
    logits, violations = model.forward_from(0, trace.layers[0].Y, return_violations=True)
    np.testing.assert_array_equal(logits, trace.logits)
    np.testing.assert_array_equal(violations, sum(lt.violations for lt in trace.layers[1:]))


def test_int64_and_float_matmul_paths_agree():
    """Huge operands (a fault can widen a value) push the matmul off BLAS onto exact int64."""
    export = random_export("tiny", 16, 16, seed=4)
    model = IntegerModel(export)
    rng = np.random.default_rng(0)
    for top in (1 << 16, 1 << 34):
        x = rng.integers(0, top, (2, 1, 128))
        uses_float = float(np.abs(x).max()) * model._wabs[1] < 2.0**53
        assert uses_float == (top == 1 << 16)
        np.testing.assert_array_equal(model._matmul(1, x), arithmetic.matmul(x[:, 0], export.layers[1].weight)[:, None])


def test_quantize_input_rounds_half_up_and_rejects_out_of_range():
    export = random_export("tiny", 2, 2, seed=0)
    model = IntegerModel(export)
    x = np.array([0.0, 1 / 6, 0.5, 5 / 6, 1.0]).reshape(1, 1, 1, 5)  # x * 3 = 0, 0.5, 1.5, 2.5, 3
    np.testing.assert_array_equal(model.quantize_input(x).reshape(-1), [0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.quantize_input(x + 0.5)


def test_predict_takes_the_lowest_index_on_a_tie():
    export = random_export("tiny", 4, 4, seed=0)
    last = export.layers[-1]
    last.weight[:] = 0
    last.bias[:] = 0
    last.bias[[3, 7]] = 5  # logits tie between classes 3 and 7
    pred = IntegerModel(export).predict(_images(export, 3, seed=0))
    np.testing.assert_array_equal(pred, [3, 3, 3])


def test_unknown_protection_is_refused_with_the_choices():
    export = random_export("tiny", 4, 4, seed=0)
    with pytest.raises(ConfigError, match="protection spec 'parity' must start with none or range"):
        IntegerModel(export, protection="parity")


def test_range_protection_needs_bounds():
    export = random_export("tiny", 4, 4, seed=0)
    export.layers[0] = dataclasses.replace(export.layers[0], lo=None, hi=None, lo_ch=None, hi_ch=None)
    with pytest.raises(ValueError, match="needs bounds"):
        IntegerModel(export, protection="range")
