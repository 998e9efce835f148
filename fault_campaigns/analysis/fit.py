"""SDC FIT per design: how often a soft error in the design's registers becomes a silent data corruption.

    SDC FIT = lambda_bit * sum_k  b_k * P(SDC | flip in a register of kind k)
            = lambda_bit * B * p_w

with lambda_bit the raw soft-error rate of one register bit (FIT per bit = FIT per Mbit / 10^6), b_k
the bits of kind k in the design (from its fault-site map), B = sum_k b_k over the campaign's target
kinds, and p_w the population-weighted SDC rate over the strata (layer, kind): a stratum's population
(images x tiles x bits x cycles) is proportional to the time the accelerator spends in that layer
times the bits of that kind, so p_w is exactly sum_k (b_k / B) P_k with each P_k weighted by time.
The interval is p_w's (fault_campaigns.analysis.weighted) scaled by lambda_bit * B.

Assumptions (stated in report.md): the accelerator runs tile after tile with no idle time (loading
phases, in which no fault matters, would only lower the figure), every register bit has the same raw
rate, and bits outside the target kinds or outside the fault-site map (operand buffers, which are
memories, and parameter registers) are not covered: the coverage figure says how many of the design's
flip-flop bits the estimate stands for.

The default raw rate, 1,000 FIT/Mbit, is the middle of the 700-1,200 FIT/Mbit that IEC 61508-2:2010
gives as the reference soft-error rate of embedded memories (citing Baumann, IEEE TDMR 2005, and Autran
et al., IEEE TNS 2007); applying it to flip-flops is an assumption. Use the rate of your process and
altitude (--raw-fit-per-mbit).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from fault_campaigns.analysis.weighted import weighted_rate
from fault_campaigns.results.classify import SDC_OUTCOMES
from quasar.errors import ConfigError

DEFAULT_RAW_FIT_PER_MBIT = 1000.0
RAW_FIT_SOURCE = ("IEC 61508-2:2010: 700-1,200 FIT/Mbit for embedded memories (Baumann 2005; Autran et al. "
                  "2007); assumed for flip-flops too")


def check_raw_fit(value: object) -> float:
    """The raw soft-error rate in FIT per Mbit: a finite number >= 0, else one clear error."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"raw FIT per Mbit must be a number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"raw FIT per Mbit must be a finite number >= 0 (FIT per 10^6 bits), got {value!r}")
    return v


def kind_bits(sites: Iterable) -> dict[str, int]:
    """Register bits per kind of a fault-site list (planning.faults.Site)."""
    out: dict[str, int] = defaultdict(int)
    for s in sites:
        out[s.kind] += int(s.width)
    return dict(out)


def strata_populations(spaces: Sequence, images: int, sites: Sequence, model: str) -> dict[tuple[int, str], int]:
    """Fault-space population of every (layer, kind) stratum, as planning.faults.FaultSpace counts it."""
    from fault_campaigns.planning.faults import FaultSpace

    out = {}
    kinds = sorted({s.kind for s in sites})
    for space in spaces:
        for kind in kinds:
            of_kind = [s for s in sites if s.kind == kind]
            try:
                out[(space.layer, kind)] = FaultSpace(space, images, of_kind, model).size
            except ConfigError:  # no register of this kind is wide enough for the fault model
                continue
    return out


def stratified_sdc(df: pd.DataFrame, populations: Mapping[tuple[int, str], int], confidence: float,
                   event: str = "sdc") -> dict:
    """Population-weighted rate over (layer, kind) strata of one design's rows."""
    hit = df["outcome"].isin(SDC_OUTCOMES) if event == "sdc" else df["outcome"] == event
    strata = []
    for (layer, kind), g in df.assign(_hit=hit).groupby(["layer", "kind"]):
        big = populations.get((int(layer), str(kind)))
        if big:
            strata.append((big, len(g), int(g["_hit"].sum())))
    return weighted_rate(strata, confidence)


