"""Idle faults are exactly those the mapping says cannot reach a real output.

The independent computation: every register of a 4x4 array (activations, weights, PE products,
accumulators, the drain's v, the post-processing pipeline and the output activations), flipped at every
cycle of a padded tile on the RTL itself, with operands chosen so that any change of a real value shows
(every real activation and weight non-zero, M = 1, S = 0, no clamping bound; the post-processing
registers, whose value the activation's clamp may hide, flip their sign bit, which sends a positive
v's activation to 0 and a negative one's to 2^A - 1, and no real v is 0): a fault is live when the RTL shows
a changed real output (the biased accumulators v, or the activations of a hidden layer).
`mapping.live_fault` must agree on every one of them, for a hidden layer and for the last layer (whose
output activations nothing reads).
"""

from __future__ import annotations

import numpy as np
import pytest

from fault_campaigns.execution.executor import LocalExecutor
from fault_campaigns.planning import mapping
from fault_campaigns.planning.faults import load_sites
from fault_campaigns.results.classify import valid_diff

pytestmark = [pytest.mark.sim, pytest.mark.xdist_group("campaign")]

KINDS = ("pe_activation", "weight", "accumulator", "pipeline", "output_activation")


@pytest.fixture(scope="module")
def design():
    from hdl_gen import ArrayConfig
    from testbenches.sim import build

    cfg = ArrayConfig(rows=4, cols=4, act_bits=4, weight_bits=4, k_max=128, protection="range",
                      per_channel_bounds=True)
    return cfg, build(cfg)


def _group(cfg, lm: mapping.LayerMap, runs: list[dict]) -> dict:
    rng = np.random.default_rng(3)
    x = np.zeros((lm.rows, lm.reduction), np.int64)
    x[:lm.pixels] = rng.integers(1, 16, size=(lm.pixels, lm.reduction))  # padding rows stay zero
    w = np.zeros((lm.reduction, lm.cols), np.int64)
    w[:, :lm.channels] = rng.choice([-7, -3, -1, 1, 2, 5], size=(lm.reduction, lm.channels))
    real = np.arange(lm.cols) < lm.channels
    ops = mapping.TileOperands(x, w, np.where(real, 2, 0), real.astype(np.int64), np.zeros(lm.cols, np.int64),
                               np.zeros(lm.cols, np.int64), np.full(lm.cols, 15, np.int64))
    exp = mapping.expect(ops, cfg.act_bits, "range")
    assert (exp.logit[:lm.pixels, :lm.channels] != 0).all()  # a sign flip of p_reg/t_reg moves every real output
    return {"key": (0, lm.index, 0), "ops": ops, "act": exp.act, "logit": exp.logit, "violations": exp.violations,
            "is_last": lm.is_last, "max_cycles": 4 * cfg.tile_cycles(lm.reduction) + 64, "runs": runs,
            "early_stop": False}


@pytest.mark.parametrize("is_last", [False, True], ids=["hidden", "last"])
def test_idle_faults_are_exactly_those_the_rtl_never_shows(design, is_last, tmp_path):
    cfg, built = design
    lm = mapping.LayerMap(0, "t", 3, 3, 2, cfg.rows, cfg.cols, is_last)  # 3 of 4 rows, 2 of 4 columns real
    sites = load_sites(str(built.design.sites_path), KINDS)
    cycles = cfg.tile_cycles(lm.reduction)
    faults = [(s.name, c) for s in sites for c in range(cycles)]
    mask = {s.name: 1 << (s.width - 1) if s.kind == "pipeline" else 1 for s in sites}
    runs = [{"id": i, "site": name, "mask": mask[name], "cycle": c, "model": "flip"}
            for i, (name, c) in enumerate(faults)]
    records: list[dict] = []
    LocalExecutor(built, tmp_path, workers=1).run([_group(cfg, lm, runs)], records.extend,
                                                  lambda *a: pytest.fail(str(a)))
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(faults)
    wrong = []
    for i, (name, c) in enumerate(faults):
        rec = by_id[i]
        shown = bool(valid_diff(lm, 0, rec["diff"]) or valid_diff(lm, 0, rec.get("vd") or []))
        if shown != mapping.live_fault(lm, 0, name, c):
            wrong.append((name, c, shown))
    live = sum(mapping.live_fault(lm, 0, n, c) for n, c in faults)
    assert 0.05 * len(faults) < live < 0.9 * len(faults)  # both classes are well represented (the last
    # layer's post-processing and output registers are all idle, so its live share is near 10%)
    assert not wrong, f"{len(wrong)} faults where the mapping and the RTL disagree, e.g. {wrong[:8]}"
