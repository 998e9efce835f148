"""Tiling a layer onto the array, padded operands, the oracle's tile output and outcome classification."""

from types import SimpleNamespace

import numpy as np
import pytest

from fault_campaigns.execution.executor import split_groups
from fault_campaigns.planning import mapping
from fault_campaigns.results.classify import Classifier, Golden, outcome, valid_diff
from quasar import arithmetic


def _layer(k, n, rng, last=False):
    return SimpleNamespace(
        name="l", weight=rng.integers(-7, 8, size=(k, n)), bias=rng.integers(-50, 50, size=n),
        mult=rng.integers(1 << 15, 1 << 16, size=n), shift=rng.integers(8, 14, size=n), lo=2, hi=11,
        lo_ch=rng.integers(0, 3, size=n), hi_ch=rng.integers(10, 16, size=n), is_last=last,
    )


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (8, 8), (1, 1)])
@pytest.mark.parametrize("protection", ["none", "range"])
def test_tiles_reassemble_the_layer(shape, protection):
    rng = np.random.default_rng(1)
    p, k, n = 13, 9, 7
    layer = _layer(k, n, rng)
    x = rng.integers(0, 16, size=(p, k))
    lm = mapping.LayerMap(0, "l", p, k, n, shape[0], shape[1], False)
    full = arithmetic.layer(x, layer.weight, layer.bias, layer.mult, layer.shift, 4,
                            None if protection == "none" else (layer.lo, layer.hi))["z"]
    y = np.full((p, n), -1, dtype=np.int64)
    for t in range(lm.tiles):
        ops = mapping.tile_operands(lm, layer, x, t, protection, False, 4)
        assert ops.x.shape == (shape[0], k) and ops.w.shape == (k, shape[1])
        exp = mapping.expect(ops, 4, protection)
        mapping.place(lm, y, t, exp.act)
        np.testing.assert_array_equal(mapping.extract(lm, y, t), mapping.extract(lm, full, t))
    np.testing.assert_array_equal(y, full)


def test_padding_is_zero_fed_and_edge_tiles_are_partial():
    rng = np.random.default_rng(2)
    layer = _layer(5, 3, rng)
    lm = mapping.LayerMap(0, "l", 5, 5, 3, 4, 4, False)
    assert (lm.tiles_p, lm.tiles_n, lm.tiles) == (2, 1, 2)
    assert lm.origin(1) == (4, 0) and lm.valid(1) == (1, 3)
    ops = mapping.tile_operands(lm, layer, rng.integers(0, 16, size=(5, 5)), 1, "range", True, 4)
    assert not ops.x[1:].any() and not ops.w[:, 3:].any() and not ops.bias[3:].any()
    assert list(ops.lo[3:]) == [0] and list(ops.hi[3:]) == [15]  # padded channels never clamp
    assert list(ops.mult[3:]) == [1]  # v = 0 there whatever M; M = 1 is what a shift-only design takes
    with pytest.raises(ValueError, match="tiles 0..1"):
        lm.origin(2)


@pytest.mark.parametrize("protection", ["range", "range:zero:act:channel"])
def test_padding_lanes_are_neither_corrected_nor_counted(protection):
    """An edge tile's unused rows and columns see v = bias (and 0): a bias outside the bounds must not
    count as a violation nor be corrected; the real outputs count exactly as the layer's own do."""
    rng = np.random.default_rng(4)
    layer = _layer(5, 3, rng)
    layer.bias[:] = 40_000  # requantizes far above every bound: padding rows would all violate
    layer.lo, layer.hi = 0, 2
    layer.lo_ch, layer.hi_ch = np.zeros(3, np.int64), np.full(3, 2, np.int64)
    lm = mapping.LayerMap(0, "l", 5, 5, 3, 4, 4, False)
    x = rng.integers(0, 16, size=(5, 5))
    ops = mapping.tile_operands(lm, layer, x, 1, protection, False, 4)
    assert ops.valid == (1, 3)
    exp = mapping.expect(ops, 4, protection)
    real = arithmetic.layer(ops.x[:1], ops.w[:, :3], ops.bias[:3], ops.mult[:3], ops.shift[:3], 4,
                            (np.broadcast_to(ops.lo, (4,))[:3], np.broadcast_to(ops.hi, (4,))[:3]),
                            "zero" if "zero" in protection else "clamp")
    assert exp.violations == real["violations"] > 0
    np.testing.assert_array_equal(exp.act[:1, :3], real["z"])
    unprotected = arithmetic.layer(ops.x, ops.w, ops.bias, ops.mult, ops.shift, 4)["z"]
    np.testing.assert_array_equal(exp.act[1:], unprotected[1:])  # padding rows pass as they are
    assert exp.act[1:, :3].min() > 2  # ... and they were out of range


