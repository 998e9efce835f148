"""The campaign configuration: one frozen, validated object whose hash names the campaign.

Everything a campaign's results depend on is in here (network, widths, array shape, fault model,
sample sizes, seed, images); execution details that cannot change a result (number of workers,
timeouts, progress display) are not, so a campaign resumed with more workers is the same campaign.
Validation happens at construction, before any training, build or simulation starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fault_campaigns.planning.faults import DEFAULT_TARGETS, FAULT_MODELS, REGISTER_KINDS
from fault_campaigns.stats import check_unit_interval
from quasar.errors import ConfigError, check_choice, check_range
from quasar.protection import parse_specs

PROTECTIONS = ("none", "range")
TRAIN_MODES = ("qat", "ptq")
CAMPAIGN_SCHEMA = 1
# Enough test images that image sampling is no larger than the fault sampling: accuracy under faults
# varies 12-17 pp (sd) between LeNet-5 images, so 256 images give it a 95% half-width of ~1.9 pp, the
# Leveugle margin's 2 pp (16 images gave 100% on images that happened to be all correct).
DEFAULT_IMAGES = 256


def check_data_dir(data_dir: str) -> Path:
    """A dataset directory the user named must exist and hold something (what, the loader checks)."""
    path = Path(data_dir)
    if not path.is_dir():
        raise ConfigError(f"data directory {data_dir!r} does not exist or is not a directory")
    if not any(path.iterdir()):
        raise ConfigError(f"data directory {data_dir!r} is empty; it must hold the dataset's files (docs/models.md)")
    return path


@dataclass(frozen=True)
class CampaignConfig:
    net: str = "lenet"
    bits: int = 8
    act_bits: int | None = None  # default: bits
    weight_bits: int | None = None  # default: bits
    rows: int = 8
    cols: int = 8
    k_max: int = 1024
    per_channel_bounds: bool = False
    protections: tuple[str, ...] = PROTECTIONS
    dataset: str | None = None  # default: the net's own dataset
    data_dir: str | None = None
    train_mode: str = "qat"
    images: int = DEFAULT_IMAGES  # test images in the fault space (docs/campaign.md: why 256)
    golden_images: int = 1  # images whose every tile is checked on RTL before injecting
    fault_model: str = "flip"
    targets: tuple[str, ...] = DEFAULT_TARGETS
    margin: float = 0.02
    confidence: float = 0.95
    faults: int | None = None  # per layer; default from Leveugle's formula
    layers: tuple[str, ...] | None = None  # default: every layer
    seed: int = 0
    act_format: str = "calibrated"  # docs/arithmetic.md, "Activation number formats"
    int_bits: int | None = None  # pow2 only: integer bits of every hidden layer; None = auto


    def __post_init__(self) -> None:
        from models.nets import get_net  # the net list lives with the models

        net = get_net(self.net)
        check_range("bits", self.bits, 2, 16)
        for name in ("act_bits", "weight_bits"):
            value = getattr(self, name)
            if value is not None:
                check_range(name.replace("_", " "), value, 2, 16)
        check_range("rows", self.rows, 1, 64)
        check_range("cols", self.cols, 1, 64)
        check_range("k_max", self.k_max, 1, 16384)
        if net.max_reduction > self.k_max:
            raise ConfigError(
                f"net {self.net!r} has a reduction length of {net.max_reduction}, more than the array's "
                f"operand buffers hold (k_max={self.k_max}); raise --k-max to at least {net.max_reduction}"
            )
        if not self.protections:
            raise ConfigError(f"at least one protection is needed, choose from {PROTECTIONS}")
        # protection specs (quasar/protection.py), by canonical name; --per-channel-bounds turns `range` per channel
        object.__setattr__(self, "protections", tuple(str(s) for s in parse_specs(tuple(self.protections))))
        check_choice("train mode", self.train_mode, TRAIN_MODES)
        check_range("images", self.images, 1, 100_000)
        check_range("golden images", self.golden_images, 1, self.images)
        check_choice("fault model", self.fault_model, FAULT_MODELS)
        if not self.targets:
            raise ConfigError(f"at least one target register kind is needed, choose from {REGISTER_KINDS}")
        for t in self.targets:
            check_choice("target register kind", t, REGISTER_KINDS)
        check_unit_interval("margin", self.margin)
        check_unit_interval("confidence", self.confidence)
        if self.faults is not None:
            check_range("faults per layer", self.faults, 1, 100_000_000)
        if self.layers is not None:
            names = [g.name for g in net.geometry()]
            for name in self.layers:
                check_choice("layer", name, tuple(names))
        check_range("seed", self.seed, 0, 2**63 - 1)
        from models.formats import check_format  # torch-free

        object.__setattr__(self, "int_bits", check_format(self.act_format, self.int_bits, self.a_bits))
        if self.data_dir is not None:
            check_data_dir(self.data_dir)

    @property
    def requant(self) -> str:
        """The array's requantization datapath: shift-only for the pow2 format (M = 1), else the multiplier."""
        return "shift" if self.act_format == "pow2" else "mul"

    @property
    def a_bits(self) -> int:
        return self.act_bits or self.bits

    @property
    def w_bits(self) -> int:
        return self.weight_bits or self.bits

    def identity(self) -> dict:
        """The fields that define the campaign's results (hashed into its id)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["act_bits"], d["weight_bits"] = self.a_bits, self.w_bits
        d["protections"], d["targets"] = list(self.protections), list(self.targets)
        d["layers"] = None if self.layers is None else list(self.layers)
        d["data_dir"] = None  # where the data lives does not change the data
        d["schema"] = CAMPAIGN_SCHEMA
        if self.act_format == "calibrated":  # left out: campaign ids from before the formats stay valid
            del d["act_format"], d["int_bits"]
        return d

    @property
    def campaign_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def default_dir(self, runs_dir: str | Path) -> Path:
        shape = f"{self.rows}x{self.cols}"
        from models.formats import format_tag

        fmt = format_tag(self.act_format, self.int_bits)
        name = f"{self.net}-a{self.a_bits}w{self.w_bits}{fmt}-{shape}-{self.fault_model}-{self.campaign_id[:8]}"
        return Path(runs_dir) / "campaign" / name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["protections"], d["targets"] = list(self.protections), list(self.targets)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d
