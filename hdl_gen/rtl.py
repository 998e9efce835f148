"""Veriloggen generators of the output-stationary systolic array (docs/rtl.md is the specification).

One `make_<block>(cfg)` builder per hardware block, one file per Verilog module (Verilator's
DECLFILENAME rule), module names derived from the config. `generate()` writes the Verilog, the
fault-site map and config.json. This module never runs a simulator or a synthesis tool.

Signed arithmetic is written with explicit sign extension to the result width, so every operator
sees operands of one width (Verilator -Wall clean) and the low bits of a two's-complement product
or sum are exact whatever the operands' declared signedness.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import veriloggen as vg
from pyverilog.ast_code_generator.codegen import ASTCodeGenerator
from pyverilog.vparser import ast as vast
from veriloggen import Cat, Int, Module, Mux, Repeat, Signed, Sra, When
from veriloggen.verilog.to_verilog import VerilogModuleVisitor

from hdl_gen.config import ArrayConfig

TOP = "quasar_array"
VIOL_BITS = 32


@dataclass
class Design:
    """A generated design on disk."""

    out_dir: Path
    top: str
    sources: list[Path] = field(default_factory=list)  # HDL top last
    sites_path: Path = Path()
    config_path: Path = Path()
    ports: list[str] = field(default_factory=list)  # the top's ports, in declaration order


# ---- small expression helpers ---------------------------------------------------------------------
def _sext(x, width_in: int, width_out: int):
    """Sign-extend the `width_in`-bit vector `x` to `width_out` bits (an unsigned concatenation)."""
    if width_out == width_in:
        return x
    return Cat(Repeat(x[width_in - 1], width_out - width_in), x)


def _zext(x, width_in: int, width_out: int):
    if width_out == width_in:
        return x
    return Cat(Int(0, width_out - width_in), x)


def _lane(vec, index: int, width: int):
    """Field `index` of a packed vector of `width`-bit fields: vec[index*width +: width]."""
    return vec[index * width : (index + 1) * width]


def _waive(m: Module, rule: str, why: str):
    """Open a narrow Verilator lint waiver in the generated text (closed by `_unwaive`)."""
    m.EmbeddedCode(f"// {why}\n  // verilator lint_off {rule}")


def _unwaive(m: Module, rule: str):
    m.EmbeddedCode(f"// verilator lint_on {rule}")


# ---- blocks -------------------------------------------------------------------------------------
def pe_name(cfg: ArrayConfig) -> str:
    return f"quasar_pe_{cfg.suffix()}"


def postproc_name(cfg: ArrayConfig) -> str:
    return f"quasar_postproc_v{cfg.v_bits}a{cfg.act_bits}"


def requant_mul_name(cfg: ArrayConfig) -> str:
    return f"quasar_requant_mul_v{cfg.v_bits}"


def protect_name(cfg: ArrayConfig) -> str:
    return f"quasar_protect_c{cfg.cols}a{cfg.act_bits}{'pc' if cfg.per_channel_bounds else ''}"


def make_pe(cfg: ArrayConfig) -> Module:
    """One processing element: registered activation (forwarded right), weight (forwarded down) and a
    signed accumulator of a_reg * w_reg. `clr` zeroes all three (reset, or the start of a tile run)."""
    a_bits, w_bits, acc_bits = cfg.act_bits, cfg.weight_bits, cfg.acc_bits
    prod_bits = a_bits + w_bits
    m = Module(pe_name(cfg))
    clk = m.Input("clk")
    clr = m.Input("clr")
    a_in = m.Input("a_in", a_bits)
    w_in = m.Input("w_in", w_bits)
    a_out = m.Output("a_out", a_bits)
    w_out = m.Output("w_out", w_bits)
    acc_out = m.Output("acc_out", acc_bits)
    a_reg = m.Reg("a_reg", a_bits)
    w_reg = m.Reg("w_reg", w_bits)
    acc = m.Reg("acc", acc_bits)
    prod = m.Wire("prod", prod_bits, signed=True)
    # unsigned activation x signed weight: both extended to the exact product width A+W
    prod.assign(Signed(_zext(a_reg, a_bits, prod_bits)) * Signed(_sext(w_reg, w_bits, prod_bits)))
    m.Always(vg.Posedge(clk))(
        vg.If(clr)(a_reg(Int(0, a_bits)), w_reg(Int(0, w_bits)), acc(Int(0, acc_bits))).Else(
            a_reg(a_in), w_reg(w_in), acc(acc + _sext(prod, prod_bits, acc_bits))
        )
    )
    a_out.assign(a_reg)
    w_out.assign(w_reg)
    acc_out.assign(acc)
    return m


def make_requant_mul(cfg: ArrayConfig) -> Module:
    """The requantization product p = v * M of one biased accumulator (signed V bits times unsigned 16-bit
    M, exact in V + 16 bits), combinational.

    Its own module so that hierarchical synthesis maps it on its own: ABC9 on the product and the
    shift/round/saturate cone behind it as one piece took 5-7x longer for the same LUT count
    (docs/synth.md, "Why the multiplier is a module")."""
    v_bits = cfg.v_bits
    p_bits = v_bits + cfg.M_BITS  # |v * M| < 2^(V-1) * 2^16
    m = Module(requant_mul_name(cfg))
    v = m.Input("v", v_bits)
    mult = m.Input("mult", cfg.M_BITS)
    p = m.Output("p", p_bits)
    p.assign(Signed(_sext(v, v_bits, p_bits)) * Signed(_zext(mult, cfg.M_BITS, p_bits)))
    return m


def make_postproc(cfg: ArrayConfig, mul: Module) -> Module:
    """Requantization, ReLU and saturation of one biased accumulator (docs/arithmetic.md), combinational:
    y = clamp(round_half_up(v * M / 2^S), 0, 2^A - 1), the rounding as floor((floor(p / 2^(S-1)) + 1) / 2)
    for S > 0, which equals floor((p + 2^(S-1)) / 2^S) without a 64-bit rounding constant. The product
    p = v * M comes from the `mul` instance (`make_requant_mul`)."""
    v_bits, a_bits = cfg.v_bits, cfg.act_bits
    p_bits = v_bits + cfg.M_BITS
    m = Module(postproc_name(cfg))
    v = m.Input("v", v_bits)
    mult = m.Input("mult", cfg.M_BITS)
    shift = m.Input("shift", cfg.S_BITS)
    y = m.Output("y", a_bits)
    p = m.Wire("p", p_bits, signed=True)
    m.Instance(mul, "mul", ports=[("v", v), ("mult", mult), ("p", p)])
    shift_m1 = m.Wire("shift_m1", cfg.S_BITS)
    shift_m1.assign(shift - Int(1, cfg.S_BITS))
    t = m.Wire("t", p_bits, signed=True)
    t.assign(Sra(p, shift_m1))
    t_inc = m.Wire("t_inc", p_bits + 1, signed=True)
    t_inc.assign(_sext(t, p_bits, p_bits + 1) + Int(1, p_bits + 1))
    # its own wire: inside ?: with an unsigned operand, `>>>` would turn into a logical shift
    r_round = m.Wire("r_round", p_bits + 1, signed=True)
    r_round.assign(Sra(t_inc, Int(1, 1)))
    r = m.Wire("r", p_bits + 1)
    r.assign(Mux(shift == Int(0, cfg.S_BITS), _sext(p, p_bits, p_bits + 1), r_round))
    negative = r[p_bits]
    too_big = vg.Uor(r[a_bits:p_bits])
    y.assign(Mux(negative, Int(0, a_bits), Mux(too_big, Int((1 << a_bits) - 1, a_bits), r[0:a_bits])))
    return m


def make_protect(cfg: ArrayConfig) -> Module:
    """Range restriction of one row of C output activations plus the tile run's violation counter.

    z_j = lo_j if y_j < lo_j, hi_j if y_j > hi_j, else y_j; `viol_count` adds the number of lanes
    clamped whenever `valid`, is zeroed by `clear` (start of a run) and `rst`, and wraps at 2^32
    (a run clamps at most rows * cols values)."""
    a_bits, cols, lanes = cfg.act_bits, cfg.cols, cfg.bound_lanes
    n_bits = max(1, (cols).bit_length())
    m = Module(protect_name(cfg))
    clk = m.Input("clk")
    rst = m.Input("rst")
    clear = m.Input("clear")
    valid = m.Input("valid")
    y = m.Input("y", cols * a_bits)
    lo = m.Input("lo", lanes * a_bits)
    hi = m.Input("hi", lanes * a_bits)
    z = m.Output("z", cols * a_bits)
    viol_count = m.OutputReg("viol_count", VIOL_BITS)
    zs, flags = [], []
    for j in range(cols):
        yj = _lane(y, j, a_bits)
        lj = _lane(lo, j if lanes > 1 else 0, a_bits)
        hj = _lane(hi, j if lanes > 1 else 0, a_bits)
        below = m.Wire(f"below_{j}")
        above = m.Wire(f"above_{j}")
        zj = m.Wire(f"z_{j}", a_bits)
        below.assign(yj < lj)
        above.assign(yj > hj)
        zj.assign(Mux(below, lj, Mux(above, hj, yj)))
        zs.append(zj)
        flags.append(_zext(below | above, 1, n_bits))
    z.assign(Cat(*reversed(zs)))
    n_viol = m.Wire("n_viol", n_bits)
    total = flags[0]
    for f in flags[1:]:
        total = total + f
    n_viol.assign(total)
    m.Always(vg.Posedge(clk))(
        vg.If(vg.Lor(rst, clear))(viol_count(Int(0, VIOL_BITS))).Elif(valid)(
            viol_count(viol_count + _zext(n_viol, n_bits, VIOL_BITS))
        )
    )
    return m


def make_top(cfg: ArrayConfig, pe: Module, postproc: Module, protect: Module | None) -> Module:
    """The array with its operand buffers, sequencer, drain and (optionally) protection; docs/rtl.md."""
    R, C, A, W = cfg.rows, cfg.cols, cfg.act_bits, cfg.weight_bits
    ACC, V, KB, CB, AB, RB = cfg.acc_bits, cfg.v_bits, cfg.k_bits, cfg.cyc_bits, cfg.addr_bits, cfg.row_bits
    m = Module(TOP)
    _waive(m, "UNUSEDPARAM", "the config's constants, for readers and tools; the widths below are already resolved")
    for name, value in cfg.verilog_params().items():
        m.Localparam(name, value)
    _unwaive(m, "UNUSEDPARAM")

    clk = m.Input("clk")
    rst = m.Input("rst")
    start = m.Input("start")
    k = m.Input("k", KB)
    busy_out = m.Output("busy")
    done_out = m.Output("done")
    bias = m.Input("bias", C * ACC)
    mult = m.Input("mult", C * cfg.M_BITS)
    shift = m.Input("shift", C * cfg.S_BITS)
    if cfg.protected:
        lo = m.Input("lo", cfg.bound_lanes * A)
        hi = m.Input("hi", cfg.bound_lanes * A)
    out_act = m.Output("out_act", R * C * A)
    out_logit = m.Output("out_logit", R * C * V)
    viol_count = m.Output("viol_count", VIOL_BITS)
    ld_en = m.Input("ld_en")
    ld_sel = m.Input("ld_sel")  # 0: abuf, 1: wbuf
    ld_addr = m.Input("ld_addr", AB)
    ld_data = m.Input("ld_data", cfg.ld_bits)

    # operand buffers: word kk of abuf holds X[i, kk] at [i*A +: A]; word kk of wbuf holds Wt[kk, j] at [j*W +: W]
    abuf = m.Reg("abuf", R * A, dims=cfg.k_max)
    wbuf = m.Reg("wbuf", C * W, dims=cfg.k_max)
    m.Always(vg.Posedge(clk))(
        vg.If(ld_en)(
            vg.If(ld_sel)(wbuf[ld_addr](ld_data[0 : C * W])).Else(abuf[ld_addr](ld_data[0 : R * A]))
        )
    )

    # ---- sequencer ---------------------------------------------------------------------------
    # internal registers behind the busy/done ports: a testbench deposit into a top-level port
    # variable would be overwritten by the simulator, into these it sticks like a real upset
    busy = m.Reg("busy_r")
    done = m.Reg("done_r")
    busy_out.assign(busy)
    done_out.assign(done)
    go = m.Wire("go")
    go.assign(vg.Land(start, vg.Not(busy)))
    clr = m.Wire("clr")
    clr.assign(vg.Lor(rst, go))
    k_reg = m.Reg("k_reg", KB)
    cyc = m.Reg("cyc", CB)
    k_ext = m.Wire("k_ext", CB)
    k_ext.assign(_zext(k_reg, KB, CB))
    feed = m.Wire("feed")
    feed.assign(vg.Land(busy, cyc < k_ext))
    t_drain = m.Wire("t_drain", CB)  # the cycle-counter value at the edge that samples row 0's accumulators
    t_drain.assign(k_ext + Int(C + 1, CB))
    d_rel = m.Wire("d_rel", CB)
    d_rel.assign(cyc - t_drain)
    drain = m.Wire("drain")
    drain.assign(vg.AndList(busy, cyc >= t_drain, d_rel < Int(R, CB)))
    v_valid = m.Reg("v_valid")
    v_row = m.Reg("v_row", RB)
    o_valid = m.Reg("o_valid")
    o_row = m.Reg("o_row", RB)
    last = m.Wire("last")
    last.assign(vg.Land(o_valid, o_row == Int(R - 1, RB)))
    m.Always(vg.Posedge(clk))(
        vg.If(rst)(busy(Int(0, 1)), done(Int(0, 1)), cyc(Int(0, CB)), k_reg(Int(0, KB)))
        .Elif(go)(busy(Int(1, 1)), done(Int(0, 1)), cyc(Int(0, CB)), k_reg(k))
        .Elif(busy)(
            cyc(cyc + Int(1, CB)),
            vg.If(last)(busy(Int(0, 1)), done(Int(1, 1))),
        )
    )
    m.Always(vg.Posedge(clk))(
        vg.If(clr)(v_valid(Int(0, 1)), v_row(Int(0, RB)), o_valid(Int(0, 1)), o_row(Int(0, RB))).Else(
            v_valid(drain), v_row(d_rel[0:RB]), o_valid(v_valid), o_row(v_row)
        )
    )

    # ---- operand feed and skew: row i's activations arrive i cycles late, column j's weights j ----
    a_word = m.Reg("a_word", R * A)
    w_word = m.Reg("w_word", C * W)
    m.Always(vg.Posedge(clk))(
        vg.If(vg.Lor(clr, vg.Not(feed)))(a_word(Int(0, R * A)), w_word(Int(0, C * W))).Else(
            a_word(abuf[cyc[0:AB]]), w_word(wbuf[cyc[0:AB]])
        )
    )
    a_west, w_north, skew_regs, skew_next = [], [], [], []
    for i in range(R):
        src = _lane(a_word, i, A)
        for s in range(i):
            r = m.Reg(f"askew_{i}_{s}", A)
            skew_regs.append((r, A))
            skew_next.append(src)
            src = r
        a_west.append(src)
    for j in range(C):
        src = _lane(w_word, j, W)
        for s in range(j):
            r = m.Reg(f"wskew_{j}_{s}", W)
            skew_regs.append((r, W))
            skew_next.append(src)
            src = r
        w_north.append(src)
    if skew_regs:
        m.Always(vg.Posedge(clk))(
            vg.If(clr)(*[r(Int(0, n)) for r, n in skew_regs]).Else(
                *[r(s) for (r, _), s in zip(skew_regs, skew_next, strict=True)]
            )
        )

    # ---- the PE grid --------------------------------------------------------------------------
    a_wire = [[m.Wire(f"pa_{i}_{j}", A) for j in range(C)] for i in range(R)]
    w_wire = [[m.Wire(f"pw_{i}_{j}", W) for j in range(C)] for i in range(R)]
    acc_wire = [[m.Wire(f"pacc_{i}_{j}", ACC) for j in range(C)] for i in range(R)]
    _waive(m, "UNUSEDSIGNAL", "the east edge's activations and the south edge's weights leave the array unused")
    a_east = [m.Wire(f"a_east_{i}", A) for i in range(R)]
    w_south = [m.Wire(f"w_south_{j}", W) for j in range(C)]
    _unwaive(m, "UNUSEDSIGNAL")
    for i in range(R):
        for j in range(C):
            m.Instance(
                pe,
                f"pe_{i}_{j}",
                ports=[
                    ("clk", clk),
                    ("clr", clr),
                    ("a_in", a_west[i] if j == 0 else a_wire[i][j - 1]),
                    ("w_in", w_north[j] if i == 0 else w_wire[i - 1][j]),
                    ("a_out", a_wire[i][j]),
                    ("w_out", w_wire[i][j]),
                    ("acc_out", acc_wire[i][j]),
                ],
            )
    for i in range(R):
        a_east[i].assign(a_wire[i][C - 1])
    for j in range(C):
        w_south[j].assign(w_wire[R - 1][j])

    # ---- drain, stage 1: v_j = acc(row, j) + bias_j, row by row ---------------------------------
    v_regs = [m.Reg(f"v_{j}", V) for j in range(C)]
    bias_j = [m.Wire(f"bias_{j}", ACC) for j in range(C)]
    for j in range(C):
        bias_j[j].assign(_lane(bias, j, ACC))
    cases = []
    for i in range(R):
        cases.append(
            When(Int(i, RB))(
                *[
                    v_regs[j](_sext(acc_wire[i][j], ACC, V) + _sext(bias_j[j], ACC, V))
                    for j in range(C)
                ]
            )
        )
    if (1 << RB) != R:
        cases.append(When()(*[v_regs[j](v_regs[j]) for j in range(C)]))
    m.Always(vg.Posedge(clk))(vg.If(drain)(vg.Case(d_rel[0:RB])(*cases)))

    # ---- stage 2: requantize into the output-activation registers, capture logits ---------------
    y_wire = []
    for j in range(C):
        yj = m.Wire(f"y_{j}", A)
        m.Instance(
            postproc,
            f"pp_{j}",
            ports=[
                ("v", v_regs[j]),
                ("mult", _lane(mult, j, cfg.M_BITS)),
                ("shift", _lane(shift, j, cfg.S_BITS)),
                ("y", yj),
            ],
        )
        y_wire.append(yj)
    oact = [m.Reg(f"oact_{j}", A) for j in range(C)]
    lrow = [m.Reg(f"lrow_{i}", C * V) for i in range(R)]
    v_cat = Cat(*reversed(v_regs))
    logit_cases = [When(Int(i, RB))(lrow[i](v_cat)) for i in range(R)]
    if (1 << RB) != R:
        logit_cases.append(When()(*[lrow[i](lrow[i]) for i in range(R)]))
    m.Always(vg.Posedge(clk))(
        vg.If(rst)(*[o(Int(0, A)) for o in oact], *[lr(Int(0, C * V)) for lr in lrow]).Elif(v_valid)(
            *[oact[j](y_wire[j]) for j in range(C)], vg.Case(v_row)(*logit_cases)
        )
    )

    # ---- stage 3: protection (the last stage), output rows ---------------------------------------
    oact_cat = Cat(*reversed(oact))
    if protect is not None:
        z = m.Wire("z", C * A)
        vc = m.Wire("prot_viol_count", VIOL_BITS)
        m.Instance(
            protect,
            "prot",
            ports=[
                ("clk", clk),
                ("rst", rst),
                ("clear", go),
                ("valid", o_valid),
                ("y", oact_cat),
                ("lo", lo),
                ("hi", hi),
                ("z", z),
                ("viol_count", vc),
            ],
        )
        viol_count.assign(vc)
        row_value = z
    else:
        viol_count.assign(Int(0, VIOL_BITS))  # no protection, no counter: documented as always zero
        row_value = oact_cat
    orow = [m.Reg(f"orow_{i}", C * A) for i in range(R)]
    out_cases = [When(Int(i, RB))(orow[i](row_value)) for i in range(R)]
    if (1 << RB) != R:
        out_cases.append(When()(*[orow[i](orow[i]) for i in range(R)]))
    m.Always(vg.Posedge(clk))(
        vg.If(rst)(*[o(Int(0, C * A)) for o in orow]).Elif(o_valid)(vg.Case(o_row)(*out_cases))
    )
    out_act.assign(Cat(*reversed(orow)))
    out_logit.assign(Cat(*reversed(lrow)))
    return m


# ---- fault sites ----------------------------------------------------------------------------------
def fault_sites(cfg: ArrayConfig) -> list[dict[str, object]]:
    """Every fault-injectable register: dotted name relative to the top (the cocotb `dut`), width, kind,
    position. Kinds: pe_activation, weight, accumulator (PE accumulators and the drain's v_j),
    output_activation (oact_j, ahead of the protection) and control (sequencer state)."""
    R, C = cfg.rows, cfg.cols
    sites: list[dict[str, object]] = []

    def add(name: str, width: int, kind: str, row: int | None, col: int | None) -> None:
        sites.append({"name": name, "width": width, "kind": kind, "row": row, "col": col})

    for i in range(R):
        for j in range(C):
            add(f"pe_{i}_{j}.a_reg", cfg.act_bits, "pe_activation", i, j)
    for j in range(C):
        add(f"oact_{j}", cfg.act_bits, "output_activation", None, j)
    for i in range(R):
        for j in range(C):
            add(f"pe_{i}_{j}.w_reg", cfg.weight_bits, "weight", i, j)
    for i in range(R):
        for j in range(C):
            add(f"pe_{i}_{j}.acc", cfg.acc_bits, "accumulator", i, j)
    for j in range(C):
        add(f"v_{j}", cfg.v_bits, "accumulator", None, j)
    for name, width in (
        ("busy_r", 1),
        ("done_r", 1),
        ("cyc", cfg.cyc_bits),
        ("k_reg", cfg.k_bits),
        ("v_valid", 1),
        ("v_row", cfg.row_bits),
        ("o_valid", 1),
        ("o_row", cfg.row_bits),
    ):
        add(name, width, "control", None, None)
    return sites


def vpi_signals(cfg: ArrayConfig, ports: list[str]) -> dict[str, list[str]]:
    """{module name: variables} a testbench reaches over VPI: the top's ports, the operand buffers and
    every fault site. A simulator build makes exactly these public (testbenches/sim.py)."""
    signals: dict[str, list[str]] = {TOP: [*ports, "abuf", "wbuf"]}
    for site in fault_sites(cfg):
        name = str(site["name"])
        module, var = (pe_name(cfg), name.split(".", 1)[1]) if "." in name else (TOP, name)
        if var not in signals.setdefault(module, []):
            signals[module].append(var)
    return signals


def design_info(cfg: ArrayConfig) -> dict[str, object]:
    return {
        **cfg.to_dict(),
        "key": cfg.key(),
        "top": TOP,
        "acc_bits": cfg.acc_bits,
        "v_bits": cfg.v_bits,
        "k_bits": cfg.k_bits,
        "tile_cycles": f"k + {cfg.tile_cycles(1) - 1}",
    }


# ---- writing --------------------------------------------------------------------------------------
def module_verilog(module: Module) -> str:
    """The Verilog of `module` alone (veriloggen's to_verilog() also emits every submodule)."""
    visitor = VerilogModuleVisitor(False)
    source = vast.Source(None, vast.Description([visitor.visit(module)]))
    return ASTCodeGenerator().visit(source)


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so a concurrent reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


HEADER = "// Generated by QuaSAR hdl_gen from {key}; do not edit. See docs/rtl.md.\n"


def generate(cfg: ArrayConfig, out_dir: str | os.PathLike[str]) -> Design:
    """Generate the design for `cfg` into `out_dir`: one .v per module (top last), fault_sites.json,
    config.json (exactly `cfg.to_dict()`, so `ArrayConfig.from_dict` reads it back)."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    vg.reset()
    pe = make_pe(cfg)
    mul = make_requant_mul(cfg)
    postproc = make_postproc(cfg, mul)
    protect = make_protect(cfg) if cfg.protected else None
    top = make_top(cfg, pe, postproc, protect)
    header = HEADER.format(key=cfg.key())
    sources = []
    for module in [pe, mul, postproc, protect, top]:
        if module is None:
            continue
        path = out / f"{module.name}.v"
        _write_atomic(path, header + module_verilog(module))
        sources.append(path)
    sites_path = out / "fault_sites.json"
    _write_atomic(sites_path, json.dumps({"design": design_info(cfg), "sites": fault_sites(cfg)}, indent=1) + "\n")
    config_path = out / "config.json"
    _write_atomic(config_path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    ports = list(top.get_ports())
    return Design(out_dir=out, top=TOP, sources=sources, sites_path=sites_path, config_path=config_path, ports=ports)
