"""`quasar signoff`: sign off one protected design (docs/signoff.md). Argument parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hdl_gen.cli import ActBits, Bits, PerChannelBounds, WeightBits


def signoff_command(
    rows: Annotated[int, typer.Option("--rows", help="array rows (1..64)")] = 8,
    cols: Annotated[int, typer.Option("--cols", help="array columns (1..64)")] = 8,
    bits: Bits = 8,
    act_bits: ActBits = None,
    weight_bits: WeightBits = None,
    k_max: Annotated[int, typer.Option("--k-max", help="longest reduction K (1..16384)")] = 1024,
    protection: Annotated[str, typer.Option("--protection", help="protection spec: range, range:zero, "
                                                                 "range:clamp:acc:channel, ... (docs/arithmetic.md)")]
    = "range",
    per_channel_bounds: PerChannelBounds = False,
    tiles: Annotated[int, typer.Option("--tiles", help="random tiles of the golden check")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulator checks")] = 1,
    synth: Annotated[bool, typer.Option("--synth/--no-synth", help="measure the synthesis overhead")] = True,
    synth_targets: Annotated[str, typer.Option("--synth-targets", help="comma-separated: xc7, xc7-nodsp, ecp5, pnr")]
    = "xc7,pnr",
    fmax: Annotated[str, typer.Option("--fmax", help="pnr Fmax: placed (faster) or routed")] = "placed",
    out: Annotated[Path | None, typer.Option("--out", help="report directory (default runs/signoff/<key>)")] = None,
) -> None:
    """Sign off a protected design: lint, formal proof, golden and injection checks, synthesis overhead."""
    from hdl_gen.config import MAX_BITS, MIN_BITS, ArrayConfig
    from hdl_gen.signoff.run import signoff
    from quasar.errors import check_range
    from quasar.protection import ProtectionSpec

    check_range("bits", bits, MIN_BITS, MAX_BITS)
    spec = ProtectionSpec.parse(protection, "channel" if per_channel_bounds else None)
    cfg = ArrayConfig.from_spec(spec, rows=rows, cols=cols, act_bits=bits if act_bits is None else act_bits,
                                weight_bits=bits if weight_bits is None else weight_bits, k_max=k_max)
    out = out or Path("runs") / "signoff" / cfg.key()
    report = signoff(cfg, out, tiles=tiles, seed=seed, synth=synth, synth_targets=synth_targets, pnr_mode=fmax)
    for item in report.items:
        typer.echo(f"{item.status.upper():>7}  {item.name:<10} {item.summary}")
    typer.echo(f"sign-off {'PASSED' if report.passed else 'FAILED'} for {cfg.spec} ({report.wall_s:.1f} s); "
               f"report {out / 'signoff.md'}")
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("signoff")(signoff_command)
