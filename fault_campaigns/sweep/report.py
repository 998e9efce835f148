"""The sweep's table, plots and report, built only from the result files of the sweep's own steps.

One row per (bits, protection). Every number is read from a file a step wrote: the models' metrics
(training cache), the campaign's summary.json (rates with Wilson intervals, paired protection effect)
and the designs' synth.json (Yosys counts, nextpnr Fmax). Columns that have no meaning for a row (the
protection's firing rate, SDC reduction and LUT overhead on an unprotected row) hold `n/a`, never a
number. `sources.json` maps each row to the files its cells came from.

The findings are sentences computed from the table; each names the cells it rests on as
`[bits/protection: column]`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from fault_campaigns.analysis.fit import table_cells as fit_cells
from fault_campaigns.analysis.masking import sweep_lines as masking_by_width
from fault_campaigns.planning.config import PROTECTIONS
from fault_campaigns.sweep.variants import variant_findings
from quasar import jsonio

NA = "n/a"

# (csv column, markdown header, kind) in table order.
COLUMNS: list[tuple[str, str]] = [
    ("bits", "bits"),
    ("protection", "protection"),
    ("float_acc_pct", "float acc %"),
    ("qat_int_acc_pct", "QAT int acc %"),
    ("ptq_int_acc_pct", "PTQ int acc %"),
    ("faults", "faults"),
    ("sdc_pct", "SDC %"),
    ("sdc_lo_pct", "SDC lo"),
    ("sdc_hi_pct", "SDC hi"),
    ("critical_pct", "critical %"),
    ("critical_lo_pct", "crit lo"),
    ("critical_hi_pct", "crit hi"),
    ("masked_pct", "masked %"),
    ("corrupted_pct", "corrupted %"),
    ("protection_fired_pct", "protection fired %"),
    ("luts", "LUT (DSP)"),
    ("luts_nodsp", "LUT (no DSP)"),
    ("ffs", "FF"),
    ("dsps", "DSP"),
    ("area_lut_sites", "area (LUT sites, no DSP)"),
    ("fmax_mhz", "Fmax MHz"),
    ("latency_cycles", "latency cycles"),
    ("latency_us", "latency us"),
    ("sdc_fit", "SDC FIT"),
    ("sdc_fit_lo", "FIT lo"),
    ("sdc_fit_hi", "FIT hi"),
    ("fit_coverage_pct", "FIT coverage % of FFs"),
    ("critical_path", "critical path"),
    ("sdc_reduction_pct", "SDC reduction %"),
    ("sdc_reduction_lo_pct", "red lo"),
    ("sdc_reduction_hi_pct", "red hi"),
    ("sdc_reduction_pp", "SDC reduction pp"),
    ("corrupted_reduction_pct", "corrupted reduction %"),
    ("lut_overhead_pct", "LUT overhead %"),
    ("lut_nodsp_overhead_pct", "LUT (no DSP) overhead %"),
    ("pareto", "Pareto"),
]
PROTECTED_ONLY = ("protection_fired_pct", "sdc_reduction_pct", "sdc_reduction_lo_pct", "sdc_reduction_hi_pct",
                  "sdc_reduction_pp", "corrupted_reduction_pct", "lut_overhead_pct", "lut_nodsp_overhead_pct")
HW_COLUMNS = ("luts", "luts_nodsp", "ffs", "dsps", "area_lut_sites", "fmax_mhz", "latency_cycles", "latency_us",
              "critical_path")
# The area the Pareto front and the best trade-off rank by: LUT sites of the xc7 mapping without DSPs
# (`synth_xilinx -nodsp`), so every multiplier is counted as the logic it takes instead of being left out
# as a DSP48E1 (docs/sweep.md, "How the findings are chosen").
AREA = "area_lut_sites"
AREA_TEXT = ("area = xc7 LUT sites with every multiplier in LUTs (`synth_xilinx -nodsp`: logic LUTs + LUTRAM + "
             "shift registers), so DSPs count as the LUTs they replace; block RAM (the operand buffers) is not in it")


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def _rel(x: float | None) -> float:
    """A relative reduction in percent; NaN when summary.json holds null (no event unprotected: none exists)."""
    return math.nan if x is None else 100.0 * float(x)


def _over(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or not base:
        return None
    return 100.0 * (new - base) / base


def load_inputs(sweep) -> dict[str, Any]:
    """Every step's result file, as recorded in state.json."""
    cfg, state = sweep.cfg, sweep.state
    out: dict[str, Any] = {"accuracy": {}, "campaign": {}, "synth": {}, "sources": {}}
    for b in cfg.bits:
        out["accuracy"][b] = state.get(f"accuracy/{b}")
        camp = state.get(f"campaign/{b}")
        out["campaign"][b] = json.loads((Path(camp["dir"]) / "summary.json").read_text()) if camp else None
        for p in cfg.protections:
            syn = state.get(f"synth/{b}/{p}") if cfg.synth else None
            out["synth"][(b, p)] = json.loads((Path(syn["dir"]) / "synth.json").read_text()) if syn else None
            out["sources"][f"{b}/{p}"] = {
                "accuracy": "models cache (metrics of the QAT and PTQ checkpoints, see state.json)",
                "campaign": str(Path(camp["dir"]) / "summary.json") if camp else None,
                "synth": str(Path(syn["dir"]) / "synth.json") if syn else None,
            }
    return out


