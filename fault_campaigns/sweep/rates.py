"""The sweep's fault-rate curves: one accuracy-vs-rate curve per bit width and design.

Each width's curve is a `quasar rates` run (`RateCampaign`) in its default run directory, so a
`make campaign` / `make rates` already run with the same settings is reused and an interrupted one
resumes. Writes rates.md and accuracy_vs_rate.png into the sweep directory from the runs' own
rates.json, and appends a short section to the sweep's report.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fault_campaigns.planning.rates import RateConfig


def rate_config(cfg, bits: int) -> RateConfig:  # type: ignore[no-untyped-def]
    """The curve of one width: the sweep's model (format), array, designs and seed."""
    return RateConfig(net=cfg.net, bits=bits, rows=cfg.rows, cols=cfg.cols, k_max=cfg.k_max,
                      per_channel_bounds=cfg.per_channel_bounds, protections=cfg.protections, data_dir=cfg.data_dir,
                      rates=cfg.rates, images=cfg.rate_images, trials=cfg.rate_trials, seed=cfg.seed,
                      confidence=cfg.confidence, act_format=cfg.act_format, int_bits=cfg.int_bits)


def _complete(path: Path, rc: RateConfig) -> bool:
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    if summary.get("config", {}).get("campaign_id") != rc.campaign_id:
        return False
    want = rc.images * rc.trials
    return all(len(pts) == len(rc.rates) and all(p["inferences"] == want for p in pts)
               for pts in summary["curve"]["designs"].values()) and set(summary["curve"]["designs"]) == set(
                   rc.protections)


def run_curve(sweep, bits: int) -> dict:  # type: ignore[no-untyped-def]
    """One width's curve (both designs), reused when its rates.json is complete."""
    from fault_campaigns.rate_campaign import RATE_STORE_NAME, RateCampaign

    rc = rate_config(sweep.cfg, bits)
    run_dir = rc.default_dir(sweep.runs_dir).resolve()
    if _complete(run_dir / "rates.json", rc):
        return {"dir": str(run_dir), "cached": True, "reused": True, "wall_s": 0.0}
    resumed = (run_dir / RATE_STORE_NAME).is_file()
    t0 = time.perf_counter()
    RateCampaign(rc, run_dir, workers=sweep.workers, progress=sweep.progress, stall_timeout=sweep.stall_timeout).run()
    return {"dir": str(run_dir), "cached": False, "reused": resumed, "wall_s": round(time.perf_counter() - t0, 2)}


def write_rate_curves(sweep) -> dict:  # type: ignore[no-untyped-def]
    """The curves of every width and design in one plot and one table (from each run's rates.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fault_campaigns.analysis.rates import plot_curves
    from fault_campaigns.files import atomic_write

    cfg, out = sweep.cfg, sweep.out_dir
    summaries = {}
    for b in cfg.bits:
        step = sweep.state.get(f"rates/{b}")
        if step:
            summaries[b] = json.loads((Path(step["dir"]) / "rates.json").read_text())
    if not summaries:
        return {}
    fig, ax = plt.subplots(figsize=(7, 4.4))
    curves, styles = {}, {}
    for n, (b, s) in enumerate(summaries.items()):
        for p, pts in s["curve"]["designs"].items():
            curves[f"{b}b {p}"] = pts
            styles[f"{b}b {p}"] = {"color": f"C{n % 10}", "ls": "-" if p == "none" else "--"}
    plot_curves(ax, curves, styles)
    ax.set_title(f"{cfg.net}: accuracy vs fault rate per bit width (solid: none, dashed: range)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_rate.png", dpi=120)
    plt.close(fig)
    rates = sorted({p["rate"] for s in summaries.values() for pts in s["curve"]["designs"].values() for p in pts})
    lines = [f"## Accuracy under fault rates ({cfg.rate_images} images x {cfg.rate_trials} trial(s) per rate)", "",
             "| bits | design | " + " | ".join(f"{r:.0e}" for r in rates) + " | 1-point drop at |",
             "|---" * (3 + len(rates)) + "|"]
    for b, s in summaries.items():
        for p, pts in s["curve"]["designs"].items():
            acc = {x["rate"]: f"{100 * x['accuracy']['rate']:.1f}%" for x in pts}
            d = s["curve"]["drop_rate"][p]
            lines.append(f"| {b} | {p} | " + " | ".join(acc.get(r, "-") for r in rates) + " | "
                         + (f"{d['rate']:.1e}" if d.get("rate") else d.get("note", "-")) + " |")
    lines += ["", "![accuracy vs fault rate](accuracy_vs_rate.png)", ""]
    text = "\n".join(lines)
    atomic_write(out / "rates.md", text)
    report = out / "report.md"
    if report.is_file():
        atomic_write(report, report.read_text().rstrip("\n") + "\n\n" + text)
    return {"bits": list(summaries), "plot": "accuracy_vs_rate.png"}
