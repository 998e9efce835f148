"""Training, post-training quantization, range extraction and the checkpoint cache.

`get_or_train(config)` returns the `ModelExport` and `Metrics` of one quantized network, training only
what the cache lacks: the float model is cached on its own (keyed by the float-relevant part of the
config), so QAT and PTQ at every width start from the same float weights; each quantized model is cached
by the hash of its whole config. Checkpoints are loaded with `torch.load(weights_only=True)` and checked
(format, config, data fingerprint, tensor names and shapes); a missing, corrupt or mismatched one is
reported and retrained (or refused with `on_bad_checkpoint="error"`), never silently used.
Library code: it logs, it never prints or configures logging.
"""
# ruff: noqa: E402 - the kernel pins below must run before torch is imported

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Reproducible training across machines: torch's CPU kernels, MKL and oneDNN pick their code paths by the
# CPU's instruction set (AVX-512 and AVX2 runs of one seed gave different LeNet-5 models here), so pin
# them to AVX2 before torch runs its first operation. A process that ran torch before this import keeps
# what it had: the kernels in use are part of the cache key (KERNELS), so such models never mix.
for _name, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("DNNL_MAX_CPU_ISA", "AVX2")):
    os.environ.setdefault(_name, _value)

import torch
import torch.nn.functional as F
from filelock import FileLock
from tqdm import tqdm

