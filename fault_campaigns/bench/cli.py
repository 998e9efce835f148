"""`quasar bench`: RTL vs software-level injection speed and agreement on one fixed campaign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def bench(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[int, typer.Option(help="quantization bit width (2-16)")] = 8,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    images: Annotated[int, typer.Option(help="test images in the fault space")] = 16,
    faults: Annotated[int, typer.Option(help="faults per layer")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 2026,
    workers: Annotated[int, typer.Option(help="simulator processes")] = 2,
    fidelity: Annotated[int, typer.Option(help="faults per design checked against plain full-tile RTL runs")] = 1000,
    out: Annotated[Path, typer.Option(help="output directory (bench.json, bench.md)")] = Path("runs/bench"),
) -> None:
    """Injections per second of the RTL campaign path and of a software-level injector on the same faults,
    their ratio, the agreement of their outcomes, and the fidelity of the RTL fast path."""
    from fault_campaigns.bench.runner import BenchConfig, check, run_bench

    bc = BenchConfig(net=net, bits=bits, rows=rows, cols=cols, images=images, faults=faults, seed=seed,
                     workers=workers, fidelity=fidelity)
    result = run_bench(bc, out)
    typer.echo((out / "bench.md").read_text())
    typer.echo(json.dumps({k: result[k] for k in ("rtl_injections_per_s", "software_injections_per_s", "ratio")
                           if k in result}))
    check(result)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
