"""Whole inferences under a fault rate, layer by layer: tile runs with flips on RTL, the others on the
integer model.

For each inference (rate, image, trial) the flips of every tile run are drawn up front
(`planning/rates.py`). Inferences advance one layer at a time. A layer's input is the previous
layer's actual output (golden while no fault has changed anything, else the corrupted one); the
integer model (bit-exact with the RTL, as every campaign's golden check proves) computes the layer
on it, and every tile run holding at least one flip is run on the RTL with its actual operands and
all of its flips in one run; its output replaces the model's for that tile. An inference whose layer
output equals the golden one goes back on the golden path (nothing to compute until its next flip).

The tile runs go through a `run_groups(groups, on_results, on_lost)` callable with the executor's
interface (`execution/executor.py`: long-lived simulators, job files, crash and hang handling;
or the Dask executor; or the software injector of the benchmark; or a waveform replay). To keep
executor calls few, inferences are cut into chunks balanced by their number of RTL tile runs and
advanced as a wavefront: one call runs layer l of chunk c for every c with c + l = step, and a chunk's
rows are stored as soon as its last layer is done (resume skips stored rows; a row is a pure function
of its flips, so chunking never changes a result). One executor call gets one job group per tile
(`execution/rate_jobs.py`): the tile's weight side once, its runs' activations, flips and expected
outputs packed into arrays; the expected output of a run is the integer model's layer output on the
same input, so a run's result line only says where the RTL differs from it. This module never writes
the store itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fault_campaigns.execution.rate_jobs import GroupBuilder, record_diff, run_parts
from fault_campaigns.planning import mapping
from fault_campaigns.planning.rates import FlipArrays
from fault_campaigns.results.classify import outcome
from quasar import arithmetic

RunGroups = Callable[[list[dict], Callable[[list[dict]], None], Callable[[int, str, str], None]], None]


@dataclass
class Inference:
    """One inference under faults: its flips, and its state while it advances layer by layer."""

    rate: float
    image: int
    trial: int
    flips: FlipArrays | Sequence
    y: np.ndarray | None = None  # this layer's output when it differs from the golden one
    changed_layers: int = 0
    violations: int = 0  # protection events of the faulty inference (all layers)
    rtl_runs: int = 0
    sim_time_s: float = 0.0
    lost: str | None = None  # "hang" or "crash"
    layer: int = 0  # the next layer to compute

    @property
    def key(self) -> tuple[float, int, int]:
        return (self.rate, self.image, self.trial)

    def layer_runs(self, layer: int) -> list[tuple[int, np.ndarray]]:
        return self.flips.layer_runs(layer) if len(self.flips) else []

    @property
    def run_count(self) -> int:
        return self.flips.run_count() if len(self.flips) else 0


def new_inference(rate: float, image: int, trial: int, flips: FlipArrays) -> Inference:
    return Inference(rate, image, trial, flips)


def chunk(infs: Sequence[Inference], parts: int) -> list[list[Inference]]:
    """Contiguous chunks with about the same number of RTL tile runs (plus one per inference)."""
    work = np.cumsum([inf.run_count + 1 for inf in infs])
    if not len(infs):
        return []
    parts = max(1, min(parts, len(infs)))
    cuts = np.searchsorted(work, work[-1] * np.arange(1, parts) / parts, side="left")
    out, start = [], 0
    for cut in [*cuts.tolist(), len(infs) - 1]:
        if cut + 1 > start:
            out.append(list(infs[start:cut + 1]))
            start = cut + 1
    return out


class RateEngine:
    """Runs inferences of one design (a prepared `Campaign`'s `Design`) layer by layer."""

    def __init__(self, campaign, design, run_groups: RunGroups, chunks: int = 8):  # type: ignore[no-untyped-def]
        self.c, self.d, self.run_groups, self.chunks = campaign, design, run_groups, chunks
        self.maps = campaign.maps
        self.model = design.model
        self.gold = design.golden.outputs
        self.gold_viol = [np.asarray(lt.violations, np.int64) for lt in design.trace.layers]
        self.trace_x = [lt.X for lt in design.trace.layers]
        self._tiles: dict[tuple[int, int], dict] = {}
        self._gold_tile_viol: dict[tuple[int, int, int], int] = {}
        self.sites = [s.name for s in campaign.sites]  # one list per job: pickled once, its ids looked up once
        self.a_bits = campaign.cfg.a_bits
        self.x_dtype = np.uint8 if self.a_bits <= 8 else np.uint16
        self.protected = design.protection != "none"
        self.stats = {"steps": 0, "executor_calls": 0, "rtl_tile_runs": 0, "model_s": 0.0, "rtl_s": 0.0}

    # -- the jobs of tile runs -----------------------------------------------------------------------
    def _tile(self, layer: int, tile: int, x: np.ndarray) -> dict:
        """What every run of (layer, tile) shares: the padded weight side and parameters (no activations)."""
        key = (layer, tile)
        got = self._tiles.get(key)
        if got is None:
            lm = self.maps[layer]
            ops = mapping.tile_operands(lm, self.c.export.layers[layer], np.asarray(x, np.int64), tile,
                                        self.d.protection, self.c.cfg.per_channel_bounds, self.a_bits)
            p0, n0 = lm.origin(tile)
            vp, vn = lm.valid(tile)
            small = replace(ops, x=None, w=np.ascontiguousarray(ops.w, dtype=np.int32))
            got = {"ops": small, "full": ops, "rows": (p0, vp), "cols": (n0, vn), "k": int(ops.w.shape[0]),
                   "max_cycles": 4 * self.c.tile_cycles[layer] + 64, "is_last": lm.is_last}
            self._tiles[key] = got
        return got

    def _tile_violations(self, t: dict, xs: np.ndarray) -> np.ndarray:
        """The integer model's protection events in this tile for each input (n x real rows x K) (the
        RTL's count replaces them): the contract (docs/arithmetic.md) on the tile's real lanes only, as the
        protection counts them, for a batch of runs of one tile at once."""
        ops, (_, vn) = t["full"], t["cols"]
        v = arithmetic.matmul(xs, ops.w[:, :vn]) + np.asarray(ops.bias, np.int64)[:vn]
        lo, hi = (np.asarray(b, np.int64)[:vn] if np.ndim(b) else int(b) for b in (ops.lo, ops.hi))
        spec = self.d.array.spec
        if spec.domain != "acc":
            v = arithmetic.requantize(v, np.asarray(ops.mult)[:vn], np.asarray(ops.shift)[:vn], self.a_bits)
        return ((v < lo) | (v > hi)).reshape(len(xs), -1).sum(axis=1)

    # -- one layer of a chunk ------------------------------------------------------------------------
    def _prepare_layer(self, infs: list[Inference], layer: int, next_id: int, groups: dict):
        """Add the RTL jobs of `layer` for `infs` to `groups` {(layer, tile): GroupBuilder}; compute the
        integer model's layer output for each inference that needs one. Returns (pending {run id:
        [inference, layer, tile, model violations in the tile]}, next id)."""
        t0 = time.perf_counter()
        diverged = [inf for inf in infs if inf.lost is None and inf.y is not None]
        xs: dict[int, np.ndarray] = {}
        if diverged:
            y_prev = np.stack([inf.y for inf in diverged])
            x = self.model.lower(layer, self.model.next_input(layer - 1, y_prev))
            y, viol = self.model.layer_output(layer, x, return_violations=True)
            for b, inf in enumerate(diverged):
                xs[id(inf)] = x[b]
                inf.y = y[b]
                inf.violations += int(viol[b])
        pending: dict[int, list] = {}
        count: dict[tuple[int, int], list] = {}  # tile: [(run id, golden key or None, rows)] still to count
        for inf in infs:
            if inf.lost is not None:
                continue
            if inf.y is None:
                inf.violations += int(self.gold_viol[layer][inf.image])
            flipped = inf.layer_runs(layer)
            if not flipped:
                continue
            golden_input = inf.y is None
            if golden_input:
                x = self.trace_x[layer][inf.image]
                inf.y = np.array(self.gold[layer][inf.image], copy=True)
            else:
                x = xs[id(inf)]
            for tile, flips in flipped:
                t = self._tile(layer, tile, x)
                (p0, vp), (n0, vn) = t["rows"], t["cols"]
                builder = groups.get((layer, tile))
                if builder is None:
                    builder = groups[(layer, tile)] = GroupBuilder({
                        "key": (layer, tile), "rate": True, "ops": t["ops"], "k": t["k"], "is_last": t["is_last"],
                        "max_cycles": t["max_cycles"], "sites": self.sites})
                # the expected output is the integer model's layer output on the same input (bit-exact with
                # the RTL, as the golden check proves): no oracle call per run; the simulator reports the
                # difference
                builder.add(next_id, x[p0:p0 + vp], np.array(inf.y[p0:p0 + vp, n0:n0 + vn], copy=True), flips)
                pending[next_id] = [inf, layer, tile, 0]
                if self.protected:
                    gkey = (inf.image, layer, tile) if golden_input else None
                    if gkey in self._gold_tile_viol:
                        pending[next_id][3] = self._gold_tile_viol[gkey]
                    else:
                        count.setdefault((layer, tile), []).append((next_id, gkey, x[p0:p0 + vp]))
                next_id += 1
        for key, todo in count.items():
            got = self._tile_violations(self._tiles[key], np.stack([rows for _, _, rows in todo]))
            for (rid, gkey, _), n in zip(todo, got.tolist(), strict=True):
                pending[rid][3] = n
                if gkey is not None:
                    self._gold_tile_viol[gkey] = n
        self.stats["model_s"] += time.perf_counter() - t0
        return pending, next_id

    def _apply(self, pending: dict, records: list[dict], lost: list[tuple[int, str]]) -> None:
        for rec in records:
            inf, layer, tile, viol = pending[rec["id"]]
            inf.rtl_runs += 1
            inf.sim_time_s += float(rec.get("t") or 0.0)
            if not rec["fin"]:
                inf.lost = inf.lost or "hang"
                continue
            if rec.get("dz") or rec.get("dzl") or rec["diff"]:  # (row, col, value) within the tile's real outputs
                p0, n0 = self.maps[layer].origin(tile)
                d = record_diff(rec)
                inf.y[p0 + d[:, 0], n0 + d[:, 1]] = d[:, 2]
            inf.violations += int(rec["viol"]) - viol
        for rid, what in lost:
            inf = pending[rid][0]
            inf.rtl_runs += 1
            inf.lost = inf.lost or what

    def _close_layer(self, infs: list[Inference], layer: int) -> None:
        for inf in infs:
            inf.layer = layer + 1
            if inf.lost is not None or inf.y is None:
                continue
            if np.array_equal(inf.y, self.gold[layer][inf.image]):
                inf.y = None  # back on the golden path
            else:
                inf.changed_layers += 1

    # -- everything ----------------------------------------------------------------------------------
    def run(self, infs: list[Inference], on_rows: Callable[[list[dict]], None]) -> dict:
        """Advance every inference through every layer; `on_rows` gets each chunk's rows when done."""
        n_layers = len(self.maps)
        chunks = chunk(infs, self.chunks)
        t0 = time.perf_counter()
        for step in range(len(chunks) + n_layers - 1):
            active = [(c, step - c) for c in range(len(chunks)) if 0 <= step - c < n_layers]
            by_tile: dict[tuple[int, int], dict] = {}
            pending, next_id = {}, 0
            for c, layer in active:
                p, next_id = self._prepare_layer(chunks[c], layer, next_id, by_tile)
                pending.update(p)
            # one group per tile, in tile order: a tile's weights stay in the buffers between its runs
            groups = [by_tile[k].group(self.x_dtype) for k in sorted(by_tile)]
            records: list[dict] = []
            lost: list[tuple[int, str]] = []
            self.stats["steps"] += 1
            if groups:
                t1 = time.perf_counter()
                self.run_groups(groups, records.extend, lambda rid, what, _log, lost=lost: lost.append((rid, what)))
                self.stats["rtl_s"] += time.perf_counter() - t1
                self.stats["executor_calls"] += 1
                self.stats["rtl_tile_runs"] += len(pending)
            self._apply(pending, records, lost)
            for c, layer in active:
                self._close_layer(chunks[c], layer)
                if layer == n_layers - 1:
                    on_rows(self.rows(chunks[c]))
        self.stats["wall_s"] = time.perf_counter() - t0
        return self.stats

    def rows(self, infs: list[Inference]) -> list[dict]:
        d, out = self.d, []
        for inf in infs:
            gold_top1 = int(d.golden.top1[inf.image])
            label = int(d.golden.labels[inf.image])
            if inf.lost is not None:
                result, top1 = inf.lost, None
            elif inf.y is None:
                top1 = gold_top1
                result = "masked" if inf.changed_layers == 0 else "tolerable"
            else:
                top1 = int(np.argmax(inf.y.reshape(-1)))  # lowest index on a tie, as everywhere
                result = outcome(gold_top1, top1, label, True)
            arrays = inf.flips if isinstance(inf.flips, FlipArrays) else None
            kinds = arrays.by_kind() if arrays is not None else {}
            golden_viol = int(sum(v[inf.image] for v in self.gold_viol))
            protected = d.protection != "none"
            out.append({
                "protection": d.protection, "rate": inf.rate, "image": inf.image, "trial": inf.trial,
                "dataset_index": int(self.c.image_index[inf.image]), "label": label, "golden_top1": gold_top1,
                "faulty_top1": top1, "outcome": result, "flips": len(inf.flips),
                "flips_by_kind": json.dumps(kinds, sort_keys=True), "rtl_tile_runs": inf.rtl_runs,
                "changed_layers": None if inf.lost else inf.changed_layers,
                "protection_events": inf.violations if protected and not inf.lost else None,
                "golden_protection_events": golden_viol if protected else None,
                "sim_time_s": round(inf.sim_time_s, 6),
                "flip_list": arrays.to_json() if arrays is not None else "[]",
            })
        return out


def tile_flips(flips: np.ndarray, sites: Sequence[str]) -> list[tuple[str, int, int]]:
    """A run's flips (n x 3: cycle, site index, bit) as [(site, mask, cycle), ...], the bits of one
    register and cycle in one mask (the dataflow model's and the Injection's form)."""
    masks: dict[tuple[int, int], int] = {}
    for cycle, site, bit in np.asarray(flips, np.int64).reshape(-1, 3).tolist():
        masks[(cycle, site)] = masks.get((cycle, site), 0) | (1 << bit)
    return [(sites[site], mask, cycle) for (cycle, site), mask in masks.items()]


def padded_x(group: dict, x: np.ndarray, rows: int) -> np.ndarray:
    """A run's activations (its real rows) padded to the array's rows, as the RTL is fed."""
    out = np.zeros((rows, group["k"]), np.int64)
    out[:len(x)] = x
    return out


def software_run_groups(array_cfg) -> RunGroups:  # type: ignore[no-untyped-def]
    """The software-level injector of fault-rate campaigns: each tile run's flips applied to the
    integer tile computation by the multi-flip dataflow model (`testbenches.model.predict_many`),
    answered in the simulator worker's record format (same engine, same rows)."""
    from testbenches.model import Tile, predict_many

    def run_groups(groups, on_results, on_lost) -> None:  # type: ignore[no-untyped-def]
        out = []
        for g in groups:
            ops = g["ops"]
            for run in g["runs"]:
                t0 = time.perf_counter()
                x, want, flips = run_parts(g, run)
                tile = Tile(padded_x(g, x, array_cfg.rows), np.asarray(ops.w, np.int64), ops.bias, ops.mult,
                            ops.shift, ops.lo, ops.hi, getattr(ops, "valid", None))  # protection on real lanes only
                exp = predict_many(array_cfg, tile, tile_flips(flips, g["sites"]))
                got = np.asarray(exp.logits if g["is_last"] else exp.out_act)
                out.append({"id": run["id"], "fin": True, "cyc": array_cfg.tile_cycles(tile.k),
                            "viol": int(exp.violations),
                            "diff": mapping.diff_entries(got[:want.shape[0], :want.shape[1]], want),
                            "t": time.perf_counter() - t0})
        on_results(out)

    return run_groups