def sdc_fit(df: pd.DataFrame, populations: Mapping[tuple[int, str], int], bits: Mapping[str, int],
            targets: Sequence[str], raw_fit_per_mbit: float, confidence: float,
            ff_bits: int | None = None, ff_source: str | None = None) -> dict:
    """The SDC FIT of one design with its interval, per-kind parts and coverage.

    `bits`: register bits per kind of the whole fault-site map; `ff_bits`: the design's flip-flop
    count from synthesis when known (else the coverage is over the fault-site map's bits)."""
    raw = check_raw_fit(raw_fit_per_mbit)
    per_bit = raw / 1e6
    covered = sum(bits.get(k, 0) for k in targets)
    p = stratified_sdc(df, populations, confidence)
    out: dict = {"raw_fit_per_mbit": raw, "raw_fit_source": RAW_FIT_SOURCE, "bits": covered,
                 "bits_by_kind": {k: bits.get(k, 0) for k in targets}, "confidence": confidence}
    if not p:
        return {**out, "fit": None}
    scale = per_bit * covered
    out.update(sdc_probability=p, fit=scale * p["rate"], fit_low=scale * p["ci_low"], fit_high=scale * p["ci_high"])
    by_kind = {}
    for kind in targets:
        sub = df[df["kind"] == kind]
        pk = stratified_sdc(sub, {key: v for key, v in populations.items() if key[1] == kind}, confidence)
        if pk:
            s = per_bit * bits.get(kind, 0)
            by_kind[kind] = {"bits": bits.get(kind, 0), "sdc_probability": pk["rate"], "fit": s * pk["rate"],
                             "fit_low": s * pk["ci_low"], "fit_high": s * pk["ci_high"]}
    out["by_kind"] = by_kind
    site_bits = sum(bits.values())
    if ff_bits:
        out["coverage"] = {"covered_bits": covered, "of_bits": int(ff_bits), "share": covered / ff_bits,
                           "reference": ff_source or "synthesis flip-flop count"}
    else:
        out["coverage"] = {"covered_bits": covered, "of_bits": site_bits,
                           "share": covered / site_bits if site_bits else float("nan"),
                           "reference": "all registers of the RTL's fault-site map (operand buffers are memories "
                                        "and not counted)"}
    return out


def add_to_summary(summary: dict, campaign, frame: pd.DataFrame) -> None:
    """Put each design's SDC FIT into summary["designs"][p]["sdc_fit"] (a campaign's report step)."""
    from fault_campaigns.planning.faults import REGISTER_KINDS, load_sites

    c = campaign.cfg
    raw = getattr(campaign, "raw_fit_per_mbit", DEFAULT_RAW_FIT_PER_MBIT)
    pops = strata_populations(campaign.layer_spaces(), c.images, campaign.sites, c.fault_model)
    for p, d in summary["designs"].items():
        all_sites = load_sites(str(campaign.designs[p].build.design.sites_path), REGISTER_KINDS)
        d["sdc_fit"] = sdc_fit(frame[frame["protection"] == p], pops, kind_bits(all_sites), c.targets, raw,
                               c.confidence)


def fit_text(f: dict | None) -> str:
    if not f or f.get("fit") is None:
        return "-"
    return f"{f['fit']:.3g} [{f['fit_low']:.3g}, {f['fit_high']:.3g}]"


def markdown_lines(summary: dict) -> list[str]:
    designs = {p: d["sdc_fit"] for p, d in summary["designs"].items() if d.get("sdc_fit")}
    if not designs:
        return []
    first = next(iter(designs.values()))
    lines = ["", "## SDC FIT per design", "",
             f"SDC FIT = raw rate per bit x sum over register kinds (bits of the kind x measured SDC probability of a "
             f"flip in it), with the {100 * first['confidence']:.0f}% interval of the population-weighted SDC "
             f"probability. Raw rate: {first['raw_fit_per_mbit']:g} FIT/Mbit ({first['raw_fit_source']}; "
             "`--raw-fit-per-mbit`). Assumes tile runs back to back; docs/campaign.md has the details.", "",
             "| protection | SDC FIT | covered bits | of bits | coverage | per kind: bits, P(SDC), FIT |",
             "|---|---|---|---|---|---|"]
    for p, f in designs.items():
        cov = f.get("coverage", {})
        kinds = "; ".join(f"{k}: {v['bits']}, {100 * v['sdc_probability']:.3f}%, {v['fit']:.3g}"
                          for k, v in f.get("by_kind", {}).items())
        lines.append(f"| {p} | {fit_text(f)} | {f['bits']} | {cov.get('of_bits', '-')} | "
                     f"{100 * cov.get('share', float('nan')):.1f}% ({cov.get('reference', '')}) | {kinds} |")
    return lines


def table_cells(design: dict, ffs: int | None) -> dict:
    """The sweep table's SDC FIT cells of one design's campaign summary: FIT, its interval, and the share
    of the design's flip-flops it covers (the synthesis FF count when known, else the fault-site map)."""
    f = design.get("sdc_fit") or {}
    if f.get("fit") is None:
        return {"sdc_fit": None, "sdc_fit_lo": None, "sdc_fit_hi": None, "fit_coverage_pct": None}
    share = f["bits"] / ffs if ffs else f.get("coverage", {}).get("share")
    return {"sdc_fit": f["fit"], "sdc_fit_lo": f["fit_low"], "sdc_fit_hi": f["fit_high"],
            "fit_coverage_pct": None if share is None else 100 * share}
