"""The sweep's report: findings, the paper comparison, timing and report.md, built only from the result
files of the sweep's own steps (the table is `sweep.table`, the plots `sweep.plots`).

One row per (bits, protection). Every number is read from a file a step wrote: the models' metrics
(training cache), the campaign's summary.json (rates with Wilson intervals, paired protection effect)
and the designs' synth.json (Yosys counts, nextpnr Fmax). Columns that have no meaning for a row (the
protection's firing rate, SDC reduction and LUT overhead on an unprotected row) hold `n/a`, never a
number. `sources.json` maps each row to the files its cells came from.

The findings are sentences computed from the table; each names the cells it rests on as
`[bits/protection: column]`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from fault_campaigns.analysis.masking import sweep_lines as masking_by_width
from fault_campaigns.sweep.plots import (
    plot_accuracy,
    plot_hardware,
    plot_heatmap,
    plot_pareto,
    plot_sdc,
)
from fault_campaigns.sweep.table import (  # noqa: F401  (COLUMNS, PROTECTED_ONLY, mark_pareto: re-exported)
    AREA,
    AREA_TEXT,
    COLUMNS,
    NA,
    PROTECTED_ONLY,
    _num,
    _pct,
    build_rows,
    cell,
    load_inputs,
    mark_pareto,
    markdown_table,
    to_csv,
)
from fault_campaigns.sweep.variants import variant_findings
from quasar import jsonio


def _ref(r: dict, col: str) -> str:
    return f"[{r['bits']}b/{r['protection']}: {col}]"


def _rate(r: dict, key: str = "sdc") -> str:
    return f"{r[f'{key}_pct']:.2f}% [{r[f'{key}_lo_pct']:.2f}, {r[f'{key}_hi_pct']:.2f}]"


def best_tradeoff(rows: list[dict]) -> tuple[dict, str]:
    """The smallest Pareto design (by the area measure, AREA) whose accuracy is within 0.5 points of the best and
    whose SDC rate is not significantly above the lowest one (its interval reaches below the lowest rate's upper
    bound). Without area figures (no synthesis, or no xc7-nodsp flow) the one with the fewest bits."""
    best_acc = max(r["qat_int_acc_pct"] for r in rows)
    lowest = min(rows, key=lambda r: (r["sdc_pct"], r["sdc_hi_pct"]))
    ok = [r for r in rows if r["pareto"] == "yes" and r["qat_int_acc_pct"] >= best_acc - 0.5
          and r["sdc_lo_pct"] <= lowest["sdc_hi_pct"]]
    pool = ok or [r for r in rows if r["pareto"] == "yes"] or rows
    by_area = all(_num(r[AREA]) is not None for r in pool)
    pick = min(pool, key=lambda r: (r[AREA] if by_area else r["bits"], r["sdc_pct"]))
    smallest = ("the smallest area (" + AREA_TEXT + ")" if by_area
                else "the fewest bits (no area figures: this sweep has no xc7-nodsp synthesis)")
    rule = (f"the design with {smallest} on the Pareto front whose integer accuracy is within 0.5 points of "
            f"the sweep's best ({best_acc:.2f}%) and whose SDC rate is statistically no worse than the lowest "
            f"{_ref(lowest, 'SDC %')}" if ok else f"the design with {smallest} on the Pareto front (no design met "
            "the accuracy and SDC conditions together)")
    return pick, rule


def findings(cfg, rows: list[dict], timing: dict) -> list[str]:
    out = []
    pick, rule = best_tradeoff(rows)
    hw = ""
    if _num(pick[AREA]) is not None:
        hw = (f", area {int(pick[AREA])} LUT sites without DSPs {_ref(pick, 'area')} ({int(pick['luts'])} LUTs and "
              f"{int(pick['dsps'])} DSPs with DSPs {_ref(pick, 'LUT (DSP)')})")
    out.append(
        f"**Best trade-off: {pick['bits']} bits, protection {pick['protection']}**: QAT integer accuracy "
        f"{pick['qat_int_acc_pct']:.2f}% {_ref(pick, 'QAT int acc %')}, SDC rate {_rate(pick)} {_ref(pick, 'SDC %')}"
        f"{hw}. Rule: {rule}.")
    none = [r for r in rows if r["protection"] == "none"]
    lo_b, hi_b = none[0], none[-1]
    trend = ", ".join(f"{r['bits']}b {r['sdc_pct']:.2f}%" for r in none)
    if lo_b is not hi_b:
        sig = ("the intervals do not overlap, so the difference is significant at 95%"
               if lo_b["sdc_lo_pct"] > hi_b["sdc_hi_pct"] or hi_b["sdc_lo_pct"] > lo_b["sdc_hi_pct"]
               else "the intervals overlap, so this sweep does not separate the two")
        out.append(
            f"**Vulnerability vs bits (unprotected)**: SDC rate {_rate(lo_b)} at {lo_b['bits']} bits "
            f"{_ref(lo_b, 'SDC %')} against {_rate(hi_b)} at {hi_b['bits']} bits {_ref(hi_b, 'SDC %')}; {sig}. "
            f"All widths: {trend}. Masked fraction goes from {lo_b['masked_pct']:.2f}% {_ref(lo_b, 'masked %')} "
            f"to {hi_b['masked_pct']:.2f}% {_ref(hi_b, 'masked %')}; corrupted layer outputs from "
            f"{lo_b['corrupted_pct']:.2f}% to {hi_b['corrupted_pct']:.2f}% {_ref(hi_b, 'corrupted %')}.")
        acc = f"QAT integer accuracy {lo_b['qat_int_acc_pct']:.2f}% at {lo_b['bits']} bits " \
              f"{_ref(lo_b, 'QAT int acc %')} vs {hi_b['qat_int_acc_pct']:.2f}% at {hi_b['bits']} bits; PTQ " \
              f"{lo_b['ptq_int_acc_pct']:.2f}% vs {hi_b['ptq_int_acc_pct']:.2f}% {_ref(lo_b, 'PTQ int acc %')}."
        out.append(f"**Accuracy**: {acc}")
    prot = [r for r in rows if r["protection"] == "range"]
    if prot:  # today's `range` (a sweep of other variants has no such row)
        measurable = [r for r in prot if _num(r["sdc_reduction_pct"]) is not None]
        fired = max(prot, key=lambda r: r["protection_fired_pct"])
        if measurable:
            top = max(measurable, key=lambda r: r["sdc_reduction_pct"])
            out.append(
                f"**What protection buys**: the largest relative SDC reduction is {top['sdc_reduction_pct']:.1f}% "
                f"[{top['sdc_reduction_lo_pct']:.1f}, {top['sdc_reduction_hi_pct']:.1f}] at {top['bits']} bits "
                f"{_ref(top, 'SDC reduction %')}; per width: "
                + ", ".join(f"{r['bits']}b " + ("n/a (no SDC unprotected)" if _num(r["sdc_reduction_pct"]) is None
                                                else f"{r['sdc_reduction_pct']:.1f}%") for r in prot)
                + f". The protection fired on at most {fired['protection_fired_pct']:.2f}% of faults "
                f"{_ref(fired, 'protection fired %')}.")
        else:
            out.append(
                "**What protection buys**: no width had an SDC on the unprotected design, so no relative reduction "
                f"can be measured; the protection fired on at most {fired['protection_fired_pct']:.2f}% of faults "
                f"{_ref(fired, 'protection fired %')}.")
        costs = [r for r in prot if _num(r["lut_overhead_pct"]) is not None]
        if costs:
            hi = max(costs, key=lambda r: r["lut_overhead_pct"])
            lo = min(costs, key=lambda r: r["lut_overhead_pct"])
            fm = [(r, next(n for n in none if n["bits"] == r["bits"])) for r in costs
                  if _num(r["fmax_mhz"]) is not None]
            fm_txt = ""
            if fm:
                fm_txt = " Fmax unprotected -> protected: " + ", ".join(
                    f"{r['bits']}b {n['fmax_mhz']:.1f} -> {r['fmax_mhz']:.1f} MHz" for r, n in fm) + " [Fmax MHz]."
            span = (f"{lo['lut_overhead_pct']:.1f}% {_ref(lo, 'LUT overhead %')}" if lo is hi else
                    f"from {lo['lut_overhead_pct']:.1f}% {_ref(lo, 'LUT overhead %')} to {hi['lut_overhead_pct']:.1f}% "
                    f"{_ref(hi, 'LUT overhead %')}")
            out.append(f"**What protection costs**: LUT overhead (xc7 with DSPs) {span}." + fm_txt)
    out += variant_findings(rows)
    return out


def paper_comparison(cfg, rows: list[dict], bounds: dict) -> list[str]:
    prot = [r for r in rows if r["protection"] == "range"]
    measurable = [r for r in prot if _num(r["sdc_reduction_pct"]) is not None]
    costs = [r["lut_overhead_pct"] for r in prot if _num(r["lut_overhead_pct"]) is not None]
    ours = (f"up to {max(r['sdc_reduction_pct'] for r in measurable):.1f}% relative SDC reduction"
            if measurable else "no measurable SDC reduction (no unprotected SDC at any width)")
    lut = f"at {max(costs):.1f}% LUT overhead at most" if costs else "(no synthesis in this sweep)"
    full = [name for name, b in bounds.items() if b.get("full_range")]
    lines = [
        f"The paper this project grew from reports a reliability improvement from its range protection of up to "
        f"34% for LeNet-5 and up to 52% for AlexNet, at under 10% LUT overhead. For {cfg.net} this sweep measures "
        f"{ours} {lut} (columns `SDC reduction %` and `LUT overhead %`).",
        "How the definitions may differ: here a fault is one bit flip in a named activation register of the "
        "generated RTL (the PE operand registers and the output-activation registers) at a uniformly drawn cycle "
        "of a tile run, on a statistically sized sample (Leveugle et al.), and an SDC is a change of the network's "
        "top-1 class; reliability improvement is the paired relative reduction of that rate on the same fault "
        "list. The paper's figure may count a different event (for instance accuracy loss under many faults), "
        "inject at a software level into whole activation tensors, or count faults only where they can matter.",
    ]
    if full:
        lines.append(
            "Why the per-layer protection can do little here: the bounds extracted from the training data span "
            f"the whole activation code range in layers {', '.join(full)} (a calibrated quantizer saturates at "
            "its top code), and requantization already saturates every sum to that range, so no activation, "
            "flipped or not, is ever outside the bounds and the clamp never acts. Per-channel bounds "
            "(`--per-channel-bounds`, one pair per output channel, in the RTL as well) are tighter and can clamp.")
    return lines


# -- the report ---------------------------------------------------------------------------------------
def timing_summary(state_data: dict) -> dict:
    sessions = state_data.get("sessions", [])
    steps = state_data.get("steps", {})
    by_kind: dict[str, float] = {}
    for key, v in steps.items():
        kind = key.split("/")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + float(v.get("ran_wall_s") or 0.0)
    fresh = [s for s in sessions if session_is_fresh(s)]
    return {"sessions": sessions, "first_fresh_wall_s": fresh[0]["wall_s"] if fresh else None,
            "first_fresh": fresh[0] if fresh else None, "step_wall_s": by_kind}


def session_is_fresh(session: dict) -> bool:
    """Nothing came from a cache: no quantized model, campaign result or synthesis step (the float model
    is trained once and shared by every width, so it does not count)."""
    for key, step in session.get("steps", {}).items():
        if key.startswith("synth/") and key.count("/") == 2:
            continue  # a design's synth.json assembled from its steps just done: always "cached"
        if step.get("cached") or (step.get("reused") and not key.startswith("accuracy/")):
            return False
    return True


def _minutes(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.1f} min ({s:.0f} s)"


def write_sweep_report(sweep, dataset: str) -> dict:
    from fault_campaigns.files import atomic_write

    cfg, out = sweep.cfg, sweep.out_dir
    inputs = load_inputs(sweep)
    rows = build_rows(cfg, inputs)
    bits = list(cfg.bits)
    plots = {"accuracy": "accuracy_vs_bits.png", "sdc": "sdc_vs_bits.png", "hardware": "hardware_vs_bits.png",
             "pareto": "sdc_vs_luts_pareto.png", "heatmap": "sdc_by_layer_heatmap.png"}
    plot_accuracy(rows, bits, out / plots["accuracy"])
    plot_sdc(rows, bits, out / plots["sdc"])
    if cfg.synth:
        plot_hardware(rows, bits, out / plots["hardware"], cfg.fmax)
        plot_pareto(rows, out / plots["pareto"])
    else:
        plots.pop("hardware"), plots.pop("pareto")
    plot_heatmap(inputs, bits, out / plots["heatmap"], cfg.protections)
    timing = timing_summary(sweep.state.data)
    bounds = inputs["campaign"][bits[-1]].get("bounds", {})
    text = report_markdown(cfg, rows, timing, plots, dataset, bounds, inputs, rerun_command(sweep))
    text = text.rstrip("\n") + "\n" + "\n".join(masking_by_width(inputs["campaign"])) + "\n"
    atomic_write(out / "table.csv", to_csv(rows))
    atomic_write(out / "table.md", markdown_table(rows) + "\n")
    atomic_write(out / "sources.json", json.dumps(inputs["sources"], indent=2))
    atomic_write(out / "report.md", text)
    result = {"rows": rows, "timing": timing, "plots": plots, "dir": str(out)}
    # strict JSON: a value that cannot be given (a relative SDC reduction without unprotected SDCs) is null
    atomic_write(out / "sweep.json", jsonio.dumps({"config": cfg.identity(), **result}, indent=2, default=str))
    return result


_FMAX_NOTE = {
    "placed": "Fmax = nextpnr-ecp5's timing analysis after placement (`--fmax placed`, the default): wire delays "
              "are estimated from distance, not routed; docs/synth.md compares it with the routed Fmax. "
              "`--fmax routed` places and routes instead (about twice the nextpnr time).",
    "routed": "Fmax = nextpnr-ecp5's timing of the placed and routed design (`--fmax routed`).",
}


def rerun_command(sweep) -> str:
    """The command that reruns exactly this sweep (same identity, same directory): every option that
    differs from the default, lists in their comma form."""
    from fault_campaigns.planning.faults import DEFAULT_TARGETS
    from fault_campaigns.sweep.runner import SYNTH_TARGETS, SweepConfig

    cfg, base = sweep.cfg, SweepConfig()
    args = ["quasar", "sweep", "--net", cfg.net, "--bits", ",".join(map(str, cfg.bits))]
    for name in ("rows", "cols", "k_max", "images", "margin", "confidence", "faults", "seed", "fmax"):
        if getattr(cfg, name) != getattr(base, name):
            args += [f"--{name.replace('_', '-')}", str(getattr(cfg, name))]
    if tuple(cfg.protections) != tuple(base.protections):
        args += ["--protection", ",".join(cfg.protections)]
    if cfg.per_channel_bounds:
        args.append("--per-channel-bounds")
    if tuple(cfg.targets) != DEFAULT_TARGETS:
        args += ["--targets", ",".join(cfg.targets)]
    if not cfg.synth:
        args.append("--no-synth")
    elif tuple(cfg.synth_targets) != SYNTH_TARGETS:
        args += ["--synth-targets", ",".join(cfg.synth_targets)]
    if cfg.act_format != base.act_format:
        args += ["--act-format", cfg.act_format]
    if cfg.int_bits is not None and cfg.act_format == "pow2":
        args += ["--int-bits", str(cfg.int_bits)]
    if not cfg.rate_curves:
        args.append("--no-rate-curves")
    else:
        if tuple(cfg.rates) != tuple(base.rates):
            args += ["--rates", ",".join(repr(float(r)) for r in cfg.rates)]
        for name in ("rate_images", "rate_trials"):
            if getattr(cfg, name) != getattr(base, name):
                args += [f"--{name.replace('_', '-')}", str(getattr(cfg, name))]
    if cfg.data_dir:
        args += ["--data-dir", str(cfg.data_dir)]
    runs = Path(getattr(sweep, "runs_dir", "runs"))
    if runs.resolve() != Path("runs").resolve():
        args += ["--runs-dir", str(runs)]
    if Path(sweep.out_dir).resolve() != cfg.default_dir(runs).resolve():
        args += ["--out", str(sweep.out_dir)]
    return shlex.join(args)


def critical_paths(rows: list[dict]) -> list[str]:
    """The report's list of each design's critical path (routed Fmax only; nextpnr gives none after placement)."""
    known = [r for r in rows if isinstance(r.get("critical_path"), str) and r["critical_path"] != NA]
    if not known:
        if any(r.get("critical_path") == NA for r in rows):
            return ["Critical paths: none, as nextpnr reports no critical path after placement only "
                    "(`--fmax placed`); `SWEEP_ARGS=\"--fmax routed\"` gives them (column `critical_path`).", ""]
        return []
    return ["Critical paths (nextpnr, routed; start register -> end register, logic levels, delay; "
            "`core.` = inside the array, others are registers of the place-and-route wrapper):", "",
            *[f"- {r['bits']}b {r['protection']}: {r['critical_path']}" for r in known], ""]


def report_markdown(cfg, rows, timing, plots, dataset, bounds, inputs, rerun: str) -> str:
    first = timing["first_fresh_wall_s"]
    last = timing["sessions"][-1] if timing["sessions"] else {}
    steps = timing["step_wall_s"]
    camp = inputs["campaign"][cfg.bits[0]]
    lines = [
        f"# Design-space sweep: {cfg.net} on {dataset}, {cfg.rows}x{cfg.cols} array, bits "
        f"{', '.join(map(str, cfg.bits))}",
        "",
        "Every (bit width, protection) cell: accuracy of the quantized model, fault tolerance measured by bit "
        "flips in the generated RTL, and hardware cost from Yosys and nextpnr. Both designs of a width ran the "
        f"same fault list (seed {cfg.seed}); {camp['faults_planned']} faults per design at {cfg.bits[0]} bits "
        f"(Leveugle et al. sample sizes per layer, margin {cfg.margin}, confidence {cfg.confidence}), "
        f"{cfg.images} test images, targets {', '.join(cfg.targets)}; bounds "
        f"{'per output channel' if cfg.per_channel_bounds else 'per layer'}.",
        "",
        "## Findings",
        "",
        *[f"- {s}" for s in findings(cfg, rows, timing)],
        "",
        "## Comparison with the paper",
        "",
        *paper_comparison(cfg, rows, bounds),
        "",
        "## Table",
        "",
        "CSV with every column and interval: `table.csv`; the files each row came from: `sources.json`. "
        "SDC = top-1 class changed; critical = a correctly classified image misclassified; corrupted = the "
        "faulty layer's output differed from the golden one; `n/a` = not applicable to an unprotected design; "
        "SDC reduction = paired relative reduction on the same faults (bootstrap 95% interval), `nan` here and "
        "`null` in sweep.json when the unprotected design had no SDC (no relative reduction exists); "
        "LUT overhead = protected vs unprotected LUTs at the same width; "
        f"latency = tile-run cycles of one {cfg.net} inference (the sum over its layers' tiles of the design's "
        "`tile_cycles(K)`) and those cycles / Fmax; " + AREA_TEXT + ": the Pareto front and the best trade-off rank "
        "by it. " + _FMAX_NOTE[cfg.fmax],
        "",
        markdown_table(rows),
        "",
        *critical_paths(rows),
        "## Plots",
        "",
    ]
    captions = {"accuracy": "Accuracy vs bit width", "sdc": "SDC rate vs bit width (95% intervals)",
                "hardware": "LUTs and Fmax vs bit width", "pareto": "SDC rate vs LUTs, Pareto front circled",
                "heatmap": "Per-layer SDC rate (layer x bits)"}
    for k, f in plots.items():
        lines += [f"![{captions[k]}]({f})", ""]
    ff = timing["first_fresh"] or {}
    lines += [
        "## Time",
        "",
        f"- first run with nothing cached: {_minutes(first)}"
        + ("" if first is not None else " (every run of this sweep reused cached steps)")
        + (f"; training and campaigns were done after {_minutes(ff['foreground_s'])}, the rest was synthesis"
           if ff.get("foreground_s") and cfg.synth else ""),
        f"- this run: {_minutes(last.get('wall_s'))}, started {last.get('started', '-')}",
        "- time inside the steps, summed, when they last did their work"
        + (" (synthesis runs in the background, one step beside training and campaigns, two after, longest "
           "first): " if cfg.synth else " (no synthesis in this sweep: `--no-synth`): ")
        + ", ".join(f"{k} {_minutes(v)}" for k, v in steps.items()),
        "",
        f"Rerun with `{rerun}`: it is this very sweep (same settings, same directory), so cached steps are reused.",
        "",
    ]
    return "\n".join(lines)
