"""The per-element and per-column units of the array: PE, requantization product, post-processing
and range protection (docs/rtl.md, "Modules and files"). One `make_<unit>(cfg)` per Verilog module;
the top (hdl_gen.rtl.top) instantiates them. Never writes files."""

from __future__ import annotations

import veriloggen as vg
from veriloggen import Cat, Int, Module, Mux, Signed, Sra

from hdl_gen.config import ArrayConfig
from hdl_gen.rtl.common import (
    VIOL_BITS,
    lane,
    pe_name,
    postproc_name,
    protect_name,
    requant_mul_name,
    sext,
    zext,
)


def make_pe(cfg: ArrayConfig) -> Module:
    """One processing element: registered activation (forwarded right), weight (forwarded down), their
    copies a_op/w_op (the multiplier's operands), the registered product p_reg = a_op * w_op, and a signed
    accumulator acc += p_reg. The product register takes the multiplier out of the accumulator's
    carry-chain path; the operand registers take the route from a_reg/w_reg (placed between this PE's
    neighbours) to the multiplier's DSP site out of the multiplier's cycle, so that a_op, w_op and p_reg
    may sit by the DSP (a_reg -> DSP -> p_reg, 8 ns of its 12.6 ns routing, was the routed 8x8 critical
    path). nextpnr mostly places them by the accumulator instead, so the DSP's routes remain the most
    frequent critical path (docs/rtl.md "Fmax").
    `clr_in` is the array's clear, one edge late per PE: `clr_r` takes it, zeroes all six registers at the
    next edge and passes it on (`clr_out`) to the next PE, so no clear net spans the array (a clear fanned
    out to every PE register was the routed 8x8 critical path, docs/rtl.md "Fmax")."""
    a_bits, w_bits, acc_bits = cfg.act_bits, cfg.weight_bits, cfg.acc_bits
    prod_bits = a_bits + w_bits
    m = Module(pe_name(cfg))
    clk = m.Input("clk")
    clr_in = m.Input("clr_in")
    clr_out = m.Output("clr_out")
    a_in = m.Input("a_in", a_bits)
    w_in = m.Input("w_in", w_bits)
    a_out = m.Output("a_out", a_bits)
    w_out = m.Output("w_out", w_bits)
    acc_out = m.Output("acc_out", acc_bits)
    a_reg = m.Reg("a_reg", a_bits)
    w_reg = m.Reg("w_reg", w_bits)
    a_op = m.Reg("a_op", a_bits)
    w_op = m.Reg("w_op", w_bits)
    p_reg = m.Reg("p_reg", prod_bits)
    acc = m.Reg("acc", acc_bits)
    prod = m.Wire("prod", prod_bits, signed=True)
    # unsigned activation x signed weight: both extended to the exact product width A+W
    prod.assign(Signed(zext(a_op, a_bits, prod_bits)) * Signed(sext(w_op, w_bits, prod_bits)))
    clr = m.Reg("clr_r")
    m.Always(vg.Posedge(clk))(clr(clr_in))
    clr_out.assign(clr)
    m.Always(vg.Posedge(clk))(
        vg.If(clr)(
            a_reg(Int(0, a_bits)), w_reg(Int(0, w_bits)), a_op(Int(0, a_bits)), w_op(Int(0, w_bits)),
            p_reg(Int(0, prod_bits)), acc(Int(0, acc_bits)),
        ).Else(
            a_reg(a_in), w_reg(w_in), a_op(a_reg), w_op(w_reg), p_reg(prod), acc(acc + sext(p_reg, prod_bits, acc_bits))
        )
    )
    a_out.assign(a_reg)
    w_out.assign(w_reg)
    acc_out.assign(acc)
    return m


