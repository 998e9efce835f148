"""The export object: exact JSON round trip, validation messages, bounds as the protection unit reads them."""

import json

import numpy as np
import pytest

from models.export import ModelExport
from models.integer import IntegerModel
from models.synthetic import random_export
from quasar.errors import QuasarError


@pytest.mark.parametrize(("net", "bits"), [("lenet", 16), ("tiny", 2)])
def test_json_round_trip_is_exact(tmp_path, net, bits):
    export = random_export(net, bits, bits, seed=1)
    back = ModelExport.from_json(export.to_json(tmp_path / "e.json"))
    assert back.to_dict() == export.to_dict()
    for a, b in zip(export.layers, back.layers, strict=True):
        for key in ("weight", "bias", "mult", "shift", "lo_ch", "hi_ch"):
            x, y = getattr(a, key), getattr(b, key)
            if x is None:
                assert y is None
            else:
                assert y.dtype == np.int64 and y.shape == x.shape
                np.testing.assert_array_equal(x, y)
    x = np.random.default_rng(0).random((3, *export.input_shape))
    np.testing.assert_array_equal(IntegerModel(back).logits(x), IntegerModel(export).logits(x))


def test_json_carries_widths_and_geometry(tmp_path):
    export = random_export("lenet", 6, 5, seed=0)
    raw = json.loads(export.to_json(tmp_path / "e.json").read_text())
    assert (raw["act_bits"], raw["weight_bits"], raw["max_reduction"], raw["acc_bits"]) == (6, 5, 400, 20)
    assert raw["input_quantization"]["levels"] == 63
    conv2 = raw["layers"][1]
    assert (conv2["in_channels"], conv2["kernel"], conv2["out_hw"], conv2["pool"]) == (6, 5, [10, 10], 2)
    assert len(conv2["weight"]) == 150 and len(conv2["weight"][0]) == 16  # K x N
    assert raw["layers"][-1]["lo"] is None and raw["layers"][-1]["is_last"]


def test_bounds_for_the_protection_unit():
    export = random_export("tiny", 4, 4, seed=0)
    per_layer, per_channel = export.bounds(), export.bounds(per_channel=True)
    assert per_layer[-1] is None and per_channel[-1] is None
    lo, hi = per_layer[0]
    assert lo.shape == (8,) and np.all(lo == export.layers[0].lo) and np.all(hi == export.layers[0].hi)
    np.testing.assert_array_equal(per_channel[1][1], export.layers[1].hi_ch)
    assert set(export.arrays()) >= {"conv1.weight", "conv1.lo_ch", "fc2.shift"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.layers[0].weight.__setitem__((0, 0), 8), r"conv1: weight has values in .*8, allowed -8..7"),
        (lambda e: e.layers[1].shift.__setitem__(0, 64), r"fc1: shift has values in \d+..64, allowed 0..63"),
        (lambda e: e.layers[1].mult.__setitem__(0, 1 << 16), "fc1: mult has values in .*65536, allowed 0..65535"),
        (lambda e: setattr(e.layers[0], "lo", 16), "conv1: bounds lo=16, hi=15 not in 0..15"),
        (lambda e: setattr(e.layers[0], "bias", e.layers[0].bias[:3]), r"conv1: bias must be int64 \(8,\)"),
        (lambda e: setattr(e.layers[0], "kernel", 5), "conv1: kernel 5 != net's 3"),
        (lambda e: setattr(e, "input_levels", 16), r"input_levels 16 != 15 \(calibrated at A=4\)"),
    ],
)
def test_check_names_what_is_wrong(edit, message):
    export = random_export("tiny", 4, 4, seed=0)
    edit(export)
    with pytest.raises(QuasarError, match=message):
        export.check()


def test_from_json_refuses_bad_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(QuasarError, match="cannot read model export"):
        ModelExport.from_json(tmp_path / "a.json")
    raw = random_export("tiny", 4, 4).to_dict()
    (tmp_path / "b.json").write_text(json.dumps({**raw, "format": 99}))
    with pytest.raises(QuasarError, match="export format 99 is not the supported 1"):
        ModelExport.from_json(tmp_path / "b.json")
    del raw["layers"][0]["bias"]
    (tmp_path / "c.json").write_text(json.dumps(raw))
    with pytest.raises(QuasarError, match="malformed model export"):
        ModelExport.from_json(tmp_path / "c.json")


def test_npz_holds_the_same_arrays(tmp_path):
    export = random_export("tiny", 8, 8, seed=2)
    with np.load(export.save_npz(tmp_path / "e.npz")) as npz:
        for key, value in export.arrays().items():
            np.testing.assert_array_equal(npz[key], value)
