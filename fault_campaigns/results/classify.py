"""Outcome classification: from a faulty tile's output to the network's decision.

A finished run reports only where its tile output differs from the golden tile. The valid part of
that difference is written into a copy of the golden layer output, the integer reference model
(bit-exact with the RTL, checked by the golden run) carries it through the remaining layers, and the
faulty top-1 is compared with the golden one and with the label:

  masked     the layer output is bit-identical to the golden one
  tolerable  the output changed, the top-1 class did not
  sdc        the top-1 class changed (silent data corruption)
  critical   the golden run classified the image correctly and the faulty run does not
             (a subset of top-1 changes; the SDC rate counts sdc + critical)
  hang       the tile did not finish within its cycle bound
  crash      the simulator died on this fault

Downstream evaluation is batched per layer: a few hundred faulty layer outputs go through the rest
of the network in one numpy call. Each row also gets (fault_campaigns.results.stages, docs/campaign.md):
`live` (the mapping says the fault can reach a real output at all; 0 = idle, un-ACE), `stage` (where
its error disappeared, or `output`) and `golden_rank` (the golden top-1 class's rank among the faulty
logits, 0 = still first; SDC-5 = rank >= 5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fault_campaigns.planning.mapping import LayerMap, live_fault
from fault_campaigns.results.stages import STAGES, tile_stage

SDC_OUTCOMES = ("sdc", "critical")


def outcome(golden_top1: int, faulty_top1: int, label: int, changed: bool) -> str:
    if not changed:
        return "masked"
    if faulty_top1 == golden_top1:
        return "tolerable"
    return "critical" if golden_top1 == label else "sdc"


@dataclass
class Golden:
    """Golden per-image state of one design: every layer's output and the top-1 class."""

    outputs: list[np.ndarray]  # per layer, (B, P, N) activations (logits for the last layer)
    top1: np.ndarray  # (B,)
    labels: np.ndarray  # (B,)


def valid_diff(lm: LayerMap, tile: int, diff: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """The (pixel, channel, value) changes of a tile that land on real outputs (padding dropped)."""
    if not diff:  # most faults are masked: skip the tile geometry
        return []
    p0, n0 = lm.origin(tile)
    vp, vn = lm.valid(tile)
    return [(p0 + i, n0 + j, v) for i, j, v in diff if i < vp and j < vn]


class Classifier:
    """Turns raw run records into store rows for one design (protection)."""

    def __init__(self, maps: Sequence[LayerMap], golden: Golden,
                 forward_from: Callable[[int, np.ndarray], np.ndarray], batch: int = 256,
                 groups: Mapping[tuple[int, int, int], dict] | None = None, act_bits: int | None = None,
                 protected: bool = False):
        """`groups` (tile groups by (image, layer, tile)) and `act_bits`: needed for the masking stage;
        without them the stage is left empty."""
        self.maps, self.golden, self.forward_from, self.batch = list(maps), golden, forward_from, batch
        self.groups, self.act_bits, self.protected = groups, act_bits, protected
        last = golden.outputs[-1]
        self.golden_logits = np.asarray(last).reshape(len(last), -1)

    def faulty_top1(self, layer: int, items: Sequence[tuple[int, list[tuple[int, int, int]]]]) -> np.ndarray:
        """Top-1 for each (image, changes) of one layer, evaluated in batches."""
        return self.evaluate(layer, items)[0]

    def evaluate(self, layer: int, items: Sequence[tuple[int, list[tuple[int, int, int]]]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(top-1, golden top-1's rank, logits changed) for each (image, changes) of one layer."""
        gold = self.golden.outputs[layer]
        out = np.empty(len(items), dtype=np.int64)
        rank = np.empty(len(items), dtype=np.int64)
        changed = np.empty(len(items), dtype=bool)
        for start in range(0, len(items), self.batch):
            chunk = items[start:start + self.batch]
            ys = np.stack([gold[img] for img, _ in chunk]).copy()
            for b, (_, changes) in enumerate(chunk):
                for p, n, v in changes:
                    ys[b, p, n] = v
            if self.maps[layer].is_last:
                logits = ys.reshape(len(chunk), -1)
            else:
                logits = self.forward_from(layer, ys)
            out[start:start + len(chunk)] = np.argmax(logits, axis=1)  # lowest index on a tie
            imgs = np.array([img for img, _ in chunk])
            rank[start:start + len(chunk)] = golden_rank(logits, self.golden.top1[imgs])
            changed[start:start + len(chunk)] = np.any(logits != self.golden_logits[imgs], axis=1)
        return out, rank, changed

    def classify(self, faults: Sequence, records: Sequence[dict]) -> list[dict]:
        """One partial store row per record (fault fields are added by the caller)."""
        rows: dict[int, dict] = {}
        pending: dict[int, list[tuple[int, int, list]]] = defaultdict(list)
        for rec, fault in zip(records, faults, strict=True):
            gold_top1 = int(self.golden.top1[fault.image])
            label = int(self.golden.labels[fault.image])
            row = {"golden_top1": gold_top1, "label": label, "sim_cycles": rec["cyc"], "sim_time_s": rec["t"],
                   "protection_events": rec["viol"]}
            lm = self.maps[fault.layer]
            row["live"] = int(live_fault(lm, fault.tile, fault.site, fault.cycle, fault.model))
            row["stage"] = None
            rows[rec["id"]] = row
            if not rec["fin"]:
                row.update(outcome="hang", faulty_top1=None, changed_outputs=None, golden_rank=None)
                continue
            changes = valid_diff(lm, fault.tile, rec["diff"])
            row["changed_outputs"] = len(changes)
            if self.groups is not None and self.act_bits is not None:
                g = self.groups[(fault.image, fault.layer, fault.tile)]
                row["stage"] = STAGES[tile_stage(g, rec, lm.valid(fault.tile), self.act_bits, self.protected,
                                                 bool(changes))]
            if not changes:
                row.update(outcome="masked", faulty_top1=gold_top1, golden_rank=0)
            else:
                pending[fault.layer].append((rec["id"], fault.image, changes))
        for layer, items in pending.items():
            tops, ranks, moved = self.evaluate(layer, [(img, ch) for _, img, ch in items])
            for (rid, _, _), top, rank, mv in zip(items, tops, ranks, moved, strict=True):
                row = rows[rid]
                row.update(faulty_top1=int(top), outcome=outcome(row["golden_top1"], int(top), row["label"], True),
                           golden_rank=int(rank))
                if row["stage"] is not None:
                    row["stage"] = "output" if mv else "downstream"
        return [rows[rec["id"]] for rec in records]


def golden_rank(logits: np.ndarray, golden_top1: np.ndarray) -> np.ndarray:
    """Per row: how many classes argmax would put before the golden top-1 (a higher logit, or an equal
    logit at a lower index, as np.argmax breaks ties); 0 = the golden class is still the top-1."""
    logits = np.asarray(logits)
    g = np.asarray(golden_top1, dtype=np.int64)
    mine = logits[np.arange(len(g)), g][:, None]
    idx = np.arange(logits.shape[1])[None, :]
    return np.sum((logits > mine) | ((logits == mine) & (idx < g[:, None])), axis=1)
