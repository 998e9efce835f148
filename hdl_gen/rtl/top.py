"""The top `quasar_array`: one builder per block (docs/rtl.md, "Modules and files", "Timing").

`make_top` declares the ports and calls, in order, the operand buffers, the sequencer, the operand
feed and skew registers, the PE grid, the drain, the post-processing row, the protection and the
output rows. Each block builder reads the signals of the blocks before it from the `TopParts` it is
handed and adds its own, so a change to one block touches one function. Never writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import veriloggen as vg
from veriloggen import Cat, Int, Module, When

from hdl_gen.config import ArrayConfig
from hdl_gen.rtl.common import PE_PREFIX, PP_PREFIX, TOP, VALID_STAGES, VIOL_BITS, lane, sext, unwaive, waive, zext


@dataclass
class TopParts:
    """The top under construction: its module, config and the signals blocks hand to each other."""

    m: Module
    cfg: ArrayConfig
    sig: dict[str, object] = field(default_factory=dict)  # ports and inter-block signals by name

    def __getitem__(self, name: str):
        return self.sig[name]

    def __setitem__(self, name: str, value) -> None:
        self.sig[name] = value


def _ports(t: TopParts) -> None:
    cfg, m = t.cfg, t.m
    R, C, A = cfg.rows, cfg.cols, cfg.act_bits
    waive(m, "UNUSEDPARAM", "the config's constants, for readers and tools; the widths below are already resolved")
    for name, value in cfg.verilog_params().items():
        m.Localparam(name, value)
    unwaive(m, "UNUSEDPARAM")
    t["clk"] = m.Input("clk")
    t["rst"] = m.Input("rst")
    t["start"] = m.Input("start")
    t["k"] = m.Input("k", cfg.k_bits)
    t["busy_out"] = m.Output("busy")
    t["done_out"] = m.Output("done")
    t["bias"] = m.Input("bias", C * cfg.acc_bits)
    if not cfg.shift_only:  # the shift-only post-processing has no multiplier to feed
        t["mult"] = m.Input("mult", C * cfg.M_BITS)
    t["shift"] = m.Input("shift", C * cfg.S_BITS)
    if cfg.protected:
        t["lo"] = m.Input("lo", cfg.bound_lanes * cfg.protect_bits)
        t["hi"] = m.Input("hi", cfg.bound_lanes * cfg.protect_bits)
        t["valid_rows"] = m.Input("valid_rows", cfg.valid_rows_bits)
        t["valid_cols"] = m.Input("valid_cols", C)
    t["out_act"] = m.Output("out_act", R * C * A)
    t["out_logit"] = m.Output("out_logit", R * C * cfg.v_bits)
    t["viol_count"] = m.Output("viol_count", VIOL_BITS)
    t["ld_en"] = m.Input("ld_en")
    t["ld_sel"] = m.Input("ld_sel")  # 0: abuf, 1: wbuf
    t["ld_addr"] = m.Input("ld_addr", cfg.addr_bits)
    t["ld_data"] = m.Input("ld_data", cfg.ld_bits)


def _operand_buffers(t: TopParts) -> None:
    """Word kk of abuf holds X[i, kk] at [i*A +: A]; word kk of wbuf holds Wt[kk, j] at [j*W +: W]."""
    cfg, m = t.cfg, t.m
    R, C = cfg.rows, cfg.cols
    abuf = t["abuf"] = m.Reg("abuf", R * cfg.act_bits, dims=cfg.k_max)
    wbuf = t["wbuf"] = m.Reg("wbuf", C * cfg.weight_bits, dims=cfg.k_max)
    ld_addr, ld_data = t["ld_addr"], t["ld_data"]
    m.Always(vg.Posedge(t["clk"]))(
        vg.If(t["ld_en"])(
            vg.If(t["ld_sel"])(wbuf[ld_addr](ld_data[0 : C * cfg.weight_bits])).Else(
                abuf[ld_addr](ld_data[0 : R * cfg.act_bits])
            )
        )
    )


def _sequencer(t: TopParts) -> None:
    """busy/done, the cycle counter, the feed and drain windows, and the drain's valid/row pipeline."""
    cfg, m = t.cfg, t.m
    R, C, KB, CB, RB = cfg.rows, cfg.cols, cfg.k_bits, cfg.cyc_bits, cfg.row_bits
    clk, rst = t["clk"], t["rst"]
    # internal registers behind the busy/done ports: a testbench deposit into a top-level port
    # variable would be overwritten by the simulator, into these it sticks like a real upset
    busy = m.Reg("busy_r")
    done = m.Reg("done_r")
    t["busy_out"].assign(busy)
    t["done_out"].assign(done)
    go = t["go"] = m.Wire("go")
    go.assign(vg.Land(t["start"], vg.Not(busy)))
    clr = t["clr"] = m.Wire("clr")
    clr.assign(vg.Lor(rst, go))
    k_reg = m.Reg("k_reg", KB)
    cyc = t["cyc"] = m.Reg("cyc", CB)
    k_ext = m.Wire("k_ext", CB)
    k_ext.assign(zext(k_reg, KB, CB))
    feed = t["feed"] = m.Wire("feed")
    feed.assign(vg.Land(busy, cyc < k_ext))
    # The drain window as registers: drain_r/d_row hold "the next edge samples row d_row" after edges
    # D - 1 .. D + R - 2 (D = cfg.stage_edge(K, "v", 0)). Registered, so that the row selects of the
    # accumulator multiplexers come straight from flip-flops, not from a cycle-counter subtraction.
    drain = t["drain"] = m.Reg("drain_r")
    d_row = t["d_row"] = m.Reg("d_row", RB)
    # cyc = D - 2: the next edge opens the window. `drain_at` = k + D - 3 (D - 2 for K = 1) is computed
    # once, at start, from the k port: the addition of k_reg and the constant ahead of the compare, into
    # every column's row select, was a routed 8x8 critical path (k_ext -> dsel_j, 8 levels, 11.8 ns).
    drain_at = m.Reg("drain_at", CB)
    drain_start = m.Wire("drain_start")
    drain_start.assign(vg.Land(busy, cyc == drain_at))
    # <s>_valid/<s>_row: drain stage s holds a row, and which (VALID_STAGES: v_j, pp_j.pl_reg/ph_reg,
    # pp_j.p_reg, pp_j.t_reg, oact_j)
    valid, row = [], []
    for s in VALID_STAGES:
        valid.append(m.Reg(f"{s}_valid"))
        row.append(m.Reg(f"{s}_row", RB))
        t[f"{s}_valid"], t[f"{s}_row"] = valid[-1], row[-1]
    last = m.Wire("last")
    last.assign(vg.Land(valid[-1], row[-1] == Int(R - 1, RB)))
    m.Always(vg.Posedge(clk))(
        vg.If(rst)(busy(Int(0, 1)), done(Int(0, 1)), cyc(Int(0, CB)), k_reg(Int(0, KB)), drain_at(Int(0, CB)))
        .Elif(go)(
            busy(Int(1, 1)), done(Int(0, 1)), cyc(Int(0, CB)), k_reg(t["k"]),
            drain_at(zext(t["k"], KB, CB) + Int(cfg.stage_edge(1, "v", 0) - 3, CB)),
        )
        .Elif(busy)(
            cyc(cyc + Int(1, CB)),
            vg.If(last)(busy(Int(0, 1)), done(Int(1, 1))),
        )
    )
    m.Always(vg.Posedge(clk))(
        vg.If(clr)(drain(Int(0, 1)), d_row(Int(0, RB)))
        .Elif(drain_start)(drain(Int(1, 1)), d_row(Int(0, RB)))
        .Elif(drain)(
            vg.If(d_row == Int(R - 1, RB))(drain(Int(0, 1)), d_row(Int(0, RB))).Else(d_row(d_row + Int(1, RB)))
        )
    )
    # The row select of each column's accumulator multiplexer, from its own flip-flops next to it:
    # dsel_<j> = (d_row + j) mod R. One shared select fanned out to all C x V multiplexer inputs, through
    # decoding LUTs spread over the placement, was the routed critical path of the 8x8 array (16.1 ns,
    # 14.7 of them routing; docs/rtl.md, "Fmax"). The offset j makes the C counters different circuits:
    # identical copies would be merged back into one by Yosys (opt_merge ignores `keep`).
    dsel = t["dsel"] = [m.Reg(f"dsel_{j}", RB) for j in range(C)]
    m.Always(vg.Posedge(clk))(
        vg.If(vg.Lor(clr, drain_start))(*[dsel[j](Int(j % R, RB)) for j in range(C)]).Elif(drain)(
            *[vg.If(dsel[j] == Int(R - 1, RB))(dsel[j](Int(0, RB))).Else(dsel[j](dsel[j] + Int(1, RB)))
              for j in range(C)]
        )
    )
    zero = [x for vr in zip(valid, row, strict=True) for x in (vr[0](Int(0, 1)), vr[1](Int(0, RB)))]
    shift_in = [valid[0](drain), row[0](d_row)]
    for n in range(1, len(VALID_STAGES)):
        shift_in += [valid[n](valid[n - 1]), row[n](row[n - 1])]
    m.Always(vg.Posedge(clk))(vg.If(clr)(*zero).Else(*shift_in))
    # The output registers' reset, one edge late from a flip-flop of its own: the rst port itself reaching
    # the R x C x (A + V) flip-flops of the logit and output rows as well as the control state set the
    # routed 8x8 Fmax at one seed (a 12.3 ns route from the wrapper's reset flip-flop; docs/rtl.md "Fmax").
    # A reset of two or more edges (ArrayTB.reset holds it for two) clears them as before.
    rst_o = t["rst_o"] = m.Reg("rst_o")
    m.Always(vg.Posedge(clk))(rst_o(rst))
    # One-hot write enables of the logit and output rows, registered at the same edge as v_valid/v_row
    # (o_valid/o_row) from the stage before: lrow_<i> and orow_<i> load when their bit is set. Decoding
    # o_row into R enables, each reaching C x A flip-flops across the placement, was the routed 8x8
    # critical path (o_row -> orow_0, 1 logic level, 14.9 ns; docs/rtl.md, "Fmax").
    lrow_we = t["lrow_we"] = m.Reg("lrow_we", R)
    orow_we = t["orow_we"] = m.Reg("orow_we", R)
    t_valid, t_row = t["t_valid"], t["t_row"]
    m.Always(vg.Posedge(clk))(
        vg.If(clr)(lrow_we(Int(0, R)), orow_we(Int(0, R))).Else(
            *[lrow_we[i](vg.Land(drain, d_row == Int(i, RB))) for i in range(R)],
            *[orow_we[i](vg.Land(t_valid, t_row == Int(i, RB))) for i in range(R)],
        )
    )


