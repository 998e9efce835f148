"""paper.md and paper.json of the reference-study preset, and its console summary.

Every number comes from the figures `run.width_figures` computed from the campaigns' stores and the sweep's
rows; the findings name the table cells they rest on (`[T2 16b/range: gain % all]`). The study's own figures
are quoted from its secondary summaries (../shared/FIELD.md: arXiv 2401.09509, LeNet-5 "up to ~34%"
reliability improvement, "< 10%" LUT overhead) and are never computed or tuned to.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from quasar import jsonio

PAPER = {"source": "ISQED 2024, arXiv 2401.09509 (secondary summaries; ../shared/FIELD.md)",
         "lenet_improvement_pct": 34.0, "alexnet_improvement_pct": 52.0, "lut_overhead_pct_below": 10.0,
         "activations": "ap_fixed<16,7>", "reliability": "accuracy under faults = correct / (images x faults)"}


def _pct(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{nd}f}"


def _acc(r: dict) -> str:
    return f"{_pct(r['rate'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]" if r.get("total") else "-"


def _gain_pp(g: dict | None) -> str:
    if not g or g.get("points") is None:
        return "-"
    return f"{100 * g['points']:+.2f} [{100 * g['points_low']:+.2f}, {100 * g['points_high']:+.2f}]"


def _gain_rel(g: dict | None) -> str:
    if not g or g.get("relative") is None:
        return "n/a"
    lo, hi = g.get("relative_low"), g.get("relative_high")
    ci = "" if lo is None else f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    return f"{100 * g['relative']:+.2f}%{ci}"


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def reliability_table(widths: dict[int, dict]) -> list[str]:
    """Table 2: per (bits, protection, scope) accuracy under faults and the paired gain, points and relative."""
    from fault_campaigns.paper.figures import SCOPES

    lines = ["| bits | protection | scope | faults | accuracy under faults % | gain pp | gain % |",
             "|---|---|---|---|---|---|---|"]
    for b, w in widths.items():
        for scope in SCOPES:
            for p, d in w["designs"].items():
                c = d[scope]
                lines.append(f"| {b} | {p} | {scope} | {c['accuracy']['total']:,} | {_acc(c['accuracy'])} | "
                             f"{_gain_pp(c.get('gain'))} | {_gain_rel(c.get('gain'))} |")
    return lines


def hardware_table(widths: dict[int, dict]) -> list[str]:
    """Table 5: per (bits, protection) the xc7 LUTs and FFs and the LUT overhead over `none`."""
    lines = ["| bits | protection | LUT (xc7) | FF | LUT overhead % |", "|---|---|---|---|---|"]
    for b, w in widths.items():
        for p, d in w["designs"].items():
            hw = d.get("hardware") or {}
            lines.append(f"| {b} | {p} | {_num(hw.get('luts'))} | {_num(hw.get('ffs'))} | "
                         f"{_num(hw.get('lut_overhead_pct'), '{:+.2f}')} |")
    return lines


def control_table(widths: dict[int, dict]) -> list[str]:
    """Table 3: the positive control and why an effect is small."""
    lines = ["| bits | faults | live | golden acc. % | acc. under faults % (none) | drop pp (paired) | SDC (none) "
             "| protection | fired (by register kind) | fired and SDC unprotected | SDCs restored | new SDCs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, w in widths.items():
        c = w["control"]
        live = ", ".join(f"{k} {v:,}" for k, v in c["live_by_kind"].items())
        sdc = ", ".join(f"{k} {v}" for k, v in c["sdc_by_kind"].items()) or "-"
        head = (f"| {b} | {c['faults']:,} | {c['live_faults']:,} ({live}) | {_acc(c['golden_accuracy'])} | "
                f"{_acc(c['accuracy_under_faults'])} | {100 * c['drop_points']:+.2f} [{100 * c['drop_low']:+.2f}, "
                f"{100 * c['drop_high']:+.2f}] | {c['sdc_unprotected']} ({c['sdc_unprotected_live']} live; {sdc})")
        for i, (p, d) in enumerate(c["designs"].items()):
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(d["fired_by_kind"].items())) or "-"
            first = head if i == 0 else "| " + " | ".join([""] * 7)
            lines.append(f"{first} | {p} | {d['fired']} ({kinds}) | {d['fired_and_sdc_unprotected']} | "
                         f"{d['restored']} | {d['new_sdc']} |")
    return lines


def bit_table(widths: dict[int, dict]) -> list[str]:
    """Table 3b: live output-activation flips per flipped bit, unprotected SDCs, and per design fired / SDC."""
    prots = [p for p in next(iter(widths.values()))["designs"] if p != "none"]
    lines = ["| bits | flipped bit | live oact flips | SDC (none) | " + " | ".join(f"{p}: fired / SDC" for p in prots)
             + " |", "|---|---|---|---|" + "---|" * len(prots)]
    for b, w in widths.items():
        for bit, r in sorted(w["control"]["oact_by_bit"].items(), key=lambda kv: int(kv[0])):
            cells = [f"{r['designs'][p]['fired']} / {r['designs'][p]['sdc']}" for p in prots]
            lines.append(f"| {b} | {bit} | {r['flips']} | {r['sdc_unprotected']} | " + " | ".join(cells) + " |")
    return lines


def headroom_table(widths: dict[int, dict]) -> list[str]:
    """Table 4: per width and hidden layer, the per-layer bound hi against the format's top code."""
    lines = ["| bits | layer | format | hi (codes) | top code | headroom (codes) | free top bits |",
             "|---|---|---|---|---|---|---|"]
    for b, w in widths.items():
        for r in w["headroom"]:
            lines.append(f"| {b} | {r['layer']} | ap_ufixed<{b},{r['int_bits']}> | {r['hi']:,} | {r['top']:,} | "
                         f"{r['headroom_codes']:,} | {r['headroom_bits']} |")
    return lines


