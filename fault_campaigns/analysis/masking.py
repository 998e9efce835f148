"""What the faults did: idle vs live faults, where live faults were masked, accuracy under faults, SDC-5.

Computed from the stored rows only (columns `live`, `stage`, `golden_rank`, `faulty_top1`, `label`;
fault_campaigns.results.classify and .stages define them):

- idle (un-ACE): the mapping says the fault cannot reach a real output (padding rows/columns/cycles,
  registers nothing reads); every other fault is live. Rates over live faults stand beside the
  whole-space rates (the whole space is what a FIT figure needs);
- the masking-stage table: per register kind, the share of faults that were idle, and of the live ones
  the stage at which their error disappeared (results.stages.STAGES), or `lost` (hang/crash);
- accuracy under single faults = correct / (images x faults): the share of fault runs whose faulty
  top-1 equals the label (a hang or crash counts as wrong), the convention of the reference group;
- SDC-5: the golden top-1 class left the faulty top-5 (golden_rank >= 5).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fault_campaigns.results.classify import SDC_OUTCOMES
from fault_campaigns.results.stages import STAGES
from fault_campaigns.stats import rate

COLUMNS = ("idle", *STAGES, "lost")
LABELS = {"idle": "idle (un-ACE)", "none": "no accumulator changed", "rounding": "requantization rounding",
          "clamp": "ReLU/saturation clamp", "protection": "range protection",
          "downstream": "downstream (pool, later layer)",
          "output": "reached the logits", "lost": "hang/crash"}


def stage_counts(df: pd.DataFrame) -> dict[str, int]:
    """Faults per column of the masking-stage table (idle first, then the live faults' stages)."""
    live = df["live"].fillna(1).astype(int) == 1
    out = {"idle": int((~live).sum())}
    stages = df.loc[live, "stage"]
    for s in STAGES:
        out[s] = int((stages == s).sum())
    out["lost"] = int(stages.isna().sum())
    return out


def masking_summary(df: pd.DataFrame, act_bits: int) -> dict:
    """One design's masking-stage table: per register kind and over all kinds, counts and shares."""
    out = {}
    for kind, g in [*df.groupby("kind"), ("all", df)]:
        counts = stage_counts(g)
        n = len(g)
        out[str(kind)] = {"bits": act_bits, "faults": n, "counts": counts,
                          "shares": {k: v / n if n else float("nan") for k, v in counts.items()}}
    return out


def fault_metrics(df: pd.DataFrame, confidence: float) -> dict:
    """Idle share, SDC over live faults and over the whole space, accuracy under faults, SDC-5."""
    n = len(df)
    live = df["live"].fillna(1).astype(int) == 1
    sdc = df["outcome"].isin(SDC_OUTCOMES)
    correct = (df["faulty_top1"] == df["label"]) & df["faulty_top1"].notna()
    sdc5 = df["golden_rank"].fillna(0) >= 5
    return {
        "idle": rate(int((~live).sum()), n, confidence).to_dict(),
        "live_faults": int(live.sum()),
        "sdc_live": rate(int((sdc & live).sum()), int(live.sum()), confidence).to_dict(),
        "sdc_whole_space": rate(int(sdc.sum()), n, confidence).to_dict(),
        "accuracy_under_faults": rate(int(correct.sum()), n, confidence).to_dict(),
        "golden_accuracy_same_images": rate(int((df["golden_top1"] == df["label"]).sum()), n, confidence).to_dict(),
        "sdc5": rate(int(sdc5.sum()), n, confidence).to_dict(),
        "sdc5_live": rate(int((sdc5 & live).sum()), int(live.sum()), confidence).to_dict(),
        # a consistency check: an idle fault that changed a layer output would contradict the mapping
        "idle_but_changed": int(((~live) & (df["changed_outputs"].fillna(0) > 0)).sum()),
    }


def plot_stages(summary: dict, path: Path) -> None:
    """Stacked bars: per design and register kind, the share of faults in each masking column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(p, kind, row) for p, d in summary["designs"].items() for kind, row in d["masking"].items()]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(bars) + 1.6))
    names = [f"{p} / {kind}" for p, kind, _ in bars]
    left = [0.0] * len(bars)
    for i, col in enumerate(COLUMNS):
        vals = [100 * row["shares"][col] for _, _, row in bars]
        ax.barh(names, vals, left=left, color="lightgrey" if col == "idle" else f"C{i}", label=LABELS[col])
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_xlabel("share of injected faults (%)")
    ax.set_title("Where each fault was masked (protection / register kind)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _pct(d: dict | None) -> str:
    if not d or d.get("rate") is None or d["rate"] != d["rate"]:
        return "-"
    return f"{100 * d['rate']:.2f}% [{100 * d['ci_low']:.2f}, {100 * d['ci_high']:.2f}]"


def markdown_lines(summary: dict) -> list[str]:
    """report.md's sections on what the faults did."""
    conf = 100 * summary["config"]["confidence"]
    lines = ["", "## What the faults did", "",
             f"Idle (un-ACE) faults sit where the mapping says no real output can be reached (docs/campaign.md). "
             f"Rates over live faults stand beside whole-space rates; {conf:.0f}% Wilson intervals. "
             "Accuracy under single faults = correct / (images x faults); SDC-5 = the golden top-1 left the "
             "faulty top-5.", "",
             "| protection | idle | SDC, whole space (pooled) | SDC, whole space (population-weighted) | SDC over live "
             "faults | accuracy under single faults | golden accuracy, same runs | SDC-5 |",
             "|---|---|---|---|---|---|---|---|"]
    for p, d in summary["designs"].items():
        m = d["faults"]
        lines.append(f"| {p} | {_pct(m['idle'])} | {_pct(m['sdc_whole_space'])} | {_pct(d['stratified']['sdc'])} | "
                     f"{_pct(m['sdc_live'])} | {_pct(m['accuracy_under_faults'])} | "
                     f"{_pct(m['golden_accuracy_same_images'])} | {_pct(m['sdc5'])} |")
    gc = summary.get("golden_coverage")
    if gc:
        lines += ["", f"Golden RTL check: every tile of {gc['images_checked']} of the {gc['campaign_images']} campaign "
                  f"image(s), {gc['tile_runs_per_image'] * gc['images_checked']} tile runs per design "
                  f"({gc['tile_runs_per_image']} per image); the other images' golden outputs come from the "
                  "integer model that this check proves bit-exact (`--golden-images` checks more)."]
    lines += ["", "### Masking stages", "",
              "Share of injected faults per column: idle, then for live faults the stage at which the error "
              "disappeared (docs/campaign.md, \"Masking stages\").", "",
              "| protection | register kind | bits | faults | " + " | ".join(LABELS[c] for c in COLUMNS) + " |",
              "|---" * (4 + len(COLUMNS)) + "|"]
    for p, d in summary["designs"].items():
        for kind, row in d["masking"].items():
            cells = [f"{100 * row['shares'][c]:.1f}% ({row['counts'][c]})" for c in COLUMNS]
            lines.append(f"| {p} | {kind} | {row['bits']} | {row['faults']} | " + " | ".join(cells) + " |")
    lines += ["", "![masking stages](masking_stages.png)"]
    return lines


def sweep_lines(campaigns: dict) -> list[str]:
    """The sweep report's masking-stage table: per bit width and design, all register kinds together,
    from each width's campaign summary (`campaigns`: bits -> summary)."""
    lines = ["", "## Where faults were masked, by bit width", "",
             "Share of injected faults (all target register kinds; docs/campaign.md, \"Masking stages\").", "",
             "| bits | protection | faults | " + " | ".join(LABELS[c] for c in COLUMNS) + " |",
             "|---" * (3 + len(COLUMNS)) + "|"]
    for b in sorted(campaigns):
        for p, d in (campaigns[b] or {}).get("designs", {}).items():
            row = d.get("masking", {}).get("all")
            if not row:
                continue
            cells = [f"{100 * row['shares'][c]:.1f}%" for c in COLUMNS]
            lines.append(f"| {b} | {p} | {row['faults']} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 6 else []
