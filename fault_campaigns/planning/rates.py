"""Fault-rate campaigns: the configuration and the flips of whole inferences.

Fault model: independent transient flips. Every bit of every targeted register (from the design's
fault-site map) flips after any clock edge of a tile run with probability `rate` (per bit, per cycle).
For one inference (image, trial) at one rate, the flips of every tile run of every layer are drawn
from a generator seeded with (seed, dataset index of the image, trial, rate): the number of flips of
a tile run is binomial over its (register bits x cycles) slots, and they are placed uniformly
without replacement among those slots. The same seed gives the same flips whatever the number of
workers, the executor or the design (both designs see the same flips). This module never simulates.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from fault_campaigns.planning.faults import REGISTER_KINDS, LayerSpace, Site
from fault_campaigns.stats import check_unit_interval
from quasar.errors import ConfigError, check_choice, check_range

# Every register an activation passes through, in dataflow order: the PE activation registers, the PE
# multipliers' activation operands (a_op), the PE product registers, the accumulators (PE accumulators and
# the drain's biased v_j), the post-processing pipeline (pp_j.v_reg, pl_reg, ph_reg, p_reg, t_reg) and the
# output activations. The weights (w_reg, w_op; reloaded per tile) and the control registers are left to
# --targets. Each kind's bits and flips are reported apart.
DEFAULT_RATE_TARGETS = (
    "pe_activation", "pe_act_operand", "pe_product", "accumulator", "pipeline", "output_activation"
)
# LeNet-5, 8 bits, 8x8, default targets: from no visible accuracy drop to collapse (docs/campaign.md,
# "Fault-rate campaigns", the measurement that chose them).
DEFAULT_RATES = (3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
# The 3-minute budget of the default curve (one width, both designs, 2 cores): at the top rates every
# tile run of an inference is an RTL run (~570 per inference and design over this grid at 8 bits), so
# 1,000 images x 1 trial is what fits (2 min 33 s measured on 2 cores shared with other jobs; 1,000 x 3
# would take about three times as long); docs/campaign.md gives the measurement. More: --trials.
DEFAULT_IMAGES = 1000
DEFAULT_TRIALS = 1
RATE_SCHEMA = 1
_SEED_TAG = 0x7A7E  # keeps these draws apart from every other seeded choice of a campaign


def check_rates(rates: Sequence[float]) -> tuple[float, ...]:
    """A non-empty list of distinct rates, each strictly between 0 and 1, sorted ascending."""
    if rates is None or len(rates) == 0:
        raise ConfigError("--rates needs at least one fault rate, e.g. --rates 1e-7,1e-6")
    out = []
    for r in rates:
        try:
            value = float(r)
        except (TypeError, ValueError):
            raise ConfigError(f"fault rate must be a number strictly between 0 and 1, got {r!r}") from None
        if math.isnan(value) or not 0.0 < value < 1.0:
            raise ConfigError(f"fault rate must be strictly between 0 and 1 (per bit per cycle), got {r!r}")
        out.append(value)
    if len(set(out)) != len(out):
        raise ConfigError(f"fault rates must be distinct, got {list(rates)!r}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class RateConfig:
    """Everything a fault-rate campaign's results depend on (hashed into its id)."""

    net: str = "lenet"
    bits: int = 8
    act_bits: int | None = None
    weight_bits: int | None = None
    rows: int = 8
    cols: int = 8
    k_max: int = 1024
    per_channel_bounds: bool = False
    protections: tuple[str, ...] = ("none", "range")
    dataset: str | None = None
    data_dir: str | None = None
    train_mode: str = "qat"
    rates: tuple[float, ...] = DEFAULT_RATES
    images: int = DEFAULT_IMAGES
    trials: int = DEFAULT_TRIALS
    targets: tuple[str, ...] = DEFAULT_RATE_TARGETS
    seed: int = 0
    confidence: float = 0.95
    act_format: str = "calibrated"  # docs/arithmetic.md; pow2 runs shift-only designs, as a campaign does
    int_bits: int | None = None  # pow2 only: integer bits of every hidden layer; None = auto

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", check_rates(self.rates))
        check_range("trials", self.trials, 1, 10_000)
        check_range("images", self.images, 1, 100_000)
        check_unit_interval("confidence", self.confidence)
        if not self.targets:
            raise ConfigError(f"at least one target register kind is needed, choose from {REGISTER_KINDS}")
        for t in self.targets:
            check_choice("target register kind", t, REGISTER_KINDS)
        # The shared checks (net, widths, array shape, protections, format, data directory); the format's
        # integer bits come back normalised.
        object.__setattr__(self, "int_bits", self.campaign_config().int_bits)

    def campaign_config(self):  # type: ignore[no-untyped-def]
        """The single-fault campaign config with the same model, array, images and targets (its
        preparation, builds and golden check are reused)."""
        from fault_campaigns.planning.config import CampaignConfig

        return CampaignConfig(
            net=self.net, bits=self.bits, act_bits=self.act_bits, weight_bits=self.weight_bits, rows=self.rows,
            cols=self.cols, k_max=self.k_max, per_channel_bounds=self.per_channel_bounds,
            protections=self.protections, dataset=self.dataset, data_dir=self.data_dir, train_mode=self.train_mode,
            images=self.images, golden_images=1, targets=self.targets, seed=self.seed, confidence=self.confidence,
            act_format=self.act_format, int_bits=self.int_bits,
        )

    @property
    def a_bits(self) -> int:
        return self.act_bits or self.bits

    @property
    def w_bits(self) -> int:
        return self.weight_bits or self.bits

    def identity(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["act_bits"], d["weight_bits"] = self.a_bits, self.w_bits
        d["protections"], d["targets"], d["rates"] = list(self.protections), list(self.targets), list(self.rates)
        d["data_dir"] = None
        d["schema"] = RATE_SCHEMA
        if self.act_format == "calibrated":  # left out: ids from before the formats stay valid
            del d["act_format"], d["int_bits"]
        return d

    @property
    def campaign_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def default_dir(self, runs_dir: str | Path) -> Path:
        from models.formats import format_tag

        fmt = format_tag(self.act_format, self.int_bits)
        name = f"{self.net}-a{self.a_bits}w{self.w_bits}{fmt}-{self.rows}x{self.cols}-{self.campaign_id[:8]}"
        return Path(runs_dir) / "rates" / name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["protections"], d["targets"], d["rates"] = list(self.protections), list(self.targets), list(self.rates)
        return d

    @classmethod
    def from_dict(cls, raw: dict) -> RateConfig:
        raw = {k: v for k, v in raw.items() if k in {f.name for f in fields(cls)}}
        for name in ("protections", "targets", "rates"):
            raw[name] = tuple(raw[name])
        return cls(**raw)


@dataclass(frozen=True)
class Flip:
    """One transient flip of one tile run: bit `bit` of register `site` after edge `cycle`."""

    layer: int
    tile: int
    site: str
    kind: str
    bit: int
    cycle: int

    def to_list(self) -> list:
        return [self.layer, self.tile, self.site, self.bit, self.cycle]


class FlipSpace:
    """The flip slots of one inference: every tile run of every layer x register bit x cycle."""

    def __init__(self, layers: Sequence[LayerSpace], sites: Sequence[Site]):
        if not sites:
            raise ConfigError("a fault-rate campaign needs at least one target register")
        self.sites = list(sites)
        self.site_index = {s.name: n for n, s in enumerate(self.sites)}
        self._ends = np.cumsum([s.width for s in self.sites])  # bit slot -> site
        self.bits = int(self._ends[-1])  # register bits of one tile run
        self.run_layer = np.concatenate([np.full(sp.tiles, sp.layer, np.int64) for sp in layers])
        self.run_tile = np.concatenate([np.arange(sp.tiles, dtype=np.int64) for sp in layers])
        self.run_cycles = np.concatenate([np.full(sp.tiles, sp.cycles, np.int64) for sp in layers])
        self.slots = self.run_cycles * self.bits  # per tile run
        self.quoted_names = [json.dumps(s.name) for s in self.sites]

    @property
    def bit_cycles(self) -> int:
        """Register bits x cycles of one whole inference (mean flips per inference = rate x this)."""
        return int(self.slots.sum())

    def bits_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sites:
            out[s.kind] = out.get(s.kind, 0) + s.width
        return out

    def mean_flips(self, rate: float) -> float:
        return rate * self.bit_cycles

    def draw_arrays(self, rate: float, rng: np.random.Generator) -> FlipArrays:
        """The flips of one inference as arrays, ordered by (layer, tile, cycle, site, bit)."""
        counts = rng.binomial(self.slots, rate)
        runs = np.flatnonzero(counts)
        picks = [np.sort(rng.choice(int(self.slots[r]), size=int(counts[r]), replace=False)) for r in runs]
        if not picks:
            return FlipArrays.empty(self)
        cycle, slot = np.divmod(np.concatenate(picks), self.bits)
        site = np.searchsorted(self._ends, slot, side="right")
        bit = slot - np.concatenate([[0], self._ends[:-1]])[site]
        run = np.repeat(runs, counts[runs])
        layer, tile = self.run_layer[run], self.run_tile[run]
        order = np.lexsort((bit, site, cycle, tile, layer))
        return FlipArrays(self, layer[order], tile[order], site[order], bit[order], cycle[order])

    def draw(self, rate: float, rng: np.random.Generator) -> list[Flip]:
        """The flips of one inference, ordered by (layer, tile, cycle, site, bit)."""
        return self.draw_arrays(rate, rng).to_flips()


class FlipArrays:
    """The flips of one inference as parallel arrays (layer, tile, site index into `space.sites`, bit,
    cycle), ordered by (layer, tile, cycle, site, bit): what a campaign keeps per inference (a
    `Flip` object per flip costs ~10x the time at millions of flips)."""

    def __init__(self, space: FlipSpace, layer, tile, site, bit, cycle):  # type: ignore[no-untyped-def]
        self.space = space
        self.layer = np.asarray(layer, np.int32)
        self.tile = np.asarray(tile, np.int32)
        self.site = np.asarray(site, np.int32)
        self.bit = np.asarray(bit, np.int32)
        self.cycle = np.asarray(cycle, np.int32)

    @classmethod
    def empty(cls, space: FlipSpace) -> FlipArrays:
        e = np.zeros(0, np.int32)
        return cls(space, e, e, e, e, e)

    @classmethod
    def from_flips(cls, space: FlipSpace, flips: Sequence[Flip]) -> FlipArrays:
        rows = sorted((f.layer, f.tile, f.cycle, space.site_index[f.site], f.bit) for f in flips)
        a = np.asarray(rows, np.int64).reshape(-1, 5).T
        return cls(space, a[0], a[1], a[3], a[4], a[2])

    def __len__(self) -> int:
        return len(self.layer)

    def to_flips(self) -> list[Flip]:
        sites = self.space.sites
        return [Flip(lay, t, sites[s].name, sites[s].kind, b, c) for lay, t, s, b, c in
                zip(self.layer.tolist(), self.tile.tolist(), self.site.tolist(), self.bit.tolist(),
                    self.cycle.tolist(), strict=True)]

    def run_count(self) -> int:
        """How many tile runs hold at least one flip."""
        if not len(self):
            return 0
        return int(1 + np.count_nonzero((np.diff(self.layer) != 0) | (np.diff(self.tile) != 0)))

    def layer_runs(self, layer: int) -> list[tuple[int, np.ndarray]]:
        """[(tile, flips (n x 3 int32: cycle, site index, bit)), ...] of `layer`'s tile runs with flips,
        in tile order: what `ArrayTB.run_flips` takes (bits of one register and cycle consecutive)."""
        lo, hi = np.searchsorted(self.layer, [layer, layer + 1])
        if lo == hi:
            return []
        tiles = self.tile[lo:hi]
        cuts = [0, *(np.flatnonzero(np.diff(tiles)) + 1).tolist(), hi - lo]
        csb = np.stack([self.cycle[lo:hi], self.site[lo:hi], self.bit[lo:hi]], axis=1)
        return [(int(tiles[a]), csb[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def layers(self) -> set[int]:
        return set(np.unique(self.layer).tolist())

    def by_kind(self) -> dict[str, int]:
        counts = np.bincount(self.site, minlength=len(self.space.sites))
        out: dict[str, int] = {}
        for s, n in zip(self.space.sites, counts.tolist(), strict=True):
            if n:
                out[s.kind] = out.get(s.kind, 0) + n
        return out

    def to_json(self) -> str:
        """The flip list as stored: JSON [[layer, tile, site, bit, cycle], ...]."""
        names = self.space.quoted_names
        return "[" + ",".join(
            f"[{lay},{t},{names[s]},{b},{c}]" for lay, t, s, b, c in
            zip(self.layer.tolist(), self.tile.tolist(), self.site.tolist(), self.bit.tolist(), self.cycle.tolist(),
                strict=True)) + "]"


def rate_key(rate: float) -> int:
    """The rate as an exact integer (its IEEE-754 bits) for seeding."""
    return int.from_bytes(struct.pack("<d", float(rate)), "little")


def inference_rng(seed: int, dataset_index: int, trial: int, rate: float) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SEED_TAG, int(dataset_index), int(trial), rate_key(rate)])


def draw_flips(space: FlipSpace, seed: int, dataset_index: int, trial: int, rate: float) -> list[Flip]:
    """The flips of inference (image, trial) at `rate`: a pure function of its arguments."""
    return space.draw(rate, inference_rng(seed, dataset_index, trial, rate))


def draw_flip_arrays(space: FlipSpace, seed: int, dataset_index: int, trial: int, rate: float) -> FlipArrays:
    """`draw_flips` as arrays (the same flips)."""
    return space.draw_arrays(rate, inference_rng(seed, dataset_index, trial, rate))


def tile_runs(flips: Sequence[Flip]) -> dict[tuple[int, int], list[tuple[str, int, int]]]:
    """The flips grouped by tile run (layer, tile): [(site, mask, cycle), ...] in cycle order, several
    bits of one register at one cycle merged into one mask (one deposit)."""
    out: dict[tuple[int, int], dict[tuple[int, str], int]] = {}
    for f in flips:
        masks = out.setdefault((f.layer, f.tile), {})
        masks[(f.cycle, f.site)] = masks.get((f.cycle, f.site), 0) | (1 << f.bit)
    return {key: [(site, mask, cycle) for (cycle, site), mask in masks.items()] for key, masks in out.items()}