def _skew_registers(t: TopParts) -> None:
    """Operand feed and skew: row i's activations arrive i cycles late, column j's weights j."""
    cfg, m = t.cfg, t.m
    R, C, A, W, AB = cfg.rows, cfg.cols, cfg.act_bits, cfg.weight_bits, cfg.addr_bits
    clk, clr, cyc = t["clk"], t["clr"], t["cyc"]
    a_word = m.Reg("a_word", R * A)
    w_word = m.Reg("w_word", C * W)
    m.Always(vg.Posedge(clk))(
        vg.If(vg.Lor(clr, vg.Not(t["feed"])))(a_word(Int(0, R * A)), w_word(Int(0, C * W))).Else(
            a_word(t["abuf"][cyc[0:AB]]), w_word(t["wbuf"][cyc[0:AB]])
        )
    )
    a_west, w_north, skew_regs, skew_next = [], [], [], []
    for i in range(R):
        src = lane(a_word, i, A)
        for s in range(i):
            r = m.Reg(f"askew_{i}_{s}", A)
            skew_regs.append((r, A))
            skew_next.append(src)
            src = r
        a_west.append(src)
    for j in range(C):
        src = lane(w_word, j, W)
        for s in range(j):
            r = m.Reg(f"wskew_{j}_{s}", W)
            skew_regs.append((r, W))
            skew_next.append(src)
            src = r
        w_north.append(src)
    if skew_regs:
        # The skew registers are cleared one edge later, from a flip-flop, and the PEs later still, PE (i, j)
        # at edge 1 + i + j, their clear passed from PE to PE (hdl_gen.rtl.units.make_pe): one clear net
        # reaching every PE register (R x C x (2A + 2W + ACC) flip-flops) was the routed 8x8 critical path,
        # first through the `go` logic (12.3 ns), then from a flip-flop (13.0 ns). Equivalent: at rest (and
        # until their clear) they hold zeros or sums that the clear wipes out before any operand arrives
        # (docs/rtl.md, "Timing").
        pe_clr = m.Reg("pe_clr")
        m.Always(vg.Posedge(clk))(pe_clr(clr))
        m.Always(vg.Posedge(clk))(
            vg.If(pe_clr)(*[r(Int(0, n)) for r, n in skew_regs]).Else(
                *[r(s) for (r, _), s in zip(skew_regs, skew_next, strict=True)]
            )
        )
    t["a_west"], t["w_north"] = a_west, w_north


