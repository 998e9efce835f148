"""Fault-rate reports: the accuracy-vs-rate curve of each design, from the rate store only.

Per design and rate, over images x trials: accuracy under faults, accuracy drop from the golden
accuracy of the same images, SDC-1 (top-1 differs from golden), SDC on the images the golden run
classified correctly (top-1 no longer the label), each with a Wilson interval (`stats.rate`); the
mean flips per inference (measured, and expected = rate x register bits x cycles). The protection's
gain in accuracy points at each rate is paired (the same flips on both designs) with a seeded paired
bootstrap interval (`stats.paired_reduction`). The rate at which the accuracy drop reaches 1 point
is interpolated on log(rate) between the measured points that bracket it.
Writes rates.json, rates.md and accuracy_vs_rate.png; never runs anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fault_campaigns.stats import paired_reduction, rate

DROP_POINTS = 1.0  # the accuracy drop (percentage points) whose rate is reported


def _flags(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["correct"] = (df["faulty_top1"] == df["label"]).astype(int)  # a hang or crash (no top-1) is wrong
    df["sdc1"] = (df["outcome"].isin(("sdc", "critical"))).astype(int)
    df["golden_correct"] = (df["golden_top1"] == df["label"]).astype(int)
    df["critical"] = (df["outcome"] == "critical").astype(int)
    return df


def curve(frame: pd.DataFrame, confidence: float, bit_cycles: int | None = None,
          golden_accuracy: float | None = None, seed: int = 0) -> dict:
    """{design: [point per rate]} and the paired gain per rate, from a rate store's frame."""
    df = _flags(frame)
    designs: dict[str, list[dict]] = {}
    for p, g in df.groupby("protection", sort=False):
        points = []
        for r, h in g.groupby("rate"):
            n = len(h)
            gold = float(h["golden_correct"].mean()) if golden_accuracy is None else golden_accuracy
            acc = rate(int(h["correct"].sum()), n, confidence).to_dict()
            ok = h[h["golden_correct"] == 1]
            kinds: dict[str, float] = {}
            for text in h["flips_by_kind"]:
                for k, v in json.loads(text).items():
                    kinds[k] = kinds.get(k, 0.0) + v / n
            points.append({
                "rate": float(r), "inferences": n, "images": int(h["image"].nunique()),
                "trials": int(h["trial"].nunique()),
                "flips_per_inference": float(h["flips"].mean()),
                "expected_flips_per_inference": None if bit_cycles is None else float(r) * bit_cycles,
                "flips_per_inference_by_kind": kinds,
                "rtl_tile_runs_per_inference": float(h["rtl_tile_runs"].mean()),
                "golden_accuracy": gold,
                "accuracy": acc,
                "accuracy_drop": {"points": 100 * (gold - acc["rate"]), "ci_low": 100 * (gold - acc["ci_high"]),
                                  "ci_high": 100 * (gold - acc["ci_low"])},
                "sdc1": rate(int(h["sdc1"].sum()), n, confidence).to_dict(),
                "sdc_golden_correct": rate(int(ok["critical"].sum()), len(ok), confidence).to_dict(),
                "masked": rate(int((h["outcome"] == "masked").sum()), n, confidence).to_dict(),
                "hang_or_crash": int(h["outcome"].isin(("hang", "crash")).sum()),
            })
        designs[str(p)] = points
    out = {"designs": designs, "drop_rate": {p: drop_rate(pts) for p, pts in designs.items()}}
    if {"none", "range"} <= set(designs):
        gains = []
        key = ["rate", "image", "trial"]
        u = df[df.protection == "none"].set_index(key).sort_index()
        r = df[df.protection == "range"].set_index(key).sort_index()
        common = u.index.intersection(r.index)
        u, r = u.loc[common], r.loc[common]
        for rv in sorted({k[0] for k in common}):
            uu, rr = u.xs(rv, level="rate"), r.xs(rv, level="rate")
            # gain in accuracy = reduction of the error rate, paired by (image, trial)
            e = paired_reduction(1 - uu["correct"].to_numpy(), 1 - rr["correct"].to_numpy(), confidence, seed=seed)
            gains.append({"rate": float(rv), "pairs": e.total, "points": 100 * e.absolute,
                          "ci_low": 100 * e.absolute_low, "ci_high": 100 * e.absolute_high,
                          "outcome_agreement": float((uu["outcome"] == rr["outcome"]).mean())})
        out["gain"] = gains
    return out


