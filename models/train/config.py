"""The training configuration (what a cached model is keyed by), its metrics, the cache format."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.data import DATASETS
from models.formats import check_format, format_tag, format_text
from models.nets import get_net
from quasar.errors import ConfigError, QuasarError, check_choice, check_range

MODES = ("qat", "ptq")
BITS_RANGE = (2, 16)
CACHE_FORMAT = 3  # bump whenever training or quantization changes what a config produces (3: pinned kernels)
CACHE_ENV = "QUASAR_CACHE_DIR"
TRAIN_THREADS = 1
BAD_CHECKPOINT_ACTIONS = ("retrain", "error")
# Image shapes of the datasets whose shape is fixed (an idx directory can hold any size).
DATASET_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}


class CheckpointError(QuasarError):
    """A cached checkpoint exists but cannot be used (corrupt, other format, other config or data)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained, quantized network. None means the net's recipe default."""

    net: str
    act_bits: int = 8
    weight_bits: int = 8
    mode: str = "qat"
    dataset: str | None = None
    data_dir: str | None = None
    seed: int = 0
    float_epochs: int | None = None
    qat_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    qat_lr: float | None = None
    calib_images: int = 2048
    train_limit: int | None = None  # use only the first N training images (fast tests)
    act_format: str = "calibrated"  # docs/arithmetic.md, "Activation number formats"
    int_bits: int | None = None  # pow2 only: integer bits of every hidden layer; None = auto per layer

    def __post_init__(self) -> None:
        spec = get_net(self.net)
        set_ = object.__setattr__
        set_(self, "act_bits", check_range("act_bits", self.act_bits, *BITS_RANGE))
        set_(self, "weight_bits", check_range("weight_bits", self.weight_bits, *BITS_RANGE))
        check_choice("mode", self.mode, MODES)
        set_(self, "int_bits", check_format(self.act_format, self.int_bits, self.act_bits))
        if self.dataset is not None:
            check_choice("dataset", self.dataset, DATASETS)
        if self.data_dir is not None:
            set_(self, "data_dir", str(Path(self.data_dir).expanduser().resolve()))
        for name in ("float_epochs", "qat_epochs"):
            if getattr(self, name) is not None:
                set_(self, name, check_range(name, getattr(self, name), 0, 10_000))
        for name in ("batch_size", "calib_images", "train_limit"):
            if getattr(self, name) is not None:
                set_(self, name, check_range(name, getattr(self, name), 1, 10**9))
        for name in ("lr", "qat_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 < value < 1):
                raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}")
        shape = DATASET_SHAPES.get(self.resolved_dataset)
        if shape is not None and shape != spec.input_shape:
            raise ConfigError(
                f"net {self.net!r} takes {spec.input_shape} images; dataset {self.resolved_dataset!r} has {shape}"
            )

    @property
    def resolved_dataset(self) -> str:
        return self.dataset or get_net(self.net).default_dataset

    def resolved(self) -> dict:
        """Every field with the net's recipe defaults filled in: what the hash covers."""
        recipe = get_net(self.net).recipe
        out = dataclasses.asdict(self)
        out["dataset"] = self.resolved_dataset
        for name in ("float_epochs", "qat_epochs", "batch_size", "lr", "qat_lr"):
            if out[name] is None:
                out[name] = getattr(recipe, name)
        out["weight_decay"] = recipe.weight_decay
        out["shift_augment"] = recipe.shift_augment
        out["hflip"] = recipe.hflip
        out["kernels"] = kernels()
        if out["mode"] == "ptq":
            out["qat_epochs"] = 0  # unused: the same PTQ model whatever the QAT recipe says
            out["qat_lr"] = 0.0
        if self.act_format == "calibrated":  # the format's fields are left out: keys from before stay valid
            del out["act_format"], out["int_bits"]
        return out

    @property
    def key(self) -> str:
        """Stable hash (independent of Python's hash seed and of field order) of the resolved config."""
        return _digest({"format": CACHE_FORMAT, **self.resolved()})

    def float_config(self) -> dict:
        r = self.resolved()
        keep = (
            "net",
            "dataset",
            "data_dir",
            "seed",
            "float_epochs",
            "batch_size",
            "lr",
            "weight_decay",
            "shift_augment",
            "hflip",
            "kernels",
            "train_limit",
        )
        return {k: r[k] for k in keep}

    @property
    def float_key(self) -> str:
        return _digest({"format": CACHE_FORMAT, **self.float_config()})

    @property
    def run_name(self) -> str:
        return (
            f"{self.net}-{self.resolved_dataset}-{self.mode}-a{self.act_bits}w{self.weight_bits}"
            f"{format_tag(self.act_format, self.int_bits)}-s{self.seed}"
        )


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Metrics:
    """Measured on the held-out test set. Accuracies are fractions in [0, 1]."""

    config: dict
    dataset: str
    data_source: str
    data_fingerprint: str
    n_train: int
    n_test: int
    float_accuracy: float
    fakequant_accuracy: float
    integer_accuracy: float
    agreement: float  # fraction of test images where fake-quant and integer top-1 agree
    float_train_s: float
    quant_train_s: float  # QAT fine-tuning (mode qat) or calibration (ptq), seconds
    range_s: float  # range extraction over the training data
    eval_s: float
    torch_threads: int
    float_cached: bool = False
    cached: bool = False  # this call reused the quantized model from the cache
    history: list[dict] = field(default_factory=list)

    @property
    def integer_minus_float_points(self) -> float:
        return 100.0 * (self.integer_accuracy - self.float_accuracy)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["integer_minus_float_points"] = self.integer_minus_float_points
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Metrics:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def to_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Metrics:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary_items(self) -> list[tuple[str, str]]:
        c = self.config
        return [
            (
                "config",
                f"{c['net']} {c['mode']} A={c['act_bits']} W={c['weight_bits']} seed={c['seed']} key={c['key']}",
            ),
            ("act format", format_text(c.get("act_format", "calibrated"), c.get("int_bits"))),
            ("data", self.data_source),
            ("train / test images", f"{self.n_train} / {self.n_test}"),
            ("float accuracy", f"{100 * self.float_accuracy:.2f} %"),
            ("fake-quant accuracy", f"{100 * self.fakequant_accuracy:.2f} %"),
            ("integer accuracy", f"{100 * self.integer_accuracy:.2f} %"),
            ("integer - float", f"{self.integer_minus_float_points:+.2f} points"),
            ("fake-quant vs integer agreement", f"{100 * self.agreement:.2f} %"),
            ("float training", f"{self.float_train_s:.1f} s" + (" (cached)" if self.float_cached else "")),
            (f"{c['mode']} time", f"{self.quant_train_s:.1f} s" + (" (cached)" if self.cached else "")),
            ("range extraction", f"{self.range_s:.1f} s"),
        ]


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def kernels() -> str:
    """The CPU code path torch trains with (e.g. 'AVX2'): models trained on different paths differ."""
    return str(torch.backends.cpu.get_cpu_capability())