def accuracy_table(widths: dict[int, dict]) -> list[str]:
    lines = ["| bits | format | float % | QAT integer % | PTQ integer % |", "|---|---|---|---|---|"]
    for b, w in widths.items():
        a = w["accuracy_pct"]
        lines.append(f"| {b} | {w['format']} | {_num(a['float'], '{:.2f}')} | {_num(a['qat_integer'], '{:.2f}')} | "
                     f"{_num(a['ptq_integer'], '{:.2f}')} |")
    return lines


def headline(widths: dict[int, dict]) -> dict[str, Any]:
    """Per protected design and scope, the widths' largest relative gain (the study reports "up to"), and the
    range of the LUT overhead over the widths."""
    from fault_campaigns.paper.figures import SCOPES
    from fault_campaigns.paper.figures import headline as best

    prots = [p for p in next(iter(widths.values()))["designs"] if p != "none"]
    out: dict[str, Any] = {}
    for p in prots:
        overs = [w["designs"][p]["hardware"]["lut_overhead_pct"] for w in widths.values()
                 if (w["designs"][p].get("hardware") or {}).get("lut_overhead_pct") is not None]
        out[p] = {**{scope: best(widths, p, scope) for scope in SCOPES},
                  "lut_overhead_pct": [min(overs), max(overs)] if overs else None}
    return out


def _best_text(h: dict | None) -> str:
    if h is None:
        return "n/a (no fault in this scope, or no correct run unprotected)"
    g = h["gain"]
    return (f"{_gain_rel(g)} relative ({_gain_pp(g)} pp) at {h['bits']} bits "
            f"[T2 {h['bits']}b/{h['protection']}/{h['scope']}: gain %]")


def _lut_text(h: dict, p: str) -> str:
    lut = h["lut_overhead_pct"]
    return "no synthesis" if lut is None else f"{lut[0]:+.2f}% to {lut[1]:+.2f}% [T5 */{p}: LUT overhead %]"


