"""Names and small Veriloggen expression helpers shared by the RTL builders.

Signed arithmetic is written with explicit sign extension to the result width, so every operator
sees operands of one width (Verilator -Wall clean) and the low bits of a two's-complement product
or sum are exact whatever the operands' declared signedness. Never builds a module.
"""

from __future__ import annotations

from veriloggen import Cat, Int, Module, Repeat

from hdl_gen.config import ArrayConfig

TOP = "quasar_array"
VIOL_BITS = 32
# The prefixes of the valid/row registers that follow a drained row through the stages before the
# output write: v_j, pp_j.v_reg (q), pp_j.pl_reg/ph_reg (m: the multipliers), pp_j.p_reg, pp_j.t_reg, oact_j
# (hdl_gen.config.DRAIN_STAGES minus "out").
VALID_STAGES = ("v", "q", "m", "p", "t", "o")
# Instance-name prefix of the dotted fault sites -> the module that declares the register.
PE_PREFIX, PP_PREFIX = "pe_", "pp_"


def sext(x, width_in: int, width_out: int):
    """Sign-extend the `width_in`-bit vector `x` to `width_out` bits (an unsigned concatenation)."""
    if width_out == width_in:
        return x
    return Cat(Repeat(x[width_in - 1], width_out - width_in), x)


def zext(x, width_in: int, width_out: int):
    if width_out == width_in:
        return x
    return Cat(Int(0, width_out - width_in), x)


def lane(vec, index: int, width: int):
    """Field `index` of a packed vector of `width`-bit fields: vec[index*width +: width]."""
    return vec[index * width : (index + 1) * width]


def waive(m: Module, rule: str, why: str) -> None:
    """Open a narrow Verilator lint waiver in the generated text (closed by `unwaive`)."""
    m.EmbeddedCode(f"// {why}\n  // verilator lint_off {rule}")


def unwaive(m: Module, rule: str) -> None:
    m.EmbeddedCode(f"// verilator lint_on {rule}")


# ---- module names: derived from the widths each module depends on -------------------------------
def pe_name(cfg: ArrayConfig) -> str:
    return f"quasar_pe_{cfg.suffix()}"


def postproc_name(cfg: ArrayConfig) -> str:
    """The post-processing module: the multiplier datapath, or the shift-only one (requant="shift")."""
    return f"quasar_postproc_{'shift_' if cfg.shift_only else ''}v{cfg.v_bits}a{cfg.act_bits}"


def requant_mul_name(cfg: ArrayConfig) -> str:
    return f"quasar_requant_mul_v{cfg.v_bits}"


def protect_name(cfg: ArrayConfig) -> str:
    """quasar_protect_c{C}a{A} (act domain) or ..._c{C}v{V} (acc), then `pc` (per channel), `z` (zero policy)."""
    values = f"v{cfg.v_bits}" if cfg.protect_domain == "acc" else f"a{cfg.act_bits}"
    pc = "pc" if cfg.per_channel_bounds else ""
    zero = "z" if cfg.protect_policy == "zero" else ""
    return f"quasar_protect_c{cfg.cols}{values}{pc}{zero}"
