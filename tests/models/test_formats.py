"""The pow2 activation format (docs/arithmetic.md, "Activation number formats"): the oracle's shift-only
requantization, the fake-quant net == the integer model, calibration choices, the export, headroom,
the config and CLI errors."""

import numpy as np
import pytest
import torch

from models.export import ModelExport
from models.integer import IntegerModel
from models.nets import get_net
from models.quant import FloatNet, QuantNet, auto_int_bits, pow2_frac_rows
from models.train import TrainConfig, get_or_train
from quasar import arithmetic
from quasar.cli import main
from quasar.errors import ConfigError


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_shift_only_requantization_is_the_multiplier_one_with_m_1(bits):
    rng = np.random.default_rng(bits)
    v = rng.integers(-(1 << 40), 1 << 40, (200, 7))
    v[:, 0] = rng.integers(-8, 8, 200)  # small values: the rounding of halves matters
    shift = np.array([0, 1, 2, 5, 17, 40, 63])
    ours = arithmetic.requantize_shift(v, shift, bits)
    np.testing.assert_array_equal(ours, arithmetic.requantize(v, np.ones(7, np.int64), shift, bits))
    # round half up, on both signs: -2.5 -> -2, 2.5 -> 3 (S = 1)
    got = arithmetic.requantize_shift([[-5, 5, 7, 1 << 20]], [1, 1, 1, 1], bits)
    np.testing.assert_array_equal(got, np.minimum([[0, 3, 4, 1 << 19]], (1 << bits) - 1))  # and saturation
    with pytest.raises(ValueError, match="S >= 0"):
        arithmetic.requantize_shift([[1]], [-1], bits)


def test_pow2_input_codes_saturate_at_the_top_code():
    x = np.array([0.0, 0.5 / 256, 1.5 / 256, 0.5, 255.4 / 256, 1.0])
    np.testing.assert_array_equal(arithmetic.quantize_input(x, 8, "pow2"), [0, 1, 2, 128, 255, 255])
    np.testing.assert_array_equal(arithmetic.quantize_input(x, 8, "calibrated"), np.floor(x * 255 + 0.5))
    with pytest.raises(ValueError, match="act_format must be one of calibrated, pow2; got 'fp8'"):
        arithmetic.quantize_input(x, 8, "fp8")


def test_headroom_counts_codes_and_free_top_bits():
    assert arithmetic.headroom(255, 8) == (0, 0)
    assert arithmetic.headroom(127, 8) == (128, 1)
    assert arithmetic.headroom(20, 8) == (235, 3)  # 20 < 32: bits 5, 6, 7 never set by the data
    assert arithmetic.headroom(0, 4) == (15, 4)


def test_auto_int_bits_is_the_fewest_that_hold_the_maximum():
    assert auto_int_bits(0.0, 8) == 0
    assert auto_int_bits(255 / 256, 8) == 0  # ap_ufixed<8, 0> tops at 255/256
    assert auto_int_bits(0.999, 8) == 1
    assert auto_int_bits(3.0, 8) == 2
    assert auto_int_bits(3.99, 8) == 3  # ap_ufixed<8, 2> tops at 3.984
    assert auto_int_bits(1e6, 8) == 8  # nothing holds it: all integer bits, the rest saturates


def test_pow2_weight_grid_clips_nothing_first_and_prefers_clipping_outliers_at_low_bits():
    rows = torch.tensor([[0.3, -0.1, 0.05], [0.0, 0.0, 0.0]], dtype=torch.float64)
    frac = pow2_frac_rows(rows, 127)
    assert frac[0] == 8  # 0.3 * 2^8 = 76.8 <= 127 < 0.3 * 2^9
    assert frac[1] == 0
    outlier = torch.cat([torch.randn(10_000, generator=torch.Generator().manual_seed(0)), torch.tensor([40.0])])
    f = pow2_frac_rows(outlier[None], 1)  # 2-bit weights: a step well below the outlier
    assert 2.0 ** -float(f[0]) < 40.0 / 2


def _pow2_quantnet(net, bits, seed, int_bits=None):
    torch.manual_seed(seed)
    spec = get_net(net)
    fnet = FloatNet(spec)
    q = QuantNet(spec, bits, bits, "pow2", int_bits)
    q.init_from_float(fnet, torch.rand(64, *spec.input_shape))
    return q.eval(), torch.rand(16, *spec.input_shape)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("net", ["lenet", "tiny"])
def test_pow2_fake_quant_forward_is_the_integer_model(net, bits):
    q, x = _pow2_quantnet(net, bits, seed=bits)
    export = q.export("random")
    export.check()
    assert export.act_format == "pow2" and export.shift_only and export.input_levels == 1 << bits
    with torch.no_grad():
        v, _, kept = q(x, keep=True)
    model = IntegerModel(export)
    trace = model.trace(model.quantize_input(x.numpy()))
    np.testing.assert_array_equal(model.quantize_input(x.numpy()), arithmetic.quantize_input(x.numpy(), bits, "pow2"))
    for g, codes, lt, layer in zip(q.geometry, kept, trace.layers, export.layers, strict=False):
        ours = codes.numpy()
        ours = ours.reshape(len(x), g.out_channels, -1).transpose(0, 2, 1) if g.kind == "conv" else ours[:, None]
        np.testing.assert_array_equal(ours, lt.Y)
        # the shift-only oracle computes the same layer
        np.testing.assert_array_equal(arithmetic.requantize_shift(lt.V, layer.shift, bits), lt.Y)
        assert np.all(layer.shift >= 0) and np.all(layer.shift <= arithmetic.MAX_SHIFT)
        # every real scale is a power of two and M / 2^S is exactly s_in * s_w / s_out
        assert np.all(np.log2(layer.weight_scale) == np.round(np.log2(layer.weight_scale)))
        np.testing.assert_array_equal(2.0 ** -layer.shift, layer.input_scale * layer.weight_scale / layer.output_scale)
    np.testing.assert_array_equal(v.numpy(), trace.logits)


