"""Fault model and statistically planned fault lists.

A fault is one frozen record: which register of the generated RTL (by its name in the design's
fault-site map), which bit(s), at which cycle of which tile run, for which test image and layer.
Each layer's fault space is the product (image x tile x register bit x cycle); faults are drawn
uniformly from it, without replacement, by a generator seeded from (seed, layer), so the same seed
gives the same list whatever else changes. This module never runs a simulation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fault_campaigns.stats import leveugle_sample_size
from quasar.errors import ConfigError, check_choice

# flip: one transient bit flip; mbu2/mbu3: adjacent multi-bit upset; stuck0/stuck1: a bit held at a
# value for the whole tile run.
FAULT_MODELS = ("flip", "mbu2", "mbu3", "stuck0", "stuck1")
# pe_act_operand/pe_weight_operand: the PE multiplier's operand registers a_op/w_op; pe_product: the PE's
# product register; pipeline: the post-processing registers between the drain and oact (docs/rtl.md,
# "Fault-site map")
REGISTER_KINDS = ("pe_activation", "output_activation", "weight", "pe_act_operand", "pe_weight_operand", "pe_product",
                  "accumulator", "pipeline", "control")
DEFAULT_TARGETS = ("pe_activation", "output_activation")


def model_span(model: str) -> int:
    """How many adjacent bits a fault of this model touches."""
    return {"mbu2": 2, "mbu3": 3}.get(model, 1)


def is_stuck(model: str) -> bool:
    return model.startswith("stuck")


@dataclass(frozen=True)
class Site:
    """One fault-injectable register from the design's fault-site map."""

    name: str
    width: int
    kind: str
    row: int | None = None
    col: int | None = None


def load_sites(path: str, targets: Sequence[str] = DEFAULT_TARGETS) -> list[Site]:
    """Read a fault-site map (fault_sites.json) and keep the registers of the target kinds."""
    for kind in targets:
        check_choice("target register kind", kind, REGISTER_KINDS)
    with open(path) as fh:
        raw = json.load(fh)
    entries = raw["sites"] if isinstance(raw, dict) else raw
    sites = [
        Site(e["name"], int(e["width"]), e["kind"], e.get("row"), e.get("col"))
        for e in entries
        if e["kind"] in targets
    ]
    if not sites:
        raise ConfigError(f"the fault-site map {path} has no register of kind {', '.join(targets)}")
    return sites


@dataclass(frozen=True)
class Fault:
    fault_id: int
    image: int  # position in the campaign's image list
    layer: int
    tile: int
    site: str
    kind: str
    bits: tuple[int, ...]
    cycle: int  # clock edge after which the flip is applied (stuck-at: from the start, whole tile)
    model: str

    @property
    def mask(self) -> int:
        return sum(1 << b for b in self.bits)

    def run(self) -> dict[str, object]:
        """The simulator-side description of this fault: a multi-bit upset is one flip of all its bits,
        a stuck-at holds its bits for the whole tile run."""
        model = "flip" if self.model.startswith("mbu") else self.model
        return {"id": self.fault_id, "site": self.site, "mask": self.mask,
                "cycle": 0 if is_stuck(self.model) else self.cycle, "model": model}

    def to_row(self) -> dict[str, object]:
        row = asdict(self)
        row["bits"] = ",".join(str(b) for b in self.bits)
        return row


@dataclass(frozen=True)
class LayerSpace:
    """The per-layer dimensions of the fault space."""

    layer: int
    tiles: int
    cycles: int  # cycles of one tile run in which a transient fault may land


class FaultSpace:
    """Uniform, exactly enumerable fault space of one layer: image x tile x (site, bit) x cycle."""

    def __init__(self, space: LayerSpace, images: int, sites: Sequence[Site], model: str):
        check_choice("fault model", model, FAULT_MODELS)
        self.space, self.images, self.sites, self.model = space, images, list(sites), model
        span = model_span(model)
        usable = [s for s in self.sites if s.width >= span]
        if not usable:
            raise ConfigError(f"no target register is at least {span} bits wide for fault model {model!r}")
        self.sites = usable
        self._slots = np.cumsum([s.width - span + 1 for s in usable])
        self.cycles = 1 if is_stuck(model) else space.cycles

    @property
    def size(self) -> int:
        return self.images * self.space.tiles * int(self._slots[-1]) * self.cycles

    def decode(self, index: int, fault_id: int) -> Fault:
        rest, cycle = divmod(int(index), self.cycles)
        rest, slot = divmod(rest, int(self._slots[-1]))
        image, tile = divmod(rest, self.space.tiles)
        s = int(np.searchsorted(self._slots, slot, side="right"))
        start = slot - (int(self._slots[s - 1]) if s else 0)
        site = self.sites[s]
        bits = tuple(range(start, start + model_span(self.model)))
        return Fault(fault_id, image, self.space.layer, tile, site.name, site.kind, bits, cycle, self.model)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` distinct indices drawn uniformly from the space."""
        size = self.size
        n = min(n, size)
        if size <= 50_000_000:
            return np.sort(rng.choice(size, size=n, replace=False))
        seen: set[int] = set()
        while len(seen) < n:  # population >> n: rejection of the rare duplicate is cheap
            seen.update(int(x) for x in rng.integers(0, size, size=n - len(seen)))
        return np.sort(np.fromiter(seen, dtype=np.int64))


def plan(
    layers: Iterable[LayerSpace],
    images: int,
    sites: Sequence[Site],
    model: str = "flip",
    seed: int = 0,
    faults_per_layer: int | None = None,
    margin: float = 0.02,
    confidence: float = 0.95,
) -> list[Fault]:
    """The campaign's fault list: per layer, Leveugle's n (or `faults_per_layer`) uniform faults."""
    if images < 1:
        raise ConfigError(f"a campaign needs at least one test image, got {images!r}")
    if faults_per_layer is not None and faults_per_layer < 1:
        raise ConfigError(f"faults per layer must be at least 1, got {faults_per_layer!r}")
    faults: list[Fault] = []
    for space in layers:
        fs = FaultSpace(space, images, sites, model)
        n = faults_per_layer or leveugle_sample_size(fs.size, margin, confidence)
        rng = np.random.default_rng([seed, space.layer])
        for index in fs.sample(n, rng):
            faults.append(fs.decode(index, len(faults)))
    return faults


def layer_sample_sizes(
    layers: Iterable[LayerSpace], images: int, sites: Sequence[Site], model: str, margin: float, confidence: float
) -> dict[int, tuple[int, int]]:
    """Per layer: (population, Leveugle sample size); for reports and dry runs."""
    out = {}
    for space in layers:
        size = FaultSpace(space, images, sites, model).size
        out[space.layer] = (size, leveugle_sample_size(size, margin, confidence))
    return out


def tiles_for(rows_p: int, cols_n: int, array_rows: int, array_cols: int) -> tuple[int, int]:
    """Tile grid (along P, along N) of a P x N layer output on an R x C array."""
    return math.ceil(rows_p / array_rows), math.ceil(cols_n / array_cols)
