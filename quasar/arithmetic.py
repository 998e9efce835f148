"""Plain numpy implementation of docs/arithmetic.md.

It is the independent oracle: the RTL regression and the integer reference model are both checked
against these few lines. Keep it literal and obvious; never optimise it, never import the models or
the RTL generator from here.
"""

from __future__ import annotations

import numpy as np

M_BITS = 16
S_BITS = 6
MAX_SHIFT = (1 << S_BITS) - 1
ACT_FORMATS = ("calibrated", "pow2")  # docs/arithmetic.md, "Activation number formats"


def clog2(n: int) -> int:
    """Ceiling of log2(n) for n >= 1 (clog2(1) == 0)."""
    return max(0, (int(n) - 1).bit_length())


def act_range(act_bits: int) -> tuple[int, int]:
    """Inclusive range of an unsigned activation code."""
    return 0, (1 << act_bits) - 1


def weight_range(weight_bits: int) -> tuple[int, int]:
    """Inclusive range of a symmetric signed weight code (the quantizer never emits -2^(W-1))."""
    top = (1 << (weight_bits - 1)) - 1
    return -top, top


def acc_bits(act_bits: int, weight_bits: int, k_max: int) -> int:
    """Signed accumulator width that cannot overflow for any reduction K <= k_max."""
    return act_bits + weight_bits + clog2(k_max)


def matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact integer matmul `a @ w` in int64 (a: P x K activations, w: K x N weights)."""
    return np.asarray(a, dtype=np.int64) @ np.asarray(w, dtype=np.int64)


def requantize(v: np.ndarray, mult: np.ndarray, shift: np.ndarray, act_bits: int) -> np.ndarray:
    """`clamp(round_half_up(v * M / 2^S), 0, 2^A - 1)`; M and S broadcast over the last axis."""
    v = np.asarray(v, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    p = v * mult
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    r = np.right_shift(p + half, shift)  # arithmetic shift on int64 == floor division by 2^S
    lo, hi = act_range(act_bits)
    return np.clip(r, lo, hi)


def requantize_shift(v: np.ndarray, shift: np.ndarray, act_bits: int) -> np.ndarray:
    """The `pow2` format's requantization (M = 1): `clamp((v + 2^(S-1)) >> S, 0, 2^A - 1)`, S >= 0."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0):
        raise ValueError("the pow2 format only shifts right (S >= 0)")
    r = np.where(shift > 0, (v + (np.int64(1) << np.maximum(shift - 1, 0))) >> shift, v)
    lo, hi = act_range(act_bits)
    return np.clip(r, lo, hi)


def quantize_input(x: np.ndarray, act_bits: int, act_format: str = "calibrated") -> np.ndarray:
    """Input image x in [0, 1] to activation codes: round_half_up(x * (2^A - 1)) (calibrated) or
    min(round_half_up(x * 2^A), 2^A - 1) (pow2, ap_ufixed<A, 0>)."""
    x = np.asarray(x, dtype=np.float64)
    top = (1 << act_bits) - 1
    if act_format == "calibrated":
        return np.floor(x * top + 0.5).astype(np.int64)
    if act_format == "pow2":
        return np.minimum(np.floor(x * (1 << act_bits) + 0.5), top).astype(np.int64)
    raise ValueError(f"act_format must be one of {', '.join(ACT_FORMATS)}; got {act_format!r}")


def headroom(hi: int, act_bits: int) -> tuple[int, int]:
    """(codes, bits) between an upper bound and the top code: 2^A - 1 - hi, and A - bitlength(hi), the top
    bits that no value <= hi sets (a flip setting one of them always exceeds hi)."""
    hi = int(hi)
    return (1 << act_bits) - 1 - hi, act_bits - hi.bit_length()


def protect(
    y: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    policy: str = "clamp",
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Range restriction (bounds broadcast over the last axis); return (z, violations).

    Out-of-range values become the violated bound (`clamp`) or 0 (`zero`); only lanes where `mask` is
    true (the real outputs of a tile; default: all) are corrected and counted, the others pass."""
    if policy not in ("clamp", "zero"):
        raise ValueError(f"policy must be clamp or zero, got {policy!r}")
    y = np.asarray(y, dtype=np.int64)
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    en = np.ones(y.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), y.shape)
    out = en & ((y < lo) | (y > hi))
    fixed = np.minimum(np.maximum(y, lo), hi) if policy == "clamp" else np.zeros_like(y)
    return np.where(out, fixed, y), int(np.count_nonzero(out))


def lane_mask(rows: int, cols: int, valid_rows: int, valid_cols: int) -> np.ndarray:
    """(rows, cols) bool: true on the real outputs of a tile, its first valid_rows rows and valid_cols columns."""
    mask = np.zeros((rows, cols), dtype=bool)
    mask[:valid_rows, :valid_cols] = True
    return mask


def layer(
    a: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    mult: np.ndarray,
    shift: np.ndarray,
    act_bits: int,
    bounds: tuple[np.ndarray | int, np.ndarray | int] | None = None,
    policy: str = "clamp",
    domain: str = "act",
    mask: np.ndarray | None = None,
) -> dict[str, np.ndarray | int]:
    """One matmul layer end to end: returns acc, v (logits), y (requantized) and z (protected).

    domain `act` protects y (bounds in activation codes); domain `acc` protects v before requantization
    (bounds in v units), and then v (the logits) and y are the protected ones."""
    acc = matmul(a, w)
    v = acc + np.asarray(bias, dtype=np.int64)
    violations = 0
    if bounds is not None and domain == "acc":
        v, violations = protect(v, *bounds, policy=policy, mask=mask)
    y = requantize(v, mult, shift, act_bits)
    if bounds is not None and domain == "act":
        z, violations = protect(y, *bounds, policy=policy, mask=mask)
    else:
        z = y
    return {"acc": acc, "v": v, "y": y, "z": z, "violations": violations}
