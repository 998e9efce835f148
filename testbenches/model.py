"""Analytic model of one tile run of the generated array, with and without a fault (docs/rtl.md).

Pure numpy on top of quasar.arithmetic: what the array must output for a tile, and what a fault in
a given register at a given cycle must change, derived from the array's dataflow timing. The RTL
regression checks the simulator against it; campaigns may use it to cross-check outcomes.
Never touches a simulator.

Timing (edge 0 samples `start`; "after edge e" = the register's value between edges e and e+1):
- a_reg(i,j) and w_reg(i,j) hold operand index k = e - 2 - i - j (zero outside 0 <= k < K);
- the product of index k enters acc(i,j) at edge k + 3 + i + j;
- the drain samples row r's accumulators at edge D + r, D = K + C + 2, into v_j;
- row r's values then pass one register per edge (ArrayConfig.stage_edge): v_j after edge D + r,
  the product pp_j.p_reg = v*M after D + 1 + r, the shifted product pp_j.t_reg = floor(2p / 2^S) after
  D + 2 + r, the clamped oact_j = clamp(floor((t + 1) / 2)) after D + 3 + r;
- the protection writes row r's output at edge D + 4 + r; `done` rises at edge K + R + C + 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl_gen.config import OPERAND_LAG, ArrayConfig
from quasar import arithmetic as ar
from quasar.errors import ConfigError

__all__ = [
    "OPERAND_LAG",
    "Expected",
    "Tile",
    "finish",
    "golden",
    "oact_from_t",
    "operand_index",
    "postproc_registers",
    "predict",
]
# the drain stage each modelled post-accumulator register belongs to (hdl_gen.config.DRAIN_STAGES)
_STAGE = {"v": "v", "p_reg": "product", "t_reg": "shifted", "oact": "oact"}


@dataclass(frozen=True)
class Tile:
    """One tile's operands and layer parameters, as ArrayTB.load takes them."""

    x: np.ndarray  # rows x K activations
    wt: np.ndarray  # K x cols weights
    bias: np.ndarray  # (cols,)
    mult: np.ndarray  # (cols,)
    shift: np.ndarray  # (cols,)
    lo: np.ndarray | int = 0
    hi: np.ndarray | int | None = None  # None: 2^A - 1

    @property
    def k(self) -> int:
        return int(np.shape(self.x)[1])

    def bounds(self, cfg: ArrayConfig) -> tuple[np.ndarray | int, np.ndarray | int] | None:
        if not cfg.protected:
            return None
        return self.lo, (1 << cfg.act_bits) - 1 if self.hi is None else self.hi


@dataclass(frozen=True)
class Expected:
    out_act: np.ndarray
    logits: np.ndarray
    violations: int


def finish(cfg: ArrayConfig, tile: Tile, logits: np.ndarray, y: np.ndarray | None = None) -> Expected:
    """Post-processing and protection of given logits (or of given requantized values y)."""
    if y is None:
        y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
    bounds = tile.bounds(cfg)
    if bounds is None:
        return Expected(np.asarray(y, dtype=np.int64), np.asarray(logits, dtype=np.int64), 0)
    z, violations = ar.protect(y, *bounds)
    return Expected(z, np.asarray(logits, dtype=np.int64), violations)


def golden(cfg: ArrayConfig, tile: Tile) -> Expected:
    logits = ar.matmul(tile.x, tile.wt) + np.asarray(tile.bias, dtype=np.int64)
    return finish(cfg, tile, logits)


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def operand_index(cycle: int, row: int, col: int) -> int:
    """The operand index k that a_reg/w_reg of PE (row, col) hold after edge `cycle`."""
    return cycle - OPERAND_LAG - row - col


def _parse(site: str) -> tuple[str, int | None, int | None]:
    """('a_reg'|'w_reg'|'acc', i, j) for PE registers, ('p_reg'|'t_reg', None, j) for the post-processing
    pipeline of column j, ('oact'|'v', None, j), else (name, None, None)."""
    if site.startswith("pe_") and "." in site:
        inst, reg = site.split(".", 1)
        _, i, j = inst.split("_")
        return reg, int(i), int(j)
    if site.startswith("pp_") and "." in site:
        inst, reg = site.split(".", 1)
        if inst[3:].isdigit() and reg in ("p_reg", "t_reg"):
            return reg, None, int(inst[3:])
    head, _, tail = site.rpartition("_")
    if head in ("oact", "v") and tail.isdigit():
        return head, None, int(tail)
    return site, None, None


