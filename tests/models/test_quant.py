"""Fake-quant layers: M/S selection, the torch requantization, and QuantNet == the integer model."""

import numpy as np
import pytest
import torch

from models.integer import IntegerModel
from models.nets import get_net
from models.quant import FloatNet, QuantNet, mse_clip, multiplier_shift, requantize_torch
from quasar import arithmetic


def test_multiplier_shift_is_normalised_and_accurate():
    rng = np.random.default_rng(0)
    m = np.exp(rng.uniform(np.log(1e-12), np.log(1e3), 2000))
    mult, shift = multiplier_shift(m)
    assert np.all((mult >= 1 << 15) & (mult < 1 << 16))
    assert np.all((shift >= 0) & (shift <= 63))
    rel = np.abs(mult / 2.0**shift - m) / m
    assert rel.max() <= 2.0**-16  # half a unit of M's last place, M >= 2^15


def test_multiplier_shift_rounds_up_to_the_next_power_of_two():
    m = (2**16 - 0.25) / 2**20  # M would round to 2^16: one bit less of shift instead
    mult, shift = multiplier_shift(m)
    assert (int(mult[0]), int(shift[0])) == (1 << 15, 19)
    assert multiplier_shift(1.0) == (np.array([1 << 15]), np.array([15]))


def test_multiplier_shift_extremes():
    mult, shift = multiplier_shift(np.array([2.0**-70, 1e6]))
    assert (int(mult[0]), int(shift[0])) == (0, 63)  # too small for 63 bits of shift
    assert (int(mult[1]), int(shift[1])) == (65535, 0)  # saturates
    with pytest.raises(ValueError, match="positive"):
        multiplier_shift(np.array([0.5, 0.0]))


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_requantize_torch_equals_the_contract(bits):
    rng = np.random.default_rng(bits)
    v = rng.integers(-(1 << 40), 1 << 40, (50, 7))
    mult = rng.integers(0, 1 << 16, 7)
    shift = rng.integers(0, 64, 7)
    shift[0] = 0
    ours = requantize_torch(torch.from_numpy(v), torch.from_numpy(mult), torch.from_numpy(shift), bits).numpy()
    np.testing.assert_array_equal(ours, arithmetic.requantize(v, mult, shift, bits))


def test_requantize_torch_rounds_half_up_on_negative_values():
    v = torch.tensor([[-5, -3, 3, 5]])
    out = requantize_torch(v * 1, torch.ones(4, dtype=torch.int64), torch.ones(4, dtype=torch.int64), 8)
    np.testing.assert_array_equal(out.numpy(), [[0, 0, 2, 3]])  # -2.5 -> -2 -> clamp 0; 1.5 -> 2; 2.5 -> 3


def test_mse_clip_prefers_clipping_outliers_at_low_bits():
    values = torch.cat([torch.randn(10_000, generator=torch.Generator().manual_seed(0)), torch.tensor([40.0])])
    assert mse_clip(values, 1, signed=True) < 20.0  # 2-bit weights: the outlier is clipped
    assert mse_clip(values, 32767, signed=True) == pytest.approx(40.0)  # 16 bits: keep the whole range


def _random_quantnet(net, bits, seed):
    torch.manual_seed(seed)
    spec = get_net(net)
    fnet = FloatNet(spec)
    calib = torch.rand(64, *spec.input_shape)
    q = QuantNet(spec, bits, bits)
    q.init_from_float(fnet, calib)
    return q.eval(), torch.rand(16, *spec.input_shape)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("net", ["lenet", "tiny"])
def test_fake_quant_forward_is_the_integer_model(net, bits):
    q, x = _random_quantnet(net, bits, seed=bits)
    export = q.export("random")
    with torch.no_grad():
        v, real, kept = q(x, keep=True)
    model = IntegerModel(export)
    trace = model.trace(model.quantize_input(x.numpy()))
    for g, codes, lt in zip(q.geometry, kept, trace.layers, strict=False):
        ours = codes.numpy()
        ours = ours.reshape(len(x), g.out_channels, -1).transpose(0, 2, 1) if g.kind == "conv" else ours[:, None]
        np.testing.assert_array_equal(ours, lt.Y)
        assert len(np.unique(lt.Y)) > 1  # not a degenerate, all-zero network
    np.testing.assert_array_equal(v.numpy(), trace.logits)
    # The real logits are the integer ones times one positive scale: same ranking.
    np.testing.assert_array_equal(real.argmax(1).numpy(), np.argmax(trace.logits, axis=1))


def test_export_matches_the_contract_ranges():
    q, _ = _random_quantnet("lenet", 3, seed=0)
    export = q.export("random")
    export.check()  # raises on any out-of-range value
    wmax = 3
    for layer in export.layers:
        assert np.abs(layer.weight).max() <= wmax
        assert layer.weight.shape == (layer.reduction, layer.out_channels)
    assert np.all(export.layers[-1].mult == 1) and np.all(export.layers[-1].shift == 0)


def test_gradients_reach_weights_and_scales():
    q, x = _random_quantnet("tiny", 4, seed=1)
    q.train()
    _, real = q(x)
    torch.nn.functional.cross_entropy(real, torch.randint(0, 10, (len(x),))).backward()
    for name, p in q.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
