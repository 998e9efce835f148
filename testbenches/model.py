"""Analytic model of one tile run of the generated array, with and without a fault (docs/rtl.md).

Pure numpy on top of quasar.arithmetic: what the array must output for a tile, and what a fault in
a given register at a given cycle must change, derived from the array's dataflow timing. The RTL
regression checks the simulator against it; campaigns may use it to cross-check outcomes.
Never touches a simulator.

Timing (edge 0 samples `start`; "after edge e" = the register's value between edges e and e+1):
- a_reg(i,j) and w_reg(i,j) hold operand index k = e - 2 - i - j (zero outside 0 <= k < K);
- the product of index k enters acc(i,j) at edge k + 3 + i + j;
- the drain samples row r's accumulators at edge D + r, D = K + C + 2, into v_j;
- v_j holds row r's v after edge D + r; oact_j holds row r's requantized y after edge D + 1 + r;
- the protection writes row r's output at edge D + 2 + r; `done` rises at edge K + R + C + 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl_gen.config import ArrayConfig
from quasar import arithmetic as ar
from quasar.errors import ConfigError

# the cycle offset between "operand index k" and "edge after which a_reg/w_reg of PE (0, 0) hold it"
OPERAND_LAG = 2


@dataclass(frozen=True)
class Tile:
    """One tile's operands and layer parameters, as ArrayTB.load takes them."""

    x: np.ndarray  # rows x K activations
    wt: np.ndarray  # K x cols weights
    bias: np.ndarray  # (cols,)
    mult: np.ndarray  # (cols,)
    shift: np.ndarray  # (cols,)
    lo: np.ndarray | int | None = None  # None: the lowest bound (0 in the act domain)
    hi: np.ndarray | int | None = None  # None: the highest bound (2^A - 1 in the act domain)
    valid: tuple[int, int] | None = None  # (rows, cols) holding real outputs; None: the whole array

    @property
    def k(self) -> int:
        return int(np.shape(self.x)[1])

    def bounds(self, cfg: ArrayConfig) -> tuple[np.ndarray | int, np.ndarray | int] | None:
        if not cfg.protected:
            return None
        bottom, top = cfg.bound_range
        return bottom if self.lo is None else self.lo, top if self.hi is None else self.hi

    def mask(self, cfg: ArrayConfig) -> np.ndarray:
        """Where the protection may act: the tile's real outputs."""
        rows, cols = (cfg.rows, cfg.cols) if self.valid is None else self.valid
        return ar.lane_mask(cfg.rows, cfg.cols, rows, cols)


@dataclass(frozen=True)
class Expected:
    out_act: np.ndarray
    logits: np.ndarray
    violations: int


def finish(cfg: ArrayConfig, tile: Tile, logits: np.ndarray, y: np.ndarray | None = None) -> Expected:
    """Post-processing and protection of given logits (or, in the act domain, of given requantized
    values y, e.g. a flipped oact row)."""
    bounds = tile.bounds(cfg)
    logits = np.asarray(logits, dtype=np.int64)
    violations = 0
    if bounds is not None and cfg.protect_domain == "acc":
        if y is not None:
            raise ConfigError("with an acc-domain protection, y follows from the protected logits; give logits only")
        logits, violations = ar.protect(logits, *bounds, policy=cfg.protect_policy, mask=tile.mask(cfg))
    if y is None:
        y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
    if bounds is None or cfg.protect_domain == "acc":
        return Expected(np.asarray(y, dtype=np.int64), logits, violations)
    z, violations = ar.protect(y, *bounds, policy=cfg.protect_policy, mask=tile.mask(cfg))
    return Expected(z, logits, violations)


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
    """('a_reg'|'w_reg'|'acc', i, j) for PE registers, ('oact'|'v', None, j), else (name, None, None)."""
    if site.startswith("pe_") and "." in site:
        inst, reg = site.split(".", 1)
        _, i, j = inst.split("_")
        return reg, int(i), int(j)
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
    elif reg == "v":
        r = cycle - (K + C + 2)
        logits = acc + bias
        if 0 <= r < R:
            logits[r, j] = _signed(int(logits[r, j]) ^ mask, cfg.v_bits)
        return finish(cfg, tile, logits)
    elif reg == "oact":
        r = cycle - (K + C + 3)
        logits = acc + bias
        if cfg.protected and cfg.protect_domain == "acc":  # oact lies behind an acc-domain protection
            golden_run = finish(cfg, tile, logits)
            logits, y = golden_run.logits, golden_run.out_act.copy()
            if 0 <= r < R:
                y[r, j] ^= mask
            return Expected(y, logits, golden_run.violations)
        y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
        if 0 <= r < R:
            y[r, j] ^= mask
        return finish(cfg, tile, logits, y)
    else:
        raise ConfigError(f"the analytic model does not cover register {site!r}")
    return finish(cfg, tile, acc + bias)