def drop_rate(points: list[dict], drop: float = DROP_POINTS) -> dict:
    """The rate from which the accuracy drop stays at or above `drop` points: log-linear interpolation
    between the highest measured rate still below it and the next one (a single noisy low-rate point
    above the threshold does not count when the drop falls back below it at a higher rate)."""
    pts = sorted(points, key=lambda p: p["rate"])
    if not pts:
        return {"rate": None, "note": "no rates"}
    below = [i for i, p in enumerate(pts) if p["accuracy_drop"]["points"] < drop]
    if not below:
        return {"rate": None, "below": pts[0]["rate"], "note": f"already >= {drop:g} point(s) at the lowest rate"}
    i = below[-1]
    if i == len(pts) - 1:
        return {"rate": None, "above": pts[-1]["rate"], "note": f"below {drop:g} point(s) at every rate"}
    (r0, d0), (r1, d1) = ((pts[k]["rate"], pts[k]["accuracy_drop"]["points"]) for k in (i, i + 1))
    t = (drop - d0) / (d1 - d0)
    return {"rate": float(math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))), "between": [r0, r1]}


def _pct(d: dict | None) -> str:
    if not d or not d.get("total"):
        return "-"
    return f"{100 * d['rate']:.1f}% [{100 * d['ci_low']:.1f}, {100 * d['ci_high']:.1f}]"


def _rate_text(r: float) -> str:
    return f"{r:.0e}".replace("e-0", "e-")