def predict(cfg: ArrayConfig, tile: Tile, site: str, mask: int, cycle: int = 0, model: str = "flip") -> Expected:
    """What the array outputs with one fault: a flip of `mask` in `site` after edge `cycle`, or (for
    a_reg) the bits of `mask` stuck at 0/1 for the whole run. Control registers are not modelled."""
    R, C, K = cfg.rows, cfg.cols, tile.k
    x = np.asarray(tile.x, dtype=np.int64)
    wt = np.asarray(tile.wt, dtype=np.int64)
    acc = ar.matmul(x, wt)
    bias = np.asarray(tile.bias, dtype=np.int64)
    reg, i, j = _parse(site)
    stuck = model in ("stuck0", "stuck1")
    if stuck and reg != "a_reg":
        raise ConfigError(f"the analytic model covers stuck-at faults in a_reg only, not {site!r}")
    if reg == "a_reg" and stuck:
        # every activation that passes a_reg(i, j) carries the stuck bits on to columns j..C-1
        stuck_x = (x[i] | mask) if model == "stuck1" else (x[i] & ~mask)
        acc[i, j:] += (stuck_x - x[i]) @ wt[:, j:]
    elif reg == "a_reg":
        k = operand_index(cycle, i, j)
        if 0 <= k < K:
            acc[i, j:] += ((int(x[i, k]) ^ mask) - x[i, k]) * wt[k, j:]
    elif reg == "w_reg":
        k = operand_index(cycle, i, j)
        if 0 <= k < K:
            w = int(wt[k, j])
            acc[i:, j] += x[i:, k] * (_signed(w ^ mask, cfg.weight_bits) - w)
    elif reg == "acc":
        if cycle <= K + C + 1 + i:  # before the drain samples row i
            n = min(K, max(0, operand_index(cycle, i, j)))  # products that entered by edge `cycle`
            partial = int(x[i, :n] @ wt[:n, j])
            flipped = _signed(partial ^ mask, cfg.acc_bits)
            acc[i, j] = _signed(int(acc[i, j]) + flipped - partial, cfg.acc_bits)
    elif reg in _STAGE:
        # a drained row's register: only the flip after the edge that loaded row r counts (the next
        # edge passes it on); before the first and after the last row it meets no valid stage
        r = cycle - cfg.stage_edge(K, _STAGE[reg], 0)
        logits = acc + bias
        if not 0 <= r < R:
            return finish(cfg, tile, logits)
        if reg == "v":
            logits_f = logits.copy()
            logits_f[r, j] = _signed(int(logits[r, j]) ^ mask, cfg.v_bits)
            return finish(cfg, tile, logits_f)
        y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
        mult, shift = int(np.asarray(tile.mult)[j]), int(np.asarray(tile.shift)[j])
        y[r, j] = _pipeline_flip(cfg, reg, int(logits[r, j]), mult, shift, mask, int(y[r, j]))
        return finish(cfg, tile, logits, y)
    else:
        raise ConfigError(f"the analytic model does not cover register {site!r}")
    return finish(cfg, tile, acc + bias)


def postproc_registers(v: int, mult: int, shift: int) -> tuple[int, int]:
    """(p_reg, t_reg) of the post-processing pipeline for biased accumulator v (docs/rtl.md):
    p = v * M and t = floor(2 p / 2^S), Python ints (exact at every width)."""
    p = int(v) * int(mult)
    return p, (2 * p) >> int(shift)


def oact_from_t(cfg: ArrayConfig, t: int) -> int:
    """The activation oact takes from t_reg = t: clamp(floor((t + 1) / 2), 0, 2^A - 1), which is
    quasar.arithmetic.requantize's value when t comes from `postproc_registers`."""
    return min(max((int(t) + 1) >> 1, 0), (1 << cfg.act_bits) - 1)


def _pipeline_flip(cfg: ArrayConfig, reg: str, v: int, mult: int, shift: int, mask: int, y: int) -> int:
    """The activation oact_j takes when the post-processing register `reg` of a row with biased
    accumulator v is flipped by `mask` while it holds that row (oact itself: y ^ mask)."""
    if reg == "oact":
        return y ^ mask
    p_bits = cfg.v_bits + cfg.M_BITS
    p, t = postproc_registers(v, mult, shift)
    if reg == "p_reg":
        p = _signed(p ^ mask, p_bits)
        t = (2 * p) >> shift
    else:  # t_reg
        t = _signed(t ^ mask, p_bits + 1)
    return oact_from_t(cfg, t)
