"""The sweep's table: its columns, one row per (bit width, protection) built from the steps' own
result files, the Pareto front, and the CSV / Markdown renderings. Never runs a step or draws a plot."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from fault_campaigns.analysis.fit import table_cells as fit_cells

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