def _pe_grid(t: TopParts, pe: Module) -> None:
    """R x C instances `pe_<i>_<j>`: activations flow right, weights down; `pacc_<i>_<j>` out."""
    cfg, m = t.cfg, t.m
    R, C, A, W = cfg.rows, cfg.cols, cfg.act_bits, cfg.weight_bits
    a_wire = [[m.Wire(f"pa_{i}_{j}", A) for j in range(C)] for i in range(R)]
    c_wire = [[m.Wire(f"pclr_{i}_{j}") for j in range(C)] for i in range(R)]
    w_wire = [[m.Wire(f"pw_{i}_{j}", W) for j in range(C)] for i in range(R)]
    acc_wire = t["acc"] = [[m.Wire(f"pacc_{i}_{j}", cfg.acc_bits) for j in range(C)] for i in range(R)]
    waive(m, "UNUSEDSIGNAL", "the east edge's activations, clears and the south edge's weights leave the array unused")
    a_east = [m.Wire(f"a_east_{i}", A) for i in range(R)]
    clr_east = [m.Wire(f"clr_east_{i}") for i in range(R)]
    w_south = [m.Wire(f"w_south_{j}", W) for j in range(C)]
    unwaive(m, "UNUSEDSIGNAL")
    for i in range(R):
        for j in range(C):
            m.Instance(
                pe,
                f"{PE_PREFIX}{i}_{j}",
                ports=[
                    ("clk", t["clk"]),
                    # the clear enters at PE (0, 0), runs down column 0 and along every row
                    ("clr_in", t["clr"] if i == j == 0 else c_wire[i - 1][0] if j == 0 else c_wire[i][j - 1]),
                    ("clr_out", c_wire[i][j]),
                    ("a_in", t["a_west"][i] if j == 0 else a_wire[i][j - 1]),
                    ("w_in", t["w_north"][j] if i == 0 else w_wire[i - 1][j]),
                    ("a_out", a_wire[i][j]),
                    ("w_out", w_wire[i][j]),
                    ("acc_out", acc_wire[i][j]),
                ],
            )
    for i in range(R):
        a_east[i].assign(a_wire[i][C - 1])
        clr_east[i].assign(c_wire[i][C - 1])
    for j in range(C):
        w_south[j].assign(w_wire[R - 1][j])