def make_requant_mul(cfg: ArrayConfig) -> Module:
    """The requantization product of one biased accumulator as two partial products, combinational:
    pl = v_lo * M (v_lo = v[LO-1:0] unsigned; LO + 16 bits, unsigned) and ph = v_hi * M (v_hi = v >> LO,
    signed; V - LO + 16 bits, signed), so v * M = ph * 2^LO + pl (LO = cfg.lo_bits).

    Each partial product fits one signed 18x18 multiplier (MULT18X18D on ECP5 at V <= 35), so the adder
    of the partial products is not in the multipliers' cycle: the post-processing registers pl and ph and
    adds them one edge later (docs/rtl.md, "Fmax"). Its own module so that hierarchical synthesis maps it
    on its own: ABC9 on the product and the shift/round/saturate cone behind it as one piece took 5-7x
    longer for the same LUT count (docs/synth.md, "Why the multiplier is a module")."""
    v_bits, lo, pl_bits, ph_bits = cfg.v_bits, cfg.lo_bits, cfg.pl_bits, cfg.ph_bits
    m = Module(requant_mul_name(cfg))
    v = m.Input("v", v_bits)
    mult = m.Input("mult", cfg.M_BITS)
    pl = m.Output("pl", pl_bits)
    ph = m.Output("ph", ph_bits)
    v_lo = m.Wire("v_lo", lo)
    v_hi = m.Wire("v_hi", v_bits - lo)
    v_lo.assign(v[0:lo])
    v_hi.assign(v[lo:v_bits])
    # |v_lo * M| < 2^LO * 2^16 and |v_hi * M| <= 2^(V-LO-1) * (2^16 - 1): both exact in their widths
    pl.assign(zext(v_lo, lo, pl_bits) * zext(mult, cfg.M_BITS, pl_bits))
    ph.assign(Signed(sext(v_hi, v_bits - lo, ph_bits)) * Signed(zext(mult, cfg.M_BITS, ph_bits)))
    return m


def make_postproc(cfg: ArrayConfig, mul: Module) -> Module:
    """Requantization, ReLU and saturation of one biased accumulator (docs/arithmetic.md), as a
    four-register pipeline: y = clamp(round_half_up(v * M / 2^S), 0, 2^A - 1).

    - `v_reg` (V bits) takes v: the multipliers' operand from a flip-flop next to them, not from the
      drain's v_j, which sits by the PE column it selects from and also feeds the logit rows (v_j to
      the multipliers was the routed 8x8 critical path, docs/rtl.md "Fmax");
    - `pl_reg` (LO+16 bits, unsigned) and `ph_reg` (V-LO+16 bits, signed) take the partial products
      v_lo * M and v_hi * M of the `mul` instance (`make_requant_mul`) of v_reg;
    - `p_reg` (V+16 bits, signed) takes p = ph * 2^LO + pl = v * M;
    - `t_reg` (V+17 bits, signed) takes t = floor(2p / 2^S): one arithmetic shift of {p, 0} by S;
    - `y` = clamp(floor((t + 1) / 2), 0, 2^A - 1), combinational (the top registers it as oact_j).

    floor((t + 1) / 2) equals floor((p + 2^(S-1)) / 2^S) for S > 0 and p for S = 0 (t = 2p), so no
    64-bit rounding constant and no S = 0 special case are needed. Every register loads every cycle
    (no enable, no reset): which of their values count is the top's valid pipeline's business."""
    v_bits, a_bits, p_bits, lo = cfg.v_bits, cfg.act_bits, cfg.p_bits, cfg.lo_bits
    m = Module(postproc_name(cfg))
    clk = m.Input("clk")
    v = m.Input("v", v_bits)
    mult = m.Input("mult", cfg.M_BITS)
    shift = m.Input("shift", cfg.S_BITS)
    y = m.Output("y", a_bits)
    pl = m.Wire("pl", cfg.pl_bits)
    ph = m.Wire("ph", cfg.ph_bits, signed=True)
    v_reg = m.Reg("v_reg", v_bits)
    m.Always(vg.Posedge(clk))(v_reg(v))
    m.Instance(mul, "mul", ports=[("v", v_reg), ("mult", mult), ("pl", pl), ("ph", ph)])
    pl_reg, ph_reg = _partial_registers(m, clk, cfg, pl, ph)
    p = m.Wire("p", p_bits, signed=True)
    # ph * 2^LO + pl, wrapping at p_bits like the register it feeds (exact unless a fault made pl or ph)
    p.assign(Cat(ph_reg, Int(0, lo)) + zext(pl_reg, cfg.pl_bits, p_bits))
    return _shift_round_clamp(m, clk, p, p_bits, shift, y, a_bits)


