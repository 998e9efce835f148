"""The reference study's conditions as a preset: a sweep of the pow2 (fixed-point) format, then its figures.

The preset is an ordinary sweep (`fault_campaigns.sweep.Sweep`: training or reuse, one campaign per width
with every design on one fault list, xc7 synthesis of every design), configured like the study
(docs/paper.md): LeNet-5 on MNIST, activations `ap_ufixed<A, 7>` (`--act-format pow2 --int-bits 7`) at
A = 16, 12 and 8 bits, single bit flips in the activation registers of the fault-site map, unprotected
against the study's protection (`range`: clamp to per-layer bounds from the training data) and the variants
that matter (the zero policy, per-channel bounds). Its figures (accuracy under faults, the paired gain, the
positive control, the LUT overhead) are then computed from the campaigns' results stores and the sweep's
rows by `figures`, and written by `report`. Everything resumes: the sweep from its state.json, each
campaign from its store, each synthesis step from its cache; paper.md and paper.json are written atomically
at the end, from the stores, every time.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fault_campaigns.planning.faults import DEFAULT_TARGETS
from quasar.errors import ConfigError

PAPER_BITS = (8, 12, 16)
PAPER_INT_BITS = 7  # ap_fixed<16,7>: the study's LeNet activations (../shared/FIELD.md)
PAPER_PROTECTIONS = ("none", "range", "range:zero", "range:zero:act:channel")
PAPER_SCHEMA = 1


@dataclass(frozen=True)
class PaperConfig:
    """The preset's choices; `sweep_config()` is the sweep that runs them (validated at construction)."""

    net: str = "lenet"
    bits: tuple[int, ...] = PAPER_BITS
    int_bits: int = PAPER_INT_BITS
    protections: tuple[str, ...] = PAPER_PROTECTIONS
    rows: int = 8
    cols: int = 8
    k_max: int = 1024
    images: int = 256
    faults: int | None = None
    margin: float = 0.02
    confidence: float = 0.95
    targets: tuple[str, ...] = DEFAULT_TARGETS
    seed: int = 0
    synth: bool = True
    data_dir: str | None = None

    def __post_init__(self) -> None:
        from fault_campaigns.sweep.runner import parse_bits
        from quasar.protection import parse_specs

        object.__setattr__(self, "bits", parse_bits(list(self.bits)))  # sorted, each checked

        specs = [str(s) for s in parse_specs(tuple(self.protections))]
        if specs[0] != "none" or len(specs) < 2:
            raise ConfigError(f"the preset's protections must start with none (the baseline) and name at least one "
                              f"protected design, e.g. none,range; got {list(specs)}")
        object.__setattr__(self, "protections", tuple(specs))
        self.sweep_config()  # every check of the sweep and its campaigns, before any work

    def sweep_config(self):  # type: ignore[no-untyped-def]
        from fault_campaigns.sweep.runner import SweepConfig

        return SweepConfig(
            net=self.net, bits=self.bits, rows=self.rows, cols=self.cols, k_max=self.k_max,
            data_dir=self.data_dir, images=self.images, targets=tuple(self.targets), margin=self.margin,
            confidence=self.confidence, faults=self.faults, seed=self.seed, synth=self.synth,
            synth_targets=("xc7",), act_format="pow2", int_bits=self.int_bits, rate_curves=False,
            protections=self.protections)

    def identity(self) -> dict[str, Any]:
        return {"sweep": self.sweep_config().identity(), "schema": PAPER_SCHEMA}

    @property
    def paper_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]

    def default_dir(self, runs_dir: str | Path) -> Path:
        widths = "-".join(str(b) for b in self.bits)
        name = f"{self.net}-{self.rows}x{self.cols}-b{widths}-pow2i{self.int_bits}-{self.paper_id}"
        return Path(runs_dir) / "paper" / name


def store_frame(campaign_dir: Path, campaign_id: str):  # type: ignore[no-untyped-def]
    """A campaign's stored rows (read-only; a foreign or damaged store is refused by ResultStore)."""
    from fault_campaigns.campaign import STORE_NAME
    from fault_campaigns.results.store import ResultStore

    with ResultStore(Path(campaign_dir) / STORE_NAME, campaign_id, {}) as store:
        return store.frame()


def width_figures(cfg: PaperConfig, sweep_cfg, bits: int, campaign_dir: Path, rows: list[dict]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One width's figures, from its campaign's store (reliability) and the sweep's rows (accuracy, LUTs)."""
    from fault_campaigns.paper import figures

    cc = sweep_cfg.campaigns[sweep_cfg.bits.index(bits)]
    frame = store_frame(campaign_dir, cc.campaign_id)
    seed = cfg.seed
    designs = figures.design_figures(frame, cfg.confidence, seed, cfg.protections)
    hw = figures.overhead(rows, bits)
    for p in designs:
        designs[p]["hardware"] = hw.get(p)
    row = next(r for r in rows if r["bits"] == bits and r["protection"] == "none")
    summary = json.loads((Path(campaign_dir) / "summary.json").read_text())
    return {
        "format": f"ap_ufixed<{bits},{cfg.int_bits}>",
        "campaign_dir": str(campaign_dir), "campaign_id": cc.campaign_id, "store_rows": len(frame),
        "accuracy_pct": {"float": row.get("float_acc_pct"), "qat_integer": row.get("qat_int_acc_pct"),
                         "ptq_integer": row.get("ptq_int_acc_pct")},
        "headroom": (summary.get("headroom") or {}).get("layers", []),
        "designs": designs,
        "control": figures.control(frame, cfg.confidence, seed, cfg.protections),
    }


def run_paper(cfg: PaperConfig, runs_dir: Path = Path("runs"), out: Path | None = None, workers: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the preset's sweep, then compute and write its figures; returns paper.json's content."""
    from fault_campaigns.files import check_out_dir, probe_out_dir
    from fault_campaigns.paper.report import write_paper
    from fault_campaigns.sweep.runner import Sweep

    t0 = time.perf_counter()
    sweep_cfg = cfg.sweep_config()
    runs_dir = Path(runs_dir).resolve()
    out_dir = Path(out).resolve() if out is not None else cfg.default_dir(runs_dir).resolve()
    sweep = Sweep(sweep_cfg, sweep_cfg.default_dir(runs_dir), runs_dir=runs_dir, workers=workers,
                  progress=progress)  # checks the dataset before any directory is made
    probe_out_dir(out_dir)  # an unwritable --out fails now, not after the sweep; nothing is created yet
    result = sweep.run()
    check_out_dir(out_dir)
    widths = {}
    for b in sweep_cfg.bits:
        step = sweep.state.get(f"campaign/{b}")
        widths[b] = width_figures(cfg, sweep_cfg, b, Path(step["dir"]), result["rows"])
    timing = result["timing"]
    return write_paper(out_dir, cfg, widths, {
        "sweep_dir": result["dir"], "this_run_wall_s": round(time.perf_counter() - t0, 2),
        "sweep_first_fresh_wall_s": timing.get("first_fresh_wall_s"), "sweep_step_wall_s": timing.get("step_wall_s"),
    })
