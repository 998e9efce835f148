"""`quasar sweep`: the trilateral design-space sweep (accuracy, RTL fault tolerance, hardware cost).

Every option is validated, and the dataset found, before any training, simulation or synthesis starts; list
options take comma-separated values or the option repeated (quasar/options.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.cli import TARGETS_OPTION
from fault_campaigns.planning.faults import DEFAULT_TARGETS
from models.formats import INT_BITS_HELP
from quasar.options import list_option, parse_int_list, parse_list

log = logging.getLogger(__name__)


def sweep(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[list[str] | None, list_option("--bits", "bit widths (2-16)", "2,4,8", "2..8 and 16")] = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    per_channel_bounds: Annotated[bool, typer.Option(help="one protection bound pair per output channel")] = False,
    protection: Annotated[list[str] | None, list_option(
        "--protection", "protection specs to compare, none first (docs/arithmetic.md)", "none,range,range:zero",
        "none,range")] = None,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory (AlexNet: the CIFAR-10 batches)")] = None,
    images: Annotated[int, typer.Option(help="test images in each campaign's fault space")] = 256,
    targets: Annotated[list[str] | None, TARGETS_OPTION] = None,
    margin: Annotated[float, typer.Option(help="error margin of each per-layer rate, in (0, 1)")] = 0.02,
    confidence: Annotated[float, typer.Option(help="confidence level, in (0, 1)")] = 0.95,
    faults: Annotated[int | None, typer.Option(help="faults per layer (default: Leveugle's formula)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    synth: Annotated[bool, typer.Option(help="synthesize every design (area, Fmax)")] = True,
    synth_targets: Annotated[list[str] | None, list_option("--synth-targets", "synthesis flows (xc7, xc7-nodsp, "
                                                           "ecp5, pnr)", "xc7,pnr", "xc7,xc7-nodsp,pnr")] = None,
    synth_jobs: Annotated[int, typer.Option(help="synthesis steps run at once after the campaigns (one before)")]
    = 2,
    fmax: Annotated[str, typer.Option(help="Fmax from: placed (nextpnr placement and its timing estimate) or "
                                           "routed (place and route; about twice the nextpnr time)")] = "placed",
    act_format: Annotated[list[str] | None, list_option(
        "--act-format", "activation formats, each a sweep of its own shown side by side (calibrated, pow2; "
        "docs/arithmetic.md)", "calibrated,pow2", "calibrated")] = None,
    int_bits: Annotated[str, typer.Option(help=INT_BITS_HELP)] = "auto",
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the campaign, synth and sweep run directories")]
    = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="sweep directory (default RUNS_DIR/sweep/<name>)")] = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    rate_curves: Annotated[bool, typer.Option(help="an accuracy-vs-fault-rate curve per width (quasar rates)")]
    = True,
    rates: Annotated[list[str] | None, list_option("--rates", "fault rates of the curves, each in (0, 1)", "1e-7,1e-6",
                                                   "the rates command's")] = None,
    rate_images: Annotated[int, typer.Option(help="test images per rate of the curves")] = 60,
    rate_trials: Annotated[int, typer.Option(help="trials per image and rate of the curves")] = 1,
) -> None:
    """For every bit width: accuracy (QAT, PTQ), the campaign unprotected and protected, and synthesis of both."""
    from fault_campaigns.rates_cli import parse_rates
    from fault_campaigns.sweep.runner import SYNTH_TARGETS, Sweep, SweepConfig, parse_bits
    from quasar.errors import QuasarError

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    formats = list(parse_list("--act-format", act_format) or ("calibrated",))
    if out is not None and len(formats) > 1:
        raise QuasarError("--out names one sweep's directory; with several --act-format values use --runs-dir")
    # Every format's configuration is validated before any of them runs.
    cfgs = {fmt: SweepConfig(
        net=net, bits=parse_bits(parse_int_list("--bits", bits, 2, 16)), rows=rows, cols=cols, k_max=k_max,
        per_channel_bounds=per_channel_bounds, data_dir=data_dir, images=images,
        targets=parse_list("--targets", targets) or DEFAULT_TARGETS, margin=margin, confidence=confidence,
        faults=faults, seed=seed, synth=synth,
        synth_targets=parse_list("--synth-targets", synth_targets) or SYNTH_TARGETS, fmax=fmax, act_format=fmt,
        int_bits=None if int_bits == "auto" or fmt != "pow2" else int_bits, rate_curves=rate_curves,
        rates=parse_rates(rates), rate_images=rate_images, rate_trials=rate_trials,
        **({"protections": parse_list("--protection", protection)} if protection else {}),
    ) for fmt in formats}
    results = {}
    for fmt, cfg in cfgs.items():
        out_dir = out or cfg.default_dir(runs_dir)
        runner = Sweep(cfg, out_dir, runs_dir=runs_dir, workers=workers, progress=progress, synth_jobs=synth_jobs)
        log.info("sweep %s (%s) -> %s", cfg.sweep_id, fmt, out_dir)
        results[fmt] = runner.run()
        typer.echo((Path(results[fmt]["dir"]) / "table.md").read_text())
        typer.echo(f"report: {Path(results[fmt]['dir']) / 'report.md'}")
    if len(results) > 1:
        from fault_campaigns.sweep.formats import write_formats_report

        first = next(iter(cfgs.values()))
        widths = "-".join(str(b) for b in first.bits)
        ids = "-".join(c.sweep_id for c in cfgs.values())
        path = write_formats_report(Path(runs_dir) / "sweep" / f"{net}-{rows}x{cols}-b{widths}-formats-{ids}", results)
        typer.echo(path.read_text())
        typer.echo(f"formats side by side: {path}")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
