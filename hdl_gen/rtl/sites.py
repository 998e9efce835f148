"""The fault-site map and the VPI-visible signals of a generated design (docs/rtl.md, "Fault-site map").

Pure data derived from the config: the same names the builders in hdl_gen.rtl.top and
hdl_gen.rtl.units declare. Never builds a module.
"""

from __future__ import annotations

from hdl_gen.config import ArrayConfig
from hdl_gen.rtl.common import PE_PREFIX, PP_PREFIX, TOP, VALID_STAGES, pe_name, postproc_name


def fault_sites(cfg: ArrayConfig) -> list[dict[str, object]]:
    """Every fault-injectable register: dotted name relative to the top (the cocotb `dut`), width, kind,
    position. Kinds: pe_activation, weight, pe_act_operand and pe_weight_operand (the PE multiplier's
    operand registers a_op, w_op), pe_product (the PE's product register p_reg), accumulator (PE
    accumulators and the drain's v_j), pipeline (the post-processing's input pp_j.v_reg, the
    requantization's partial products pp_j.pl_reg, pp_j.ph_reg, product pp_j.p_reg and shifted product
    pp_j.t_reg), output_activation (oact_j, ahead of the protection) and control (sequencer state)."""
    R, C = cfg.rows, cfg.cols
    sites: list[dict[str, object]] = []

    def add(name: str, width: int, kind: str, row: int | None, col: int | None) -> None:
        sites.append({"name": name, "width": width, "kind": kind, "row": row, "col": col})

    def add_pe(reg: str, width: int, kind: str) -> None:  # one register of every PE, row by row
        for i in range(R):
            for j in range(C):
                add(f"pe_{i}_{j}.{reg}", width, kind, i, j)

    # the order is part of the map: a campaign's seeded fault draws index into it
    add_pe("a_reg", cfg.act_bits, "pe_activation")
    for j in range(C):
        add(f"oact_{j}", cfg.act_bits, "output_activation", None, j)
    add_pe("w_reg", cfg.weight_bits, "weight")
    add_pe("a_op", cfg.act_bits, "pe_act_operand")
    add_pe("w_op", cfg.weight_bits, "pe_weight_operand")
    add_pe("p_reg", cfg.act_bits + cfg.weight_bits, "pe_product")
    add_pe("acc", cfg.acc_bits, "accumulator")
    for j in range(C):
        add(f"v_{j}", cfg.v_bits, "accumulator", None, j)
    p_bits = cfg.p_bits
    for j in range(C):
        add(f"{PP_PREFIX}{j}.v_reg", cfg.v_bits, "pipeline", None, j)
        add(f"{PP_PREFIX}{j}.pl_reg", cfg.pl_bits, "pipeline", None, j)
        add(f"{PP_PREFIX}{j}.ph_reg", cfg.ph_bits, "pipeline", None, j)
        add(f"{PP_PREFIX}{j}.p_reg", p_bits, "pipeline", None, j)
        add(f"{PP_PREFIX}{j}.t_reg", p_bits + 1, "pipeline", None, j)
    control = [("busy_r", 1), ("done_r", 1), ("cyc", cfg.cyc_bits), ("k_reg", cfg.k_bits), ("drain_at", cfg.cyc_bits)]
    control += [("pe_clr", 1)] if R > 1 or C > 1 else []  # the skew registers' clear (none at 1x1)
    control += [("drain_r", 1), ("d_row", cfg.row_bits)] + [(f"dsel_{j}", cfg.row_bits) for j in range(C)]
    for s in VALID_STAGES:
        control += [(f"{s}_valid", 1), (f"{s}_row", cfg.row_bits)]
    control += [("lrow_we", R), ("orow_we", R)]  # the logit and output rows' one-hot write enables
    control += [("rst_o", 1)]  # the output registers' reset
    for name, width in control:
        add(name, width, "control", None, None)
    return sites


def vpi_signals(cfg: ArrayConfig, ports: list[str]) -> dict[str, list[str]]:
    """{module name: variables} a testbench reaches over VPI: the top's ports, the operand buffers and
    every fault site. A simulator build makes exactly these public (testbenches/sim.py)."""
    signals: dict[str, list[str]] = {TOP: [*ports, "abuf", "wbuf"]}
    modules = {PE_PREFIX: pe_name(cfg), PP_PREFIX: postproc_name(cfg)}
    for site in fault_sites(cfg):
        name = str(site["name"])
        module, var = TOP, name
        if "." in name:
            inst, var = name.split(".", 1)
            module = next(mod for prefix, mod in modules.items() if inst.startswith(prefix))
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
