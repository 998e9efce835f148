"""`quasar train` and `quasar accuracy-table`: train (or reuse) quantized networks and report accuracy.

The commands only parse, call `models.train` and print; every check of a value happens in the library,
which raises `QuasarError`s that quasar/cli.py turns into one-line errors. torch is imported inside the
commands so `quasar --help` and the other packages' commands start fast.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from models.formats import ACT_FORMAT_HELP, INT_BITS_HELP
from quasar.errors import check_range
from quasar.options import list_option, parse_int_list, parse_list

log = logging.getLogger(__name__)

DEFAULT_TABLE_BITS = (2, 3, 4, 5, 6, 7, 8, 16)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("accuracy-table")(accuracy_table_command)


def train_command(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[int, typer.Option(help="default for both --act-bits and --weight-bits (2..16)")] = 8,
    act_bits: Annotated[int | None, typer.Option(help="activation bits (2..16); default --bits")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="weight bits (2..16); default --bits")] = None,
    mode: Annotated[str, typer.Option(help="qat (quantization-aware training) or ptq (post-training)")] = "qat",
    act_format: Annotated[str, typer.Option(help=ACT_FORMAT_HELP)] = "calibrated",
    int_bits: Annotated[str, typer.Option(help=INT_BITS_HELP)] = "auto",
    dataset: Annotated[str | None, typer.Option(help="mnist, idx, digits or cifar10; default: the net's own")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="data directory (default data/<dataset>; idx needs one)")
    ] = None,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="run directory for metrics.json and export.json")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="checkpoint cache (default $QUASAR_CACHE_DIR or data/cache)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train (or reuse from the cache) one quantized network; write metrics.json and export.json."""
    from models.formats import check_format
    from models.train import BITS_RANGE, TrainConfig, get_or_train

    check_range("--bits", bits, *BITS_RANGE)
    for flag, value in (("--act-bits", act_bits), ("--weight-bits", weight_bits)):
        if value is not None:
            check_range(flag, value, *BITS_RANGE)
    a_bits = bits if act_bits is None else act_bits
    config = TrainConfig(
        act_format=act_format,
        int_bits=check_format(act_format, int_bits, a_bits),
        net=net,
        act_bits=a_bits,
        weight_bits=bits if weight_bits is None else weight_bits,
        mode=mode,
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        seed=seed,
    )
    export, metrics = get_or_train(config, cache_dir=cache_dir, progress=progress)
    run_dir = out if out is not None else Path("runs") / "train" / config.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics.to_json(run_dir / "metrics.json")
    export.to_json(run_dir / "export.json")
    _print_metrics(metrics)
    print(f"wrote {run_dir / 'metrics.json'} and {run_dir / 'export.json'}")


def accuracy_table_command(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[list[str] | None, list_option("--bits", "bit widths (act = weight, 2-16)", "2,3,4,8",
                                                  "2..8 and 16")] = None,
    modes: Annotated[list[str] | None, list_option("--modes", "training modes (qat, ptq)", "qat,ptq",
                                                   "qat,ptq")] = None,
    formats: Annotated[list[str] | None, list_option("--formats", "activation formats (calibrated, pow2)",
                                                     "calibrated,pow2", "calibrated,pow2")] = None,
    int_bits: Annotated[str, typer.Option(help=INT_BITS_HELP)] = "auto",
    dataset: Annotated[str | None, typer.Option(help="mnist, idx, digits or cifar10; default: the net's own")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory (default data/<dataset>)")] = None,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="run directory for accuracy.md and accuracy.csv")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="checkpoint cache (default $QUASAR_CACHE_DIR or data/cache)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """QAT and PTQ accuracy at several bit widths, side by side (Markdown and CSV in the run directory)."""
    from models.accuracy import accuracy_table
    from models.train import BITS_RANGE

    widths = list(parse_int_list("--bits", bits, *BITS_RANGE) or DEFAULT_TABLE_BITS)
    mode_list = list(parse_list("--modes", modes) or ("qat", "ptq"))
    format_list = list(parse_list("--formats", formats) or ("calibrated", "pow2"))
    table = accuracy_table(
        net,
        widths,
        modes=mode_list,
        formats=format_list,
        int_bits=None if int_bits == "auto" else int_bits,
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        seed=seed,
        cache_dir=cache_dir,
        progress=progress,
    )
    run_dir = out if out is not None else Path("runs") / "accuracy" / f"{net}-{table.dataset}"
    run_dir.mkdir(parents=True, exist_ok=True)
    markdown = table.to_markdown()
    (run_dir / "accuracy.md").write_text(markdown + "\n")
    with open(run_dir / "accuracy.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table.rows[0]))
        writer.writeheader()
        writer.writerows(table.rows)
    (run_dir / "accuracy.json").write_text(json.dumps(table.rows, indent=2) + "\n")
    print(markdown)
    print(f"\nwrote {run_dir / 'accuracy.md'}, {run_dir / 'accuracy.csv'} and {run_dir / 'accuracy.json'}")


def _print_metrics(metrics) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics.config['net']} on {metrics.dataset} ({metrics.config['mode']})")
    table.add_column("quantity")
    table.add_column("value")
    for key, value in metrics.summary_items():
        table.add_row(key, value)
    Console().print(table)