def _drain(t: TopParts) -> None:
    """Drain stage 1: v_j = acc(row, j) + bias_j, row (dsel_j - j) mod R, one row per cycle. v_j loads
    every cycle (no enable fanned out to all C x V flip-flops): outside the drain window it holds no row
    that the valid pipeline passes on."""
    cfg, m = t.cfg, t.m
    R, C, ACC, V, RB = cfg.rows, cfg.cols, cfg.acc_bits, cfg.v_bits, cfg.row_bits
    v_regs = t["v"] = [m.Reg(f"v_{j}", V) for j in range(C)]
    bias_j = [m.Wire(f"bias_{j}", ACC) for j in range(C)]
    for j in range(C):
        bias_j[j].assign(lane(t["bias"], j, ACC))
    acc = t["acc"]
    for j in range(C):
        cases = [When(Int((i + j) % R, RB))(v_regs[j](sext(acc[i][j], ACC, V) + sext(bias_j[j], ACC, V)))
                 for i in range(R)]
        if (1 << RB) != R:
            cases.append(When()(v_regs[j](v_regs[j])))
        m.Always(vg.Posedge(t["clk"]))(vg.Case(t["dsel"][j])(*cases))


def _postproc_row(t: TopParts, postproc: Module) -> None:
    """Stages 2-6: `pp_<j>` requantizes v_j through its input, partial-product, product and shift registers;
    oact_j takes the rounded, clamped y_j of the row in pp_j.t_reg; logit row lrow_<i> takes v when
    lrow_we[i] is set (the edge after the drain read row i)."""
    cfg, m = t.cfg, t.m
    R, C, A, V = cfg.rows, cfg.cols, cfg.act_bits, cfg.v_bits
    v_regs = t.sig.get("v_protected", t["v"])  # the acc-domain protection sits between the drain and here
    y_wire = []
    for j in range(C):
        yj = m.Wire(f"y_{j}", A)
        m.Instance(
            postproc,
            f"{PP_PREFIX}{j}",
            ports=[
                ("clk", t["clk"]),
                ("v", v_regs[j]),
                *([] if cfg.shift_only else [("mult", lane(t["mult"], j, cfg.M_BITS))]),
                ("shift", lane(t["shift"], j, cfg.S_BITS)),
                ("y", yj),
            ],
        )
        y_wire.append(yj)
    oact = t["oact"] = [m.Reg(f"oact_{j}", A) for j in range(C)]
    lrow = t["lrow"] = [m.Reg(f"lrow_{i}", C * V) for i in range(R)]
    v_cat = Cat(*reversed(v_regs))
    we = t["lrow_we"]
    m.Always(vg.Posedge(t["clk"]))(
        vg.If(t["rst_o"])(*[lr(Int(0, C * V)) for lr in lrow]).Else(*[vg.If(we[i])(lrow[i](v_cat)) for i in range(R)])
    )
    m.Always(vg.Posedge(t["clk"]))(
        vg.If(t["rst_o"])(*[o(Int(0, A)) for o in oact]).Elif(t["t_valid"])(*[oact[j](y_wire[j]) for j in range(C)])
    )


