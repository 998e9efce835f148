"""Training, post-training quantization, range extraction and the checkpoint cache.

`get_or_train(config)` returns the `ModelExport` and `Metrics` of one quantized network, training only
what the cache lacks: the float model is cached on its own (keyed by the float-relevant part of the
config), so QAT and PTQ at every width start from the same float weights; each quantized model is cached
by the hash of its whole config. Checkpoints are loaded with `torch.load(weights_only=True)` and checked
(format, config, data fingerprint, tensor names and shapes); a missing, corrupt or mismatched one is
reported and retrained (or refused with `on_bad_checkpoint="error"`), never silently used.
Library code: it logs (logger `models.train`), it never prints or configures logging.

Modules: `config` (TrainConfig, Metrics, the cache format, the kernel tag), `cache` (checkpoint files:
where they live, atomic writes, the checks on loading), `fit` (float training, PTQ/QAT, range extraction,
evaluation), `store` (`get_or_train`: one config's cache entry, trained when missing). The CPU kernel pin
below runs before any of them imports torch.
"""
# ruff: noqa: E402 - the kernel pins below must run before torch is imported

from __future__ import annotations

import os

# Reproducible training across machines: torch's CPU kernels, MKL and oneDNN pick their code paths by the
# CPU's instruction set (AVX-512 and AVX2 runs of one seed gave different LeNet-5 models here), so pin
# them to AVX2 before torch runs its first operation. A process that ran torch before this import keeps
# what it had: the kernels in use are part of the cache key (`config.kernels`), so such models never mix.
for _name, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("DNNL_MAX_CPU_ISA", "AVX2")):
    os.environ.setdefault(_name, _value)

import torch

from models.train.cache import cache_root, train_command
from models.train.config import (
    BAD_CHECKPOINT_ACTIONS,
    BITS_RANGE,
    CACHE_ENV,
    CACHE_FORMAT,
    DATASET_SHAPES,
    MODES,
    TRAIN_THREADS,
    CheckpointError,
    Metrics,
    TrainConfig,
    kernels,
)
from models.train.fit import fakequant_logits, float_predict, quantize, set_bounds, train_float
from models.train.store import get_or_train, torch_threads

__all__ = [
    "BAD_CHECKPOINT_ACTIONS", "BITS_RANGE", "CACHE_ENV", "CACHE_FORMAT", "DATASET_SHAPES", "MODES", "TRAIN_THREADS",
    "CheckpointError", "Metrics", "TrainConfig", "cache_root", "fakequant_logits", "float_predict", "get_or_train",
    "kernels", "quantize", "set_bounds", "torch", "torch_threads", "train_command", "train_float",
]
