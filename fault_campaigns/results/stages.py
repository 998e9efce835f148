"""Where a fault was masked: the stage of the datapath at which its error disappeared.

The stages, in the order a value passes them (docs/campaign.md, "Masking stages"):

  none        no biased accumulator v of a real output changed, and nothing after it did (the flip hit a
              value no product used: a zero weight's partner, a register that is overwritten first)
  rounding    some v changed, but round_half_up(v * M / 2^S) is the golden one for every changed v
  clamp       the rounded value changed, but the ReLU/saturation clamp to [0, 2^A - 1] brought it back
  protection  the clamped value changed (or an output-activation register flipped), but the range
              protection restored the golden activation
  downstream  the layer output changed, but the network's logits did not (pooling, a later layer's
              rounding or ReLU)
  output      the network's logits changed (tolerable, SDC or critical)

A fault with several changed accumulators is attributed to the last stage any of them reached. The
tile-level stages are computed here, exactly, from the worker's record (the changed v values, `vd`;
the changed tile outputs, `diff`; the protection count) and the tile's golden v, multipliers, shifts
and bounds, with quasar.arithmetic's own requantization steps; `downstream` vs `output` is decided by
the classifier, which carries the faulty layer output to the logits. This module never runs a
simulation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STAGES = ("none", "rounding", "clamp", "protection", "downstream", "output")


def _round(v: int, mult: int, shift: int) -> int:
    """round_half_up(v * M / 2^S) before the clamp, exactly as quasar.arithmetic.requantize rounds."""
    p = int(v) * int(mult)
    return (p + (1 << (shift - 1))) >> shift if shift > 0 else p


def _lane(bound: int | np.ndarray, j: int) -> int:
    return int(bound) if np.ndim(bound) == 0 else int(np.asarray(bound)[j])


def element_stage(v_golden: int, v_faulty: int, j: int, ops, act_bits: int, protected: bool) -> int:
    """Index into STAGES at which the change of one biased accumulator v (column j) vanished;
    STAGES.index('downstream') when it survived to the tile output."""
    mult, shift = int(ops.mult[j]), int(ops.shift[j])
    r_g, r_f = _round(v_golden, mult, shift), _round(v_faulty, mult, shift)
    if r_g == r_f:
        return 1
    top = (1 << act_bits) - 1
    c_g, c_f = min(max(r_g, 0), top), min(max(r_f, 0), top)
    if c_g == c_f:
        return 2
    if protected:
        lo, hi = _lane(ops.lo, j), _lane(ops.hi, j)
        if min(max(c_g, lo), hi) == min(max(c_f, lo), hi):
            return 3
    return 4


def tile_stage(group: dict, rec: dict, valid: tuple[int, int], act_bits: int, protected: bool,
               output_changed: bool) -> int:
    """The stage (index into STAGES) reached inside the tile by the fault of one finished run.

    `group`: the tile group the run belonged to (ops, golden `logit`, golden `violations`, `is_last`);
    `rec`: the worker's record; `valid`: (rows, cols) of the tile that are real outputs;
    `output_changed`: whether a real output of the tile changed. A changed output returns
    'downstream' (4): the classifier raises it to 'output' when the logits change."""
    vp, vn = valid
    if output_changed:
        return 4
    if group["is_last"]:  # the output is v itself: unchanged v means nothing changed
        return 0
    golden_v = np.asarray(group["logit"])
    stage = 0
    for i, j, v in _valid(rec.get("vd") or [], vp, vn):
        stage = max(stage, element_stage(int(golden_v[i, j]), int(v), j, group["ops"], act_bits, protected))
    if stage == 0 and protected and rec["viol"] != group["violations"]:
        stage = 3  # no v changed, yet the protection clamped something: a flipped output activation
    return stage


def _valid(entries: Sequence[Sequence[int]], vp: int, vn: int) -> list[tuple[int, int, int]]:
    return [(int(i), int(j), int(v)) for i, j, v in entries if i < vp and j < vn]
