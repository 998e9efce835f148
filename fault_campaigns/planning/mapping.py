"""Mapping a network onto the R x C array: the tiles of every layer and their operands.

Layer `l` computes `Y = f(X @ Wt)` with `X` (P x K) and `Wt` (K x N) (docs/arithmetic.md). Tile `t`
covers output pixels `p0 .. p0+R-1` and channels `n0 .. n0+C-1`, with `(tp, tn) = divmod(t, tiles_n)`,
`p0 = tp * R`, `n0 = tn * C`. Edge tiles are zero-fed: padded rows of `X` and padded columns of `Wt`,
bias, multiplier and shift are 0 and their outputs are discarded. The expected output of a whole
padded tile (what the RTL must produce, padding included, and the violations it must count) comes
from the plain numpy oracle `quasar.arithmetic`, never from the RTL.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from hdl_gen.config import DRAIN_STAGE_OF, ArrayConfig
from quasar import arithmetic
from quasar.protection import ProtectionSpec


@dataclass(frozen=True)
class LayerMap:
    index: int
    name: str
    pixels: int  # P
    reduction: int  # K
    channels: int  # N
    rows: int  # R of the array
    cols: int  # C of the array
    is_last: bool

    @property
    def tiles_p(self) -> int:
        return math.ceil(self.pixels / self.rows)

    @property
    def tiles_n(self) -> int:
        return math.ceil(self.channels / self.cols)

    @property
    def tiles(self) -> int:
        return self.tiles_p * self.tiles_n

    def origin(self, tile: int) -> tuple[int, int]:
        """(p0, n0): the first output pixel and channel of `tile`."""
        if not 0 <= tile < self.tiles:
            raise ValueError(f"layer {self.name!r} has tiles 0..{self.tiles - 1}, got {tile!r}")
        tp, tn = divmod(tile, self.tiles_n)
        return tp * self.rows, tn * self.cols

    def valid(self, tile: int) -> tuple[int, int]:
        """How many rows and columns of `tile` hold real outputs (the rest is padding)."""
        p0, n0 = self.origin(tile)
        return min(self.rows, self.pixels - p0), min(self.cols, self.channels - n0)


@dataclass
class TileOperands:
    """Everything loaded into the array for one tile run, padded to the array shape."""

    x: np.ndarray  # R x K activations
    w: np.ndarray  # K x C weights
    bias: np.ndarray  # C
    mult: np.ndarray  # C
    shift: np.ndarray  # C
    lo: int | np.ndarray  # per layer, or C per channel (activation codes, or v values in the acc domain)
    hi: int | np.ndarray
    valid: tuple[int, int] | None = None  # (rows, cols) of real outputs; the protection acts only there

    @property
    def k(self) -> int:
        return int(self.x.shape[1])

    def mask(self) -> np.ndarray:
        rows, cols = self.x.shape[0], self.w.shape[1]
        vr, vc = (rows, cols) if self.valid is None else self.valid
        return arithmetic.lane_mask(rows, cols, vr, vc)


@dataclass
class TileExpect:
    """The whole padded tile's expected outputs and violation count."""

    act: np.ndarray  # R x C activations after protection
    logit: np.ndarray  # R x C biased accumulators v
    violations: int


def layer_maps(export, rows: int, cols: int, pixels: list[int]) -> list[LayerMap]:
    """One LayerMap per matmul layer of a model export; `pixels[l]` is layer l's P (from a trace)."""
    out = []
    for i, (layer, p) in enumerate(zip(export.layers, pixels, strict=True)):
        k, n = np.asarray(layer.weight).shape
        out.append(LayerMap(i, layer.name, int(p), int(k), int(n), rows, cols, bool(layer.is_last)))
    return out


def _pad(a: np.ndarray, length: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, length - a.shape[axis])
    return np.pad(np.asarray(a, dtype=np.int64), pad)


def tile_operands(lm: LayerMap, layer, x: np.ndarray, tile: int, protection: str, per_channel: bool,
                  act_bits: int) -> TileOperands:
    """Operands of `tile` of one image's lowered layer input `x` (P x K); `protection` is a spec
    (quasar/protection.py; `per_channel` the legacy flag for specs naming no granularity)."""
    spec = ProtectionSpec.parse(protection, "channel" if per_channel else None)
    per_channel = spec.per_channel
    p0, n0 = lm.origin(tile)
    vp, vn = lm.valid(tile)
    full_lo, full_hi = arithmetic.act_range(act_bits)
    xt = _pad(x[p0:p0 + vp], lm.rows, 0)
    wt = _pad(layer.weight[:, n0:n0 + vn], lm.cols, 1)
    cols = slice(n0, n0 + vn)
    bias, shift = (_pad(np.asarray(a)[cols], lm.cols, 0) for a in (layer.bias, layer.shift))
    # unused lanes have v = 0 whatever M; M = 1 also suits the shift-only designs (requant='shift')
    mult = np.concatenate([np.asarray(layer.mult, np.int64)[cols], np.ones(lm.cols - vn, np.int64)])
    if spec.protected and spec.domain == "acc":  # every layer, the logits included; bounds in v units
        lo_l, hi_l = int(layer.v_lo), int(layer.v_hi)
        lo, hi = lo_l, hi_l
        if per_channel:  # padding columns: the layer's pair (the lane mask keeps them out anyway)
            lo = np.concatenate([np.asarray(layer.v_lo_ch, np.int64)[cols], np.full(lm.cols - vn, lo_l, np.int64)])
            hi = np.concatenate([np.asarray(layer.v_hi_ch, np.int64)[cols], np.full(lm.cols - vn, hi_l, np.int64)])
    elif not spec.protected or lm.is_last:
        lo, hi = full_lo, full_hi  # no clamping: the logits path is never range-restricted
        if per_channel:
            lo, hi = np.full(lm.cols, lo, np.int64), np.full(lm.cols, hi, np.int64)
    elif per_channel:
        lo = np.concatenate([np.asarray(layer.lo_ch, np.int64)[cols], np.full(lm.cols - vn, full_lo, np.int64)])
        hi = np.concatenate([np.asarray(layer.hi_ch, np.int64)[cols], np.full(lm.cols - vn, full_hi, np.int64)])
    else:
        lo, hi = int(layer.lo), int(layer.hi)
    return TileOperands(xt, wt, bias, mult, shift, lo, hi, (vp, vn))