def test_acc_domain_protects_the_last_layer_in_v_units():
    rng = np.random.default_rng(5)
    layer = _layer(4, 10, rng, last=True)
    layer.v_lo, layer.v_hi = -7, 9
    layer.v_lo_ch, layer.v_hi_ch = np.arange(10, dtype=np.int64) - 20, np.arange(10, dtype=np.int64) + 20
    lm = mapping.LayerMap(0, "fc3", 1, 4, 10, 2, 8, True)
    x = rng.integers(0, 16, size=(1, 4))
    ops = mapping.tile_operands(lm, layer, x, 0, "range:acc", False, 4)
    assert (ops.lo, ops.hi, ops.valid) == (-7, 9, (1, 8))
    ops = mapping.tile_operands(lm, layer, x, 1, "range:zero:acc:channel", False, 4)
    assert list(ops.lo) == [-12, -11] + [-7] * 6 and ops.valid == (1, 2)
    exp = mapping.expect(ops, 4, "range:zero:acc:channel")
    v = ops.x @ ops.w + ops.bias
    out = (v < ops.lo) | (v > ops.hi)
    out[1:], out[:, 2:] = False, False
    np.testing.assert_array_equal(exp.logit, np.where(out, 0, v))
    assert exp.violations == int(out.sum())


def test_last_layer_is_not_protected_in_the_act_domain():
    rng = np.random.default_rng(3)
    layer = _layer(4, 10, rng, last=True)
    lm = mapping.LayerMap(0, "fc3", 1, 4, 10, 2, 8, True)
    ops = mapping.tile_operands(lm, layer, rng.integers(0, 16, size=(1, 4)), 0, "range", False, 4)
    assert (ops.lo, ops.hi) == (0, 15)


def test_outcome_classes():
    assert outcome(3, 3, 3, changed=False) == "masked"
    assert outcome(3, 3, 3, changed=True) == "tolerable"
    assert outcome(3, 5, 3, changed=True) == "critical"  # golden was right, now wrong
    assert outcome(3, 5, 4, changed=True) == "sdc"  # golden was already wrong


def test_valid_diff_drops_padding():
    lm = mapping.LayerMap(0, "l", 5, 5, 3, 4, 4, False)
    assert valid_diff(lm, 1, [[0, 0, 9], [1, 0, 9], [0, 3, 9]]) == [(4, 0, 9)]


def test_classifier_carries_faults_downstream():
    lm0 = mapping.LayerMap(0, "a", 2, 3, 2, 2, 2, False)
    lm1 = mapping.LayerMap(1, "b", 1, 4, 3, 2, 2, True)
    y0 = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    logits = np.array([[[0, 9, 1]], [[5, 0, 0]]])

    def forward_from(layer, ys):  # a toy "rest of the network": class = argmax of the sum per channel pair
        assert layer == 0
        s = ys.sum(axis=(1, 2))
        return np.stack([s % 3 == 0, s % 3 == 1, s % 3 == 2], axis=1).astype(int)

    golden = Golden([y0, logits], np.array([1, 0]), np.array([1, 2]))
    clf = Classifier([lm0, lm1], golden, forward_from)
    ctl = dict(site="busy_r", cycle=0, model="flip")  # a control register: always live
    faults = [SimpleNamespace(image=0, layer=0, tile=0, **ctl), SimpleNamespace(image=0, layer=0, tile=0, **ctl),
              SimpleNamespace(image=1, layer=1, tile=1, **ctl), SimpleNamespace(image=0, layer=0, tile=0, **ctl)]
    records = [
        {"id": 0, "fin": True, "cyc": 10, "viol": 0, "diff": [], "t": 0.1},
        {"id": 1, "fin": True, "cyc": 10, "viol": 0, "diff": [[0, 0, 2]], "t": 0.1},  # sum 10 -> 11: class 2
        {"id": 2, "fin": True, "cyc": 10, "viol": 0, "diff": [[0, 0, 9]], "t": 0.1},  # logit 2 (tile 1, col 0) -> 9
        {"id": 3, "fin": False, "cyc": 99, "viol": 0, "diff": [], "t": 0.1},
    ]
    rows = clf.classify(faults, records)
    assert [r["outcome"] for r in rows] == ["masked", "critical", "sdc", "hang"]
    assert [r["faulty_top1"] for r in rows] == [1, 2, 2, None]
    assert rows[1]["changed_outputs"] == 1


def test_split_groups_is_contiguous_and_balanced():
    groups = [{"runs": [{"id": i * 10 + j} for j in range(n)]} for i, n in enumerate([5, 1, 1, 1, 4, 4])]
    shards = split_groups(groups, 2)
    assert [g for s in shards for g in s] == groups
    assert [sum(len(g["runs"]) for g in s) for s in shards] == [8, 8]
    assert len(split_groups(groups[:1], 4)) == 1
