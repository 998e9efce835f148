"""The design-space sweep: accuracy, RTL fault tolerance and hardware cost for every bit width.

For each width b of the sweep, and each design (unprotected `none`, protected `range`):
- accuracy: the QAT model (the one the campaign runs) and the PTQ model, trained or reused from the
  checkpoint cache (`models.get_or_train`);
- reliability: one campaign per width, both designs on the same fault list drawn from the same seed
  (`fault_campaigns.campaign.Campaign`), in the campaign's default run directory, so a `make campaign`
  already run is reused and an interrupted one resumes from its results store;
- hardware cost: `hdl_gen.synth.synthesize` of both designs (Yosys xc7 with and without DSPs, nextpnr-ecp5
  for Fmax, by default after placement: `fmax="placed"`), cached per design and step in the synthesis run
  directory.

Synthesis is single-threaded and independent of the rest, so it runs in background threads (its tools
are separate processes): one (design, target) step at a time beside the foreground's training and
campaigns, `synth_jobs` at a time once the foreground is done, longest first (place and route, widest
designs first) so that no long step is left to run alone at the end. Every finished step is recorded at
once in `state.json`, so a rerun after an interruption starts from what is cached. The table, plots and
report are written by `fault_campaigns.sweep.report` from the steps' own result files.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fault_campaigns.campaign import Campaign
from fault_campaigns.files import atomic_write, check_out_dir
from fault_campaigns.planning.config import PROTECTIONS, CampaignConfig
from fault_campaigns.planning.faults import DEFAULT_TARGETS
from fault_campaigns.planning.rates import DEFAULT_RATES
from quasar.errors import ConfigError, QuasarError, check_choice, check_range

log = logging.getLogger(__name__)

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
# The table's hardware columns: LUT/FF/DSP with DSPs (xc7), LUTs without (xc7-nodsp), Fmax (pnr).
SYNTH_TARGETS = ("xc7", "xc7-nodsp", "pnr")
SWEEP_SCHEMA = 1
# Longest-first order of the synthesis steps: target rank first, then the width (wider is longer).
_TARGET_RANK = {"pnr": 0, "xc7-nodsp": 1, "ecp5": 2, "xc7": 3}


def parse_bits(values: list[str | int] | tuple[int, ...] | None) -> tuple[int, ...]:
    """`[\"2 3 4\"]`, `[\"2,3\", \"8\"]` or `[2, 3]` -> (2, 3, 4, ...); sorted, unique, each in 2..16."""
    if not values:
        return DEFAULT_BITS
    out: list[int] = []
    for item in values:
        for tok in str(item).replace(",", " ").split():
            try:
                b = int(tok)
            except ValueError:
                raise ConfigError(f"bit width {tok!r} is not an integer; allowed: 2..16, e.g. BITS=\"2 4 8\"") from None
            out.append(check_range("bit width", b, 2, 16))
    if not out:
        raise ConfigError("no bit width given; allowed: 2..16, e.g. BITS=\"2 4 8\"")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class SweepConfig:
    net: str = "lenet"
    bits: tuple[int, ...] = DEFAULT_BITS
    rows: int = 8
    cols: int = 8
    k_max: int = 1024
    per_channel_bounds: bool = False
    data_dir: str | None = None
    images: int = 256  # as a campaign's (planning.config.DEFAULT_IMAGES)
    golden_images: int = 1
    targets: tuple[str, ...] = DEFAULT_TARGETS
    margin: float = 0.02
    confidence: float = 0.95
    faults: int | None = None
    seed: int = 0
    synth: bool = True
    synth_targets: tuple[str, ...] = SYNTH_TARGETS
    synth_seed: int = 1
    fmax: str = "placed"
    act_format: str = "calibrated"  # docs/arithmetic.md; pow2 runs shift-only designs (requant="shift")
    int_bits: int | None = None  # pow2 only: integer bits of every hidden layer; None = auto
    rate_curves: bool = True  # one accuracy-vs-fault-rate curve per width (fault_campaigns/sweep/rates.py)
    rates: tuple[float, ...] = DEFAULT_RATES
    rate_images: int = 60
    rate_trials: int = 1
    protections: tuple[str, ...] = PROTECTIONS  # protection specs (quasar/protection.py), `none` first
    campaigns: list[CampaignConfig] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        from hdl_gen.synth import parse_targets

        if not self.bits:
            raise ConfigError("no bit width given; allowed: 2..16")
        for b in self.bits:
            check_range("bit width", b, 2, 16)
        if len(set(self.bits)) != len(self.bits):
            raise ConfigError(f"bit widths repeat: {list(self.bits)}")
        object.__setattr__(self, "synth_targets", parse_targets(self.synth_targets))
        from hdl_gen.synth import PNR_MODES

        check_choice("fmax", self.fmax, PNR_MODES)
        from models.formats import check_format

        for b in self.bits:  # a fixed integer-bit count must fit every width: one error before any work
            object.__setattr__(self, "int_bits", check_format(self.act_format, self.int_bits, b))
        from quasar.protection import parse_specs

        specs = tuple(str(s) for s in parse_specs(tuple(self.protections)))
        if specs[0] != "none":
            raise ConfigError(f"the sweep's protections must start with none (the baseline), got {list(specs)}")
        object.__setattr__(self, "protections", specs)
        # Every campaign's own validation (net, shape, k_max, margins, targets...) before any work.
        object.__setattr__(self, "campaigns", [self.campaign_config(b) for b in self.bits])
        if self.rate_curves:
            from fault_campaigns.sweep.rates import rate_config

            object.__setattr__(self, "rates", rate_config(self, self.bits[0]).rates)  # checked, sorted

    def campaign_config(self, bits: int) -> CampaignConfig:
        return CampaignConfig(
            net=self.net, bits=bits, rows=self.rows, cols=self.cols, k_max=self.k_max,
            per_channel_bounds=self.per_channel_bounds, protections=self.protections, data_dir=self.data_dir,
            images=self.images, golden_images=self.golden_images, targets=self.targets, margin=self.margin,
            confidence=self.confidence, faults=self.faults, seed=self.seed, act_format=self.act_format,
            int_bits=self.int_bits,
        )

    def array_config(self, bits: int, protection: str):
        from hdl_gen import ArrayConfig
        from quasar.protection import ProtectionSpec

        spec = ProtectionSpec.parse(protection, "channel" if self.per_channel_bounds else None)
        requant = "shift" if self.act_format == "pow2" else "mul"
        if not spec.protected:  # the unprotected design as the sweep always built it
            return ArrayConfig(rows=self.rows, cols=self.cols, act_bits=bits, weight_bits=bits, k_max=self.k_max,
                               protection="none", per_channel_bounds=self.per_channel_bounds, requant=requant)
        return ArrayConfig.from_spec(spec, rows=self.rows, cols=self.cols, act_bits=bits, weight_bits=bits,
                                     k_max=self.k_max, requant=requant)

    def identity(self) -> dict:
        d = asdict(self)
        d.pop("campaigns")
        d.pop("data_dir")  # where the data lives does not change the results
        if self.protections == PROTECTIONS:
            d.pop("protections")  # the default list: the identity of sweeps from before the list existed
        else:
            d["protections"] = list(self.protections)
        d["bits"], d["targets"], d["synth_targets"] = list(self.bits), list(self.targets), list(self.synth_targets)
        d["rates"] = list(self.rates)
        d["schema"] = SWEEP_SCHEMA
        if self.act_format == "calibrated":  # left out: sweep ids from before the formats stay valid
            del d["act_format"], d["int_bits"]
        return d

    @property
    def sweep_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]

    def default_dir(self, runs_dir: str | Path) -> Path:
        from models.formats import format_tag

        widths = "-".join(str(b) for b in self.bits)
        fmt = format_tag(self.act_format, self.int_bits)
        return Path(runs_dir) / "sweep" / f"{self.net}-{self.rows}x{self.cols}-b{widths}{fmt}-{self.sweep_id}"


def check_dataset(cfg: SweepConfig) -> str:
    """Fail before any work when the net's dataset cannot be read (e.g. AlexNet without a CIFAR-10 directory)."""
    from models.data import load_dataset
    from models.nets import get_net

    name = get_net(cfg.net).default_dataset
    if name == "cifar10" and not cfg.data_dir:
        raise ConfigError(
            f"net {cfg.net!r} trains on CIFAR-10, which cannot be downloaded here: give the directory of the "
            "python-pickle batches (cifar-10-batches-py), e.g. make sweep NET=alexnet DATA=/path/to/cifar-10-batches-py"
        )
    return load_dataset(name, cfg.data_dir).name