def build_rows(cfg, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    from hdl_gen.synth import inference_latency

    rows = []
    for b in cfg.bits:
        acc = inputs["accuracy"][b]
        summ = inputs["campaign"][b]
        effects = summ.get("protection_effects") or {"range": summ.get("protection_effect") or {}}
        for p in cfg.protections:
            eff = effects.get(p) or {}
            d = summ["designs"][p]
            r = d["rates"]
            row: dict[str, Any] = {
                "bits": b, "protection": p,
                "float_acc_pct": _pct(acc["qat"]["float_accuracy"]),
                "qat_int_acc_pct": _pct(acc["qat"]["integer_accuracy"]),
                "ptq_int_acc_pct": _pct(acc["ptq"]["integer_accuracy"]),
                "faults": r["faults"],
                "sdc_pct": _pct(r["sdc"]["rate"]), "sdc_lo_pct": _pct(r["sdc"]["ci_low"]),
                "sdc_hi_pct": _pct(r["sdc"]["ci_high"]),
                "critical_pct": _pct(r["critical"]["rate"]), "critical_lo_pct": _pct(r["critical"]["ci_low"]),
                "critical_hi_pct": _pct(r["critical"]["ci_high"]),
                "masked_pct": _pct(r["masked"]["rate"]), "corrupted_pct": _pct(r["corrupted"]["rate"]),
            }
            syn = inputs["synth"][(b, p)]
            if syn is not None:
                t = syn["targets"]
                pnr = t.get("pnr", {})
                fmax = pnr.get("fmax_mhz")
                # the sweep's own net (synth.json's latency is for the net of the call that assembled it)
                lat = inference_latency(cfg.array_config(b, p), fmax, net=cfg.net)
                cp = pnr.get("critical_path")
                row.update(luts=t.get("xc7", {}).get("luts"), luts_nodsp=t.get("xc7-nodsp", {}).get("luts"),
                           ffs=t.get("xc7", {}).get("ffs"), dsps=t.get("xc7", {}).get("dsp48e1"),
                           area_lut_sites=t.get("xc7-nodsp", {}).get("luts_total"),
                           fmax_mhz=fmax, latency_cycles=lat["total_cycles"], latency_us=lat["time_us"],
                           critical_path=cp["summary"] if cp else (NA if pnr else None))
            else:
                row.update({k: None for k in HW_COLUMNS})
            row.update(fit_cells(d, row["ffs"]))  # raw FIT per Mbit: the campaign's (docs/campaign.md)
            if p == "none":
                row.update({k: NA for k in PROTECTED_ONLY})
            else:
                s, c = eff.get("sdc", {}), eff.get("corrupted", {})
                base = next(x for x in rows if x["bits"] == b and x["protection"] == "none")
                row.update(
                    protection_fired_pct=_pct(r["protection_fired"]["rate"]),
                    sdc_reduction_pct=_rel(s.get("relative")), sdc_reduction_lo_pct=_rel(s.get("relative_low")),
                    sdc_reduction_hi_pct=_rel(s.get("relative_high")), sdc_reduction_pp=_pct(s.get("absolute")),
                    corrupted_reduction_pct=_rel(c.get("relative")),
                    lut_overhead_pct=_over(base["luts"], row["luts"]),
                    lut_nodsp_overhead_pct=_over(base["luts_nodsp"], row["luts_nodsp"]),
                )
            rows.append(row)
    mark_pareto(rows)
    return rows


def _num(v: Any) -> float | None:
    if v is None or v == NA:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def area_known(rows: list[dict[str, Any]]) -> bool:
    return all(_num(r.get(AREA)) is not None for r in rows)


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Pareto front of (integer accuracy: higher, SDC rate: lower, area: lower); area left out when unknown."""
    use_area = area_known(rows)

    def vec(r):
        v = [-r["qat_int_acc_pct"], r["sdc_pct"]]
        return v + [r[AREA]] if use_area else v

    for r in rows:
        a = vec(r)
        r["pareto"] = "yes" if not any(
            all(x <= y for x, y in zip(vec(o), a, strict=True)) and any(x < y for x, y in zip(vec(o), a, strict=True))
            for o in rows if o is not r) else "no"


# -- formatting ------------------------------------------------------------------------------------
def cell(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if v == NA or isinstance(v, str):
        return str(v)
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if col in ("bits", "faults", "luts", "luts_nodsp", "ffs", "dsps", "area_lut_sites", "latency_cycles"):
        return str(int(v))
    if col in ("fmax_mhz", "latency_us"):
        return f"{v:.1f}"
    return f"{v:.2f}"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c for c, _ in COLUMNS])
    for r in rows:
        w.writerow(["" if r[c] is None else (r[c] if isinstance(r[c], str) else repr(float(r[c]))
                                             if isinstance(r[c], float) else r[c]) for c, _ in COLUMNS])
    return buf.getvalue()


def _ci(r: dict, key: str) -> str:
    if r[f"{key}_pct"] is None:
        return "-"
    return f"{r[f'{key}_pct']:.2f} [{r[f'{key}_lo_pct']:.2f}, {r[f'{key}_hi_pct']:.2f}]"


def _red(r: dict) -> str:
    if r["protection"] == "none":
        return NA
    if _num(r["sdc_reduction_pct"]) is None:
        return f"nan (no SDC unprotected); {r['sdc_reduction_pp']:.2f} pp"
    return f"{r['sdc_reduction_pct']:.1f} [{r['sdc_reduction_lo_pct']:.1f}, {r['sdc_reduction_hi_pct']:.1f}]"


def _fit(r: dict) -> str:
    if r.get("sdc_fit") is None:
        return "-"
    of = "FFs" if _num(r.get("ffs")) else "register bits"  # without synthesis: the fault-site map's bits
    cov = "" if r.get("fit_coverage_pct") is None else f" ({r['fit_coverage_pct']:.0f}% of {of})"
    return f"{r['sdc_fit']:.3g} [{r['sdc_fit_lo']:.3g}, {r['sdc_fit_hi']:.3g}]{cov}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ["bits", "prot.", "float %", "QAT int %", "PTQ int %", "faults", "SDC % [95% CI]", "critical % [95% CI]",
            "masked %", "corrupted %", "prot. fired %", "LUT (DSP)", "LUT (no DSP)", "FF", "DSP", "area",
            "Fmax MHz", "latency cycles", "latency us", "SDC FIT [CI]", "SDC reduction % [CI]", "LUT overhead %",
            "LUT no-DSP overhead %", "Pareto"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [cell(r["bits"], "bits"), r["protection"], cell(r["float_acc_pct"], "x"),
                 cell(r["qat_int_acc_pct"], "x"), cell(r["ptq_int_acc_pct"], "x"), cell(r["faults"], "faults"),
                 _ci(r, "sdc"), _ci(r, "critical"), cell(r["masked_pct"], "x"), cell(r["corrupted_pct"], "x"),
                 cell(r["protection_fired_pct"], "x"), cell(r["luts"], "luts"), cell(r["luts_nodsp"], "luts"),
                 cell(r["ffs"], "ffs"), cell(r["dsps"], "dsps"), cell(r[AREA], AREA),
                 cell(r["fmax_mhz"], "fmax_mhz"), cell(r["latency_cycles"], "latency_cycles"),
                 cell(r["latency_us"], "latency_us"), _fit(r), _red(r), cell(r["lut_overhead_pct"], "x"),
                 cell(r["lut_nodsp_overhead_pct"], "x"), r["pareto"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _xpos(bits: list[int]) -> dict[int, int]:
    return {b: i for i, b in enumerate(bits)}


def _finish_bits_plot(plt, fig, ax, bits, ylabel: str, title: str, path: Path) -> None:
    ax.set_xticks(range(len(bits)), [str(b) for b in bits])
    ax.set_xlabel("bit width (activations = weights)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy(rows, bits, path: Path) -> None:
    plt = _plt()
    x = _xpos(bits)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    one = [r for r in rows if r["protection"] == "none"]
    for key, label, style in (("float_acc_pct", "float (unquantized)", "k--"),
                              ("qat_int_acc_pct", "QAT, integer model (= RTL)", "o-"),
                              ("ptq_int_acc_pct", "PTQ, integer model", "s-")):
        ax.plot([x[r["bits"]] for r in one], [r[key] for r in one], style, label=label)
    _finish_bits_plot(plt, fig, ax, bits, "test accuracy (%)", "Accuracy vs bit width", path)


def _protections(rows) -> list[str]:
    """The sweep's protection variants in row order (`none` first)."""
    return list(dict.fromkeys(r["protection"] for r in rows))


def _label(p: str) -> str:
    return "unprotected" if p == "none" else "range protection" if p == "range" else p


MARKS = ("o-", "s--", "^-.", "v:", "D-", "P--", "X-.")


def plot_sdc(rows, bits, path: Path) -> None:
    plt = _plt()
    x = _xpos(bits)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    prots = _protections(rows)
    width = 0.36 / max(1, len(prots) - 1)
    for i, p in enumerate(prots):
        rs = [r for r in rows if r["protection"] == p]
        xs = [x[r["bits"]] + (i - (len(prots) - 1) / 2) * width for r in rs]
        ys = [r["sdc_pct"] for r in rs]
        err = [[max(0.0, r["sdc_pct"] - r["sdc_lo_pct"]) for r in rs], [max(0.0, r["sdc_hi_pct"] - r["sdc_pct"])
                                                                       for r in rs]]
        ax.errorbar(xs, ys, yerr=err, fmt=MARKS[i % len(MARKS)], capsize=3, label=_label(p))
    _finish_bits_plot(plt, fig, ax, bits, "SDC rate, % of injected faults",
                      "SDC rate (top-1 changed) with 95% Wilson intervals", path)


def plot_hardware(rows, bits, path: Path, fmax_mode: str = "routed") -> None:
    plt = _plt()
    x = _xpos(bits)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, p in enumerate(_protections(rows)):
        mark = MARKS[i % len(MARKS)]
        rs = [r for r in rows if r["protection"] == p and _num(r["luts"]) is not None]
        a1.plot([x[r["bits"]] for r in rs], [r["luts"] for r in rs], mark, label=f"xc7 with DSP, {p}")
        rs2 = [r for r in rows if r["protection"] == p and _num(r["luts_nodsp"]) is not None]
        a1.plot([x[r["bits"]] for r in rs2], [r["luts_nodsp"] for r in rs2], mark, label=f"xc7 no DSP, {p}")
        rs3 = [r for r in rows if r["protection"] == p and _num(r["fmax_mhz"]) is not None]
        a2.plot([x[r["bits"]] for r in rs3], [r["fmax_mhz"] for r in rs3], mark, label=p)
    for ax in (a1, a2):
        ax.set_xticks(range(len(bits)), [str(b) for b in bits])
        ax.set_xlabel("bit width")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a1.set_ylabel("LUTs (Yosys synth_xilinx)")
    a1.set_title("Area")
    a2.set_ylabel("Fmax (MHz, nextpnr-ecp5" + (", after placement)" if fmax_mode == "placed" else ", routed)"))
    a2.set_title("Timing")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(rows, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    usable = [r for r in rows if _num(r[AREA]) is not None]
    for i, p in enumerate(_protections(rows)):
        rs = [r for r in usable if r["protection"] == p]
        ax.scatter([r[AREA] for r in rs], [r["sdc_pct"] for r in rs], marker=MARKS[i % len(MARKS)][0], s=40,
                   label=_label(p), zorder=3)
    front = sorted([r for r in usable if r["pareto"] == "yes"], key=lambda r: r[AREA])
    if front:
        ax.scatter([r[AREA] for r in front], [r["sdc_pct"] for r in front], s=160, facecolors="none",
                   edgecolors="red", linewidths=1.5, label="Pareto front (accuracy, SDC, area)", zorder=4)
    # One label per width (at its unprotected point), alternately above and below so neighbours stay
    # readable; Pareto points also carry their accuracy.
    labelled = sorted((r for r in usable if r["protection"] == "none"), key=lambda r: r[AREA])
    for k, r in enumerate(labelled):
        text = f"{r['bits']}b" + (f" ({r['qat_int_acc_pct']:.2f}%)" if r["pareto"] == "yes" else "")
        ax.annotate(text, (r[AREA], r["sdc_pct"]), fontsize=8, xytext=(0, 9 if k % 2 == 0 else -14),
                    textcoords="offset points", ha="center")
    ax.margins(y=0.15)
    ax.set_xlabel("area: xc7 LUT sites without DSPs (multipliers in LUTs)")
    ax.set_ylabel("SDC rate (%)")
    ax.set_title("SDC rate vs area (labels: bits; Pareto points: QAT integer accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layer_matrix(inputs, bits, protection: str) -> tuple[list[str], np.ndarray]:
    layers: list[str] = []
    for b in bits:
        for name in inputs["campaign"][b]["designs"][protection]["by_layer"]:
            if name not in layers:
                layers.append(name)
    m = np.full((len(layers), len(bits)), np.nan)
    for j, b in enumerate(bits):
        by = inputs["campaign"][b]["designs"][protection]["by_layer"]
        for i, name in enumerate(layers):
            if name in by:
                m[i, j] = 100 * by[name]["sdc"]["rate"]
    return layers, m


def plot_heatmap(inputs, bits, path: Path, protections: tuple[str, ...] = PROTECTIONS) -> None:
    plt = _plt()
    mats = {p: layer_matrix(inputs, bits, p) for p in protections}
    vmax = max(1e-9, max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for _, m in mats.values()))
    fig, axes = plt.subplots(1, len(protections), figsize=(5 * len(protections), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, p in zip(axes, protections, strict=True):
        layers, m = mats[p]
        im = ax.imshow(m, cmap="Reds", vmin=0, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(bits)), [str(b) for b in bits])
        ax.set_yticks(range(len(layers)), layers)
        ax.set_xlabel("bit width")
        ax.set_title(_label(p))
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                dark = not np.isnan(m[i, j]) and m[i, j] > 0.6 * vmax
                ax.text(j, i, "-" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=axes, label="SDC rate (%)")
    fig.suptitle("SDC rate per layer (faults injected in that layer's tiles)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# -- findings ---------------------------------------------------------------------------------------
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