def _protection(t: TopParts, protect: Module | None, domain: str) -> None:
    """The `prot` instance in its domain's place: `acc` between the drain's v_j and the post-processing
    row (the logits row captures the protected v), `act` as the last stage (7) on the oact row. It corrects
    and counts only the real outputs of the tile: columns set in `valid_cols` of rows below `valid_rows`.
    With protection `none` the row passes unchanged and the counter port is a constant 0."""
    cfg, m = t.cfg, t.m
    if domain == "act":
        t["row_value"] = Cat(*reversed(t["oact"]))
    if protect is None:
        if domain == "act":
            t["viol_count"].assign(Int(0, VIOL_BITS))  # no protection, no counter: documented as always zero
        return
    if cfg.protect_domain != domain:
        return
    C, P, RB, VRB = cfg.cols, cfg.protect_bits, cfg.row_bits, cfg.valid_rows_bits
    valid, row = (t["v_valid"], t["v_row"]) if domain == "acc" else (t["o_valid"], t["o_row"])
    values = Cat(*reversed(t["v"])) if domain == "acc" else t["row_value"]
    row_real = m.Wire("prot_row_real")
    row_real.assign(zext(row, RB, VRB) < t["valid_rows"])
    en = m.Wire("prot_en", C)
    en.assign(vg.Mux(row_real, t["valid_cols"], Int(0, C)))
    z = m.Wire("z", C * P)
    vc = m.Wire("prot_viol_count", VIOL_BITS)
    m.Instance(
        protect,
        "prot",
        ports=[
            ("clk", t["clk"]),
            ("rst", t["rst"]),
            ("clear", t["go"]),
            ("valid", valid),
            ("en", en),
            ("y", values),
            ("lo", t["lo"]),
            ("hi", t["hi"]),
            ("z", z),
            ("viol_count", vc),
        ],
    )
    t["viol_count"].assign(vc)
    if domain == "act":
        t["row_value"] = z
        return
    vp = t["v_protected"] = [m.Wire(f"vp_{j}", P) for j in range(C)]
    for j in range(C):
        vp[j].assign(lane(z, j, P))


def _output_rows(t: TopParts) -> None:
    """orow_<i> holds output row i once written (when orow_we[i] is set); out_act and out_logit are the
    rows concatenated."""
    cfg, m = t.cfg, t.m
    R, C, A = cfg.rows, cfg.cols, cfg.act_bits
    orow = [m.Reg(f"orow_{i}", C * A) for i in range(R)]
    we, value = t["orow_we"], t["row_value"]
    m.Always(vg.Posedge(t["clk"]))(
        vg.If(t["rst_o"])(*[o(Int(0, C * A)) for o in orow]).Else(*[vg.If(we[i])(orow[i](value)) for i in range(R)])
    )
    t["out_act"].assign(Cat(*reversed(orow)))
    t["out_logit"].assign(Cat(*reversed(t["lrow"])))


def make_top(cfg: ArrayConfig, pe: Module, postproc: Module, protect: Module | None) -> Module:
    """The array with its operand buffers, sequencer, drain and (optionally) protection; docs/rtl.md."""
    t = TopParts(Module(TOP), cfg)
    _ports(t)
    _operand_buffers(t)
    _sequencer(t)
    _skew_registers(t)
    _pe_grid(t, pe)
    _drain(t)
    _protection(t, protect, "acc")
    _postproc_row(t, postproc)
    _protection(t, protect, "act")
    _output_rows(t)
    return t.m
