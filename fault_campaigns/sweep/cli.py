"""`quasar sweep`: the trilateral design-space sweep (accuracy, RTL fault tolerance, hardware cost).

Every option is validated, and the dataset found, before any training, simulation or synthesis starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.cli import _split
from fault_campaigns.planning.faults import DEFAULT_TARGETS

log = logging.getLogger(__name__)


def sweep(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[list[str] | None, typer.Option(help="bit widths, e.g. --bits \"2 4 8\" (default 2..8 and 16)")]
    = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    per_channel_bounds: Annotated[bool, typer.Option(help="one protection bound pair per output channel")] = False,
    protection: Annotated[list[str] | None, typer.Option(
        help="protection specs to compare, comma-separated, none first (default none,range; docs/arithmetic.md)")]
    = None,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory (AlexNet: the CIFAR-10 batches)")] = None,
    images: Annotated[int, typer.Option(help="test images in each campaign's fault space")] = 16,
    targets: Annotated[list[str] | None, typer.Option(help="register kinds (default pe_activation,output_activation)")]
    = None,
    margin: Annotated[float, typer.Option(help="error margin of each per-layer rate, in (0, 1)")] = 0.02,
    confidence: Annotated[float, typer.Option(help="confidence level, in (0, 1)")] = 0.95,
    faults: Annotated[int | None, typer.Option(help="faults per layer (default: Leveugle's formula)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    synth: Annotated[bool, typer.Option(help="synthesize every design (area, Fmax)")] = True,
    synth_targets: Annotated[str, typer.Option(help="synthesis flows: xc7, xc7-nodsp, ecp5, pnr")]
    = "xc7,xc7-nodsp,pnr",
    synth_jobs: Annotated[int, typer.Option(help="synthesis steps run at once after the campaigns (one before)")]
    = 2,
    fmax: Annotated[str, typer.Option(help="Fmax from: placed (nextpnr placement and its timing estimate) or "
                                           "routed (place and route; about twice the nextpnr time)")] = "placed",
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the campaign, synth and sweep run directories")]
    = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="sweep directory (default RUNS_DIR/sweep/<name>)")] = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
) -> None:
    """For every bit width: accuracy (QAT, PTQ), the campaign unprotected and protected, and synthesis of both."""
    from fault_campaigns.sweep.runner import Sweep, SweepConfig, parse_bits
    from quasar.errors import QuasarError

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    cfg = SweepConfig(
        net=net, bits=parse_bits(bits), rows=rows, cols=cols, k_max=k_max, per_channel_bounds=per_channel_bounds,
        data_dir=data_dir, images=images, targets=_split(targets) or DEFAULT_TARGETS, margin=margin,
        confidence=confidence, faults=faults, seed=seed, synth=synth, synth_targets=tuple(_split([synth_targets])),
        fmax=fmax, **({"protections": tuple(_split(protection))} if protection else {}),
    )
    out_dir = out or cfg.default_dir(runs_dir)
    runner = Sweep(cfg, out_dir, runs_dir=runs_dir, workers=workers, progress=progress, synth_jobs=synth_jobs)
    log.info("sweep %s -> %s", cfg.sweep_id, out_dir)
    result = runner.run()
    text = (Path(result["dir"]) / "table.md").read_text()
    typer.echo(text)
    typer.echo(f"report: {Path(result['dir']) / 'report.md'}")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
