"""A fault-injection campaign end to end: model, golden RTL check, fault list, runs, store, report.

Order of work (nothing slow starts before every input is checked, and nothing is created in the run
directory before the model, the dataset and the Dask scheduler are known to be usable):
1. validate the configuration, the output directory (without creating it) and an existing results store;
2. connect to the Dask scheduler (--executor dask); train or reuse the quantized model, read the
   dataset, pick the campaign's test images (seeded); only then create the run directory, the store
   and campaign.json;
3. trace every image through the integer reference model of each design (unprotected, protected);
4. build the RTL of each design, read its fault-site map;
5. golden check: every tile of every layer of the golden images runs on RTL and must equal the
   integer model bit for bit (and count the same protection events); a mismatch stops the campaign
   and names the first differing layer, tile and element;
6. plan the fault list once (seeded, per layer, Leveugle sample sizes) and run the same list on every
   design, skipping faults already in the store (resume);
7. write summary.json, report.md and plots.

An interrupt (Ctrl-C) stops the simulators, keeps every whole batch already stored (one transaction
per batch), logs the session, and raises `Interrupted` saying what the store holds and how to resume.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fault_campaigns.execution.executor import LocalExecutor
from fault_campaigns.files import atomic_write, check_out_dir, probe_out_dir
from fault_campaigns.lock import lock_once_created
from fault_campaigns.planning import mapping
from fault_campaigns.planning.config import CampaignConfig
from fault_campaigns.planning.faults import Fault, LayerSpace, load_sites, plan
from fault_campaigns.results.classify import Classifier, Golden
from fault_campaigns.results.store import ResultStore
from quasar.errors import Interrupted, QuasarError, check_choice

log = logging.getLogger(__name__)

STORE_NAME = "results.sqlite"
EXECUTORS = ("local", "dask")


class GoldenMismatch(QuasarError):
    """The golden RTL run disagrees with the integer reference model."""


@dataclass
class Design:
    protection: str
    array: object  # hdl_gen.ArrayConfig
    build: object  # testbenches.sim.SimBuild
    model: object  # models.IntegerModel
    trace: object  # models.Trace of the campaign images
    golden: Golden


class Campaign:
    def __init__(self, cfg: CampaignConfig, out_dir: Path, workers: int | None = None, progress: bool = True,
                 stall_timeout: float = 180.0, executor: str = "local", scheduler: str | None = None,
                 raw_fit_per_mbit: float | None = None):
        from fault_campaigns.analysis.fit import DEFAULT_RAW_FIT_PER_MBIT, check_raw_fit
        from fault_campaigns.execution.dask_executor import check_scheduler

        # reporting only (not part of the campaign's identity): a FIT figure scales with it
        self.raw_fit_per_mbit = check_raw_fit(DEFAULT_RAW_FIT_PER_MBIT if raw_fit_per_mbit is None
                                              else raw_fit_per_mbit)

        self.cfg = cfg
        self.executor = check_choice("executor", executor, EXECUTORS)
        self.scheduler = check_scheduler(scheduler) if executor == "dask" else None
        if scheduler and executor != "dask":
            raise QuasarError(f"--scheduler {scheduler!r} is only used with --executor dask")
        self.out_dir = probe_out_dir(Path(out_dir).resolve())  # the simulators run in other directories
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self.stall_timeout = stall_timeout
        self.timings: dict[str, float] = {}
        self.golden_report: dict[str, dict] = {}
        self.session: dict[str, dict] = {}  # per design: fault runs done in this session and their time
        self._held_before: dict[str, int] = {}  # per design: rows in the store when this session began
        self._client = None  # the Dask client while run() runs

    # -- preparation ------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.prepare_model()
        self.prepare_designs()

    def prepare_model(self) -> None:
        """The model (trained or reused) and the campaign's images: every check that needs no build."""
        from models import TrainConfig, get_or_train, load_dataset

        cfg = self.cfg
        t0 = time.perf_counter()
        tc = TrainConfig(net=cfg.net, act_bits=cfg.a_bits, weight_bits=cfg.w_bits, mode=cfg.train_mode,
                         dataset=cfg.dataset, data_dir=cfg.data_dir, act_format=cfg.act_format,
                         int_bits=cfg.int_bits)
        # A bad cached checkpoint stops the campaign (named) instead of being overwritten by a retrain.
        self.export, self.metrics = get_or_train(tc, progress=self.progress, on_bad_checkpoint="error")
        data = load_dataset(self.export.dataset, cfg.data_dir)
        self.dataset_name = data.name
        if cfg.images > len(data.test_y):
            raise QuasarError(f"--images {cfg.images} is more than the {len(data.test_y)} test images of {data.name}")
        rng = np.random.default_rng([cfg.seed, 0x1A6E])
        self.image_index = np.sort(rng.choice(len(data.test_y), size=cfg.images, replace=False))
        self.labels = np.asarray(data.test_y[self.image_index], dtype=np.int64)
        self.x = data.test_x[self.image_index]
        self._data, self._train_config = data, tc  # the accumulator-domain bounds come from the training data
        self.timings["model_s"] = time.perf_counter() - t0

    def prepare_designs(self) -> None:
        """Traces of the images through each design's integer model, the builds and their fault sites."""
        from hdl_gen import ArrayConfig
        from models import IntegerModel
        from models.integer import has_acc_bounds, set_acc_bounds
        from quasar.protection import ProtectionSpec
        from testbenches.sim import build

        cfg, x, data, tc = self.cfg, self.x, self._data, self._train_config
        t0 = time.perf_counter()
        specs = {p: ProtectionSpec.parse(p, "channel" if cfg.per_channel_bounds else None) for p in cfg.protections}
        if any(s.domain == "acc" for s in specs.values()) and not has_acc_bounds(self.export):
            # accumulator bounds: extracted from the training data like the activation bounds (older exports lack them)
            set_acc_bounds(self.export, data.train_x[: tc.train_limit or len(data.train_y)])
        self.designs: dict[str, Design] = {}
        for p in cfg.protections:
            model = IntegerModel(self.export, protection=str(specs[p]))
            trace = model.trace(model.quantize_input(x))
            golden = Golden([np.asarray(lt.Y, np.int64) for lt in trace.layers],
                            np.argmax(np.asarray(trace.logits), axis=1), self.labels)
            array = ArrayConfig.from_spec(specs[p], rows=cfg.rows, cols=cfg.cols, act_bits=cfg.a_bits,
                                          weight_bits=cfg.w_bits, k_max=cfg.k_max, requant=cfg.requant)
            self.designs[p] = Design(p, array, None, model, trace, golden)
        first = self.designs[cfg.protections[0]]
        self.maps = mapping.layer_maps(self.export, cfg.rows, cfg.cols,
                                       [np.asarray(lt.X).shape[1] for lt in first.trace.layers])
        self.timings["trace_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for d in self.designs.values():
            d.build = build(d.array)
        self.timings["build_s"] = time.perf_counter() - t0
        site_sets = {p: load_sites(str(d.build.design.sites_path), cfg.targets) for p, d in self.designs.items()}
        names = {p: [(s.name, s.width, s.kind) for s in sites] for p, sites in site_sets.items()}
        if len({tuple(v) for v in names.values()}) != 1:
            raise QuasarError("the designs' fault-site maps differ; the same fault list cannot run on both")
        self.sites = site_sets[cfg.protections[0]]
        cycles = {p: [d.array.tile_cycles(lm.reduction) for lm in self.maps] for p, d in self.designs.items()}
        if len({tuple(v) for v in cycles.values()}) != 1:
            raise QuasarError(f"the designs' tile run lengths differ ({cycles}); one fault list cannot run on both")
        self.tile_cycles = cycles[cfg.protections[0]]

    # -- tile groups --------------------------------------------------------------------------------
    def tile_group(self, d: Design, image: int, layer: int, tile: int, runs: list[dict],
                   fast: bool = True) -> dict:
        """One tile's operands, expected output and runs, as a simulator worker takes them. `fast`: the
        worker may apply the RTL fast path's shortcuts (docs/bench.md; proven equal to plain full-tile
        runs by tests/campaign/test_fidelity.py); False gives plain full-tile runs."""
        from dataclasses import replace

        def _compact(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
            """The narrowest integer array holding `bits`-bit codes (job files shrink up to 8x)."""
            width = bits if signed else bits + 1  # unsigned codes need a sign bit in numpy's signed types
            return np.ascontiguousarray(values, dtype=np.int8 if width <= 8 else np.int16 if width <= 16 else np.int32)

        lm = self.maps[layer]
        lx = self.export.layers[layer]
        x = np.asarray(d.trace.layers[layer].X[image])
        # A tile's weight side (padded weights, bias, multipliers, shifts, bounds) is the same for every
        # image: pad it once, and hand the workers one shared compact copy (pickled once per shard).
        cache = self.__dict__.setdefault("_tile_cache", {})
        key = (id(self.export), d.protection, layer, tile)
        if key not in cache:
            ops = mapping.tile_operands(lm, lx, np.asarray(x, np.int64), tile, d.protection,
                                        self.cfg.per_channel_bounds, self.cfg.a_bits)
            cache[key] = (ops, _compact(ops.w, self.cfg.w_bits, signed=True))
        base, w_small = cache[key]
        p0, _ = lm.origin(tile)
        vp, vn = lm.valid(tile)
        xt = np.zeros((lm.rows, lm.reduction), np.int64)
        xt[:vp] = x[p0:p0 + vp]
        ops = replace(base, x=xt)
        exp = mapping.expect(ops, self.cfg.a_bits, d.protection)
        ops = replace(base, x=_compact(xt, self.cfg.a_bits, signed=False), w=w_small)
        want = exp.logit if lm.is_last else exp.act
        got = mapping.extract(lm, d.golden.outputs[layer][image], tile)
        if not np.array_equal(got, want[:vp, :vn]):
            raise GoldenMismatch(
                f"the integer model and the numpy oracle disagree on layer {lm.name}, tile {tile}, image {image} "
                f"({d.protection}): the model is not bit-exact with docs/arithmetic.md"
            )
        cycles = self.tile_cycles[layer]
        return {"key": (image, layer, tile), "ops": ops, "act": exp.act, "logit": exp.logit,
                "violations": exp.violations, "is_last": lm.is_last, "max_cycles": 4 * cycles + 64, "runs": runs,
                "early_stop": fast}

    def _executor(self, d: Design, tag: str):
        if self.executor == "dask":
            from fault_campaigns.execution.dask_executor import DaskExecutor

            return DaskExecutor(self._client, d.build, f"{tag}-{d.protection}", stall_timeout=self.stall_timeout)
        return LocalExecutor(d.build, self.out_dir / "work" / f"{tag}-{d.protection}", workers=self.workers,
                             stall_timeout=self.stall_timeout)

    # -- golden check ---------------------------------------------------------------------------------
    def golden_check(self, d: Design) -> dict:
        groups, rid = [], 0
        for image in range(self.cfg.golden_images):
            for lm in self.maps:
                for tile in range(lm.tiles):
                    groups.append(self.tile_group(d, image, lm.index, tile, [{"id": rid, "site": None}]))
                    rid += 1
        by_id = {g["runs"][0]["id"]: g for g in groups}
        records: list[dict] = []
        t0 = time.perf_counter()
        self._executor(d, "golden").run(groups, records.extend, lambda rid, outcome, logp: records.append(
            {"id": rid, "lost": outcome, "log": logp}))
        elapsed = time.perf_counter() - t0
        for rec in sorted(records, key=lambda r: r["id"]):
            g = by_id[rec["id"]]
            image, layer, tile = g["key"]
            lm = self.maps[layer]
            where = f"design {d.protection}, layer {lm.name} (#{layer}), tile {tile}, image {image}"
            if "lost" in rec:
                raise GoldenMismatch(f"golden RTL run lost ({rec['lost']}) on {where}; log {rec['log']}")
            if not rec["fin"]:
                raise GoldenMismatch(f"golden RTL run did not finish on {where}")
            if rec["diff"]:
                i, j, v = rec["diff"][0]
                want = (g["logit"] if g["is_last"] else g["act"])[i, j]
                p0, n0 = lm.origin(tile)
                raise GoldenMismatch(
                    f"golden RTL run disagrees with the integer model on {where}: first differing element is "
                    f"array row {i}, column {j} (pixel {p0 + i}, channel {n0 + j}): RTL {v}, model {want} "
                    f"({len(rec['diff'])} elements differ)"
                )
            if rec["viol"] != g["violations"]:  # 0 on both sides without protection
                raise GoldenMismatch(f"golden RTL run counted {rec['viol']} protection events on {where}, "
                                     f"the model {g['violations']}")
            if rec["cyc"] != self.tile_cycles[layer]:
                raise GoldenMismatch(f"golden RTL run took {rec['cyc']} cycles on {where}, the generator's "
                                     f"tile_cycles() says {self.tile_cycles[layer]}")
        # The RTL golden run's own classification: the last layer's logits as the RTL computed them.
        last = self.maps[-1]
        rtl_top1 = np.argmax(d.golden.outputs[last.index][: self.cfg.golden_images].reshape(self.cfg.golden_images, -1),
                             axis=1)
        report = {"images": self.cfg.golden_images, "tile_runs": len(groups), "bit_exact": True,
                  "rtl_top1": rtl_top1.tolist(), "labels": self.labels[: self.cfg.golden_images].tolist(),
                  "rtl_accuracy": float(np.mean(rtl_top1 == self.labels[: self.cfg.golden_images])),
                  "wall_s": elapsed}
        log.info("golden check (%s): %d tile runs on %d image(s) bit-exact with the integer model in %.1f s",
                 d.protection, len(groups), self.cfg.golden_images, elapsed)
        return report

    # -- the fault list -----------------------------------------------------------------------------
    def layer_spaces(self) -> list[LayerSpace]:
        wanted = set(self.cfg.layers) if self.cfg.layers else None
        return [LayerSpace(lm.index, lm.tiles, self.tile_cycles[lm.index])
                for lm in self.maps if wanted is None or lm.name in wanted]

    def fault_list(self) -> list[Fault]:
        c = self.cfg
        return plan(self.layer_spaces(), c.images, self.sites, c.fault_model, c.seed, c.faults, c.margin,
                    c.confidence)

    def store_config(self) -> dict:
        return {**self.cfg.to_dict(), "campaign_id": self.cfg.campaign_id}

    # -- running ------------------------------------------------------------------------------------
    def run_design(self, d: Design, faults: list[Fault], store: ResultStore) -> dict:
        """Run the faults of `faults` not yet stored for `d`; self.session[d.protection] counts, as they
        come, the runs stored by this session and the time spent on them (fault runs only, no build)."""
        done = store.done_keys(d.protection)
        todo = [f for f in faults if f.fault_id not in done]
        log.info("%s: %d faults, %d already stored, %d to run", d.protection, len(faults), len(done), len(todo))
        tally = self.session[d.protection] = {"ran": 0, "wall_s": 0.0}
        self._held_before[d.protection] = len(done)
        if not todo:
            return tally
        by_group: dict[tuple[int, int, int], list[Fault]] = defaultdict(list)
        for f in todo:
            by_group[(f.image, f.layer, f.tile)].append(f)
        groups = []
        for (image, layer, tile), fs in sorted(by_group.items()):
            runs = [f.run() for f in fs]
            groups.append(self.tile_group(d, image, layer, tile, runs))
        gviol = {g["key"]: g["violations"] for g in groups}
        by_id = {f.fault_id: f for f in todo}
        clf = Classifier(self.maps, d.golden, d.model.forward_from, groups={g["key"]: g for g in groups},
                         act_bits=self.cfg.a_bits, protected=d.protection != "none")

        def rows_for(records: list[dict], extra: list[dict]) -> list[dict]:
            fs = [by_id[r["id"]] for r in records]
            out = []
            for f, row in zip(fs, extra, strict=True):
                base = dict(f.__dict__)  # = f.to_row() (a flat dataclass) without asdict's deep copy
                base["bits"] = ",".join(str(b) for b in f.bits)
                base.update(row)
                base.update(protection=d.protection, dataset_index=int(self.image_index[f.image]),
                            layer_name=self.maps[f.layer].name, bit=min(f.bits))
                g = gviol[(f.image, f.layer, f.tile)]
                if d.protection == "none":
                    base.update(protection_events=None, golden_protection_events=None, protection_fired=None)
                else:
                    ev = base.get("protection_events")
                    base.update(golden_protection_events=g,
                                protection_fired=None if ev is None else int(ev > g))
                out.append(base)
            return out

        def on_results(records: list[dict]) -> None:
            rows = rows_for(records, clf.classify([by_id[r["id"]] for r in records], records))
            store.add(rows)
            tally["ran"] += len(rows)
            bar.update(len(rows))

        def on_lost(rid: int, outcome: str, logp: str) -> None:
            f = by_id[rid]
            row = {"outcome": outcome, "label": int(self.labels[f.image]),
                   "golden_top1": int(d.golden.top1[f.image]), "faulty_top1": None, "changed_outputs": None,
                   "protection_events": None, "sim_cycles": None, "sim_time_s": None, "stage": None,
                   "golden_rank": None,
                   "live": int(mapping.live_fault(self.maps[f.layer], f.tile, f.site, f.cycle, f.model))}
            store.add(rows_for([{"id": rid}], [row]))
            tally["ran"] += 1
            bar.update(1)

        # The fast path (docs/bench.md): a build whose clock Python steps through the simulator's C++ main
        # (testbenches/sim.py, clock "cpp"), so a run costs no callback per cycle; the golden check keeps
        # the reference build (cocotb's clock), and tests/campaign/test_fidelity.py proves both equal.
        from dataclasses import replace

        from testbenches.sim import FAST_CLOCK, build

        fast = replace(d, build=build(d.array, clock=FAST_CLOCK))  # before the clock starts: builds are not runs
        bar = _progress(len(todo), f"{self.cfg.net} {self.cfg.a_bits}b {d.protection}", self.progress)
        t0 = time.perf_counter()
        try:
            self._executor(fast, "faults").run(groups, on_results, on_lost)
        finally:
            tally["wall_s"] = time.perf_counter() - t0
            bar.close()
        return tally

    def _log_session(self, interrupted: bool = False) -> None:
        """Append this session's fault runs to sessions.jsonl (a session killed with SIGKILL has no line;
        its rows are in the store all the same)."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "workers": self.workers, "designs": self.session}
        if interrupted:
            entry["interrupted"] = True
        with open(self.out_dir / "sessions.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _interrupted(self, store: ResultStore | None, faults: list[Fault] | None) -> str:
        """The one line an interrupt ends with: what the store holds and how to go on."""
        if store is None:
            return f"nothing was stored yet in {self.out_dir}; rerun the same command to start the campaign"
        if store.db.in_transaction:  # a batch cut short by the interrupt is not part of the store
            store.db.rollback()
        held = {p: len(store.done_keys(p)) for p in self.cfg.protections}
        planned = f" of {len(faults)}" if faults is not None else ""
        ran = sum(t["ran"] for t in self.session.values())
        per_design = ", ".join(f"{p} {n}{planned}" for p, n in held.items())
        return (f"{store.path} holds {sum(held.values())} fault runs ({per_design}; {ran} stored by this session); "
                "rerun the same command to resume")

    def run(self) -> dict:
        # One campaign per run directory: a second one is refused before it touches anything. A directory
        # that does not exist yet is locked as soon as it is created (after the model and data checks, so
        # that a failed check leaves nothing behind).
        with lock_once_created(self.out_dir, "campaign", self.cfg.campaign_id) as hold:
            return self._run_locked(time.perf_counter(), hold)

    def _run_locked(self, t_start: float, hold) -> dict:  # type: ignore[no-untyped-def]
        from fault_campaigns.analysis.report import write_reports

        path = self.out_dir / STORE_NAME
        store, faults = None, None
        if path.exists():  # an existing store is checked (read-only) before anything else: a foreign one is refused
            store = ResultStore(path, self.cfg.campaign_id, self.store_config())
        try:
            if self.executor == "dask":
                from fault_campaigns.execution.dask_executor import connect

                self._client = connect(self.scheduler)
            self.prepare_model()  # a corrupt checkpoint or a missing dataset stops here, before any file is made
            check_out_dir(self.out_dir)
            hold()
            if store is None:
                store = ResultStore(path, self.cfg.campaign_id, self.store_config())
            atomic_write(self.out_dir / "campaign.json", json.dumps(self.store_config(), indent=2, sort_keys=True))
            self.prepare_designs()
            for p, d in self.designs.items():
                self.golden_report[p] = self.golden_check(d)
            faults = self.fault_list()
            for d in self.designs.values():
                self.run_design(d, faults, store)
            self._log_session()
            self.timings["campaign_s"] = time.perf_counter() - t_start
            return write_reports(self, store, faults, self.session)
        except KeyboardInterrupt:
            if store is not None and store.db.in_transaction:  # a batch cut short is not part of the store
                store.db.rollback()
            if store is not None:  # what the store gained, exactly (an interrupt may fall between a
                for p, tally in self.session.items():  # batch's commit and its count)
                    tally["ran"] = len(store.done_keys(p)) - self._held_before.get(p, 0)
            if self.session:
                self._log_session(interrupted=True)
            raise Interrupted(self._interrupted(store, faults)) from None
        finally:
            if store is not None:
                store.close()
            if self._client is not None:
                self._client.close()
                self._client = None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="inj", disable=not enabled, smoothing=0.05, dynamic_ncols=True)
