"""The sweep's plots (matplotlib, Agg): accuracy, SDC, hardware and SDC-vs-area against bit width, and
the per-layer SDC heatmap, from the table's rows. Never computes a figure of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fault_campaigns.planning.config import PROTECTIONS
from fault_campaigns.sweep.table import AREA, _num


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
