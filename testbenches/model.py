"""Analytic model of one tile run of the generated array, with and without a fault (docs/rtl.md).

Pure numpy on top of quasar.arithmetic: what the array must output for a tile, and what a fault in
a given register at a given cycle must change, derived from the array's dataflow timing. The RTL
regression checks the simulator against it; campaigns may use it to cross-check outcomes.
Never touches a simulator.

Timing (edge 0 samples `start`; "after edge e" = the register's value between edges e and e+1):
- PE (i,j) is cleared at edge 1 + i + j (ArrayConfig.pe_clear_edge): a flip of its a_op, w_op, p_reg or
  acc before that edge is wiped out;
- a_reg(i,j) and w_reg(i,j) hold operand index k = e - 2 - i - j (zero outside 0 <= k < K), the
  multiplier's operand registers a_op(i,j) and w_op(i,j) index k = e - 3 - i - j (for this PE only);
- the PE's product register p_reg(i,j) holds the product of index k = e - 4 - i - j (else 0), which
  enters acc(i,j) at edge k + 5 + i + j (ArrayConfig.products_in);
- the drain samples row r's accumulators at edge D + r, D = K + C + 4, into v_j;
- row r's values then pass one register per edge (ArrayConfig.stage_edge): v_j after edge D + r,
  its copy next to the multipliers pp_j.v_reg after D + 1 + r, the partial products
  pp_j.pl_reg = v_lo*M and pp_j.ph_reg = v_hi*M after D + 2 + r, the product
  pp_j.p_reg = ph * 2^LO + pl = v*M after D + 3 + r, the shifted product pp_j.t_reg = floor(2p / 2^S)
  after D + 4 + r, the clamped oact_j = clamp(floor((t + 1) / 2)) after D + 5 + r;
- the protection writes row r's output at edge D + 6 + r; `done` rises at edge K + R + C + 9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl_gen.config import DRAIN_STAGE_OF, MAC_LAG, OPERAND_LAG, ArrayConfig
from quasar import arithmetic as ar
from quasar.errors import ConfigError

__all__ = [
    "OPERAND_LAG",
    "Expected",
    "Tile",
    "finish",
    "golden",
    "oact_from_t",
    "multiplier_operand_index",
    "operand_index",
    "partial_products",
    "postproc_registers",
    "predict",
    "predict_many",
]
# the post-processing pipeline's registers, in dataflow order
_PP_REGS = ("v_reg", "pl_reg", "ph_reg", "p_reg", "t_reg")


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


def multiplier_operand_index(cycle: int, row: int, col: int) -> int:
    """The operand index k that the multiplier's operand registers a_op/w_op of PE (row, col) hold after
    edge `cycle`: the one a_reg/w_reg held an edge before."""
    return operand_index(cycle - 1, row, col)


def _parse(site: str) -> tuple[str, int | None, int | None]:
    """('a_reg'|'w_reg'|'prod'|'acc', i, j) for PE registers (the PE's p_reg reported as 'prod'),
    ('v_reg'|'pl_reg'|'ph_reg'|'p_reg'|'t_reg', None, j) for the post-processing pipeline of column j,
    ('oact'|'v', None, j), else (name, None, None)."""
    if site.startswith("pe_") and "." in site:
        inst, reg = site.split(".", 1)
        _, i, j = inst.split("_")
        return ("prod" if reg == "p_reg" else reg), int(i), int(j)
    if site.startswith("pp_") and "." in site:
        inst, reg = site.split(".", 1)
        if inst[3:].isdigit() and reg in _PP_REGS:
            return reg, None, int(inst[3:])
    head, _, tail = site.rpartition("_")
    if head in ("oact", "v") and tail.isdigit():
        return head, None, int(tail)
    return site, None, None


def predict(cfg: ArrayConfig, tile: Tile, site: str, mask: int, cycle: int = 0, model: str = "flip") -> Expected:
    """What the array outputs with one fault: a flip of `mask` in `site` after edge `cycle`, or (for
    a_reg) the bits of `mask` stuck at 0/1 for the whole run. Control registers are not modelled."""
    R, K = cfg.rows, tile.k
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
    elif reg in ("a_op", "w_op", "prod", "acc") and cycle < cfg.pe_clear_edge(i, j):
        pass  # the PE's clear wipes it out
    elif reg in ("a_op", "w_op"):
        # the operand a_reg/w_reg held one edge before, for this PE's product only (padding: 0 * 0)
        k = multiplier_operand_index(cycle, i, j)
        if 0 <= k < K:
            a, w = int(x[i, k]), int(wt[k, j])
            if reg == "a_op":
                acc[i, j] += ((a ^ mask) - a) * w
            else:
                acc[i, j] += a * (_signed(w ^ mask, cfg.weight_bits) - w)
    elif reg == "prod":
        # p_reg after edge e holds the product of index e - 4 - i - j (zero outside the window); acc
        # adds it at edge e + 1, which counts while the drain has not yet sampled row i
        if cycle + 1 < cfg.stage_edge(K, "v", i):
            k = operand_index(cycle, i, j) - (MAC_LAG - 1)
            p = int(x[i, k] * wt[k, j]) if 0 <= k < K else 0
            flipped = _signed(p ^ mask, cfg.act_bits + cfg.weight_bits)
            acc[i, j] = _signed(int(acc[i, j]) + flipped - p, cfg.acc_bits)
    elif reg == "acc":
        if cycle < cfg.stage_edge(K, "v", i):  # before the drain samples row i
            n = cfg.products_in(K, cycle, i, j)  # products that entered by edge `cycle`
            partial = int(x[i, :n] @ wt[:n, j])
            flipped = _signed(partial ^ mask, cfg.acc_bits)
            acc[i, j] = _signed(int(acc[i, j]) + flipped - partial, cfg.acc_bits)
    elif reg in DRAIN_STAGE_OF:
        # a drained row's register: only the flip after the edge that loaded row r counts (the next
        # edge passes it on); before the first and after the last row it meets no valid stage
        r = cycle - cfg.stage_edge(K, DRAIN_STAGE_OF[reg], 0)
        logits = acc + bias
        if not 0 <= r < R:
            return finish(cfg, tile, logits)
        if reg == "v":  # ahead of an acc-domain protection: finish protects the flipped value
            logits_f = logits.copy()
            logits_f[r, j] = _signed(int(logits[r, j]) ^ mask, cfg.v_bits)
            return finish(cfg, tile, logits_f)
        mult, shift = int(np.asarray(tile.mult)[j]), int(np.asarray(tile.shift)[j])
        if cfg.protected and cfg.protect_domain == "acc":  # the pp_j registers and oact lie behind it
            run = finish(cfg, tile, logits)
            y = run.out_act.copy()
            y[r, j] = _pipeline_flip(cfg, reg, int(run.logits[r, j]), mult, shift, mask, int(y[r, j]))
            return Expected(y, run.logits, run.violations)
        y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
        y[r, j] = _pipeline_flip(cfg, reg, int(logits[r, j]), mult, shift, mask, int(y[r, j]))
        return finish(cfg, tile, logits, y)
    else:
        raise ConfigError(f"the analytic model does not cover register {site!r}")
    return finish(cfg, tile, acc + bias)


def partial_products(cfg: ArrayConfig, v: int, mult: int) -> tuple[int, int]:
    """(pl_reg, ph_reg) of the post-processing pipeline for biased accumulator v (docs/rtl.md): with
    LO = cfg.lo_bits, pl = (v mod 2^LO) * M (unsigned) and ph = floor(v / 2^LO) * M (signed), so that
    ph * 2^LO + pl = v * M. A shift-only design has M = 1: pl and ph are v's low and high bits."""
    lo = cfg.lo_bits
    return (int(v) & ((1 << lo) - 1)) * int(mult), (int(v) >> lo) * int(mult)


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
    return _postproc(cfg, v, mult, shift, {reg: mask})


def _postproc(cfg: ArrayConfig, v: int, mult: int, shift: int, masks: dict[str, int]) -> int:
    """The activation oact_j takes for biased accumulator v when its row meets the flips `masks`
    ({'v_reg'|'pl_reg'|'ph_reg'|'p_reg'|'t_reg'|'oact': mask}) in the post-processing pipeline, in dataflow order."""
    p_bits = cfg.p_bits  # V + 16, or V in a shift-only design (M = 1)
    if masks.get("v_reg"):
        v = _signed(v ^ masks["v_reg"], cfg.v_bits)
    p, t = postproc_registers(v, mult, shift)
    if masks.get("pl_reg") or masks.get("ph_reg"):
        pl, ph = partial_products(cfg, v, mult)
        pl = (pl ^ masks.get("pl_reg", 0)) & ((1 << cfg.pl_bits) - 1)  # unsigned
        ph = _signed(ph ^ masks.get("ph_reg", 0), cfg.ph_bits)
        p = _signed((ph << cfg.lo_bits) + pl, p_bits)  # the sum wraps at p_bits like p_reg
        t = (2 * p) >> shift
    if masks.get("p_reg"):
        p = _signed(p ^ masks["p_reg"], p_bits)
        t = (2 * p) >> shift
    if masks.get("t_reg"):
        t = _signed(t ^ masks["t_reg"], p_bits + 1)
    return oact_from_t(cfg, t) ^ masks.get("oact", 0)


def _entry_edge(k: int, i: int, j: int) -> int:
    """The edge at which the product of operand index k enters acc(i, j): a_reg and w_reg hold it after
    edge k + OPERAND_LAG + i + j, the PE's p_reg takes their product at the next edge and acc adds it at
    the one after (MAC_LAG, docs/rtl.md, "Timing")."""
    return k + OPERAND_LAG + MAC_LAG + i + j


def predict_many(cfg: ArrayConfig, tile: Tile, flips) -> Expected:  # type: ignore[no-untyped-def]
    """What the array outputs with several transient flips in one tile run: `flips` is a sequence of
    (site, mask, cycle) of data registers (a_reg, w_reg, the PE's operands a_op, w_op, the PE product
    p_reg, acc, v, the
    post-processing pp_j.v_reg, pp_j.pl_reg, pp_j.ph_reg, pp_j.p_reg and pp_j.t_reg, oact), composed in
    dataflow order.

    Same timing as `predict` (keep the two in step; both from ArrayConfig's timing helpers): an operand
    flipped in a_reg(i, j) (or w_reg) is seen, XORed with any later flip of the same operand further
    along its row (column), by every PE it still reaches, and then XORed with a flip of this PE's a_op
    (w_op) while it holds the operand; the product of index k sits in p_reg(i, j)
    after edge `_entry_edge(k, i, j) - 1`, where a flip XORs the (possibly already flipped) product at
    A+W bits; it counts when it enters acc(i, j) before the drain samples row i (edge
    `stage_edge(K, "v", i)`; padding operands are zeros, so a flipped padding activation only matters
    where it meets a flipped padding weight, a flipped padding product always); accumulator flips XOR
    the partial sum at their edge and the sum wraps at ACC bits; then, for a drained row, v (logit)
    flips, the post-processing's input v_reg, the partial products pl_reg/ph_reg, the requantization
    product p_reg, the shifted t_reg, oact, protection.
    With one flip this equals `predict` (tests/campaign/test_rates_plan.py)."""
    R, C = cfg.rows, cfg.cols
    x = np.asarray(tile.x, dtype=np.int64)
    wt = np.asarray(tile.wt, dtype=np.int64)
    K = x.shape[1]
    drained = [cfg.stage_edge(K, "v", i) for i in range(R)]  # the drain samples row i at this edge
    a_masks: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (i, k): [(j, mask)]
    w_masks: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (j, k): [(i, mask)]
    op_masks: dict[tuple[int, int, int], list[int]] = {}  # (i, j, k): [a_op mask, w_op mask]
    p_masks: dict[tuple[int, int, int], int] = {}  # (i, j, k): mask of the product register
    acc_flips: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (i, j): [(cycle, mask)]
    row_masks: dict[tuple[int, int], dict[str, int]] = {}  # (r, j): {v|v_reg|pl_reg|ph_reg|p_reg|t_reg|oact: mask}
    for site, mask, cycle in flips:
        reg, i, j = _parse(site)
        if reg == "a_reg":
            a_masks.setdefault((i, operand_index(cycle, i, j)), []).append((j, mask))
        elif reg == "w_reg":
            w_masks.setdefault((j, operand_index(cycle, i, j)), []).append((i, mask))
        elif reg in ("a_op", "w_op", "prod", "acc") and cycle < cfg.pe_clear_edge(i, j):
            continue  # the PE's clear wipes it out
        elif reg in ("a_op", "w_op"):  # the operand of index k one edge after a_reg/w_reg held it
            masks = op_masks.setdefault((i, j, multiplier_operand_index(cycle, i, j)), [0, 0])
            masks[reg == "w_op"] ^= mask
        elif reg == "prod":
            if cycle + 1 < drained[i]:  # acc adds it at the next edge, before the drain samples row i
                key = (i, j, cycle + 1 - _entry_edge(0, i, j))
                p_masks[key] = p_masks.get(key, 0) ^ mask
        elif reg == "acc":
            if cycle < drained[i]:  # before the drain samples row i
                acc_flips.setdefault((i, j), []).append((cycle, mask))
        elif reg in DRAIN_STAGE_OF:
            r = cycle - cfg.stage_edge(K, DRAIN_STAGE_OF[reg], 0)
            if 0 <= r < R:  # the register holds row r (the next edge passes it on)
                masks = row_masks.setdefault((r, j), {})
                masks[reg] = masks.get(reg, 0) ^ mask
        else:
            raise ConfigError(f"the analytic model does not cover register {site!r}")
    w_top = (1 << cfg.weight_bits) - 1
    prod_bits = cfg.act_bits + cfg.weight_bits

    def product_change(i: int, j: int, k: int) -> int:
        # The PE's clear (edge 1 + i + j) zeroes all its registers. a_reg(i, jj) takes operand index k at
        # edge k + 2 + i + jj: for k <= -2 before its clear, so a flip of it is wiped; for k = -1 at its clear
        # edge (the flip lands after it and reaches this PE's a_op), but the next PE takes it at its own
        # clear edge, which loads zero instead: an index -1 flip reaches only its own PE's product (the
        # same down a column for w_reg). a_op/w_op and p_reg flips after the clear count (op_masks and
        # p_masks hold only those).
        a = int(x[i, k]) if 0 <= k < K else 0
        for jj, m in a_masks.get((i, k), ()) if k >= -1 else ():
            if jj == j or (jj < j and k >= 0):
                a ^= m
        w = int(wt[k, j]) & w_top if 0 <= k < K else 0
        for ii, m in w_masks.get((j, k), ()) if k >= -1 else ():
            if ii == i or (ii < i and k >= 0):
                w ^= m
        a_op, w_op = op_masks.get((i, j, k), (0, 0))
        a, w = a ^ a_op, w ^ w_op
        p = a * _signed(w, cfg.weight_bits)
        if (i, j, k) in p_masks:
            p = _signed(p ^ p_masks[(i, j, k)], prod_bits)
        return p - (int(x[i, k]) * int(wt[k, j]) if 0 <= k < K else 0)

    delta: dict[tuple[int, int], dict[int, int]] = {}  # (i, j): {operand index: product change}
    touched = {(i, j, k) for (i, k), fl in a_masks.items() for j in range(min(j for j, _ in fl), C)}
    touched |= {(i, j, k) for (j, k), fl in w_masks.items() for i in range(min(i for i, _ in fl), R)}
    touched |= set(p_masks) | set(op_masks)
    for i, j, k in touched:
        if _entry_edge(k, i, j) < drained[i]:  # entered acc(i, j) before the drain read it
            d = product_change(i, j, k)
            if d:
                delta.setdefault((i, j), {})[k] = d
    acc = ar.matmul(x, wt)
    for (i, j), ds in delta.items():
        if (i, j) not in acc_flips:
            acc[i, j] += sum(ds.values())
    for (i, j), fl in acc_flips.items():
        ds = delta.get((i, j), {})
        products = {k: int(x[i, k]) * int(wt[k, j]) + ds.get(k, 0) for k in range(K)}
        products.update({k: d for k, d in ds.items() if not 0 <= k < K})
        cur = 0
        done: set[int] = set()
        for cycle, mask in sorted(fl, key=lambda f: f[0]):
            entered = [k for k in products if _entry_edge(k, i, j) <= cycle and k not in done]
            cur += sum(products[k] for k in entered)
            done.update(entered)
            cur = _signed(cur ^ mask, cfg.acc_bits)
        acc[i, j] = cur + sum(v for k, v in products.items() if k not in done)
    acc = (acc + (1 << (cfg.acc_bits - 1))) % (1 << cfg.acc_bits) - (1 << (cfg.acc_bits - 1))  # ACC-bit wrap
    logits = acc + np.asarray(tile.bias, dtype=np.int64)
    for (r, j), masks in row_masks.items():
        if masks.get("v"):
            logits[r, j] = _signed(int(logits[r, j]) ^ masks["v"], cfg.v_bits)
    y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
    mult, shift = np.asarray(tile.mult), np.asarray(tile.shift)
    for (r, j), masks in row_masks.items():
        if any(masks.get(reg) for reg in (*_PP_REGS, "oact")):
            y[r, j] = _postproc(cfg, int(logits[r, j]), int(mult[j]), int(shift[j]), masks)
    return finish(cfg, tile, logits, y)
