"""`get_or_train`: one config's cache entry (float model, quantized model, export, metrics), trained when
missing or unusable."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from models.data import Dataset, load_dataset
from models.export import ModelExport
from models.integer import IntegerModel
from models.nets import get_net
from models.quant import FloatNet, QuantNet
from models.train.cache import _atomic_torch_save, _handle_bad, _load_checkpoint, cache_root
from models.train.config import (
    BAD_CHECKPOINT_ACTIONS,
    CACHE_FORMAT,
    TRAIN_THREADS,
    CheckpointError,
    Metrics,
    TrainConfig,
)
from models.train.fit import (
    _accuracy,
    _train_arrays,
    fakequant_logits,
    float_predict,
    quantize,
    set_bounds,
    train_float,
)
from quasar.errors import ConfigError, Interrupted, QuasarError, check_choice, check_range

log = logging.getLogger("models.train")



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