def make_postproc_shift(cfg: ArrayConfig) -> Module:
    """The shift-only requantization (requant="shift", the pow2 format of docs/arithmetic.md): the contract
    with M = 1, y = clamp(round_half_up(v / 2^S), 0, 2^A - 1), and no multiplier. The same pipeline as
    `make_postproc`, so the tile timing and the fault-site names are the same:

    - `v_reg` (V bits) takes v;
    - `pl_reg` (LO bits, unsigned) and `ph_reg` (V-LO bits, signed) take v_reg's low and high bits (M = 1);
    - `p_reg` (V bits, signed) takes p = ph * 2^LO + pl = {ph_reg, pl_reg} = v;
    - `t_reg` (V+1 bits, signed) takes t = floor(2p / 2^S): one arithmetic shift of {p_reg, 0} by S;
    - `y` = clamp(floor((t + 1) / 2), 0, 2^A - 1), combinational (the top registers it as oact_j)."""
    v_bits, a_bits, lo = cfg.v_bits, cfg.act_bits, cfg.lo_bits
    p_bits = cfg.p_bits  # = V
    m = Module(postproc_name(cfg))
    clk = m.Input("clk")
    v = m.Input("v", v_bits)
    shift = m.Input("shift", cfg.S_BITS)
    y = m.Output("y", a_bits)
    v_reg = m.Reg("v_reg", v_bits)
    m.Always(vg.Posedge(clk))(v_reg(v))
    pl_reg, ph_reg = _partial_registers(m, clk, cfg, v_reg[0:lo], v_reg[lo:v_bits])
    p = m.Wire("p", p_bits, signed=True)
    p.assign(Cat(ph_reg, pl_reg))  # = ph * 2^LO + pl, as pl < 2^LO
    return _shift_round_clamp(m, clk, p, p_bits, shift, y, a_bits)


def make_protect(cfg: ArrayConfig) -> Module:
    """Range protection of one row of C values plus the tile run's violation counter (docs/arithmetic.md).

    The values are the output activations y (domain `act`, unsigned A bits) or the biased accumulators v
    (domain `acc`, signed V bits, compared signed). A lane is out of range when `en_j` (it holds a real
    output of the tile) and y_j < lo_j or y_j > hi_j; then z_j is the violated bound (policy `clamp`) or 0
    (policy `zero`), else z_j = y_j. `viol_count` adds the number of out-of-range lanes whenever `valid`,
    is zeroed by `clear` (start of a run) and `rst`, and wraps at 2^32 (a run corrects at most
    rows * cols values)."""
    width, cols, lanes = cfg.protect_bits, cfg.cols, cfg.bound_lanes
    signed = cfg.protect_domain == "acc"
    n_bits = max(1, (cols).bit_length())
    m = Module(protect_name(cfg))
    clk = m.Input("clk")
    rst = m.Input("rst")
    clear = m.Input("clear")
    valid = m.Input("valid")
    en = m.Input("en", cols)
    y = m.Input("y", cols * width)
    lo = m.Input("lo", lanes * width)
    hi = m.Input("hi", lanes * width)
    z = m.Output("z", cols * width)
    viol_count = m.Output("viol_count", VIOL_BITS)
    bound_wires = {}
    for b in range(lanes):
        for name, vec in (("lo", lo), ("hi", hi)):
            wire = m.Wire(f"{name}_{b}", width, signed=signed)
            wire.assign(lane(vec, b, width))
            bound_wires[name, b] = wire
    zs, flags = [], []
    for j in range(cols):
        yj = m.Wire(f"y_{j}", width, signed=signed)
        yj.assign(lane(y, j, width))
        lj, hj = bound_wires["lo", j if lanes > 1 else 0], bound_wires["hi", j if lanes > 1 else 0]
        below = m.Wire(f"below_{j}")
        above = m.Wire(f"above_{j}")
        out = m.Wire(f"out_{j}")
        zj = m.Wire(f"z_{j}", width)
        below.assign(yj < lj)
        above.assign(yj > hj)
        out.assign(vg.Land(en[j], vg.Lor(below, above)))
        fix = Int(0, width) if cfg.protect_policy == "zero" else Mux(below, lj, hj)
        zj.assign(Mux(out, fix, yj))
        zs.append(zj)
        flags.append(zext(out, 1, n_bits))
    z.assign(Cat(*reversed(zs)))
    n_viol = m.Wire("n_viol", n_bits)
    n_viol.assign(_tree_sum(flags))
    # The count is pipelined without delaying it: `n_q` takes the row's count (0 when not `valid`), `acc_q`
    # adds it one edge later, and the output is their sum, so viol_count is exact at every edge, `done`
    # included. Adding the row's count into the 32-bit counter in the same cycle as the compares was the
    # routed 8x8 critical path (bound -> compare -> count -> counter, 41 logic levels, 12.4 ns).
    n_q = m.Reg("n_q", n_bits)
    acc_q = m.Reg("acc_q", VIOL_BITS)
    m.Always(vg.Posedge(clk))(
        vg.If(vg.Lor(rst, clear))(n_q(Int(0, n_bits)), acc_q(Int(0, VIOL_BITS))).Else(
            n_q(Mux(valid, n_viol, Int(0, n_bits))), acc_q(acc_q + zext(n_q, n_bits, VIOL_BITS))
        )
    )
    viol_count.assign(acc_q + zext(n_q, n_bits, VIOL_BITS))
    return m


