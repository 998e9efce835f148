"""Quantized networks for QuaSAR: data, quantization-aware training, export and the integer reference model.

The export (`ModelExport`) is the one object the RTL configuration and the fault campaign read; the
integer model (`IntegerModel`) is bit-exact with the arithmetic of docs/arithmetic.md. This package
never imports the RTL generator, the testbenches or the campaigns.

Names are resolved lazily (PEP 562): `import models.integer` or the `quasar` CLI must not pay for
importing torch, which only `models.quant` and `models.train` need.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DATASETS": "models.data",
    "Dataset": "models.data",
    "load_dataset": "models.data",
    "LayerExport": "models.export",
    "ModelExport": "models.export",
    "IntegerModel": "models.integer",
    "LayerTrace": "models.integer",
    "Trace": "models.integer",
    "NETS": "models.nets",
    "NetSpec": "models.nets",
    "get_net": "models.nets",
    "random_export": "models.synthetic",
    "Metrics": "models.train",
    "TrainConfig": "models.train",
    "get_or_train": "models.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
