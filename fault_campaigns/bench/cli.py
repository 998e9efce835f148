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
    mode: Annotated[str, typer.Option(help="faults (single faults), rates (whole inferences under fault rates) "
                                           "or both")] = "both",
    rates: Annotated[str, typer.Option(help="fault rates of the fault-rate mode, comma-separated")] = "1e-6,1e-5,1e-4",
    rate_images: Annotated[int, typer.Option(help="test images of the fault-rate mode")] = 40,
    rate_trials: Annotated[int, typer.Option(help="trials per image and rate of the fault-rate mode")] = 1,
) -> None:
    """Injections per second of the RTL campaign path and of a software-level injector on the same faults,
    their ratio, the agreement of their outcomes, and the fidelity of the RTL fast path."""
    from fault_campaigns.bench.rates import RateBenchConfig, check_rates_result, run_rate_bench
    from fault_campaigns.bench.runner import BenchConfig, check, run_bench
    from fault_campaigns.rates_cli import parse_rates
    from quasar.errors import check_choice

    check_choice("mode", mode, ("faults", "rates", "both"))
    bc = BenchConfig(net=net, bits=bits, rows=rows, cols=cols, images=images, faults=faults, seed=seed,
                     workers=workers, fidelity=fidelity)
    rbc = RateBenchConfig(net=net, bits=bits, rows=rows, cols=cols, rates=parse_rates([rates]), images=rate_images,
                          trials=rate_trials, seed=seed, workers=workers)
    if mode in ("faults", "both"):
        result = run_bench(bc, out)
        typer.echo((out / "bench.md").read_text())
        typer.echo(json.dumps({k: result[k] for k in ("rtl_injections_per_s", "software_injections_per_s", "ratio")
                               if k in result}))
        check(result)
    if mode in ("rates", "both"):
        rated = run_rate_bench(rbc, out)
        typer.echo((out / "rates_bench.md").read_text())
        typer.echo(json.dumps({k: rated[k] for k in ("rtl_inferences_per_s", "software_inferences_per_s", "ratio")}))
        check_rates_result(rated)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