def _tree_sum(terms: list):  # type: ignore[no-untyped-def]
    """The sum of `terms` as a balanced tree of additions (log depth, not a chain)."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _partial_registers(m: Module, clk, cfg: ArrayConfig, pl_in, ph_in):  # type: ignore[no-untyped-def]
    """The partial-product stage: `pl_reg` (unsigned) and `ph_reg` (signed) load every cycle."""
    pl_reg = m.Reg("pl_reg", cfg.pl_bits)
    ph_reg = m.Reg("ph_reg", cfg.ph_bits, signed=True)
    m.Always(vg.Posedge(clk))(pl_reg(pl_in), ph_reg(ph_in))
    return pl_reg, ph_reg


def _shift_round_clamp(m: Module, clk, p_in, p_bits: int, shift, y, a_bits: int) -> Module:  # type: ignore[no-untyped-def]
    """The post-processing pipeline behind the partial products, shared by both datapaths: `p_reg` takes
    `p_in` (their sum), `t_reg` = floor(2 p_reg / 2^S) (one arithmetic shift of {p_reg, 0}), and the
    combinational output y = clamp(floor((t_reg + 1) / 2), 0, 2^A - 1) (docs/arithmetic.md; the top
    registers it as oact_j)."""
    t_bits = p_bits + 1
    p_reg = m.Reg("p_reg", p_bits, signed=True)
    t_reg = m.Reg("t_reg", t_bits, signed=True)
    p2 = m.Wire("p2", t_bits, signed=True)
    p2.assign(Cat(p_reg, Int(0, 1)))
    # its own wire: `>>>` of a signed operand, kept arithmetic whatever surrounds it
    t = m.Wire("t", t_bits, signed=True)
    t.assign(Sra(p2, shift))
    m.Always(vg.Posedge(clk))(p_reg(p_in), t_reg(t))
    # one bit wider than t: t + 1 never wraps, not even for a t_reg value that a fault produced
    t_inc = m.Wire("t_inc", t_bits + 1, signed=True)
    t_inc.assign(sext(t_reg, t_bits, t_bits + 1) + Int(1, t_bits + 1))
    r = m.Wire("r", t_bits + 1, signed=True)
    r.assign(Sra(t_inc, Int(1, 1)))
    negative = r[t_bits]
    too_big = vg.Uor(r[a_bits:t_bits])
    y.assign(Mux(negative, Int(0, a_bits), Mux(too_big, Int((1 << a_bits) - 1, a_bits), r[0:a_bits])))
    return m
