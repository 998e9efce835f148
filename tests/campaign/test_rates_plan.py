"""Fault-rate campaigns without a simulator: the flips drawn, the multi-flip dataflow model against the
single-fault one, the curve statistics, and bad input refused before anything is created."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fault_campaigns.analysis.rates import curve, drop_rate
from fault_campaigns.planning.faults import LayerSpace, Site
from fault_campaigns.planning.rates import FlipSpace, RateConfig, check_rates, draw_flips, tile_runs
from hdl_gen import ArrayConfig
from quasar.cli import main
from quasar.errors import ConfigError
from testbenches.model import Tile, golden, partial_products, postproc_registers, predict, predict_many

SITES = [Site("pe_0_0.a_reg", 4, "pe_activation", 0, 0), Site("pe_0_0.acc", 15, "accumulator", 0, 0),
         Site("oact_0", 4, "output_activation", None, 0)]
LAYERS = [LayerSpace(0, 6, 20), LayerSpace(1, 2, 50)]


def test_same_seed_same_flips_and_each_key_its_own():
    space = FlipSpace(LAYERS, SITES)
    a = draw_flips(space, 3, 17, 1, 1e-2)
    assert a == draw_flips(space, 3, 17, 1, 1e-2)
    assert a and all(f.cycle < {0: 20, 1: 50}[f.layer] and 0 <= f.bit < {s.name: s.width for s in SITES}[f.site]
                     for f in a)
    assert a != draw_flips(space, 3, 17, 2, 1e-2)  # another trial
    assert a != draw_flips(space, 4, 17, 1, 1e-2)  # another seed
    assert a != draw_flips(space, 3, 18, 1, 1e-2)  # another image
    keys = {(f.layer, f.tile, f.site, f.bit, f.cycle) for f in a}
    assert len(keys) == len(a)  # at most one flip per bit and cycle


def test_flip_count_follows_the_rate():
    space = FlipSpace(LAYERS, SITES)
    assert space.bits == 23 and space.bit_cycles == 23 * (6 * 20 + 2 * 50)
    counts = [len(draw_flips(space, 0, i, 0, 1e-3)) for i in range(400)]
    mean, expected = float(np.mean(counts)), space.mean_flips(1e-3)
    assert abs(mean - expected) < 4 * np.sqrt(expected / 400), (mean, expected)


def test_tile_runs_merge_bits_of_one_register_and_cycle():
    space = FlipSpace([LayerSpace(0, 1, 3)], [Site("pe_0_0.acc", 15, "accumulator", 0, 0)])
    flips = draw_flips(space, 0, 0, 0, 0.5)
    runs = tile_runs(flips)
    assert list(runs) == [(0, 0)]
    assert sorted(c for _, _, c in runs[(0, 0)]) == [c for _, _, c in runs[(0, 0)]]  # cycle order
    assert sum(bin(m).count("1") for _, m, _ in runs[(0, 0)]) == len(flips)
    assert len({c for _, _, c in runs[(0, 0)]}) == len(runs[(0, 0)])  # one deposit per register and cycle


@pytest.mark.parametrize(("protection", "requant"), [("none", "mul"), ("range", "mul"), ("range", "shift")])
def test_predict_many_equals_predict_for_one_flip(protection, requant):
    cfg = ArrayConfig(rows=4, cols=4, act_bits=4, weight_bits=4, k_max=16, protection=protection, requant=requant)
    rng = np.random.default_rng(7)
    names = ([f"pe_{i}_{j}.{r}" for i in range(4) for j in range(4)
              for r in ("a_reg", "w_reg", "a_op", "w_op", "p_reg", "acc")]
             # twice the PEs' draws: a drain register holds a given row at one edge only
             + 8 * ([f"{r}_{j}" for j in range(4) for r in ("v", "oact")]
                    + [f"pp_{j}.{r}" for j in range(4) for r in ("v_reg", "pl_reg", "ph_reg", "p_reg", "t_reg")]))
    width = {"a_reg": 4, "w_reg": 4, "a_op": 4, "w_op": 4, "p_reg": 8, "acc": cfg.acc_bits, "v": cfg.v_bits,
             "oact": 4, "pp.v_reg": cfg.v_bits, "pp.pl_reg": cfg.pl_bits, "pp.ph_reg": cfg.ph_bits,
             "pp.p_reg": cfg.p_bits, "pp.t_reg": cfg.p_bits + 1}
    changed = dict.fromkeys(width, 0)
    for n in range(1600):  # 320 site names: 80 draws of each PE, 160 of each drain register kind
        k = int(rng.integers(1, 17))
        mult = np.ones(4, np.int64) if requant == "shift" else rng.integers(0, 3000, 4)
        tile = Tile(rng.integers(0, 16, (4, k)), rng.integers(-7, 8, (k, 4)), rng.integers(-40, 40, 4),
                    mult, rng.integers(0, 12, 4) + (0 if requant == "shift" else 8), 2, 12)  # y mostly unclamped
        site = names[n % len(names)]
        reg = site.split(".")[1] if site.startswith("pe_") else site.split("_")[0]
        reg = "pp." + site.split(".")[1] if site.startswith("pp_") else reg
        # the drained rows' registers hold a row only late in the run: draw their cycles from there
        first = 0 if site.startswith("pe_") else k + cfg.cols
        mask, cycle = 1 << int(rng.integers(width[reg])), int(rng.integers(first, cfg.tile_cycles(k) + 1))
        one, many = predict(cfg, tile, site, mask, cycle), predict_many(cfg, tile, [(site, mask, cycle)])
        assert np.array_equal(one.out_act, many.out_act) and np.array_equal(one.logits, many.logits), site
        assert one.violations == many.violations
        g = golden(cfg, tile)
        changed[reg] += not (np.array_equal(one.out_act, g.out_act) and np.array_equal(one.logits, g.logits))
    assert min(changed.values()) >= 3, changed  # every register kind's flips did change outputs


def test_predict_many_composes_flips():
    cfg = ArrayConfig(rows=2, cols=2, act_bits=4, weight_bits=4, k_max=4)
    tile = Tile(np.array([[3, 5], [1, 2]]), np.array([[1, 2], [3, -1]]), np.zeros(2, int), np.full(2, 1 << 10),
                np.full(2, 10))
    # operand X[0, 0] (k = 0) passes a_reg(0,0) after edge 2 and a_reg(0,1) after edge 3: flipping bit 0 at
    # both restores it in column 1 only
    both = predict_many(cfg, tile, [("pe_0_0.a_reg", 1, 2), ("pe_0_1.a_reg", 1, 3)])
    gold = tile.x @ tile.wt
    assert both.logits[0, 0] == gold[0, 0] + ((3 ^ 1) - 3) * 1 and both.logits[0, 1] == gold[0, 1]
    # two flips of one accumulator bit before any product: the partial sum 0 flips twice, nothing changes;
    # a flip before edge 3 is wiped out by the clear of PE (1, 1) at edge 1 + 1 + 1, one after edge 3 is not
    assert np.array_equal(predict_many(cfg, tile, [("pe_1_1.acc", 4, 3), ("pe_1_1.acc", 4, 4)]).logits, gold)
    assert np.array_equal(predict_many(cfg, tile, [("pe_1_1.acc", 4, 2)]).logits, gold)
    assert not np.array_equal(predict_many(cfg, tile, [("pe_1_1.acc", 4, 3)]).logits, gold)
    # row 1 of column 0 meets a flip in pp_0.p_reg and, one edge later, in pp_0.t_reg
    p, _ = postproc_registers(gold[1, 0], 1 << 10, 10)
    p ^= 1 << 12
    t = ((2 * p) >> 10) ^ 2
    pp = predict_many(cfg, tile, [("pp_0.p_reg", 1 << 12, cfg.stage_edge(2, "product", 1)),
                                  ("pp_0.t_reg", 2, cfg.stage_edge(2, "shifted", 1))])
    assert pp.out_act[1, 0] == min(max((t + 1) >> 1, 0), 15) != golden(cfg, tile).out_act[1, 0]
    assert np.array_equal(pp.logits, gold)
    # row 0 of column 1 meets flips in both partial products at once: p = (ph ^ 1) * 2^LO + (pl ^ 2^9)
    pl, ph = partial_products(cfg, gold[0, 1], 1 << 10)
    p = ((ph ^ 1) << cfg.lo_bits) + (pl ^ (1 << 9))
    edge = cfg.stage_edge(2, "partial", 0)
    pp = predict_many(cfg, tile, [("pp_1.ph_reg", 1, edge), ("pp_1.pl_reg", 1 << 9, edge)])
    assert pp.out_act[0, 1] == min(max((((2 * p) >> 10) + 1) >> 1, 0), 15) != golden(cfg, tile).out_act[0, 1]
    assert np.array_equal(predict_many(cfg, tile, [("pp_1.ph_reg", 1, edge - 1)]).out_act, golden(cfg, tile).out_act)
    # row 1 of column 1 (v = 0) meets a flip in v_1, which the logit keeps, and one edge later another in
    # its copy pp_1.v_reg, which only the activation sees: requantized from 4 ^ 1 = 5
    v_edge, in_edge = cfg.stage_edge(2, "v", 1), cfg.stage_edge(2, "input", 1)
    vq = predict_many(cfg, tile, [("v_1", 4, v_edge), ("pp_1.v_reg", 1, in_edge)])
    assert gold[1, 1] == 0 and vq.logits[1, 1] == 4 and vq.out_act[1, 1] == 5
    assert np.array_equal(predict_many(cfg, tile, [("pp_1.v_reg", 1, in_edge)]).logits, gold)


def test_curve_statistics_and_the_one_point_rate():
    rows = []
    for r, wrong in ((1e-6, 0), (1e-5, 4), (1e-4, 50)):
        for image in range(100):
            for p in ("none", "range"):
                top1 = 1 if image < wrong and not (p == "range" and image < wrong // 2) else 0
                rows.append({"protection": p, "rate": r, "image": image, "trial": 0, "label": 0, "golden_top1": 0,
                             "faulty_top1": top1, "outcome": "critical" if top1 else "masked", "flips": 3,
                             "flips_by_kind": '{"accumulator": 3}', "rtl_tile_runs": 2})
    cur = curve(pd.DataFrame(rows), 0.95, bit_cycles=1000)
    pts = {p["rate"]: p for p in cur["designs"]["none"]}
    assert pts[1e-4]["accuracy"]["rate"] == 0.5 and pts[1e-4]["sdc1"]["count"] == 50
    assert pts[1e-4]["accuracy_drop"]["points"] == pytest.approx(50.0)
    assert pts[1e-5]["expected_flips_per_inference"] == pytest.approx(1e-2)
    gain = {g["rate"]: g for g in cur["gain"]}
    assert gain[1e-4]["points"] == pytest.approx(25.0) and gain[1e-4]["ci_low"] > 0
    assert gain[1e-6]["points"] == 0.0
    # the 1-point drop: between 1e-6 (0 points) and 1e-5 (4 points), a quarter of the way on log(rate)
    assert cur["drop_rate"]["none"]["rate"] == pytest.approx(10 ** -5.75)
    assert drop_rate(cur["designs"]["none"], drop=80.0)["rate"] is None
    # one noisy image at the lowest rate does not count once the drop falls back below the threshold
    noisy = [{"rate": r, "accuracy_drop": {"points": d}} for r, d in ((1e-7, 1.0), (1e-6, 0.0), (1e-5, 2.0))]
    assert drop_rate(noisy)["between"] == [1e-6, 1e-5]
    assert drop_rate(noisy[:1])["rate"] is None and "already" in drop_rate(noisy[:1])["note"]


@pytest.mark.parametrize("argv, message", [
    (["--rates", "0"], "fault rate must be strictly between 0 and 1 (per bit per cycle), got 0.0"),
    (["--rates", "-1e-6"], "strictly between 0 and 1"),
    (["--rates", "1e-6,1"], "got 1.0"),
    (["--rates", ""], "--rates has an empty item"),
    (["--rates", "often"], "fault rate must be a number strictly between 0 and 1, got 'often'"),
    (["--trials", "0"], "trials must be in 1..10000, got 0"),
    (["--images", "0"], "images must be in 1..100000, got 0"),
    (["--targets", "flipflops"], "target register kind must be one of"),
])
def test_bad_input_is_one_error_and_creates_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["rates", "--net", "tiny", "--bits", "4", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_rates_are_checked_in_the_config():
    with pytest.raises(ConfigError, match="distinct"):
        check_rates([1e-6, 1e-6])
    assert RateConfig(net="tiny", bits=4, rates=(1e-3, 1e-5)).rates == (1e-5, 1e-3)