def markdown(summary: dict) -> str:
    c = summary["config"]
    cur = summary["curve"]
    lines = [
        f"# Accuracy under fault rates: {c['net']}, {summary['act_bits']}-bit activations / "
        f"{summary['weight_bits']}-bit weights, {c['rows']}x{c['cols']} array",
        "",
        f"Fault-rate campaign `{c['campaign_id']}`: every bit of the {', '.join(c['targets'])} registers flips after "
        f"any clock edge with probability `rate`; {c['images']} test images x {c['trials']} trials per rate, "
        f"seed {c['seed']}; tile runs holding a flip run on the RTL, the others on the integer model. "
        f"{summary['bit_cycles']:,} register bit-cycles per inference "
        f"({', '.join(f'{k}: {v} bits' for k, v in summary['bits_by_kind'].items())} per tile run).",
        "",
        f"Golden accuracy of these images: {100 * summary['golden_accuracy']:.2f}%. "
        f"Intervals: {100 * c['confidence']:.0f}% Wilson over images x trials; gain: paired bootstrap.",
        "",
    ]
    designs = list(cur["designs"])
    head = "| rate | flips/inference | " + " | ".join(
        f"{p}: accuracy | {p}: drop (pp) | {p}: SDC-1 | {p}: SDC (golden-correct)" for p in designs)
    if "gain" in cur:
        head += " | gain (pp) |"
    else:
        head += " |"
    lines += [head, "|---" * (2 + 4 * len(designs) + ("gain" in cur)) + "|"]
    gains = {g["rate"]: g for g in cur.get("gain", [])}
    rates = sorted({p["rate"] for pts in cur["designs"].values() for p in pts})
    for r in rates:
        first = next(p for p in cur["designs"][designs[0]] if p["rate"] == r)
        cells = [_rate_text(r), f"{first['flips_per_inference']:.2f}"]
        for p in designs:
            pt = next((x for x in cur["designs"][p] if x["rate"] == r), None)
            if pt is None:
                cells += ["-"] * 4
                continue
            d = pt["accuracy_drop"]
            cells += [_pct(pt["accuracy"]), f"{d['points']:.1f} [{d['ci_low']:.1f}, {d['ci_high']:.1f}]",
                      _pct(pt["sdc1"]), _pct(pt["sdc_golden_correct"])]
        if "gain" in cur:
            g = gains.get(r)
            cells.append("-" if g is None else f"{g['points']:+.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Rate at which the accuracy drops by {DROP_POINTS:g} point:"]
    for p, d in cur["drop_rate"].items():
        lines.append(f"- `{p}`: " + (f"{d['rate']:.2e} (between {_rate_text(d['between'][0])} and "
                                      f"{_rate_text(d['between'][1])})" if d.get("rate") else d["note"]))
    lines += ["", "Flips per inference by register kind (measured mean):", ""]
    for r in rates:
        pt = next(p for p in cur["designs"][designs[0]] if p["rate"] == r)
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in sorted(pt["flips_per_inference_by_kind"].items()))
        lines.append(f"- {_rate_text(r)}: {kinds or 'none'} (expected total {pt['expected_flips_per_inference']:.2f}; "
                     f"{pt['rtl_tile_runs_per_inference']:.2f} RTL tile runs per inference)")
    run = summary["run"]
    lines += ["", "![accuracy vs rate](accuracy_vs_rate.png)", "", "## Run", "",
              f"- {run['inferences']} inferences ({run['rtl_tile_runs']} RTL tile runs) in this session, "
              f"{run['wall_s']:.1f} s for the whole command on {run['workers']} worker(s), "
              f"{run['timings'].get('cpu_s', 0.0):.1f} CPU-s (this process and its simulators)", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    styles = {"none": {"color": "C0"}, "range": {"color": "C1", "ls": "--"}}  # dashed: visible when equal
    plot_curves(ax, {p: pts for p, pts in summary["curve"]["designs"].items()}, styles)
    ax.axhline(100 * summary["golden_accuracy"], color="grey", ls=":", lw=1, label="golden")
    ax.set_title(f"{summary['config']['net']}, {summary['act_bits']} bits: accuracy vs fault rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(ax, curves: dict[str, list[dict]], styles: dict[str, dict] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Accuracy (%) vs rate (log x) with interval bands, one curve per key of `curves`."""
    for n, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts, key=lambda p: p["rate"])
        x = [p["rate"] for p in pts]
        y = [100 * p["accuracy"]["rate"] for p in pts]
        lo = [100 * p["accuracy"]["ci_low"] for p in pts]
        hi = [100 * p["accuracy"]["ci_high"] for p in pts]
        style = (styles or {}).get(name, {"color": f"C{n}"})
        ax.plot(x, y, marker="o", ms=3, label=name, **style)
        ax.fill_between(x, lo, hi, alpha=0.2, color=style.get("color"))
    ax.set_xscale("log")
    ax.set_xlabel("fault rate (flips per bit per cycle)")
    ax.set_ylabel("accuracy under faults (%)")
    ax.grid(True, which="both", alpha=0.3)


def summarize(rc, frame: pd.DataFrame) -> dict:  # type: ignore[no-untyped-def]
    """The summary of a RateCampaign (prepared) and its store's frame."""
    c = rc.campaign
    golden_correct = np.asarray(c.designs[rc.cfg.protections[0]].golden.top1 == c.labels)
    gold = float(golden_correct.mean())
    cur = curve(frame, rc.cfg.confidence, rc.space.bit_cycles, gold, rc.cfg.seed)
    stats = rc.engine_stats
    return {
        "config": rc.store_config(), "net": rc.cfg.net, "act_bits": rc.cfg.a_bits, "weight_bits": rc.cfg.w_bits,
        "dataset": c.dataset_name, "golden_accuracy": gold, "bit_cycles": rc.space.bit_cycles,
        "bits_by_kind": rc.space.bits_by_kind(), "golden": c.golden_report, "curve": cur,
        "run": {"inferences": sum(s.get("ran", 0) for s in stats.values()),
                "rtl_tile_runs": sum(s.get("rtl_tile_runs", 0) for s in stats.values()),
                "wall_s": rc.timings.get("campaign_s", 0.0), "workers": c.workers, "designs": stats,
                "timings": rc.timings},
    }


def write_rate_reports(rc, store) -> dict:  # type: ignore[no-untyped-def]
    from fault_campaigns.files import atomic_write
    from quasar import jsonio

    summary = summarize(rc, store.frame())
    out = rc.out_dir
    plot(summary, out / "accuracy_vs_rate.png")
    atomic_write(out / "rates.json", jsonio.dumps(summary, indent=2))
    atomic_write(out / "rates.md", markdown(summary))
    return summary
