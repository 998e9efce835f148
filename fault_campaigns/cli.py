"""`quasar campaign`, `quasar replay` and `quasar report`: the campaign's command line.

Every option is validated (by CampaignConfig) before any training, build or simulation starts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.planning.faults import DEFAULT_TARGETS
from quasar.errors import QuasarError

log = logging.getLogger(__name__)


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


def campaign(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[int, typer.Option(help="quantization bit width (2-16) for activations and weights")] = 8,
    act_bits: Annotated[int | None, typer.Option(help="activation bits (default: --bits)")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="weight bits (default: --bits)")] = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    protection: Annotated[list[str] | None, typer.Option(
        help="designs to run, comma-separated protection specs (none, range, range:zero, range:clamp:acc:channel, "
             "...; docs/arithmetic.md); default none,range")] = None,
    per_channel_bounds: Annotated[bool, typer.Option(help="one bound pair per output channel")] = False,
    dataset: Annotated[str | None, typer.Option(help="dataset (default: the net's own)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory")] = None,
    train_mode: Annotated[str, typer.Option(help="qat or ptq")] = "qat",
    images: Annotated[int, typer.Option(help="test images in the fault space")] = 16,
    golden_images: Annotated[int, typer.Option(help="images whose every tile is checked on RTL first")] = 1,
    fault_model: Annotated[str, typer.Option(help="flip, mbu2, mbu3, stuck0, stuck1")] = "flip",
    targets: Annotated[list[str] | None, typer.Option(help="register kinds (default pe_activation,output_activation)")]
    = None,
    margin: Annotated[float, typer.Option(help="error margin of each per-layer rate, in (0, 1)")] = 0.02,
    confidence: Annotated[float, typer.Option(help="confidence level, in (0, 1)")] = 0.95,
    faults: Annotated[int | None, typer.Option(help="faults per layer (default: Leveugle's formula)")] = None,
    layers: Annotated[list[str] | None, typer.Option(help="only these layers (default: all)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    executor: Annotated[str, typer.Option(help="local (simulators on this machine) or dask (on a cluster)")]
    = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address tcp://HOST:PORT (--executor dask)")]
    = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the run directory")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="run directory (default: RUNS_DIR/campaign/<name>)")] = None,
    stall_timeout: Annotated[float, typer.Option(help="seconds without progress before a simulator is killed")]
    = 180.0,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
) -> None:
    """Run a fault-injection campaign on the RTL: golden check, then the same faults unprotected and protected."""
    from fault_campaigns.campaign import Campaign
    from fault_campaigns.planning.config import PROTECTIONS, CampaignConfig

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    cfg = CampaignConfig(
        net=net, bits=bits, act_bits=act_bits, weight_bits=weight_bits, rows=rows, cols=cols, k_max=k_max,
        per_channel_bounds=per_channel_bounds, protections=_split(protection) or PROTECTIONS, dataset=dataset,
        data_dir=data_dir, train_mode=train_mode, images=images, golden_images=golden_images,
        fault_model=fault_model, targets=_split(targets) or DEFAULT_TARGETS, margin=margin, confidence=confidence,
        faults=faults, layers=_split(layers), seed=seed,
    )
    run_dir = out or cfg.default_dir(runs_dir)
    log.info("campaign %s -> %s", cfg.campaign_id, run_dir)
    if not stall_timeout > 0:
        raise QuasarError(f"stall timeout must be more than 0 seconds, got {stall_timeout!r}")
    summary = Campaign(cfg, run_dir, workers=workers, progress=progress, stall_timeout=stall_timeout,
                       executor=executor, scheduler=scheduler).run()
    _print_headline(summary, run_dir)


def _print_headline(summary: dict, run_dir: Path) -> None:
    from fault_campaigns.analysis.report import _fmt, relative_text

    for p, d in summary["designs"].items():
        r = d["rates"]
        typer.echo(f"{p:>5}: {r['faults']} faults  SDC {_fmt(r['sdc'])}  critical {_fmt(r['critical'])}  "
                   f"masked {_fmt(r['masked'])}")
    eff = summary.get("protection_effect")
    if eff:
        for name, label in (("sdc", "SDC"), ("corrupted", "corrupted layer output")):
            e = eff[name]
            change = f"{100 * e['unprotected']:.2f}% -> {100 * e['protected']:.2f}%"
            typer.echo(f"range protection, {label}: {change}, relative reduction {relative_text(e)}")
    typer.echo(f"{summary['injections']} injections, {summary['wall_s']:.1f} s "
               f"({summary['injections_per_s']:.0f}/s); report: {run_dir / 'report.md'}")


def replay(
    run: Annotated[Path, typer.Option(help="campaign run directory")],
    fault: Annotated[int, typer.Option(help="fault id (see results.sqlite)")],
    protection: Annotated[str, typer.Option(help="design: a protection spec the campaign ran (none, range, ...)")]
    = "none",
    waves: Annotated[bool, typer.Option(help="write a waveform (FST)")] = True,
) -> None:
    """Rerun one fault of a campaign alone on the RTL (with a waveform) and compare with the stored result."""
    from fault_campaigns.execution.replay import replay_fault

    result = replay_fault(run, fault, protection, waves)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command("campaign")(campaign)
    app.command("replay")(replay)