def findings(widths: dict[int, dict], head: dict[str, Any]) -> list[str]:
    """Sentences computed from the tables; each cites its cells."""
    from fault_campaigns.paper.figures import SCOPES

    out = []
    for p, h in head.items():
        out.append(f"**{p}**: up to " + "; ".join(f"{_best_text(h[s])} over {s} faults" for s in SCOPES)
                   + f"; LUTs {_lut_text(h, p)}.")
    for b, w in widths.items():
        c = w["control"]
        fired = {p: d["fired"] for p, d in c["designs"].items()}
        hurt = ("the faults lower the unprotected accuracy" if c["faults_hurt"] else
                "the faults do not lower the unprotected accuracy measurably")
        oact = c["live_by_kind"].get("output_activation", 0)
        out.append(f"**{b} bits, positive control**: {hurt} ({100 * c['drop_points']:+.2f} pp "
                   f"[{100 * c['drop_low']:+.2f}, {100 * c['drop_high']:+.2f}] [T3 {b}b: drop]); "
                   f"{c['sdc_unprotected']} of {c['faults']:,} faults change the unprotected top-1 [T3 {b}b: SDC]; "
                   f"{c['live_faults']:,} are "
                   f"live, {oact:,} of them in output-activation registers [T3 {b}b: live]; the protection fired on "
                   + ", ".join(f"{n} ({p})" for p, n in fired.items()) + f" [T3 {b}b: fired].")
    return out


def rerun_command(cfg) -> str:  # type: ignore[no-untyped-def]
    from fault_campaigns.paper.run import PaperConfig

    default = PaperConfig()
    parts = ["quasar", "paper"]
    for name in ("net", "int_bits", "rows", "cols", "k_max", "images", "faults", "margin", "confidence", "seed"):
        v = getattr(cfg, name)
        if v != getattr(default, name) and v is not None:
            parts += [f"--{name.replace('_', '-')}", str(v)]
    for name in ("bits", "protections", "targets"):
        v = getattr(cfg, name)
        if tuple(v) != tuple(getattr(default, name)):
            parts += ["--protection" if name == "protections" else f"--{name}", ",".join(str(x) for x in v)]
    if not cfg.synth:
        parts.append("--no-synth")
    if cfg.data_dir:
        parts += ["--data-dir", cfg.data_dir]
    return shlex.join(parts)


