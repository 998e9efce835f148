"""A fault-rate campaign end to end: model, golden RTL check, flips, whole inferences, store, report.

Order of work (nothing slow starts before every input is checked):
1. validate the configuration (`planning/rates.py`) and the output directory; open the store;
2. prepare exactly as a single-fault campaign does (`Campaign.prepare`: model, images, traces of both
   designs, builds, fault-site map) and run its golden check on each design;
3. draw the flips of every (rate, image, trial) (seeded, independent of workers and executor);
4. per design, run the inferences not yet stored layer by layer (`execution/rates.py`), storing rows
   as chunks finish;
5. write rates.json, rates.md and the plot from the store (`analysis/rates.py`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fault_campaigns.campaign import Campaign
from fault_campaigns.execution.rates import Inference, RateEngine, new_inference
from fault_campaigns.files import atomic_write, check_out_dir
from fault_campaigns.lock import lock_once_created
from fault_campaigns.planning.rates import FlipSpace, RateConfig, draw_flip_arrays
from fault_campaigns.results.rate_store import RateStore
from quasar.errors import Interrupted

log = logging.getLogger(__name__)

RATE_STORE_NAME = "rates.sqlite"
RATE_CONFIG_NAME = "rates_campaign.json"
CHUNKS_ENV = "QUASAR_RATE_CHUNKS"
DEFAULT_CHUNKS = 3


class RateCampaign:
    def __init__(self, cfg: RateConfig, out_dir: Path, workers: int | None = None, progress: bool = True,
                 stall_timeout: float = 180.0, executor: str = "local", scheduler: str | None = None):
        self.cfg = cfg
        # Campaign checks the executor options, then creates and probes the run directory
        self.campaign = Campaign(cfg.campaign_config(), Path(out_dir), workers=workers, progress=progress,
                                 stall_timeout=stall_timeout, executor=executor, scheduler=scheduler)
        self.out_dir = self.campaign.out_dir
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.engine_stats: dict[str, dict] = {}

    def store_config(self) -> dict:
        return {**self.cfg.to_dict(), "campaign_id": self.cfg.campaign_id}

    def prepare(self, golden_check: bool = True) -> None:
        c = self.campaign
        t0 = time.perf_counter()
        if not hasattr(c, "export"):  # run() prepares the model before it creates the run directory
            c.prepare_model()
        c.prepare_designs()
        self.timings.update({f"prepare_{k}": v for k, v in c.timings.items()})
        if golden_check:
            for p, d in c.designs.items():
                c.golden_report[p] = c.golden_check(d)
        self.space = FlipSpace(self._layer_spaces(), c.sites)
        self.timings["prepare_s"] = time.perf_counter() - t0

    def _layer_spaces(self):  # type: ignore[no-untyped-def]
        from fault_campaigns.planning.faults import LayerSpace

        return [LayerSpace(lm.index, lm.tiles, self.campaign.tile_cycles[lm.index]) for lm in self.campaign.maps]

    def inferences(self, keys=None) -> list[Inference]:  # type: ignore[no-untyped-def]
        """Every (rate, image, trial) of the campaign (or those of `keys`) with its flips drawn."""
        c = self.campaign
        if keys is None:
            keys = [(r, i, t) for r in self.cfg.rates for i in range(self.cfg.images) for t in range(self.cfg.trials)]
        return [new_inference(r, i, t, draw_flip_arrays(self.space, self.cfg.seed, int(c.image_index[i]), t, r))
                for r, i, t in keys]

    def run_groups_for(self, d, tag: str):  # type: ignore[no-untyped-def]
        """The executor of the campaign (local or Dask) on the design's fast build, as a callable."""
        from testbenches.sim import FAST_CLOCK, build

        fast = replace(d, build=build(d.array, clock=FAST_CLOCK))
        c = self.campaign
        counter = {"n": 0}

        def run_groups(groups, on_results, on_lost):  # type: ignore[no-untyped-def]
            counter["n"] += 1
            c._executor(fast, f"{tag}{counter['n']:03d}").run(groups, on_results, on_lost)

        return run_groups

    def run_design(self, d, store: RateStore, infs: list[Inference], run_groups=None,  # type: ignore[no-untyped-def]
                   on_rows: Callable[[list[dict]], None] | None = None, done: set | None = None,
                   position: int = 0) -> dict:
        """Run the inferences of `infs` not yet stored for design `d`; rows go to `on_rows` (default:
        the store) as chunks finish. `done`: the stored keys (read by the caller's thread)."""
        done = store.done_keys(d.protection) if done is None else done
        todo = [Inference(i.rate, i.image, i.trial, i.flips) for i in infs if i.key not in done]
        log.info("fault rates, %s: %d inferences, %d already stored, %d to run", d.protection, len(infs),
                 len(infs) - len(todo), len(todo))
        if not todo:
            return {"ran": 0, "wall_s": 0.0}
        bar = _progress(len(todo), f"{self.cfg.net} {self.cfg.a_bits}b {d.protection} rates", self.progress, position)
        store_rows = on_rows or store.add

        def rows_done(rows: list[dict]) -> None:
            store_rows(rows)
            bar.update(len(rows))

        engine = RateEngine(self.campaign, d, run_groups or self.run_groups_for(d, "rates-"), chunks=rate_chunks())
        try:
            stats = engine.run(todo, rows_done)
        finally:
            bar.close()
        return {"ran": len(todo), **stats}

    def run_designs(self, store: RateStore, infs: list[Inference]) -> None:
        """Every design's inferences. With the local executor the designs run at the same time, one thread
        each (their simulators are their own processes): one design's serial work in this process (the
        model, jobs, results) overlaps the other's simulators instead of leaving cores idle. Rows reach
        the store from this thread only (SQLite connections stay in their thread)."""
        designs = list(self.campaign.designs.items())
        if len(designs) == 1 or self.campaign.executor != "local":
            for p, d in designs:
                self.engine_stats[p] = self.run_design(d, store, infs)
            return
        runners = {p: self.run_groups_for(d, "rates-") for p, d in designs}  # builds resolved in this thread
        done = {p: store.done_keys(p) for p, _ in designs}
        rows: queue.Queue = queue.Queue()
        errors: list[BaseException] = []

        def work(n: int, p: str, d) -> None:  # type: ignore[no-untyped-def]
            try:
                self.engine_stats[p] = self.run_design(d, store, infs, runners[p], rows.put, done[p], n)
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n, p, d), daemon=True, name=f"rates-{p}")
                   for n, (p, d) in enumerate(designs)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) or not rows.empty():
            try:
                store.add(rows.get(timeout=0.1))
            except queue.Empty:
                pass
            if errors:
                raise errors[0]

    def run(self) -> dict:
        # As Campaign.run: one campaign per run directory (locked as soon as it exists), and nothing is
        # created before the model and data checks pass.
        with lock_once_created(self.out_dir, "fault-rate campaign", self.cfg.campaign_id) as hold:
            return self._run_locked(hold)

    def _run_locked(self, hold) -> dict:  # type: ignore[no-untyped-def]
        from fault_campaigns.analysis.rates import write_rate_reports

        t_start, cpu_start = time.perf_counter(), _cpu_seconds()
        path = self.out_dir / RATE_STORE_NAME
        store = RateStore(path, self.cfg.campaign_id, self.store_config()) if path.exists() else None
        c = self.campaign
        try:
            if c.executor == "dask":
                from fault_campaigns.execution.dask_executor import connect

                c._client = connect(c.scheduler)
            c.prepare_model()  # a corrupt checkpoint or a missing dataset stops here, before any file is made
            check_out_dir(self.out_dir)
            hold()
            if store is None:
                store = RateStore(path, self.cfg.campaign_id, self.store_config())
            atomic_write(self.out_dir / RATE_CONFIG_NAME, json.dumps(self.store_config(), indent=2, sort_keys=True))
            self.prepare()
            t0 = time.perf_counter()
            infs = self.inferences()
            self.timings["draw_s"] = time.perf_counter() - t0
            self.run_designs(store, infs)
            self.timings["campaign_s"] = time.perf_counter() - t_start
            cpu = _cpu_seconds()
            self.timings["cpu_s"] = sum(cpu) - sum(cpu_start)  # this process and its finished simulators
            self.timings["cpu_self_s"] = cpu[0] - cpu_start[0]  # serial with the simulators within a step
            return write_rate_reports(self, store)
        except KeyboardInterrupt:
            held = ("nothing was stored yet" if store is None else f"{store.path} holds "
                    f"{sum(len(store.done_keys(p)) for p in self.cfg.protections)} inference rows")
            raise Interrupted(f"{held}; rerun the same command to resume") from None
        finally:
            if store is not None:
                store.close()
            if c._client is not None:
                c._client.close()
                c._client = None


def _cpu_seconds() -> tuple[float, float]:
    """(this process, its finished children) CPU seconds."""
    import resource

    return tuple(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),  # type: ignore[return-value]
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))


def rate_chunks() -> int:
    """How many chunks the inferences of a design are cut into (rows are stored chunk by chunk; each
    chunk adds one executor call, ~0.5 s of simulator start-up): QUASAR_RATE_CHUNKS, default 3."""
    import os

    try:
        return max(1, int(os.environ.get(CHUNKS_ENV, DEFAULT_CHUNKS)))
    except ValueError:
        return DEFAULT_CHUNKS


def _progress(total: int, desc: str, enabled: bool, position: int = 0):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="inf", disable=not enabled, smoothing=0.05, dynamic_ncols=True,
                position=position)
