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
of the network in one numpy call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fault_campaigns.planning.mapping import LayerMap

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
                 forward_from: Callable[[int, np.ndarray], np.ndarray], batch: int = 256):
        self.maps, self.golden, self.forward_from, self.batch = list(maps), golden, forward_from, batch

    def faulty_top1(self, layer: int, items: Sequence[tuple[int, list[tuple[int, int, int]]]]) -> np.ndarray:
        """Top-1 for each (image, changes) of one layer, evaluated in batches."""
        gold = self.golden.outputs[layer]
        out = np.empty(len(items), dtype=np.int64)
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
        return out

    def classify(self, faults: Sequence, records: Sequence[dict]) -> list[dict]:
        """One partial store row per record (fault fields are added by the caller)."""
        rows: dict[int, dict] = {}
        pending: dict[int, list[tuple[int, int, list]]] = defaultdict(list)
        for rec, fault in zip(records, faults, strict=True):
            gold_top1 = int(self.golden.top1[fault.image])
            label = int(self.golden.labels[fault.image])
            row = {"golden_top1": gold_top1, "label": label, "sim_cycles": rec["cyc"], "sim_time_s": rec["t"],
                   "protection_events": rec["viol"]}
            rows[rec["id"]] = row
            if not rec["fin"]:
                row.update(outcome="hang", faulty_top1=None, changed_outputs=None)
                continue
            changes = valid_diff(self.maps[fault.layer], fault.tile, rec["diff"])
            row["changed_outputs"] = len(changes)
            if not changes:
                row.update(outcome="masked", faulty_top1=gold_top1)
            else:
                pending[fault.layer].append((rec["id"], fault.image, changes))
        for layer, items in pending.items():
            tops = self.faulty_top1(layer, [(img, ch) for _, img, ch in items])
            for (rid, _, _), top in zip(items, tops, strict=True):
                row = rows[rid]
                row.update(faulty_top1=int(top), outcome=outcome(row["golden_top1"], int(top), row["label"], True))
        return [rows[rec["id"]] for rec in records]