class _State:
    """state.json: what each step produced and how long it took; rewritten atomically after every step."""

    def __init__(self, path: Path, identity: dict):
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"identity": identity, "steps": {}, "sessions": []}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise QuasarError(f"sweep state {path} is unreadable ({exc}); move it away to start afresh") from None
            if old.get("identity") != identity:
                raise QuasarError(f"{path} belongs to another sweep configuration; choose another --out")
            self.data = old

    def put(self, key: str, value: dict) -> None:
        """Record a step; `ran_wall_s` keeps the time of the last run that did the work (not a cache hit)."""
        with self.lock:
            old = self.data["steps"].get(key) or {}
            ran = old.get("ran_wall_s") if value.get("cached") else value.get("wall_s")
            self.data["steps"][key] = {**value, "ran_wall_s": ran}
            self._write()

    def get(self, key: str) -> dict | None:
        return self.data["steps"].get(key)

    def add_session(self, session: dict) -> None:
        with self.lock:
            self.data["sessions"].append(session)
            self._write()

    def _write(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True))


class _Progress:
    """One line above the inner bars: the (bits, protection) cell at work and how many cells remain."""

    def __init__(self, cfg: SweepConfig, enabled: bool):
        from tqdm import tqdm

        self.cells = [(b, p) for b in cfg.bits for p in cfg.protections]
        self.steps_per_cell = 1 + int(cfg.synth)  # campaign share + synthesis
        self.done: dict[tuple[int, str], int] = {c: 0 for c in self.cells}
        self.lock = threading.Lock()
        self.bar = tqdm(total=len(self.cells) * self.steps_per_cell, desc="sweep", unit="step", position=0,
                        disable=not enabled, dynamic_ncols=True, leave=True)
        self.running: dict[str, str] = {}

    def start(self, lane: str, what: str) -> None:
        with self.lock:
            self.running[lane] = what
            self._show()
            log.info("sweep: %s", what)

    def finish(self, lane: str, cells: list[tuple[int, str]]) -> None:
        with self.lock:
            self.running.pop(lane, None)
            for c in cells:
                self.done[c] += 1
            self.bar.update(len(cells))
            self._show()

    def _show(self) -> None:
        left = sum(1 for c in self.cells if self.done[c] < self.steps_per_cell)
        now = "; ".join(self.running.values()) or "idle"
        self.bar.set_postfix_str(f"{now} | cells left {left}/{len(self.cells)}", refresh=True)

    def close(self) -> None:
        self.bar.close()


