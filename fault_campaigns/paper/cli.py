"""`quasar paper`: the reference study's conditions (docs/paper.md), one command.

Every option is validated (PaperConfig, then the sweep's and its campaigns' own checks) and the dataset found
before any training, simulation or synthesis starts; list options take comma-separated values or the option
repeated (quasar/options.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.cli import TARGETS_OPTION
from quasar.options import list_option, parse_int_list, parse_list

log = logging.getLogger(__name__)


def paper(
    net: Annotated[str, typer.Option(help="network: lenet (the study's), alexnet or tiny")] = "lenet",
    bits: Annotated[list[str] | None, list_option("--bits", "activation and weight widths A (each >= --int-bits, "
                                                  "2-16)", "16,8", "16,12,8")] = None,
    int_bits: Annotated[int, typer.Option(help="integer bits I of every hidden layer's ap_ufixed<A, I> "
                                               "(the study: ap_fixed<16,7>)")] = 7,
    protection: Annotated[list[str] | None, list_option(
        "--protection", "protection specs, none first (docs/arithmetic.md)", "none,range",
        "none,range,range:zero,range:zero:act:channel")] = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    images: Annotated[int, typer.Option(help="test images in each campaign's fault space")] = 256,
    faults: Annotated[int | None, typer.Option(help="faults per layer (default: Leveugle's formula)")] = None,
    margin: Annotated[float, typer.Option(help="error margin of each per-layer rate, in (0, 1)")] = 0.02,
    confidence: Annotated[float, typer.Option(help="confidence level, in (0, 1)")] = 0.95,
    targets: Annotated[list[str] | None, TARGETS_OPTION] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    synth: Annotated[bool, typer.Option(help="synthesize every design (Yosys xc7 LUTs) for the overhead")] = True,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory")] = None,
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the paper, sweep, campaign and synth run directories")]
    = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="paper directory (default RUNS_DIR/paper/<name>)")] = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
) -> None:
    """The reference study's conditions: LeNet-5, ap_ufixed<A,7> activations (A = 16, 12, 8), single activation
    flips, accuracy under faults unprotected vs range protection and variants, LUT overhead (docs/paper.md)."""
    from fault_campaigns.paper.run import PaperConfig, run_paper
    from quasar.errors import QuasarError

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    chosen = {k: v for k, v in {
        "bits": parse_int_list("--bits", bits, 2, 16), "protections": parse_list("--protection", protection),
        "targets": parse_list("--targets", targets)}.items() if v is not None}
    cfg = PaperConfig(net=net, int_bits=int_bits, rows=rows, cols=cols, k_max=k_max, images=images, faults=faults,
                      margin=margin, confidence=confidence, seed=seed, synth=synth, data_dir=data_dir, **chosen)
    log.info("paper preset %s", cfg.paper_id)
    result = run_paper(cfg, runs_dir=runs_dir, out=out, workers=workers, progress=progress)
    typer.echo(result["summary"])


def register(app: typer.Typer) -> None:
    app.command("paper")(paper)