def test_fixed_int_bits_apply_to_every_hidden_layer_and_survive_json(tmp_path):
    q, _ = _pow2_quantnet("lenet", 8, seed=0, int_bits=6)
    export = q.export("random")
    assert [layer.int_bits for layer in export.layers] == [6, 6, 6, 6, None]
    back = ModelExport.from_json(export.to_json(tmp_path / "e.json"))
    assert back.act_format == "pow2" and [layer.int_bits for layer in back.layers] == [6, 6, 6, 6, None]
    assert back.input_quantization["rule"] == "min(round_half_up(x * levels), 255)"


def test_pow2_export_rejects_a_multiplier():
    q, _ = _pow2_quantnet("tiny", 4, seed=0)
    export = q.export("random")
    export.layers[0].mult = export.layers[0].mult * 3
    with pytest.raises(ValueError, match="layer conv1: a pow2 export needs every multiplier = 1"):
        export.check()


def test_pow2_gradients_reach_weights_and_biases_only():
    q, x = _pow2_quantnet("tiny", 4, seed=1)
    q.train()
    _, real = q(x)
    torch.nn.functional.cross_entropy(real, torch.randint(0, 10, (len(x),))).backward()
    names = {name for name, _ in q.named_parameters()}
    assert names == {f"{kind}.{i}" for kind in ("weight", "bias") for i in range(len(q.geometry))}
    for name, p in q.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_format_is_in_the_cache_key_and_the_run_name():
    base = TrainConfig("tiny", 4, 4)
    pow2 = TrainConfig("tiny", 4, 4, act_format="pow2")
    fixed = TrainConfig("tiny", 4, 4, act_format="pow2", int_bits=3)
    assert len({base.key, pow2.key, fixed.key}) == 3
    assert "act_format" not in base.resolved()  # keys made before the formats existed stay valid
    assert base.float_key == pow2.float_key == fixed.float_key  # one float model for every format
    assert (base.run_name, pow2.run_name, fixed.run_name) == (
        "tiny-digits-qat-a4w4-s0",
        "tiny-digits-qat-a4w4-pow2-s0",
        "tiny-digits-qat-a4w4-pow2i3-s0",
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"act_format": "fp8"}, "act format must be one of calibrated, pow2; got 'fp8'"),
        ({"act_format": "pow2", "int_bits": 5}, "int bits (ap_ufixed<4, I> integer bits) must be in 0..4, got 5"),
        ({"act_format": "pow2", "int_bits": -1}, "int bits (ap_ufixed<4, I> integer bits) must be in 0..4, got -1"),
        ({"int_bits": 2}, "int bits (2) only apply to act format 'pow2', not 'calibrated'"),
    ],
)
def test_bad_formats_are_refused(kw, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig("tiny", 4, 4, **kw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--net", "tiny", "--act-format", "fp8"], "error: act format must be one of calibrated, pow2"),
        (["train", "--net", "tiny", "--bits", "4", "--act-format", "pow2", "--int-bits", "5"],
         "error: int bits (ap_ufixed<4, I> integer bits) must be in 0..4, got 5"),
        (["train", "--net", "tiny", "--int-bits", "2"], "error: int bits ('2') only apply to act format 'pow2'"),
        (["accuracy-table", "--net", "tiny", "--bits", "4,8", "--int-bits", "6"],
         "error: int bits (ap_ufixed<4, I> integer bits) must be in 0..4, got 6"),
        (["accuracy-table", "--net", "tiny", "--formats", "pow3"], "error: act format must be one of calibrated, pow2"),
    ],
)  # fmt: skip
def test_cli_format_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.train
def test_pow2_qat_trains_caches_and_agrees(tmp_path, capsys):
    cfg = TrainConfig("tiny", 4, 4, act_format="pow2", float_epochs=10, qat_epochs=2)
    export, m = get_or_train(cfg, cache_dir=tmp_path, progress=False)
    assert m.agreement == 1.0 and m.integer_accuracy > 0.8
    assert export.act_format == "pow2" and export.config["act_format"] == "pow2"
    assert all(row["hi"] <= row["top"] for row in export.headroom())
    again, m2 = get_or_train(cfg, cache_dir=tmp_path, progress=False)
    assert m2.cached and np.array_equal(again.layers[0].shift, export.layers[0].shift)
    assert main(["accuracy-table", "--net", "tiny", "--bits", "3", "--modes", "ptq", "--out", str(tmp_path / "t"),
                 "--cache-dir", str(tmp_path), "--no-progress"]) == 0  # fmt: skip
    md = (tmp_path / "t" / "accuracy.md").read_text().splitlines()
    assert md[0].startswith("| bits (A = W) | float % | calibrated PTQ integer %") and "pow2 PTQ int bits" in md[0]
    assert len(md) == 3
