"""The reference study's figures, computed from a campaign's results store and the sweep's table rows only.

Reliability is the reference group's measure: accuracy under faults = correct / (images x faults), the share
of fault runs whose faulty top-1 equals the label (a hang or crash counts as wrong). The protection's gain is
paired: the same faults on both designs, so its interval comes from a seeded paired bootstrap over the faults
(the points figure through `stats.paired_reduction`, the relative one here, on the same resampled faults).
Three scopes: `all` (every planned fault, uniform over register, bit and cycle: the campaign's fault space),
`live` (the faults the mapping says can reach a real output: the flip hit a value in use) and `live-oact` (live
flips in the output-activation registers, which hold a layer's output values: the study's fault model, a bit
flip in one value of a layer's output). The LUT overhead is read from the sweep's rows (Yosys xc7, synth.json).
Pure functions of data frames and dicts: never reads or writes a file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fault_campaigns.results.classify import SDC_OUTCOMES
from fault_campaigns.stats import paired_reduction, rate

SCOPES = {"all": "every fault (uniform over register, bit and cycle)",
          "live": "live faults (the flip hit a value that reaches a real output)",
          "live-oact": "live output-activation flips (a flipped value of a layer's output: the study's fault model)"}
RESAMPLES = 2000


def _correct(df: pd.DataFrame) -> np.ndarray:
    return ((df["faulty_top1"] == df["label"]) & df["faulty_top1"].notna()).to_numpy(bool)


def _scoped(df: pd.DataFrame, scope: str) -> pd.DataFrame:
    if scope == "all":
        return df
    live = df[df["live"].fillna(1).astype(int) == 1]
    return live if scope == "live" else live[live["kind"] == "output_activation"]


def paired_gain(correct_u: np.ndarray, correct_p: np.ndarray, confidence: float, seed: int) -> dict[str, Any]:
    """Accuracy under faults of both designs on the same faults, the gain in points (acc_p - acc_u) and relative
    (acc_p / acc_u - 1), each with a percentile interval from one seeded paired bootstrap."""
    u, p = np.asarray(correct_u, bool), np.asarray(correct_p, bool)
    n = len(u)
    if n == 0:
        return {"faults": 0, "unprotected": None, "protected": None, "points": None, "points_low": None,
                "points_high": None, "relative": None, "relative_low": None, "relative_high": None}
    # points: the reduction of the error rate (wrong under faults) is the gain in accuracy, same bootstrap
    pts = paired_reduction(~u, ~p, confidence, resamples=RESAMPLES, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(RESAMPLES, n))
    bu, bp = u[idx].mean(axis=1), p[idx].mean(axis=1)
    ok = bu > 0
    alpha = 1.0 - confidence
    rel = (bp[ok] / bu[ok] - 1.0) if ok.any() else np.array([])
    lo, hi = (np.percentile(rel, (50 * alpha, 100 - 50 * alpha)) if len(rel) else (math.nan, math.nan))
    acc_u, acc_p = float(u.mean()), float(p.mean())
    return {"faults": n, "unprotected": acc_u, "protected": acc_p,
            "points": pts.absolute, "points_low": pts.absolute_low, "points_high": pts.absolute_high,
            "relative": acc_p / acc_u - 1.0 if acc_u > 0 else None,
            "relative_low": None if math.isnan(lo) else float(lo),
            "relative_high": None if math.isnan(hi) else float(hi)}


def _designs(frame: pd.DataFrame, order: tuple[str, ...] | None):
    """(protection, rows) in the preset's order (the store sorts by name)."""
    names = [p for p in (order or ()) if p in set(frame.protection)] or sorted(set(frame.protection))
    return [(p, frame[frame.protection == p]) for p in names]


