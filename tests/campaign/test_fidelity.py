"""Fidelity of the RTL fast path: every shortcut against plain full-tile RTL runs, fault by fault.

The fast path (a clock stepped from Python through the simulator's C++ main; runs of PE activation
flips stopped once the flip has left the array and finished from golden state plus the observed
difference; several such flips of different rows of one tile in one simulator pass) must give the
same run records (finished, cycles, protection events, every differing tile output) and the same
outcomes as the reference testbench (cocotb's clock, every tile run to `done`). `make bench` repeats
this on 1,000 LeNet-5 faults per design.
"""

from __future__ import annotations

import copy

import pytest

from fault_campaigns.bench.runner import compare_records, raw_records, sample
from fault_campaigns.campaign import Campaign
from fault_campaigns.planning.config import CampaignConfig

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.xdist_group("campaign")]

BASE = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, images=3, golden_images=1, seed=5,
            per_channel_bounds=True)


def _campaign(tmp_path_factory, **over) -> Campaign:
    campaign = Campaign(CampaignConfig(**{**BASE, **over}), tmp_path_factory.mktemp("fid") / "c", workers=2,
                        progress=False)
    campaign.prepare()
    return campaign


@pytest.fixture(scope="module")
def data_faults(tmp_path_factory):
    return _campaign(tmp_path_factory, faults=120)


def _check(campaign, faults, work, min_stopped: float = 0.0) -> None:
    for p, d in campaign.designs.items():
        fast = raw_records(campaign, d, faults, work, fast=True)
        plain = raw_records(campaign, d, faults, work, fast=False)
        result = compare_records(campaign, d, faults, fast, plain)
        assert result["identical"] == result["faults"] == len(faults), (p, result["mismatches"])
        stopped = [fast[f.fault_id] for f in faults if fast[f.fault_id].get("es")]
        assert len(stopped) >= min_stopped * len(faults), (p, len(stopped))
        if min_stopped:  # the shortcuts ran on faults that change the tile, not only on masked ones
            assert any(r["diff"] for r in stopped), p
            shared = [r for r in stopped if r["es"] > 1]  # several faults in one simulator pass
            assert len(shared) >= 0.1 * len(stopped) and any(r["diff"] for r in shared), (p, len(shared))


def test_fast_path_equals_plain_runs_on_campaign_faults(data_faults, tmp_path):
    """PE activation and output activation flips of a planned campaign, both designs; most PE flips
    take the early stop."""
    faults = sample(data_faults.fault_list(), 300, seed=1)
    _check(data_faults, faults, tmp_path, min_stopped=0.3)


@pytest.mark.parametrize("targets, model", [
    (("control",), "flip"), (("weight", "accumulator"), "flip"),
    (("pe_act_operand", "pe_weight_operand", "pe_product", "pipeline"), "flip"), (("pe_activation",), "stuck1"),
    (("pe_activation",), "mbu2"),
])
def test_fast_path_equals_plain_runs_on_other_faults(tmp_path_factory, tmp_path, targets, model):
    """Control registers (hangs, early and late `done`), weights and accumulators, the PE operand, PE product
    and post-processing pipeline registers, stuck-at and multi-bit faults: the cpp clock's exact path, no
    early stop except for multi-bit PE flips."""
    campaign = _campaign(tmp_path_factory, faults=30, targets=targets, fault_model=model)
    _check(campaign, campaign.fault_list(), tmp_path)


def test_comparison_flags_every_kind_of_difference(data_faults, tmp_path):
    """The comparison itself can fail: altered records are reported."""
    d = data_faults.designs["none"]
    faults = sample(data_faults.fault_list(), 40, seed=2)
    plain = raw_records(data_faults, d, faults, tmp_path, fast=False)
    changed = next(f for f in faults if plain[f.fault_id]["diff"])
    for field, value in (("cyc", plain[changed.fault_id]["cyc"] + 1), ("viol", 7), ("fin", False),
                         ("diff", plain[changed.fault_id]["diff"][:-1])):
        other = copy.deepcopy(plain)
        other[changed.fault_id][field] = value
        result = compare_records(data_faults, d, faults, other, plain)
        assert result["identical"] == len(faults) - 1, field
        assert result["mismatches"][0]["fault"]["fault_id"] == changed.fault_id


def test_software_injector_flips_the_operand_the_dataflow_model_predicts():
    """The software-level injector (operand flipped in the integer computation) against the analytic
    dataflow model, which the RTL regression checks cycle by cycle: every cycle, PE and bit pattern."""
    import numpy as np

    from fault_campaigns.execution.software import inject
    from hdl_gen import ArrayConfig
    from testbenches.model import Tile, golden, predict

    rng = np.random.default_rng(3)
    for cfg in (ArrayConfig(4, 4, 4, 4, 64, "range"), ArrayConfig(4, 3, 8, 8, 64, "range", per_channel_bounds=True)):
        k = 7
        x = rng.integers(0, 1 << cfg.act_bits, (cfg.rows, k))
        w = rng.integers(-(1 << cfg.weight_bits - 1), 1 << cfg.weight_bits - 1, (k, cfg.cols))
        lo, hi = (np.full(cfg.cols, 1), np.full(cfg.cols, 9)) if cfg.per_channel_bounds else (1, 9)
        tile = Tile(x, w, rng.integers(-50, 50, cfg.cols), rng.integers(0, 1 << 16, cfg.cols),
                    rng.integers(0, 20, cfg.cols), lo, hi)
        sites = [f"pe_{i}_{j}.{reg}" for i in range(cfg.rows) for j in range(cfg.cols)
                 for reg in ("a_reg", "a_op", "w_op", "p_reg")]
        sites += [f"pp_{j}.{reg}" for j in range(cfg.cols) for reg in ("v_reg", "pl_reg", "ph_reg", "p_reg", "t_reg")]
        base = golden(cfg, tile)
        changed = 0
        for cycle in range(cfg.tile_cycles(k)):
            for site in sites + [f"oact_{j}" for j in range(cfg.cols)]:
                for mask in (1, 1 << (cfg.act_bits - 1), 3):
                    got, want = inject(cfg, tile, site, mask, cycle), predict(cfg, tile, site, mask, cycle)
                    assert np.array_equal(got.out_act, want.out_act), (site, cycle, mask)
                    assert np.array_equal(got.logits, want.logits) and got.violations == want.violations
                    same = np.array_equal(got.out_act, base.out_act) and np.array_equal(got.logits, base.logits)
                    changed += not same
        assert changed > 100  # the flips do reach the outputs


@pytest.mark.parametrize("args, message", [
    (["--faults", "0"], "faults per layer must be in 1..1000000, got 0"),
    (["--workers", "0"], "workers must be in 1..256, got 0"),
    (["--bits", "1"], "bits must be in 2..16, got 1"),
    (["--net", "resnet"], "resnet"),
])
def test_bench_bad_input_is_one_line_before_any_work(tmp_path, args, message):
    import subprocess
    import sys

    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "quasar", "bench", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not out.exists()