class Sweep:
    def __init__(self, cfg: SweepConfig, out_dir: Path, runs_dir: Path = Path("runs"), workers: int | None = None,
                 progress: bool = True, stall_timeout: float = 180.0, synth_jobs: int = 2):
        self.cfg = cfg
        self.synth_jobs = check_range("synth jobs", synth_jobs, 1, 64)
        self.t_created = time.perf_counter()  # the sweep's time includes fetching the data
        self.dataset = check_dataset(cfg)  # before any directory is made
        self.runs_dir = Path(runs_dir).resolve()
        self.out_dir = check_out_dir(Path(out_dir).resolve())
        self.synth_dir = self.runs_dir / "synth"
        self.workers = workers
        self.progress = progress
        self.stall_timeout = stall_timeout
        self.state = _State(self.out_dir / "state.json", cfg.identity())

    # -- steps ------------------------------------------------------------------------------------
    def accuracy(self, bits: int) -> dict:
        from models.train import TrainConfig, get_or_train

        out = {}
        for mode in ("qat", "ptq"):
            t0 = time.perf_counter()
            tc = TrainConfig(net=self.cfg.net, act_bits=bits, weight_bits=bits, mode=mode, data_dir=self.cfg.data_dir,
                             seed=0, act_format=self.cfg.act_format, int_bits=self.cfg.int_bits)
            _, m = get_or_train(tc, progress=self.progress)
            out[mode] = {**m.to_dict(), "history": None, "wall_s": round(time.perf_counter() - t0, 2)}
        out["cached"] = all(out[mode]["cached"] for mode in ("qat", "ptq"))
        # The float model is shared by every width of a sweep; only a cached quantized model is reuse.
        out["reused"] = any(out[mode]["cached"] for mode in ("qat", "ptq"))
        out["wall_s"] = round(sum(out[mode]["wall_s"] for mode in ("qat", "ptq")), 2)
        return out

    def campaign(self, bits: int) -> dict:
        cc = self.cfg.campaigns[self.cfg.bits.index(bits)]
        run_dir = cc.default_dir(self.runs_dir).resolve()
        summary_path = run_dir / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            if _complete(summary, cc.campaign_id, cc.protections):
                return {"dir": str(run_dir), "cached": True, "reused": True, "wall_s": 0.0}
        resumed = (run_dir / "results.sqlite").is_file()
        t0 = time.perf_counter()
        Campaign(cc, run_dir, workers=self.workers, progress=self.progress, stall_timeout=self.stall_timeout).run()
        return {"dir": str(run_dir), "cached": False, "reused": resumed, "wall_s": round(time.perf_counter() - t0, 2)}

    def synthesize(self, bits: int, protection: str, targets: tuple[str, ...] | None = None) -> dict:
        """Synthesize one design for `targets` (default: all of the sweep's; then synth.json holds them all)."""
        from hdl_gen.synth import synthesize

        t0 = time.perf_counter()
        chosen = self.cfg.synth_targets if targets is None else targets
        result = synthesize(self.cfg.array_config(bits, protection), self.synth_dir, targets=chosen,
                            seed=self.cfg.synth_seed, pnr_mode=self.cfg.fmax, net=self.cfg.net)
        cached = [bool(result["targets"][t].get("cached")) for t in chosen]
        return {"dir": result["run_dir"], "cached": all(cached), "reused": any(cached),
                "wall_s": round(time.perf_counter() - t0, 2)}

    def synth_steps(self) -> list[tuple[int, str, str]]:
        """Every (bits, protection, target) step, longest first (see _TARGET_RANK)."""
        prots = self.cfg.protections
        steps = [(b, p, t) for b in self.cfg.bits for p in prots for t in self.cfg.synth_targets]
        return sorted(steps, key=lambda s: (_TARGET_RANK[s[2]], -s[0], prots.index(s[1])))

    # -- the whole sweep ----------------------------------------------------------------------------
    def run(self) -> dict:
        from fault_campaigns.lock import RunDirLock

        # One sweep per directory (each campaign it runs also locks its own run directory).
        with RunDirLock(self.out_dir, "sweep", self.cfg.sweep_id):
            return self._run()

    def _run(self) -> dict:
        from fault_campaigns.sweep.report import session_is_fresh, write_sweep_report

        cfg = self.cfg
        t_start = self.t_created
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        bar = _Progress(cfg, self.progress)
        session: dict[str, Any] = {"started": started, "steps": {}}

        def record(key: str, value: dict) -> None:
            self.state.put(key, value)
            session["steps"][key] = {k: value.get(k) for k in ("cached", "reused", "wall_s")}

        # Synthesis (single-threaded tools): one step at a time beside the foreground's training and
        # campaigns, `synth_jobs` at a time once the foreground is done; a design's steps never run at once
        # (they share its run directory), its synth.json is assembled when its last step is done.
        slots = threading.Semaphore(1)
        cond = threading.Condition()
        pending = self.synth_steps() if cfg.synth else []
        left = {(b, p): len(cfg.synth_targets) for b in cfg.bits for p in cfg.protections}
        busy: set[tuple[int, str]] = set()
        stop = threading.Event()

        def next_step() -> tuple[int, str, str] | None:
            with cond:
                while pending and not stop.is_set():
                    step = next((st for st in pending if st[:2] not in busy), None)
                    if step is not None:
                        pending.remove(step)
                        busy.add(step[:2])
                        return step
                    cond.wait(timeout=1.0)
                return None

        def synth_worker() -> None:
            while not stop.is_set():
                with slots:
                    step = next_step()
                    if step is None:
                        return
                    b, p, t = step
                    lane = f"synth {b}b {p} {t}"
                    bar.start(lane, lane)
                    try:
                        record(f"synth/{b}/{p}/{t}", self.synthesize(b, p, (t,)))
                        with cond:
                            left[(b, p)] -= 1
                            last = left[(b, p)] == 0
                        if last:  # every step cached now: this only assembles the design's synth.json
                            record(f"synth/{b}/{p}", self.synthesize(b, p))
                    except BaseException:
                        stop.set()
                        raise
                    finally:
                        with cond:
                            busy.discard((b, p))
                            cond.notify_all()
                    bar.finish(lane, [(b, p)] if last else [])

        n_workers = max(1, self.synth_jobs) if pending else 0
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n_workers), thread_name_prefix="synth")
        futures = [pool.submit(synth_worker) for _ in range(n_workers)]
        try:
            for b in cfg.bits:
                bar.start("main", f"train {b}b qat+ptq")
                record(f"accuracy/{b}", self.accuracy(b))
                bar.start("main", f"campaign {b}b {'+'.join(cfg.protections)}")
                record(f"campaign/{b}", self.campaign(b))
                if cfg.rate_curves:
                    from fault_campaigns.sweep.rates import run_curve

                    bar.start("main", f"fault-rate curve {b}b none+range")
                    record(f"rates/{b}", run_curve(self, b))
                bar.finish("main", [(b, p) for p in cfg.protections])
            session["foreground_s"] = round(time.perf_counter() - t_start, 2)
            for _ in range(self.synth_jobs - 1):
                slots.release()
            for f in futures:
                f.result()
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        session["wall_s"] = round(time.perf_counter() - t_start, 2)
        session["fresh"] = session_is_fresh(session)
        self.state.add_session(session)
        result = write_sweep_report(self, self.dataset)
        if cfg.rate_curves:
            from fault_campaigns.sweep.rates import write_rate_curves

            result["rate_curves"] = write_rate_curves(self)
        return result


def _complete(summary: dict, campaign_id: str, protections: tuple[str, ...] = PROTECTIONS) -> bool:
    if summary.get("config", {}).get("campaign_id") != campaign_id:
        return False
    planned = summary.get("faults_planned")
    return all(d.get("rates", {}).get("faults") == planned for d in summary.get("designs", {}).values()) and \
        set(summary.get("designs", {})) == set(protections)
