"""Moving the flip-flops around each ECP5 multiplier into the MULT18X18D's own input and output registers.

Yosys's `synth_ecp5` maps a multiplication to a combinational MULT18X18D (every REG_* parameter NONE) and
leaves the registers before and after it in the fabric as TRELLIS_FFs; unlike `synth_xilinx`, which packs
such registers into the DSP48E1 (AREG, BREG, MREG, PREG), it has no pass for the ECP5 DSP's registers.
In the PE that puts one net from an operand flip-flop to the DSP, the multiplier and one net back to the
product flip-flop into one clock cycle; nextpnr places the 80 DSPs of an 8x8 array in the DSP rows, far
from the PE logic, and that path limited the routed Fmax (docs/synth.md, "DSP registers").

`pack_dsp_registers` does on the netlist what the vendor tools do: for a MULT18X18D whose every A and B
input bit is a flip-flop (or a constant 0) that feeds nothing but this DSP, and whose every used P bit
feeds exactly one flip-flop and nothing else, the flip-flops become the DSP's input registers (A, B) and
output register (P). The same registers, one for one, hold the same bits: the RTL's `a_op`, `w_op` and
`p_reg` are then the DSP's registers, so a fault in them is a flip in the DSP's register, and the design
simulated (and injected) is the design placed. Only flip-flops whose behaviour the DSP registers have
are moved: clock enable always on, synchronous reset to 0 (LSR_OVER_CE, REGSET RESET), no global set/reset,
one clock for all of them, one reset net per side (inputs on RST0, the output on RST0 or RST1). Anything
else leaves the DSP as Yosys made it. Pure functions on the Yosys JSON netlist; no tool is run here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdl_gen.synth.timing import rtl_name

# The TRELLIS_FF settings of a flip-flop a MULT18X18D register can take over: always enabled, clocked on
# the rising edge, reset (to 0) synchronously from its LSR input, not touched by the global set/reset.
_FF_SETTINGS = {"CEMUX": "1", "CLKMUX": "CLK", "LSRMUX": "LSR", "REGSET": "RESET", "SRMODE": "LSR_OVER_CE",
                "GSR": "DISABLED"}
_A_B = [f"{g}{i}" for g in "AB" for i in range(18)]
_P = [f"P{i}" for i in range(36)]
_CLOCKED = ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_INPUTC_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK")


@dataclass
class DspPacking:
    """What `pack_dsp_registers` did: DSPs given registers, flip-flops moved into them, and why the
    others were left alone (reason -> number of DSPs)."""

    dsps: int = 0
    packed: int = 0
    ffs_absorbed: int = 0
    left: Counter[str] = field(default_factory=Counter)
    # DSP cell -> "A" / "B" / "P" -> the RTL register it now holds (named as hdl_gen.synth.timing.rtl_name
    # names a flip-flop), so that a critical path ending in a DSP register names the RTL register
    registers: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mult18": self.dsps, "mult18_registered": self.packed, "ffs_absorbed": self.ffs_absorbed,
                "mult18_left_combinational": dict(sorted(self.left.items())),
                "registers": dict(sorted(self.registers.items()))}


class _Nets:
    """Driver and loads of every net bit of one module."""

    def __init__(self, cells: dict[str, Any]) -> None:
        self.driver: dict[int, tuple[str, str]] = {}
        self.loads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, cell in cells.items():
            for port, bits in cell["connections"].items():
                out = cell["port_directions"].get(port) == "output"
                for bit in bits:
                    if isinstance(bit, str):
                        continue
                    if out:
                        self.driver[bit] = (name, port)
                    else:
                        self.loads[bit].append((name, port))


def _plain_ff(cell: dict[str, Any]) -> bool:
    if cell["type"] != "TRELLIS_FF" or "CE" in cell["connections"]:
        return False
    params = cell.get("parameters", {})
    return all(str(params.get(k, "")).strip() == v for k, v in _FF_SETTINGS.items())


def _net(cell: dict[str, Any], port: str) -> tuple:
    return tuple(cell["connections"][port])


def _inputs(dsp_name: str, dsp: dict[str, Any], cells: dict[str, Any], nets: _Nets) -> dict[str, str] | str:
    """A/B port -> the flip-flop that drives it, or why the inputs cannot be registered."""
    found = {}
    for port in _A_B:
        bit = dsp["connections"][port][0]
        if isinstance(bit, str):
            if bit != "0":  # a register of a constant 1 would read 0 during its reset
                return "constant 1 input"
            continue
        name, out = nets.driver.get(bit, (None, None))
        if name is None or out != "Q" or not _plain_ff(cells[name]):
            return "input not from a plain flip-flop"
        if any(load != dsp_name for load, _ in nets.loads[bit]):
            return "input flip-flop has other loads"
        found[port] = name
    return found or "constant inputs"


def _outputs(dsp: dict[str, Any], cells: dict[str, Any], nets: _Nets) -> dict[str, str] | str:
    """P port -> the flip-flop it feeds, or why the output cannot be registered."""
    found = {}
    for port in _P:
        bit = dsp["connections"][port][0]
        loads = nets.loads.get(bit, []) if not isinstance(bit, str) else []
        if not loads:
            continue
        if len(loads) != 1 or loads[0][1] != "DI" or not _plain_ff(cells[loads[0][0]]):
            return "product not only into a plain flip-flop"
        found[port] = loads[0][0]
    return found or "product unused"


def _why_not(dsp_name: str, dsp: dict[str, Any], cells: dict[str, Any], nets: _Nets):
    params = dsp.get("parameters", {})
    if any(str(params.get(p, "NONE")) != "NONE" for p in _CLOCKED):
        return "already registered", None, None
    ins = _inputs(dsp_name, dsp, cells, nets)
    if isinstance(ins, str):
        return ins, None, None
    outs = _outputs(dsp, cells, nets)
    if isinstance(outs, str):
        return outs, None, None
    ffs = [cells[n] for n in {*ins.values(), *outs.values()}]
    if len({_net(f, "CLK") for f in ffs}) != 1:
        return "flip-flops on different clocks", None, None
    resets = [{_net(cells[n], "LSR") for n in side.values()} for side in (ins, outs)]
    if any(len(r) != 1 for r in resets):
        return "flip-flops with different resets", None, None
    return None, ins, outs


def pack_dsp_registers(netlist: dict[str, Any], top: str) -> DspPacking:
    """Give every MULT18X18D of module `top` of the Yosys JSON `netlist` its registers where the rules in the
    module docstring allow; changes `netlist` in place and says what it did."""
    cells = netlist["modules"][top]["cells"]
    nets = _Nets(cells)
    result = DspPacking()
    absorbed: set[str] = set()
    for name in sorted(n for n, c in cells.items() if c["type"] == "MULT18X18D"):
        result.dsps += 1
        dsp = cells[name]
        why, ins, outs = _why_not(name, dsp, cells, nets)
        if why is not None:
            result.left[why] += 1
            continue
        moved = {*ins.values(), *outs.values()}
        if moved & absorbed:  # one DSP's product register feeding the next: the first DSP keeps it
            result.left["flip-flop taken by another DSP"] += 1
            continue
        con, dirs = dsp["connections"], dsp["port_directions"]
        for port, ff in ins.items():
            con[port] = list(cells[ff]["connections"]["DI"])
        for port, ff in outs.items():
            con[port] = list(cells[ff]["connections"]["Q"])
        any_in, any_out = cells[next(iter(ins.values()))], cells[next(iter(outs.values()))]
        out_rst = "RST0" if _net(any_in, "LSR") == _net(any_out, "LSR") else "RST1"
        con["CLK0"], con["CE0"], con["RST0"] = list(_net(any_in, "CLK")), ["1"], list(_net(any_in, "LSR"))
        con[out_rst] = list(_net(any_out, "LSR"))
        for port in ("CLK0", "CE0", "RST0", out_rst):
            dirs[port] = "input"
        dsp.setdefault("parameters", {}).update({
            "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_CE": "CE0", "REG_INPUTA_RST": "RST0",
            "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_CE": "CE0", "REG_INPUTB_RST": "RST0",
            "REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_RST": out_rst,
            "RESETMODE": "SYNC", "GSR": "DISABLED",
        })
        absorbed |= moved
        result.registers[name] = {
            side: "/".join(sorted({rtl_name(ff) for p, ff in group.items() if p.startswith(side)}))
            for side, group in (("A", ins), ("B", ins), ("P", outs)) if any(p.startswith(side) for p in group)
        }
        result.packed += 1
        result.ffs_absorbed += len(moved)
    for ff in absorbed:
        del cells[ff]
    return result
