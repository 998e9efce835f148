"""`quasar synth`, `synth-overhead`, `synth-all`, `synth-fmax`: area and timing of generated arrays.

Only argument parsing and printing live here; every check of a value happens in `hdl_gen.synth` or
`ArrayConfig`, which raise `QuasarError`s that quasar/cli.py prints as one-line errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hdl_gen.cli import ActBits, Bits, PerChannelBounds, Protection, WeightBits
from quasar.options import list_option, parse_int_list, parse_list

DEVICE_HELP = "ECP5 part for place and route: auto (smallest that fits), 25k, 45k or 85k"
KMAX_HELP = "operand-buffer depth (longest K, 1..16384); default: ArrayConfig's (1024)"
JOBS_HELP = "targets run in parallel (each target is one single-threaded tool process)"

Out = Annotated[Path, typer.Option("--out", help="output root; each design gets <out>/<config key>/")]
Targets = Annotated[list[str] | None, list_option("--targets", "flows (xc7, xc7-nodsp, ecp5, pnr)", "xc7,pnr",
                                                  "all four")]
Seed = Annotated[int, typer.Option("--seed", help="nextpnr placement seed (the one whose Fmax is reported)")]
Seeds = Annotated[list[str] | None, list_option(
    "--seeds", "more placement seeds for the Fmax spread (min/median/max; nextpnr runs once more per seed besides "
    "--seed)", "1,2,3", "--seed only")]
Net = Annotated[str, typer.Option("--net", help="network whose inference latency synth.json states (lenet, tiny, "
                                                "alexnet, ...)")]
Device = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
Force = Annotated[bool, typer.Option("--force", help="ignore cached results and run every tool again")]
Jobs = Annotated[int, typer.Option("--jobs", help=JOBS_HELP)]
Fmax = Annotated[str, typer.Option("--fmax", help="where pnr's Fmax comes from: routed (place and route) or placed "
                                            "(placement only, nextpnr's estimate; about half the time)")]
KMax = Annotated[int | None, typer.Option("--k-max", help=KMAX_HELP)]
Rows = Annotated[int, typer.Option("--rows", help="array rows (1..64)")]
Cols = Annotated[int, typer.Option("--cols", help="array columns (1..64)")]
BitsList = Annotated[list[str] | None, list_option("--bits", "bit widths (act = weight, 2-16)", "4,8,16")]
Protections = Annotated[list[str] | None, list_option("--protections", "designs (none, range)", "none,range",
                                                      "none,range")]


def synth_command(
    rows: Rows = 8,
    cols: Cols = 8,
    bits: Bits = 8,
    act_bits: ActBits = None,
    weight_bits: WeightBits = None,
    protection: Protection = "none",
    per_channel_bounds: PerChannelBounds = False,
    k_max: KMax = None,
    targets: Targets = None,
    seed: Seed = 1,
    freq: Annotated[float, typer.Option("--freq", help="nextpnr target frequency, MHz (Fmax is what it achieves)")]
    = 100.0,
    device: Device = "auto",
    out: Out = Path("runs/synth"),
    force: Force = False,
    jobs: Jobs = 1,
    fmax: Fmax = "routed",
    seeds: Seeds = None,
    net: Net = "lenet",
) -> None:
    """Synthesize one array (Yosys xc7, xc7 without DSPs, ECP5) and place and route it (nextpnr-ecp5)."""
    from hdl_gen import ArrayConfig, synth
    from quasar.errors import check_range

    for name, value in (("bits", bits), ("act-bits", act_bits), ("weight-bits", weight_bits)):
        if value is not None:
            check_range(name, value, 2, 16)
    cfg = ArrayConfig(
        rows=rows,
        cols=cols,
        act_bits=bits if act_bits is None else act_bits,
        weight_bits=bits if weight_bits is None else weight_bits,
        protection=protection,
        per_channel_bounds=per_channel_bounds,
        **({} if k_max is None else {"k_max": k_max}),
    )
    result = synth.synthesize(cfg, out, targets=parse_list("--targets", targets) or synth.TARGETS, seed=seed,
                              freq_mhz=freq, device=device, force=force, jobs=jobs, pnr_mode=fmax,
                              seeds=parse_int_list("--seeds", seeds, 0, 2147483647), net=net)
    for name, value in synth.summary_rows(result):
        typer.echo(f"{name:<10} {value}")
    typer.echo(f"wrote {Path(result['run_dir']) / 'synth.json'}")


def synth_overhead_command(
    bits: BitsList = None,
    rows: Rows = 8,
    cols: Cols = 8,
    k_max: KMax = None,
    targets: Targets = None,
    seed: Seed = 1,
    device: Device = "auto",
    out: Out = Path("runs/synth"),
    force: Force = False,
    jobs: Jobs = 1,
) -> None:
    """Protection overhead: none vs range at each bit width (LUT, FF, Fmax); writes overhead.json and .md."""
    from hdl_gen import synth

    widths = list(parse_int_list("--bits", bits, 2, 16) or synth.OVERHEAD_BITS)
    targets = parse_list("--targets", targets) or synth.TARGETS
    data = synth.protection_overhead(out, bits=widths, rows=rows, cols=cols, k_max=k_max, targets=targets,
                                     seed=seed, device=device, force=force, jobs=jobs)
    typer.echo(synth.overhead_markdown(data))
    typer.echo(f"wrote {Path(out) / 'overhead.json'} and {Path(out) / 'overhead.md'}")


def synth_all_command(
    bits: BitsList = None,
    protections: Protections = None,
    rows: Rows = 8,
    cols: Cols = 8,
    k_max: KMax = None,
    targets: Targets = None,
    seed: Seed = 1,
    device: Device = "auto",
    out: Out = Path("runs/synth"),
    force: Force = False,
    jobs: Jobs = 1,
    seeds: Seeds = None,
) -> None:
    """The whole grid (bits 2..8 and 16 x protection none/range by default); writes grid.json and grid.md."""
    from hdl_gen import synth

    widths = list(parse_int_list("--bits", bits, 2, 16) or synth.GRID_BITS)
    prots = list(parse_list("--protections", protections) or ("none", "range"))
    data = synth.synth_grid(out, bits=widths, protections=prots, rows=rows, cols=cols, k_max=k_max,
                            targets=parse_list("--targets", targets) or synth.TARGETS, seed=seed, device=device,
                            force=force, jobs=jobs, seeds=parse_int_list("--seeds", seeds, 0, 2147483647))
    typer.echo(synth.grid_markdown(data))
    typer.echo(f"wrote {Path(out) / 'grid.json'} and {Path(out) / 'grid.md'}")


def synth_fmax_command(
    bits: BitsList = None,
    protections: Protections = None,
    rows: Rows = 8,
    cols: Cols = 8,
    k_max: KMax = None,
    seed: Seed = 1,
    device: Device = "auto",
    out: Out = Path("runs/synth"),
    jobs: Annotated[int, typer.Option("--jobs", help="nextpnr runs at once (each is one single-threaded process)")]
    = 2,
) -> None:
    """Fmax after placement only vs after place and route, for every design of the grid; writes fmax_modes.json/.md."""
    from hdl_gen import synth

    widths = list(parse_int_list("--bits", bits, 2, 16) or synth.GRID_BITS)
    prots = list(parse_list("--protections", protections) or ("none", "range"))
    data = synth.fmax_modes(out, bits=widths, protections=prots, rows=rows, cols=cols, k_max=k_max, seed=seed,
                            device=device, jobs=jobs)
    typer.echo(synth.fmax_modes_markdown(data))
    typer.echo(f"wrote {Path(out) / 'fmax_modes.json'} and {Path(out) / 'fmax_modes.md'}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
    app.command("synth-overhead")(synth_overhead_command)
    app.command("synth-all")(synth_all_command)
    app.command("synth-fmax")(synth_fmax_command)
