"""Image-to-image variation: how much a campaign's rates depend on which test images it drew.

Faults are spread over `--images` test images, so a rate is also an estimate over images. Per design
and per measure (a fault run's outcome is correct; it changed a layer output), the between-image
variance is the variance of the per-image rates less the mean binomial (within-image) variance
(method of moments, floored at 0), and the image-sampling standard error of the campaign's rate is
sqrt(between / images). report.md prints both, so whether the image count or the fault count limits a
rate can be read off any campaign (docs/campaign.md, "How many images").
"""

from __future__ import annotations

import math

import pandas as pd

MEASURES = {"correct": "accuracy under single faults", "corrupted": "layer output changed"}


def _between(per_image: pd.DataFrame) -> tuple[float, float]:
    """(between-image sd, image-sampling se) of per-image rates (`mean`, `size` columns)."""
    k = len(per_image)
    if k < 2:
        return float("nan"), float("nan")
    within = (per_image["mean"] * (1 - per_image["mean"]) / (per_image["size"] - 1).clip(lower=1)).mean()
    between = max(0.0, float(per_image["mean"].var(ddof=1)) - float(within))
    return math.sqrt(between), math.sqrt(between / k)


def image_variation(df: pd.DataFrame) -> dict:
    """One design's rows: per measure the between-image sd and the image-sampling se (fractions)."""
    d = df.assign(correct=((df["faulty_top1"] == df["label"]) & df["faulty_top1"].notna()).astype(float),
                  corrupted=(df["changed_outputs"].fillna(0) > 0).astype(float))
    out = {"images": int(d["image"].nunique()), "faults_per_image": len(d) / max(1, d["image"].nunique())}
    for col in MEASURES:
        sd, se = _between(d.groupby("image")[col].agg(["mean", "size"]))
        out[col] = {"rate": float(d[col].mean()), "between_image_sd": sd, "image_sampling_se": se}
    return out


def markdown_lines(summary: dict) -> list[str]:
    lines = ["", "### Image-to-image variation", "",
             "Between-image standard deviation of each measure (net of the binomial noise within an image) and "
             "the standard error that drawing these images adds to the campaign's rate.", "",
             "| protection | images | faults per image | measure | rate | between-image sd | image-sampling se |",
             "|---|---|---|---|---|---|---|"]
    for p, d in summary["designs"].items():
        v = d.get("image_variation")
        if not v:
            continue
        for col, label in MEASURES.items():
            m = v[col]
            lines.append(f"| {p} | {v['images']} | {v['faults_per_image']:.0f} | {label} | {100 * m['rate']:.2f}% | "
                         f"{100 * m['between_image_sd']:.2f} pp | {100 * m['image_sampling_se']:.2f} pp |")
    return lines
