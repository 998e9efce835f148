"""The Yosys-only targets (xc7, xc7-nodsp, ecp5): their scripts and their cached step."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hdl_gen.synth.cache import StepContext, cached_meta, finish_step, fresh_dir, step_key
from hdl_gen.synth.tools import run_yosys

log = logging.getLogger(__name__)

YOSYS_TARGETS = ("xc7", "xc7-nodsp", "ecp5")


def read_sources(sources: Sequence[str]) -> list[str]:
    return [f"read_verilog -sv {s}" for s in sources]


def xc7_script(sources: Sequence[str], top: str, step: str, nodsp: bool) -> str:
    # Hierarchical (no -flatten): ABC maps each module once, not every one of the R*C PE copies, which
    # keeps an 8x8 array without DSPs to minutes instead of hours; docs/synth.md gives the measured cost.
    flags = "-noiopad" + (" -nodsp" if nodsp else "")
    return "\n".join([
        *read_sources(sources),
        f"synth_xilinx -family xc7 -top {top} {flags}",
        f"tee -q -o {step}/stat.json stat -json",
        "",
    ])


def ecp5_script(sources: Sequence[str], top: str, step: str, json_out: str | None = None) -> str:
    json_flag = f" -json {json_out}" if json_out else ""
    return "\n".join([
        *read_sources(sources),
        f"synth_ecp5 -top {top}{json_flag}",
        f"tee -q -o {step}/stat.json stat -json",
        "",
    ])


def yosys_scripts(ctx: StepContext) -> dict[str, str]:
    """The script of every Yosys-only target of `ctx`'s design."""
    return {"xc7": xc7_script(ctx.sources, ctx.top, "xc7", nodsp=False),
            "xc7-nodsp": xc7_script(ctx.sources, ctx.top, "xc7-nodsp", nodsp=True),
            "ecp5": ecp5_script(ctx.sources, ctx.top, "ecp5")}


def yosys_cached(ctx: StepContext, step: str) -> dict[str, Any] | None:
    """The finished step `step` if its directory still holds one for these sources, script and tools."""
    meta = cached_meta(ctx.run_dir / step, step_key(step, yosys_scripts(ctx)[step], ctx.digests, ctx.tools),
                       force=False)
    return None if meta is None else {**meta, "cached": True}


def yosys_step(ctx: StepContext, step: str) -> dict[str, Any]:
    step_dir = ctx.run_dir / step
    script = yosys_scripts(ctx)[step]
    key = step_key(step, script, ctx.digests, ctx.tools)
    meta = cached_meta(step_dir, key, ctx.force)
    if meta is not None:
        log.info("%s: cached (%s)", step, step_dir)
        return {**meta, "cached": True}
    fresh_dir(step_dir)
    (step_dir / "script.ys").write_text(script)
    log.info("%s: running Yosys ...", step)
    wall = run_yosys(step_dir / "script.ys", step_dir / "yosys.log", ctx.run_dir, step)
    log.info("%s: Yosys done in %.1f s", step, wall)
    return {**finish_step(step_dir, key, {"wall_s": {"yosys": round(wall, 2)}, "key": key}), "cached": False}
