"""Activation number formats (docs/arithmetic.md, "Activation number formats"): their names, the check
of a format and its integer bits, and how runs are named after them. Torch-free, so configurations
(training, campaigns, sweeps) validate a format before importing anything heavy.
"""

from __future__ import annotations

from quasar.arithmetic import ACT_FORMATS
from quasar.errors import ConfigError, check_choice, check_range

__all__ = ["ACT_FORMATS", "check_format", "format_tag", "format_text"]


def check_format(act_format: object, int_bits: object, act_bits: int) -> int | None:
    """Validate an activation format and its integer bits (None or 'auto' = auto); return int_bits as an
    int or None. Raises a ConfigError naming the bad value and what is allowed."""
    check_choice("act format", act_format, ACT_FORMATS)
    if int_bits is None or int_bits == "auto":
        return None
    if act_format != "pow2":
        raise ConfigError(f"int bits ({int_bits!r}) only apply to act format 'pow2', not {act_format!r}")
    return check_range(f"int bits (ap_ufixed<{act_bits}, I> integer bits)", int_bits, 0, act_bits)


def format_tag(act_format: str, int_bits: int | None) -> str:
    """'' for calibrated, '-pow2' (auto integer bits) or '-pow2i<N>': names runs and cache entries."""
    if act_format == "calibrated":
        return ""
    return f"-{act_format}" + ("" if int_bits is None else f"i{int_bits}")


def format_text(act_format: str, int_bits: int | None) -> str:
    """One line for tables and summaries."""
    if act_format == "calibrated":
        return "calibrated (real scales, M and S)"
    return f"{act_format} (integer bits {'auto' if int_bits is None else int_bits}; M = 1, shift only)"


# The --act-format / --int-bits help of every command that takes them (train, accuracy-table, campaign,
# rates, sweep, paper).
ACT_FORMAT_HELP = (
    "activation number format: calibrated (real scales, multiplier M and shift S) or pow2 (power-of-two "
    "scales, ap_ufixed<A, I>; requantization is a shift); docs/arithmetic.md"
)
INT_BITS_HELP = (
    "pow2 only: integer bits I of every hidden layer's ap_ufixed<A, I> (0..A), or auto (per layer, the "
    "fewest that hold the data maximum)"
)