def markdown(cfg, widths: dict[int, dict], head: dict, run: dict) -> str:  # type: ignore[no-untyped-def]
    from fault_campaigns.paper.figures import SCOPES

    fmts = ", ".join(w["format"] for w in widths.values())
    lines = [
        f"# The reference study's conditions: {cfg.net}, activations {fmts}", "",
        f"The study ({PAPER['source']}): activations {PAPER['activations']}, one bit flip per inference in a "
        f"layer's output, reliability = {PAPER['reliability']}; its range protection improved LeNet-5's "
        f"reliability by up to ~{PAPER['lenet_improvement_pct']:.0f}% for under {PAPER['lut_overhead_pct_below']:.0f}% "
        "more LUTs. Here: the generated RTL of a "
        f"{cfg.rows}x{cfg.cols} systolic array with shift-only requantization, one bit flip per fault run in "
        f"{', '.join(cfg.targets)} registers (register, bit and cycle uniform; "
        + (f"{cfg.faults} faults per layer" if cfg.faults else "Leveugle sample sizes per layer")
        + f"), {cfg.images} test images, seed {cfg.seed}, the same fault list on every design. Gains are paired "
        "(same faults), 95% percentile intervals from a seeded bootstrap; relative gain = acc(protected) / "
        "acc(none) - 1. LUTs: Yosys `synth_xilinx` (xc7, with DSPs). Scopes: "
        + "; ".join(f"`{k}` = {v}" for k, v in SCOPES.items()) + ".",
        "", "## Beside the study", "",
        "| | study (LeNet-5) | measured here (largest over the widths) |", "|---|---|---|",
    ]
    for p, h in head.items():
        lines.append(f"| reliability improvement, `{p}` | up to ~{PAPER['lenet_improvement_pct']:.0f}% | "
                     + "; ".join(f"{s}: {_best_text(h[s])}" for s in SCOPES) + " |")
        lines.append(f"| LUT overhead, `{p}` | < {PAPER['lut_overhead_pct_below']:.0f}% | {_lut_text(h, p)} |")
    lines += ["", "## Findings", "", *[f"- {f}" for f in findings(widths, head)],
              "", "## T1: accuracy of each width (QAT is the model the campaigns run)", "", *accuracy_table(widths),
              "", "## T2: accuracy under single faults and what each protection buys (paired)", "",
              *reliability_table(widths),
              "", "## T3: positive control, and why an effect is small", "",
              "Drop = golden accuracy - accuracy under faults of the unprotected design on the same fault runs: a "
              "protection that returned every fault run to its golden result would gain exactly this. "
              "Fired = the protection corrected at least one real output more than in the golden run. Restored = "
              "unprotected SDCs (top-1 changed) that the design classified as golden; new SDCs = the reverse.", "",
              *control_table(widths),
              "", "## T3b: live output-activation flips (the study's fault model) by flipped bit", "",
              "Bit 0 is the least significant; the top bits of `ap_ufixed<A,7>` are its integer bits (+64 for the "
              "top one).", "", *bit_table(widths),
              "", "## T4: headroom between the per-layer bounds and the format's top code", "",
              "A flip that sets a free top bit always leaves [lo, hi] and is caught; a flip below it stays in range.",
              "", *headroom_table(widths),
              "", "## T5: hardware cost (Yosys xc7, with DSPs)", "", *hardware_table(widths),
              "", "## Run", "",
              f"- rerun: `{rerun_command(cfg)}`" + (" (= `make paper`)" if rerun_command(cfg) == "quasar paper" else "")
              + "; it resumes from the stores and caches",
              f"- sweep (table, synthesis, campaigns' sources): `{run['sweep_dir']}`",
              *[f"- {b} bits: campaign `{w['campaign_dir']}` ({w['store_rows']:,} stored fault runs)"
                for b, w in widths.items()],
              f"- this run: {run['this_run_wall_s']:.0f} s; the sweep's first session with nothing cached: "
              + ("-" if run.get("sweep_first_fresh_wall_s") is None else f"{run['sweep_first_fresh_wall_s']:.0f} s"),
              ""]
    return "\n".join(lines)


def console_summary(widths: dict[int, dict], head: dict, out_dir: Path) -> str:
    from fault_campaigns.paper.figures import SCOPES

    lines = ["Beside the study (LeNet-5: up to ~34% reliability improvement, < 10% LUTs), largest over the widths:"]
    for p, h in head.items():
        lines.append(f"  {p}: " + "; ".join(f"{s} {_best_text(h[s])}" for s in SCOPES) + f"; LUT {_lut_text(h, p)}")
    lines += ["", *reliability_table(widths), "", f"report: {out_dir / 'paper.md'}"]
    return "\n".join(lines)


def write_paper(out_dir: Path, cfg, widths: dict[int, dict], run: dict) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from fault_campaigns.files import atomic_write

    head = headline(widths)
    doc = {"config": cfg.identity(), "paper_id": cfg.paper_id, "paper": PAPER, "headline": head,
           "widths": {str(b): w for b, w in widths.items()}, "run": run, "rerun": rerun_command(cfg)}
    atomic_write(out_dir / "paper.json", jsonio.dumps(doc, indent=2))
    atomic_write(out_dir / "paper.md", markdown(cfg, widths, head, run))
    return {**doc, "dir": str(out_dir), "summary": console_summary(widths, head, out_dir)}
