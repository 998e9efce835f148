"""`quasar rates`: accuracy under fault rates at RTL (many flips per inference, whole inferences).

Every option is validated (by RateConfig) before any training, build or simulation starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.planning.rates import DEFAULT_IMAGES, DEFAULT_RATE_TARGETS, DEFAULT_RATES, DEFAULT_TRIALS
from models.formats import ACT_FORMAT_HELP, INT_BITS_HELP
from quasar.errors import ConfigError, QuasarError
from quasar.options import list_option, parse_list

log = logging.getLogger(__name__)


def parse_rates(values: list[str] | None) -> tuple[float, ...]:
    """Rates from repeated and/or comma-separated values ("1e-7,1e-6", the one list form of every option);
    the default grid when absent."""
    items = parse_list("--rates", values)
    if items is None:
        return DEFAULT_RATES
    out = []
    for text in items:
        try:
            out.append(float(text))
        except ValueError:
            raise ConfigError(f"fault rate must be a number strictly between 0 and 1, got {text!r}") from None
    return tuple(out)  # RateConfig checks range and duplicates


def rates(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[int, typer.Option(help="quantization bit width (2-16) for activations and weights")] = 8,
    act_bits: Annotated[int | None, typer.Option(help="activation bits (default: --bits)")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="weight bits (default: --bits)")] = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    protection: Annotated[list[str] | None, list_option("--protection", "designs to run (none, range)", "none,range",
                                                        "none,range")] = None,
    per_channel_bounds: Annotated[bool, typer.Option(help="one bound pair per output channel")] = False,
    dataset: Annotated[str | None, typer.Option(help="dataset (default: the net's own)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory")] = None,
    train_mode: Annotated[str, typer.Option(help="qat or ptq")] = "qat",
    act_format: Annotated[str, typer.Option(help=ACT_FORMAT_HELP)]
    = "calibrated",
    int_bits: Annotated[str, typer.Option(help=INT_BITS_HELP)] = "auto",
    rate: Annotated[list[str] | None, list_option(
        "--rates", "fault rates per bit per cycle, each in (0, 1)", "1e-7,1e-6",
        ",".join(f"{r:g}" for r in DEFAULT_RATES))] = None,
    images: Annotated[int, typer.Option(help="test images per rate")] = DEFAULT_IMAGES,
    trials: Annotated[int, typer.Option(help="independent draws of the flips per image and rate")] = DEFAULT_TRIALS,
    targets: Annotated[list[str] | None, list_option(
        "--targets", "register kinds that flip", "pe_activation,accumulator", ",".join(DEFAULT_RATE_TARGETS))] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    confidence: Annotated[float, typer.Option(help="confidence level of the intervals, in (0, 1)")] = 0.95,
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    executor: Annotated[str, typer.Option(help="local (simulators on this machine) or dask (on a cluster)")]
    = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address tcp://HOST:PORT (--executor dask)")]
    = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the run directory")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="run directory (default: RUNS_DIR/rates/<name>)")] = None,
    stall_timeout: Annotated[float, typer.Option(help="seconds without progress before a simulator is killed")]
    = 180.0,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
) -> None:
    """Accuracy under fault rates on the RTL: every targeted register bit flips with probability RATE per
    cycle over whole inferences, unprotected and protected, the same flips on both."""
    from fault_campaigns.planning.config import PROTECTIONS
    from fault_campaigns.planning.rates import RateConfig
    from fault_campaigns.rate_campaign import RateCampaign

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    if not stall_timeout > 0:
        raise QuasarError(f"stall timeout must be more than 0 seconds, got {stall_timeout!r}")
    cfg = RateConfig(
        net=net, bits=bits, act_bits=act_bits, weight_bits=weight_bits, rows=rows, cols=cols, k_max=k_max,
        per_channel_bounds=per_channel_bounds, protections=parse_list("--protection", protection) or PROTECTIONS,
        dataset=dataset,
        data_dir=data_dir, train_mode=train_mode, rates=parse_rates(rate), images=images, trials=trials,
        targets=parse_list("--targets", targets) or DEFAULT_RATE_TARGETS, seed=seed, confidence=confidence,
        act_format=act_format, int_bits=None if int_bits == "auto" else int_bits,
    )
    run_dir = out or cfg.default_dir(runs_dir)
    log.info("fault-rate campaign %s -> %s", cfg.campaign_id, run_dir)
    summary = RateCampaign(cfg, run_dir, workers=workers, progress=progress, stall_timeout=stall_timeout,
                           executor=executor, scheduler=scheduler).run()
    print_curve(summary, run_dir)


def print_curve(summary: dict, run_dir: Path) -> None:
    cur = summary["curve"]
    designs = list(cur["designs"])
    gains = {g["rate"]: g for g in cur.get("gain", [])}
    typer.echo(f"accuracy under fault rates ({summary['act_bits']}-bit, golden {100 * summary['golden_accuracy']:.1f}%"
               f" on these images):")
    typer.echo(f"{'rate':>8} {'flips/inf':>9} " + " ".join(f"{p + ' acc':>19}" for p in designs)
               + ("  gain (pp)" if gains else ""))
    for n, pt in enumerate(cur["designs"][designs[0]]):
        cells = []
        for p in designs:
            a = cur["designs"][p][n]["accuracy"]
            cells.append(f"{100 * a['rate']:6.1f}% [{100 * a['ci_low']:4.1f},{100 * a['ci_high']:5.1f}]")
        g = gains.get(pt["rate"])
        gain = f"  {g['points']:+.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]" if g else ""
        typer.echo(f"{pt['rate']:8.0e} {pt['flips_per_inference']:9.1f} " + " ".join(f"{c:>19}" for c in cells)
                   + gain)
    for p, d in cur["drop_rate"].items():
        where = f"{d['rate']:.2e}" if d.get("rate") else d["note"]
        typer.echo(f"{p:>5}: accuracy drops by 1 point at rate {where}")
    run = summary["run"]
    typer.echo(f"{run['inferences']} inferences ({run['rtl_tile_runs']} RTL tile runs) in {run['wall_s']:.1f} s "
               f"({run['timings'].get('cpu_s', 0.0):.0f} CPU-s); report: {run_dir / 'rates.md'}")


def register(app: typer.Typer) -> None:
    app.command("rates")(rates)