def expect(ops: TileOperands, act_bits: int, protection: str) -> TileExpect:
    """The oracle's output of a padded tile, exactly as the RTL must compute it (the protection acts on
    the tile's real outputs only)."""
    spec = ProtectionSpec.parse(protection)
    bounds = (ops.lo, ops.hi) if spec.protected else None
    r = arithmetic.layer(ops.x, ops.w, ops.bias, ops.mult, ops.shift, act_bits, bounds, spec.policy, spec.domain,
                         ops.mask())
    return TileExpect(np.asarray(r["z"], np.int64), np.asarray(r["v"], np.int64), int(r["violations"]))


def place(lm: LayerMap, y: np.ndarray, tile: int, tile_out: np.ndarray) -> None:
    """Write the valid part of a tile's output (R x C) into a layer output `y` (P x N) in place."""
    p0, n0 = lm.origin(tile)
    vp, vn = lm.valid(tile)
    y[p0:p0 + vp, n0:n0 + vn] = tile_out[:vp, :vn]


def extract(lm: LayerMap, y: np.ndarray, tile: int) -> np.ndarray:
    """The valid part of `tile` from a layer output `y` (P x N)."""
    p0, n0 = lm.origin(tile)
    vp, vn = lm.valid(tile)
    return y[p0:p0 + vp, n0:n0 + vn]


def diff_entries(got: np.ndarray, want: np.ndarray) -> list[list[int]]:
    """[[row, col, got_value], ...] for every element of a tile output that differs from `want`."""
    rows, cols = np.nonzero(got != want)
    return [[int(i), int(j), int(got[i, j])] for i, j in zip(rows, cols, strict=True)]


# -- live and idle faults -------------------------------------------------------------------------------
# Register timing of a tile run: hdl_gen.config's helpers (docs/rtl.md, "Timing of a tile run"), the same
# the analytic fault model uses. tests/campaign/test_live.py checks live_fault against faults injected into
# the RTL, so a timing change that is not followed here fails.
_SITE = re.compile(
    r"pe_(\d+)_(\d+)\.(a_reg|w_reg|a_op|w_op|p_reg|acc)|(oact|v)_(\d+)|pp_(\d+)\.(v_reg|pl_reg|ph_reg|p_reg|t_reg)"
)


@functools.lru_cache(maxsize=256)
def _timing(rows: int, cols: int, k: int) -> ArrayConfig:
    """An array config with this shape that runs reduction length k: the owner of the timing helpers."""
    return ArrayConfig(rows=rows, cols=cols, k_max=k)


def live_fault(lm: LayerMap, tile: int, site: str, cycle: int, model: str = "flip") -> bool:
    """Whether a fault can reach a real output of `tile` at all (False: idle, un-ACE).

    Idle: the register holds padding or nothing that is read again when the fault lands: a PE row or
    column of padding (the R-1 unused rows of a fully connected tile at batch 1), an operand slot
    outside 0 <= k < K, a PE product register or accumulator whose content the drain no longer reads,
    a drain, post-processing or output register while it holds a padding row (or no row), or the last
    layer's post-processing and output-activation registers (its logits leave from v). Whether a live
    fault then changes anything depends on the data (a zero weight, the rounding): that is masking, not
    idleness. Control registers are always counted live."""
    m = _SITE.fullmatch(site)
    if m is None:
        return True
    vp, vn = lm.valid(tile)
    k, stuck = lm.reduction, model.startswith("stuck")
    cfg = _timing(lm.rows, lm.cols, k)
    if m.group(3):
        from testbenches.model import multiplier_operand_index, operand_index

        i, j, reg = int(m.group(1)), int(m.group(2)), m.group(3)
        if i >= vp or j >= vn:  # activations move right from column j, weights down from row i
            return False
        if stuck:
            return True
        if reg in ("acc", "p_reg") and cycle < cfg.pe_clear_edge(i, j):  # the PE's clear wipes it out
            return False
        if reg == "acc":  # the drain samples row i's accumulators at this edge
            return cycle < cfg.stage_edge(k, "v", i)
        if reg == "p_reg":  # acc adds it (a product, or 0 outside the operands) at the next edge
            return cycle + 1 < cfg.stage_edge(k, "v", i)
        if reg in ("a_op", "w_op"):  # the operand a_reg/w_reg held one edge before, for this PE only
            return 0 <= multiplier_operand_index(cycle, i, j) < k
        return 0 <= operand_index(cycle, i, j) < k
    reg, j = (m.group(4), int(m.group(5))) if m.group(4) else (m.group(7), int(m.group(6)))
    if j >= vn or (reg != "v" and lm.is_last):
        return False
    if stuck:
        return True
    r = cycle - cfg.stage_edge(k, DRAIN_STAGE_OF[reg], 0)  # the row the register holds after edge `cycle`
    return 0 <= r < vp
