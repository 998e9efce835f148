"""hdl_gen.synth.dsp_regs: the PE's operand and product flip-flops become the MULT18X18D's registers, and
nothing else does. The netlist is Yosys's synth_ecp5 of the generated 8-bit PE (a few seconds)."""

import copy
import json

import pytest

from hdl_gen import ArrayConfig
from hdl_gen.rtl import make_pe, module_verilog, pe_name
from hdl_gen.synth.dsp_regs import pack_dsp_registers
from hdl_gen.synth.tools import run_yosys

pytestmark = [pytest.mark.synth, pytest.mark.xdist_group("synth")]

CFG = ArrayConfig(rows=2, cols=2, act_bits=8, weight_bits=8, k_max=16)
TOP = pe_name(CFG)


@pytest.fixture(scope="module")
def pe_netlist(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dsp_regs")
    (out / "pe.v").write_text(module_verilog(make_pe(CFG)))
    (out / "pe.ys").write_text(f"read_verilog -sv pe.v\nsynth_ecp5 -top {TOP} -json pe.json\n")
    run_yosys(out / "pe.ys", out / "pe.log", out, "dsp_regs")
    return json.loads((out / "pe.json").read_text())


def cells_of(netlist: dict) -> dict:
    return netlist["modules"][TOP]["cells"]


def named(cells: dict, reg: str) -> list[str]:
    return sorted(n for n, c in cells.items() if c["type"] == "TRELLIS_FF" and n.startswith(f"{reg}_TRELLIS_FF"))


def test_operand_and_product_registers_move_into_the_dsp(pe_netlist):
    net = copy.deepcopy(pe_netlist)
    before = cells_of(pe_netlist)
    ffs = {r: named(before, r) for r in ("a_op", "w_op", "p_reg", "a_out", "acc_out")}
    assert [len(ffs[r]) for r in ("a_op", "w_op", "p_reg")] == [8, 8, 16]
    result = pack_dsp_registers(net, TOP)
    dsp_name = next(n for n, c in before.items() if c["type"] == "MULT18X18D")
    assert result.as_dict() == {"mult18": 1, "mult18_registered": 1, "ffs_absorbed": 32,
                                "mult18_left_combinational": {},
                                "registers": {dsp_name: {"A": "a_op", "B": "w_op", "P": "p_reg"}}}
    after = cells_of(net)
    assert not any(named(after, r) for r in ("a_op", "w_op", "p_reg"))
    assert named(after, "a_out") == ffs["a_out"] and named(after, "acc_out") == ffs["acc_out"]
    dsp = next(c for c in after.values() if c["type"] == "MULT18X18D")
    p = dsp["parameters"]
    assert [p[f"REG_{r}_CLK"] for r in ("INPUTA", "INPUTB", "OUTPUT")] == ["CLK0"] * 3
    assert p["RESETMODE"] == "SYNC" and p["GSR"] == "DISABLED" and dsp["connections"]["CE0"] == ["1"]
    # each A/B input now reads what the operand flip-flop read (a_reg / w_reg, named a_out / w_out by Yosys),
    # each used P bit drives p_reg's old net
    old_dsp = next(c for c in before.values() if c["type"] == "MULT18X18D")
    drivers = {c["connections"]["Q"][0]: c for c in before.values() if c["type"] == "TRELLIS_FF"}
    for port in ("A0", "A7", "B0", "B7", "B17"):
        ff = drivers[old_dsp["connections"][port][0]]
        assert dsp["connections"][port] == ff["connections"]["DI"]
    p_loads = {c["connections"]["DI"][0]: c for c in before.values() if c["type"] == "TRELLIS_FF"}
    for i in range(16):
        assert dsp["connections"][f"P{i}"] == p_loads[old_dsp["connections"][f"P{i}"][0]]["connections"]["Q"]
    # the reset of the moved registers is the PE's clear flip-flop, on the DSP's RST0
    assert dsp["connections"]["RST0"] == before[ffs["a_op"][0]]["connections"]["LSR"]


def _dsp(cells: dict) -> dict:
    return next(c for c in cells.values() if c["type"] == "MULT18X18D")


def _edit_other_load(cells: dict) -> None:
    """a_op[0] also feeds the accumulator's carry chain: moving it into the DSP would leave that without it."""
    bit = _dsp(cells)["connections"]["A0"][0]
    carry = next(c for c in cells.values() if c["type"] == "CCU2C")
    carry["connections"]["A0"] = [bit]


def _edit_enable(cells: dict) -> None:
    ff = cells[named(cells, "w_op")[0]]
    ff["connections"]["CE"] = [ff["connections"]["LSR"][0]]
    ff["parameters"]["CEMUX"] = "CE"


def _edit_async(cells: dict) -> None:
    cells[named(cells, "p_reg")[3]]["parameters"]["SRMODE"] = "ASYNC"


def _edit_set(cells: dict) -> None:
    cells[named(cells, "a_op")[2]]["parameters"]["REGSET"] = "SET"


def _edit_one(cells: dict) -> None:
    _dsp(cells)["connections"]["A17"] = ["1"]


def _edit_two_products(cells: dict) -> None:
    """P0 also reaches a second flip-flop."""
    dsp = _dsp(cells)
    other = cells[named(cells, "acc_out")[0]]
    other["connections"]["DI"] = list(dsp["connections"]["P0"])


def _edit_reset_nets(cells: dict) -> None:
    cells[named(cells, "w_op")[1]]["connections"]["LSR"] = ["1"]


@pytest.mark.parametrize(("edit", "why"), [
    (_edit_other_load, "input flip-flop has other loads"),
    (_edit_enable, "input not from a plain flip-flop"),
    (_edit_async, "product not only into a plain flip-flop"),
    (_edit_set, "input not from a plain flip-flop"),
    (_edit_one, "constant 1 input"),
    (_edit_two_products, "product not only into a plain flip-flop"),
    (_edit_reset_nets, "flip-flops with different resets"),
])
def test_a_register_the_dsp_cannot_hold_leaves_the_netlist_unchanged(pe_netlist, edit, why):
    net = copy.deepcopy(pe_netlist)
    edit(cells_of(net))
    edited = copy.deepcopy(net)
    result = pack_dsp_registers(net, TOP)
    assert result.packed == 0 and result.ffs_absorbed == 0 and result.left == {why: 1}
    assert net == edited


def test_a_critical_path_into_a_dsp_register_names_the_rtl_register():
    """nextpnr ends such a path at the MULT18X18D's B port; synth.json names the register held there."""
    from hdl_gen.synth.timing import critical_path

    dsp = "core.pe_6_0.prod_MULT18X18D_P9"
    steps = [
        {"type": "clk-to-q", "delay": 0.52, "from": {"cell": "core.pe_6_0.w_out_TRELLIS_FF_Q_7", "port": "CLK"},
         "to": {"cell": "core.pe_6_0.w_out_TRELLIS_FF_Q_7", "port": "Q"}},
        {"type": "routing", "delay": 8.1, "net": "core.pe_6_0.w_out[7]",
         "from": {"cell": "core.pe_6_0.w_out_TRELLIS_FF_Q_7", "port": "Q"}, "to": {"cell": dsp, "port": "B12"}},
        {"type": "setup", "delay": 0.1, "from": {"cell": dsp, "port": "B12"}, "to": {"cell": dsp, "port": "B12"}},
    ]
    held = {dsp: {"A": "core.pe_6_0.a_op", "B": "core.pe_6_0.w_op", "P": "core.pe_6_0.p_reg"}}
    cp = critical_path(steps, held)
    assert cp["end"] == {"register": "core.pe_6_0.w_op", "in_core": True, "cell": dsp, "in_dsp": True}
    assert cp["summary"].startswith("core.pe_6_0.w_out[7] -> core.pe_6_0.w_op: 0 logic levels")
    assert critical_path(steps)["end"]["register"] == "core.pe_6_0.prod"  # without the map: the cell's name