def design_figures(frame: pd.DataFrame, confidence: float, seed: int,
                   order: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Per design and scope: accuracy under faults (Wilson interval); for protected designs the paired gain
    against `none` on the faults both ran."""
    base = frame[frame.protection == "none"].set_index("fault_id")
    out: dict[str, dict[str, Any]] = {}
    for p, g in _designs(frame, order):
        g = g.set_index("fault_id")
        common = base.index.intersection(g.index)
        d: dict[str, Any] = {}
        for scope in SCOPES:
            mine = _scoped(g.reset_index(), scope)
            cell: dict[str, Any] = {"accuracy": rate(int(_correct(mine).sum()), len(mine), confidence).to_dict()}
            if p != "none":
                u = _scoped(base.loc[common].reset_index(), scope).set_index("fault_id")
                r = g.loc[u.index].reset_index()
                cell["gain"] = paired_gain(_correct(u.reset_index()), _correct(r), confidence, seed)
            d[scope] = cell
        out[str(p)] = d
    return out


def control(frame: pd.DataFrame, confidence: float, seed: int, order: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The positive control and the reasons behind a small effect: does the fault list hurt the unprotected
    design (golden accuracy vs accuracy under faults on the same runs, paired), and per protected design how
    many faults made it fire (per register kind), how many of those were SDCs unprotected, how many it
    restored, and how many faults it turned into an SDC."""
    u = frame[frame.protection == "none"].set_index("fault_id")
    golden = (u["golden_top1"] == u["label"]).to_numpy(bool)
    faulty = _correct(u.reset_index())
    drop = paired_reduction(~faulty, ~golden, confidence, resamples=RESAMPLES, seed=seed)  # golden - faulty
    sdc_u = u["outcome"].isin(SDC_OUTCOMES)
    live = u["live"].fillna(1).astype(int) == 1
    out: dict[str, Any] = {
        "faults": len(u), "live_faults": int(live.sum()),
        "golden_accuracy": rate(int(golden.sum()), len(u), confidence).to_dict(),
        "accuracy_under_faults": rate(int(faulty.sum()), len(u), confidence).to_dict(),
        "drop_points": drop.absolute, "drop_low": drop.absolute_low, "drop_high": drop.absolute_high,
        "sdc_unprotected": int(sdc_u.sum()), "sdc_unprotected_live": int((sdc_u & live).sum()),
        "live_by_kind": {str(k): int(v) for k, v in u.loc[live, "kind"].value_counts().sort_index().items()},
        "sdc_by_kind": {str(k): int(v) for k, v in u.loc[sdc_u, "kind"].value_counts().sort_index().items()},
        "designs": {},
    }
    for p, g in _designs(frame, order):
        if p == "none":
            continue
        g = g.set_index("fault_id")
        common = u.index.intersection(g.index)
        fired = g.loc[common, "protection_fired"].fillna(0).astype(int) == 1
        sdc_p = g.loc[common, "outcome"].isin(SDC_OUTCOMES)
        was = sdc_u.loc[common]
        out["designs"][str(p)] = {
            "fired": int(fired.sum()),
            "fired_by_kind": {str(k): int(v) for k, v in g.loc[common][fired]["kind"].value_counts().items()},
            "fired_and_sdc_unprotected": int((fired & was).sum()),
            "restored": int((was & ~sdc_p).sum()), "new_sdc": int((~was & sdc_p).sum()), "sdc": int(sdc_p.sum()),
        }
    out["oact_by_bit"] = oact_by_bit(frame, order)
    out["fires"] = any(d["fired"] > 0 for d in out["designs"].values())
    out["faults_hurt"] = bool(drop.absolute_low > 0)
    return out


def oact_by_bit(frame: pd.DataFrame, order: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Live output-activation flips (the study's fault model) per flipped bit: how many, how many changed the
    unprotected top-1, and per protected design how many made it fire and how many still changed the top-1."""
    live = frame[(frame["live"].fillna(1).astype(int) == 1) & (frame["kind"] == "output_activation")]
    u = live[live.protection == "none"].set_index("fault_id")
    out: dict[str, dict[str, Any]] = {}
    for bit, g in u.groupby("bit"):
        row: dict[str, Any] = {"flips": len(g), "sdc_unprotected": int(g["outcome"].isin(SDC_OUTCOMES).sum()),
                               "designs": {}}
        for p, d in _designs(live, order):
            if p == "none":
                continue
            d = d.set_index("fault_id").reindex(g.index)
            row["designs"][p] = {"fired": int((d["protection_fired"].fillna(0).astype(int) == 1).sum()),
                                 "sdc": int(d["outcome"].isin(SDC_OUTCOMES).sum())}
        out[str(int(bit))] = row
    return out


def overhead(rows: list[dict[str, Any]], bits: int) -> dict[str, dict[str, Any]]:
    """Per design of one width: xc7 LUTs and FFs (Yosys, with DSPs) and the LUT overhead over `none` in % (None
    without synthesis)."""
    mine = {r["protection"]: r for r in rows if r["bits"] == bits}
    base = mine.get("none", {}).get("luts")
    out = {}
    for p, r in mine.items():
        luts = r.get("luts")
        over = None if p == "none" or luts is None or not base else 100.0 * (float(luts) - float(base)) / float(base)
        out[p] = {"luts": luts, "ffs": r.get("ffs"), "lut_overhead_pct": over}
    return out


def headline(widths: dict[int, dict[str, Any]], protection: str, scope: str) -> dict[str, Any] | None:
    """The largest relative gain of one design over the widths (the study reports "up to"), with its width."""
    best = None
    for b, w in widths.items():
        g = (w["designs"].get(protection) or {}).get(scope, {}).get("gain")
        if g and g.get("relative") is not None and (best is None or g["relative"] > best["gain"]["relative"]):
            best = {"bits": b, "protection": protection, "scope": scope, "gain": g}
    return best