from models.data import DATASETS, REPO_ROOT, Dataset, load_dataset
from models.export import ModelExport
from models.formats import check_format, format_tag, format_text
from models.integer import IntegerModel
from models.nets import get_net
from models.quant import FloatNet, QuantNet
from quasar.errors import ConfigError, Interrupted, QuasarError, check_choice, check_range

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------- cache


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_torch_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, want_config: dict, module: torch.nn.Module) -> dict:
    """Load and check a checkpoint; load its weights into `module`. CheckpointError when unusable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean "corrupt"
        first = textwrap.shorten((str(exc).strip().splitlines() or [""])[0], 160, placeholder=" ...")  # torch's
        # messages run to many lines; the first, cut at a word, says what is wrong
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"checkpoint {path} has format {got!r}, expected {CACHE_FORMAT}")
    if blob.get("config") != want_config:
        raise CheckpointError(f"checkpoint {path} was made for another config: {blob.get('config')} != {want_config}")
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict")
    own = module.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    want = {k: tuple(v.shape) for k, v in own.items()}
    if shapes != want:
        raise CheckpointError(f"checkpoint {path} has tensors {shapes}, the model needs {want}")
    module.load_state_dict(state)
    return blob


def train_command(config: TrainConfig) -> str:
    """The `quasar train` command line that trains `config` (and replaces a bad cache entry of it)."""
    args = ["quasar", "train", "--net", config.net, "--act-bits", str(config.act_bits), "--weight-bits",
            str(config.weight_bits), "--mode", config.mode]
    for flag, value in (("--dataset", config.dataset), ("--data-dir", config.data_dir)):
        if value is not None:
            args += [flag, str(value)]
    if config.seed:
        args += ["--seed", str(config.seed)]
    return shlex.join(args)


def _handle_bad(exc: CheckpointError, action: str, config: TrainConfig, target: Path) -> None:
    if action == "error":
        raise CheckpointError(f"{exc}. It is left untouched: to retrain it, run `{train_command(config)}` (which "
                              f"replaces it), or delete {target} and rerun this command") from None
    log.warning("%s; retraining it", exc)


# ------------------------------------------------------------------------------------ training


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _augment(x: torch.Tensor, shift: int, hflip: bool, rng: np.random.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (zero fill) and optional horizontal flip, per image."""
    b, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = rng.integers(0, 2 * shift + 1, b)
        dx = rng.integers(0, 2 * shift + 1, b)
        rows = torch.from_numpy(dy[:, None] + np.arange(h)[None, :])
        cols = torch.from_numpy(dx[:, None] + np.arange(w)[None, :])
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if hflip:
        flip = torch.from_numpy(rng.random(b) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _fit(
    model,
    forward_loss,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    optimizer,
    rng: np.random.Generator,
    shift: int,
    hflip: bool,
    desc: str,
    progress: bool,
) -> list[dict]:
    steps = max(1, epochs * math.ceil(len(x) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for idx in _batches(len(x), batch_size, rng):
            ib = torch.from_numpy(idx)
            xb = _augment(xt[ib], shift, hflip, rng)
            loss, logits = forward_loss(xb, yt[ib])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yt[ib]).sum())
            total += len(idx)
        history.append({"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total})
        bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
    model.eval()
    return history


def train_float(config: TrainConfig, data: Dataset, progress: bool = True) -> tuple[FloatNet, list[dict]]:
    r = config.resolved()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = FloatNet(get_net(config.net))
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])

    def step(xb, yb):
        logits = model(xb)
        return F.cross_entropy(logits, yb), logits

    x, y = _train_arrays(config, data)
    history = _fit(
        model,
        step,
        x,
        y,
        r["float_epochs"],
        r["batch_size"],
        opt,
        rng,
        r["shift_augment"],
        r["hflip"],
        f"float {config.net}",
        progress,
    )
    return model, history


def quantize(config: TrainConfig, float_net: FloatNet, data: Dataset, progress: bool = True) -> tuple[QuantNet, list]:
    """PTQ (calibration only) or QAT (calibration, then fine-tuning with the straight-through estimator)."""
    r = config.resolved()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    x, y = _train_arrays(config, data)
    calib = torch.from_numpy(x[rng.permutation(len(x))[: config.calib_images]])
    qnet = QuantNet(get_net(config.net), config.act_bits, config.weight_bits, config.act_format, config.int_bits)
    qnet.init_from_float(float_net, calib)
    if config.mode == "ptq" or r["qat_epochs"] == 0:
        return qnet.eval(), []
    opt = torch.optim.Adam(qnet.parameters(), lr=r["qat_lr"])

    def step(xb, yb):
        _, logits = qnet(xb)
        return F.cross_entropy(logits, yb), logits

    history = _fit(
        qnet,
        step,
        x,
        y,
        r["qat_epochs"],
        r["batch_size"],
        opt,
        rng,
        r["shift_augment"],
        r["hflip"],
        f"qat {config.net} a{config.act_bits}w{config.weight_bits}",
        progress,
    )
    return qnet, history


def _train_arrays(config: TrainConfig, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    limit = config.train_limit or len(data.train_y)
    return data.train_x[:limit], data.train_y[:limit]


def set_bounds(export: ModelExport, x: np.ndarray) -> None:
    """Range extraction: each hidden layer's per-channel and per-layer min/max of its integer output
    activations over images x, stored in the export."""
    ranges = IntegerModel(export).output_ranges(x)
    for layer, rng in zip(export.layers, ranges, strict=True):
        if rng is None:
            layer.lo = layer.hi = layer.lo_ch = layer.hi_ch = None
            continue
        layer.lo_ch, layer.hi_ch = rng[0].astype(np.int64), rng[1].astype(np.int64)
        layer.lo, layer.hi = int(layer.lo_ch.min()), int(layer.hi_ch.max())


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else float("nan")


@torch.no_grad()
def float_predict(model: FloatNet, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate(
        [model(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() for i in range(0, len(x), batch)]
    )


@torch.no_grad()
def fakequant_logits(model: QuantNet, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The fake-quant model's integer logits v (float64 holding integers) for images x."""
    return np.concatenate([model(torch.from_numpy(x[i : i + batch]))[0].numpy() for i in range(0, len(x), batch)])


# ---------------------------------------------------------------------------------- get_or_train


def _get_float(config: TrainConfig, data: Dataset, root: Path, progress: bool, action: str):
    fcfg = {**config.float_config(), "data_fingerprint": data.fingerprint()}
    path = root / f"{config.net}-{config.resolved_dataset}-float-s{config.seed}-{config.float_key}.pt"
    model = FloatNet(get_net(config.net))
    if path.exists():
        try:
            blob = _load_checkpoint(path, fcfg, model)
            log.info("reusing float model %s", path)
            return model.eval(), blob["info"], True
        except CheckpointError as exc:
            _handle_bad(exc, action, config, path)
    t0 = time.perf_counter()
    model, history = train_float(config, data, progress)
    info = {"train_s": time.perf_counter() - t0, "history": history}
    info["accuracy"] = _accuracy(float_predict(model, data.test_x), data.test_y)
    _atomic_torch_save({"format": CACHE_FORMAT, "config": fcfg, "state_dict": model.state_dict(), "info": info}, path)
    log.info("float %s: %.2f %% test accuracy, trained in %.1f s", config.net, 100 * info["accuracy"], info["train_s"])
    return model, info, False


def _load_entry(entry: Path, config: TrainConfig, qcfg: dict) -> tuple[ModelExport, Metrics]:
    files = [entry / "model.pt", entry / "export.json", entry / "metrics.json"]
    missing = [f.name for f in files if not f.exists()]
    if len(missing) == len(files):
        raise FileNotFoundError(entry)
    if missing:
        raise CheckpointError(f"cache entry {entry} is incomplete (no {', '.join(missing)})")
    qnet = QuantNet(get_net(config.net), config.act_bits, config.weight_bits, config.act_format, config.int_bits)
    _load_checkpoint(files[0], qcfg, qnet)
    try:
        export = ModelExport.from_json(files[1])
        metrics = Metrics.from_json(files[2])
    except (QuasarError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"cache entry {entry} is corrupt: {exc}") from None
    if export.config != qcfg or metrics.config != qcfg:
        raise CheckpointError(f"cache entry {entry} belongs to another config")
    if metrics.data_fingerprint != qcfg["data_fingerprint"]:
        raise CheckpointError(f"cache entry {entry} was trained on other data")
    # The export must be the checkpoint's own integer parameters, bit for bit.
    fresh = qnet.export(export.dataset, qcfg)
    for a, b in zip(fresh.layers, export.layers, strict=True):
        for key in ("weight", "bias", "mult", "shift"):
            if not np.array_equal(getattr(a, key), getattr(b, key)):
                raise CheckpointError(f"cache entry {entry}: export.json {b.name}.{key} differs from model.pt")
    return export, metrics


def kernels() -> str:
    """The CPU code path torch trains with (e.g. 'AVX2'): models trained on different paths differ."""
    return str(torch.backends.cpu.get_cpu_capability())


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch with n intra-op threads and deterministic algorithms only, restoring both afterwards."""
    before = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(det)


def get_or_train(
    config: TrainConfig,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_bad_checkpoint: str = "retrain",
    threads: int = TRAIN_THREADS,
) -> tuple[ModelExport, Metrics]:
    """The export and metrics of `config`, from the cache when it holds a valid entry, else trained now.

    `threads`: torch intra-op threads while training. Results are deterministic for a given seed and
    thread count; one thread is the default because on a shared 2-core machine OpenMP's spinning threads
    slowed training up to 25x whenever another process held a core (measured, docs/models.md).
    """
    check_choice("on_bad_checkpoint", on_bad_checkpoint, BAD_CHECKPOINT_ACTIONS)
    threads = check_range("threads", threads, 1, 1024)
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.resolved_dataset, config.data_dir, seed=config.seed)
    spec = get_net(config.net)
    if data.input_shape != spec.input_shape:
        raise ConfigError(
            f"dataset {data.name!r} has {data.input_shape} images; net {config.net!r} takes {spec.input_shape}"
        )
    qcfg = {**config.resolved(), "key": config.key, "data_fingerprint": data.fingerprint()}
    entry = root / f"{config.run_name}-{config.key}"
    locks = root / ".locks"  # filelock leaves its files behind; keep them out of the listing
    locks.mkdir(exist_ok=True)
    with FileLock(str(locks / f"{entry.name}.lock")):
        try:
            export, metrics = _load_entry(entry, config, qcfg)
            log.info("reusing cached %s from %s", config.run_name, entry)
            metrics.cached = True
            return export, metrics
        except FileNotFoundError:
            log.info("no cached model for %s; training", config.run_name)
        except CheckpointError as exc:
            _handle_bad(exc, on_bad_checkpoint, config, entry)
        try:
            with torch_threads(threads):
                return _train_entry(config, data, qcfg, root, entry, progress, on_bad_checkpoint)
        except KeyboardInterrupt:  # the cache is written atomically: nothing half-trained was kept
            raise Interrupted(f"training {config.run_name} stopped before it finished; the cache keeps only "
                              "finished models (a float model trained before the interrupt stays cached), so "
                              "rerun the command to train it") from None


def _train_entry(config, data, qcfg, root, entry, progress, action) -> tuple[ModelExport, Metrics]:
    float_net, float_info, float_cached = _get_float(config, data, root, progress, action)
    t0 = time.perf_counter()
    qnet, history = quantize(config, float_net, data, progress)
    quant_s = time.perf_counter() - t0
    export = qnet.export(data.name, qcfg)
    t0 = time.perf_counter()
    x_train, _ = _train_arrays(config, data)
    set_bounds(export, x_train)
    range_s = time.perf_counter() - t0
    export.check()
    t0 = time.perf_counter()
    fq_pred = np.argmax(fakequant_logits(qnet, data.test_x), axis=1)
    int_pred = IntegerModel(export).predict(data.test_x)
    eval_s = time.perf_counter() - t0
    metrics = Metrics(
        config=qcfg,
        dataset=data.name,
        data_source=data.source,
        data_fingerprint=qcfg["data_fingerprint"],
        n_train=len(x_train),
        n_test=len(data.test_y),
        float_accuracy=float_info["accuracy"],
        fakequant_accuracy=_accuracy(fq_pred, data.test_y),
        integer_accuracy=_accuracy(int_pred, data.test_y),
        agreement=_accuracy(fq_pred, int_pred),
        float_train_s=float_info["train_s"],
        quant_train_s=quant_s,
        range_s=range_s,
        eval_s=eval_s,
        torch_threads=torch.get_num_threads(),
        float_cached=float_cached,
        history=history,
    )
    entry.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({"format": CACHE_FORMAT, "config": qcfg, "state_dict": qnet.state_dict()}, entry / "model.pt")
    export.to_json(entry / "export.json")
    metrics.to_json(entry / "metrics.json")
    log.info(
        "%s: integer %.2f %%, float %.2f %%, agreement %.2f %%",
        config.run_name,
        100 * metrics.integer_accuracy,
        100 * metrics.float_accuracy,
        100 * metrics.agreement,
    )
    return export, metrics
