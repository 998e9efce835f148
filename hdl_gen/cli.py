"""`quasar gen-rtl`: write one generated array (Verilog, fault_sites.json, config.json) to a directory.

Only argument parsing lives here; validation is ArrayConfig's, generation is hdl_gen.rtl's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The design options, shared by every command that builds an array (gen-rtl, synth).
Bits = Annotated[int, typer.Option("--bits", help="activation and weight bits (2..16)")]
ActBits = Annotated[int | None, typer.Option("--act-bits", help="activation bits, overrides --bits")]
WeightBits = Annotated[int | None, typer.Option("--weight-bits", help="weight bits, overrides --bits")]
Protection = Annotated[str, typer.Option(
    "--protection", help="none, range, or a protection spec range[:clamp|zero][:act|acc][:layer|channel]")]
PerChannelBounds = Annotated[bool, typer.Option("--per-channel-bounds", help="one (lo, hi) pair per output column")]
Requant = Annotated[str, typer.Option("--requant", help="mul (multiplier M and shift S) | shift (M = 1, no "
                                                        "multiplier: the pow2 format, docs/arithmetic.md)")]


def gen_rtl(
    out: Annotated[Path, typer.Option("--out", help="output directory (created if missing)")],
    rows: Annotated[int, typer.Option("--rows", help="array rows (1..64)")] = 8,
    cols: Annotated[int, typer.Option("--cols", help="array columns (1..64)")] = 8,
    bits: Bits = 8,
    act_bits: ActBits = None,
    weight_bits: WeightBits = None,
    protection: Protection = "none",
    per_channel_bounds: PerChannelBounds = False,
    k_max: Annotated[int, typer.Option("--k-max", help="longest reduction K the array supports (1..16384)")] = 1024,
    requant: Requant = "mul",
) -> None:
    """Generate the systolic-array RTL, its fault-site map and config.json."""
    from hdl_gen.config import MAX_BITS, MIN_BITS, ArrayConfig
    from hdl_gen.rtl import generate
    from quasar.errors import check_range

    check_range("bits", bits, MIN_BITS, MAX_BITS)  # name the option the user typed

    cfg = ArrayConfig(
        rows=rows,
        cols=cols,
        act_bits=bits if act_bits is None else act_bits,
        weight_bits=bits if weight_bits is None else weight_bits,
        k_max=k_max,
        protection=protection,
        per_channel_bounds=per_channel_bounds,
        requant=requant,
    )
    design = generate(cfg, out)
    typer.echo(f"wrote {len(design.sources)} Verilog file(s), {design.sites_path.name} and "
               f"{design.config_path.name} to {design.out_dir} (top {design.top}, key {cfg.key()})")


def register(app: typer.Typer) -> None:
    from hdl_gen.synth import formats as synth_formats

    app.command("gen-rtl")(gen_rtl)
    synth_formats.register(app)  # `quasar synth-formats`: shift-only vs multiplier datapath
