"""The job format of fault-rate tile runs: the runs of one tile packed into a few arrays.

A group (one tile of one layer, `execution/rates.py`) carries what its runs share (`ops`: the padded
weight side and parameters; `k`, `is_last`, `max_cycles`, `sites`: the register names flips index)
and three arrays holding every run back to back: `x` (the runs' real activation rows, K wide),
`want` (the integer model's output on those rows and the tile's real columns) and `flips` (n x 3:
cycle, site index, bit; sorted by cycle within a run). A run is {"id", "at": (x0, x1, f0, f1)}: its
rows x[x0:x1] / want[x0:x1] and flips[f0:f1]. Pickling a few arrays per tile instead of three per run
is what keeps job files cheap at hundreds of thousands of runs. A result line of such a run may carry
its differences packed (`dz`/`dzl`: base64 of int32/int64 (row, col, value) triplets) instead of a JSON list
(`diff`): parsing one string is ~5x cheaper than a list of lists; `record_diff` reads either.
Nothing here simulates.
"""

from __future__ import annotations

import base64

import numpy as np


class GroupBuilder:
    """Collects the runs of one tile, then packs them (`group()`)."""

    def __init__(self, head: dict):
        self.head = head
        self.ids: list[int] = []
        self.x: list[np.ndarray] = []
        self.want: list[np.ndarray] = []
        self.flips: list[np.ndarray] = []

    def add(self, rid: int, x: np.ndarray, want: np.ndarray, flips: np.ndarray) -> None:
        self.ids.append(rid)
        self.x.append(x)
        self.want.append(want)
        self.flips.append(flips)

    def group(self, x_dtype) -> dict:  # type: ignore[no-untyped-def]
        rows = np.cumsum([0] + [len(x) for x in self.x]).tolist()
        nf = np.cumsum([0] + [len(f) for f in self.flips]).tolist()
        runs = [{"id": rid, "at": (rows[n], rows[n + 1], nf[n], nf[n + 1])} for n, rid in enumerate(self.ids)]
        return {**self.head, "x": np.concatenate(self.x).astype(x_dtype), "want": np.concatenate(self.want),
                "flips": np.concatenate(self.flips).astype(np.int32), "runs": runs}


def run_parts(group: dict, run: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation rows, expected output, flips) of one run of a packed group."""
    x0, x1, f0, f1 = run["at"]
    return group["x"][x0:x1], group["want"][x0:x1], group["flips"][f0:f1]


def single_runs(groups: list[dict]) -> dict[int, dict]:
    """{run id: a group holding that run alone}: what a captured tile run is checked with."""
    return {r["id"]: {**g, "runs": [r]} for g in groups for r in g["runs"]}


_I32 = np.iinfo(np.int32)


def pack_diff(entries: np.ndarray) -> dict[str, str]:
    """(m x 3) int (row, col, value) triplets as a result line's `dz` (int32) or `dzl` (int64) string."""
    entries = np.asarray(entries, np.int64)
    if not entries.size:
        return {}
    if entries.min() >= _I32.min and entries.max() <= _I32.max:  # activations, and logits up to 31 bits
        return {"dz": base64.b64encode(np.ascontiguousarray(entries, "<i4").tobytes()).decode("ascii")}
    return {"dzl": base64.b64encode(np.ascontiguousarray(entries, "<i8").tobytes()).decode("ascii")}


def record_diff(rec: dict) -> np.ndarray:
    """A result record's differing outputs as (m x 3) int64 (row, col, value), from `dz`, `dzl` or `diff`."""
    if rec.get("dz"):
        return np.frombuffer(base64.b64decode(rec["dz"]), "<i4").reshape(-1, 3).astype(np.int64)
    if rec.get("dzl"):
        return np.frombuffer(base64.b64decode(rec["dzl"]), "<i8").reshape(-1, 3).astype(np.int64)
    return np.asarray(rec.get("diff") or [], np.int64).reshape(-1, 3)
