"""The model export: integer weights, biases, multipliers, shifts, bounds and widths of one quantized network.

`ModelExport` is the single object the RTL configuration, the integer reference model and the fault
campaign read, so they cannot disagree on a width, a shift or a bound. Its JSON file is self-contained
(integer arrays are written as lists, exactly). This module is numpy only: it never imports torch.

Conventions (docs/models.md):
- `weight` is (K, N) int64 in im2col order: row k = (in_channel, ky, kx) flattened, column n = output
  channel; the array computes `X (P x K) @ weight`.
- Hidden layers: `mult`, `shift` per output channel; `lo`/`hi` (per layer) and `lo_ch`/`hi_ch` (per
  channel) are the min/max of the layer's integer output activations (after requantization and clamp,
  before pooling) over the training data.
- The last layer skips requantization (its logits are `v`): `mult` = 1, `shift` = 0 are stored only
  to keep the arrays uniform, and its bounds are None (the logits path is never range-restricted).
- `act_format` (docs/arithmetic.md, "Activation number formats"): `calibrated`, or `pow2` where every
  hidden layer has `mult` = 1 and records its `int_bits` (I of ap_ufixed<A, I>), and the input rule is
  `min(round_half_up(x * 2^A), 2^A - 1)` (`input_levels` = 2^A).
- `v_lo`/`v_hi` (per layer) and `v_lo_ch`/`v_hi_ch` (per channel): the min/max of every layer's biased
  accumulator v (the last layer's: its logits) over the training data, for the accumulator-domain
  protection; None until `models.integer.set_acc_bounds` fills them (older exports have none).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from models.nets import Geometry, get_net
from quasar.arithmetic import ACT_FORMATS, M_BITS, MAX_SHIFT, acc_bits, act_range, clog2, headroom, weight_range
from quasar.errors import QuasarError

EXPORT_FORMAT = 1
_ARRAYS = ("weight", "bias", "mult", "shift")
_FLOATS = ("weight_scale",)


@dataclass(eq=False)
class LayerExport:
    name: str
    kind: str  # "conv" or "fc"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    pool: int
    pooled_hw: tuple[int, int]
    flatten: bool
    is_last: bool
    weight: np.ndarray  # int64 (K, N), im2col order (in_channel, ky, kx)
    bias: np.ndarray  # int64 (N,), at the accumulator scale s_in * s_w
    mult: np.ndarray  # int64 (N,), 0 .. 2^16 - 1
    shift: np.ndarray  # int64 (N,), 0 .. 63
    lo: int | None = None  # per-layer bounds of the output activations (None for the last layer)
    hi: int | None = None
    lo_ch: np.ndarray | None = None  # int64 (N,) per-channel bounds (None for the last layer)
    hi_ch: np.ndarray | None = None
    v_lo: int | None = None  # per-layer bounds of the biased accumulator v, every layer (acc domain)
    v_hi: int | None = None
    v_lo_ch: np.ndarray | None = None  # int64 (N,) per-channel bounds of v
    v_hi_ch: np.ndarray | None = None
    # Real scales, for documentation and re-quantization only; the integer arithmetic never reads them.
    input_scale: float = 1.0  # s_in: real value of one input activation step
    weight_scale: np.ndarray = field(default_factory=lambda: np.ones(1))  # s_w per output channel (or one)
    output_scale: float | None = None  # s_out (None for the last layer)
    int_bits: int | None = None  # pow2: integer bits I of the output format ap_ufixed<A, I> (None otherwise)

    @property
    def reduction(self) -> int:
        """K: rows of `weight` (in_channels * kernel^2 for conv)."""
        return self.in_channels * self.kernel * self.kernel

    @property
    def pixels(self) -> int:
        """P: output pixels, rows of the lowered operand matrix (1 for fc)."""
        return self.out_hw[0] * self.out_hw[1]

    @classmethod
    def from_geometry(cls, geom: Geometry, **values) -> LayerExport:
        geo = {f.name: getattr(geom, f.name) for f in fields(Geometry)}
        return cls(**geo, **values)

    def check(self, act_bits: int, weight_bits: int, k_max: int) -> None:
        """Raise a QuasarError if any array has the wrong shape or a value outside its contract range."""
        k, n = self.reduction, self.out_channels
        want = {"weight": (k, n), "bias": (n,), "mult": (n,), "shift": (n,)}
        for key, shape in want.items():
            arr = getattr(self, key)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != np.int64:
                got = getattr(arr, "shape", type(arr).__name__), getattr(arr, "dtype", None)
                raise QuasarError(f"layer {self.name}: {key} must be int64 {shape}, got {got}")
        wlo, whi = weight_range(weight_bits)
        _in_range(self, "weight", self.weight, wlo - 1, whi)  # -2^(W-1) is legal for the RTL
        acc = acc_bits(act_bits, weight_bits, k_max)
        _in_range(self, "bias", self.bias, -(1 << (acc - 1)), (1 << (acc - 1)) - 1)
        _in_range(self, "mult", self.mult, 0, (1 << M_BITS) - 1)
        _in_range(self, "shift", self.shift, 0, MAX_SHIFT)
        vmax = 1 << acc  # |v| < 2^ACC: v has ACC + 1 bits
        if self.v_lo is not None and not -vmax <= self.v_lo <= self.v_hi < vmax:
            raise QuasarError(f"layer {self.name}: accumulator bounds v_lo={self.v_lo}, v_hi={self.v_hi} not in "
                              f"{-vmax}..{vmax - 1}")
        if self.v_lo_ch is not None and (self.v_lo_ch.shape != (n,) or self.v_hi_ch is None
                                         or self.v_hi_ch.shape != (n,) or np.any(self.v_lo_ch > self.v_hi_ch)):
            raise QuasarError(f"layer {self.name}: per-channel accumulator bounds must have shape ({n},), lo <= hi")
        alo, ahi = act_range(act_bits)
        if self.is_last:
            return
        if self.lo is not None and not alo <= self.lo <= self.hi <= ahi:
            raise QuasarError(f"layer {self.name}: bounds lo={self.lo}, hi={self.hi} not in {alo}..{ahi}")
        if self.lo_ch is not None:
            if self.lo_ch.shape != (n,) or self.hi_ch is None or self.hi_ch.shape != (n,):
                raise QuasarError(f"layer {self.name}: per-channel bounds must have shape ({n},)")
            if np.any(self.lo_ch > self.hi_ch) or self.lo_ch.min() < alo or self.hi_ch.max() > ahi:
                raise QuasarError(f"layer {self.name}: per-channel bounds outside {alo}..{ahi} or lo > hi")

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> LayerExport:
        values = dict(raw)
        for key in ("in_hw", "out_hw", "pooled_hw"):
            values[key] = tuple(int(v) for v in values[key])
        for key in (*_ARRAYS, "lo_ch", "hi_ch", "v_lo_ch", "v_hi_ch"):
            if values.get(key) is not None:
                values[key] = np.asarray(values[key], dtype=np.int64)
        values["weight"] = values["weight"].reshape(int(values["in_channels"]) * int(values["kernel"]) ** 2, -1)
        for key in _FLOATS:
            values[key] = np.asarray(values[key], dtype=np.float64)
        return cls(**values)


def _pair(layer: LayerExport, per_channel: bool, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """A layer's (lo, hi) as (N,) arrays: its per-channel bounds, or the per-layer pair repeated."""
    if per_channel:
        return getattr(layer, f"{prefix}lo_ch").copy(), getattr(layer, f"{prefix}hi_ch").copy()
    n = layer.out_channels
    return np.full(n, getattr(layer, f"{prefix}lo"), np.int64), np.full(n, getattr(layer, f"{prefix}hi"), np.int64)


def _in_range(layer: LayerExport, key: str, arr: np.ndarray, lo: int, hi: int) -> None:
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise QuasarError(f"layer {layer.name}: {key} has values in {arr.min()}..{arr.max()}, allowed {lo}..{hi}")


@dataclass(eq=False)
class ModelExport:
    net: str
    act_bits: int
    weight_bits: int
    dataset: str
    layers: list[LayerExport]
    input_shape: tuple[int, int, int]
    num_classes: int
    max_reduction: int
    # Input quantization: code = round_half_up(x * input_levels), x in [0, 1], input_levels = 2^A - 1
    # (calibrated); pow2: input_levels = 2^A and the code saturates at 2^A - 1.
    input_levels: int
    config: dict = field(default_factory=dict)  # the TrainConfig that produced it (with its key)
    format: int = EXPORT_FORMAT
    act_format: str = "calibrated"

    @property
    def acc_bits(self) -> int:
        """Accumulator width for an array whose buffers hold exactly `max_reduction` (the smallest legal)."""
        return acc_bits(self.act_bits, self.weight_bits, self.max_reduction)

    def logit_bits(self) -> int:
        return self.acc_bits + 1

    @property
    def input_quantization(self) -> dict:
        if self.act_format == "pow2":
            rule = f"min(round_half_up(x * levels), {(1 << self.act_bits) - 1})"
        else:
            rule = "round_half_up(x * levels)"
        return {"levels": self.input_levels, "rule": rule, "range": [0.0, 1.0]}

    @property
    def shift_only(self) -> bool:
        """Every hidden layer's multiplier is 1: the requantization is a pure shift (RTL requant="shift")."""
        return all(bool(np.all(layer.mult == 1)) for layer in self.layers if not layer.is_last)

    def headroom(self) -> list[dict]:
        """Per hidden layer: the per-layer upper bound against the top code 2^A - 1, in codes and bits
        (docs/arithmetic.md, "Headroom"); empty when the export has no bounds."""
        out = []
        top = (1 << self.act_bits) - 1
        for layer in self.layers:
            if layer.is_last or layer.hi is None:
                continue
            codes, bits = headroom(layer.hi, self.act_bits)
            hi_ch = layer.hi_ch if layer.hi_ch is not None else np.array([layer.hi])
            out.append(
                {
                    "layer": layer.name,
                    "int_bits": layer.int_bits,
                    "lo": int(layer.lo),
                    "hi": int(layer.hi),
                    "top": top,
                    "headroom_codes": codes,
                    "headroom_bits": bits,
                    "channels_below_top": int(np.count_nonzero(hi_ch < top)),
                    "channels": int(hi_ch.size),
                }
            )
        return out

    def bounds(self, per_channel: bool = False, domain: str = "act") -> list[tuple[np.ndarray, np.ndarray] | None]:
        """The (lo, hi) bounds the protection unit is programmed with, per layer: activation codes (act;
        None for the last layer) or v values (acc; every layer, None where the export has none)."""
        if domain == "acc":
            return [None if layer.v_lo is None else _pair(layer, per_channel, "v_") for layer in self.layers]
        out = []
        for layer in self.layers:
            if layer.is_last or layer.lo is None:
                out.append(None)
            elif per_channel:
                out.append((layer.lo_ch.copy(), layer.hi_ch.copy()))
            else:
                n = layer.out_channels
                out.append((np.full(n, layer.lo, np.int64), np.full(n, layer.hi, np.int64)))
        return out

    def check(self, k_max: int | None = None) -> None:
        """Validate shapes, ranges and the geometry against the net's own definition."""
        k_max = self.max_reduction if k_max is None else k_max
        spec_geometry = get_net(self.net).geometry()
        if len(spec_geometry) != len(self.layers):
            raise QuasarError(f"export of {self.net} has {len(self.layers)} layers, the net has {len(spec_geometry)}")
        for geom, layer in zip(spec_geometry, self.layers, strict=True):
            for f in fields(Geometry):
                if getattr(geom, f.name) != getattr(layer, f.name):
                    raise QuasarError(
                        f"layer {layer.name}: {f.name} {getattr(layer, f.name)!r} != net's {getattr(geom, f.name)!r}"
                    )
            layer.check(self.act_bits, self.weight_bits, k_max)
        if self.max_reduction < max(layer.reduction for layer in self.layers):
            raise QuasarError(f"max_reduction {self.max_reduction} is below a layer's reduction")
        if clog2(self.max_reduction) > 32:
            raise QuasarError(f"max_reduction {self.max_reduction} is unreasonably large")
        if self.act_format not in ACT_FORMATS:
            raise QuasarError(f"act_format must be one of {', '.join(ACT_FORMATS)}; got {self.act_format!r}")
        pow2 = self.act_format == "pow2"
        levels = (1 << self.act_bits) - (0 if pow2 else 1)
        if self.input_levels != levels:
            raise QuasarError(f"input_levels {self.input_levels} != {levels} ({self.act_format} at A={self.act_bits})")
        if pow2:
            for layer in self.layers:
                if layer.is_last:
                    continue
                if not np.all(layer.mult == 1):
                    raise QuasarError(f"layer {layer.name}: a pow2 export needs every multiplier = 1")
                if layer.int_bits is None or not 0 <= layer.int_bits <= self.act_bits:
                    raise QuasarError(f"layer {layer.name}: int_bits {layer.int_bits!r} not in 0..{self.act_bits}")

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "net": self.net,
            "act_bits": self.act_bits,
            "weight_bits": self.weight_bits,
            "dataset": self.dataset,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "max_reduction": self.max_reduction,
            "acc_bits": self.acc_bits,
            "input_levels": self.input_levels,
            "input_quantization": self.input_quantization,
            "act_format": self.act_format,
            "config": self.config,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ModelExport:
        if raw.get("format") != EXPORT_FORMAT:
            raise QuasarError(f"export format {raw.get('format')!r} is not the supported {EXPORT_FORMAT}")
        try:
            export = cls(
                net=raw["net"],
                act_bits=int(raw["act_bits"]),
                weight_bits=int(raw["weight_bits"]),
                dataset=raw["dataset"],
                layers=[LayerExport.from_dict(layer) for layer in raw["layers"]],
                input_shape=tuple(int(v) for v in raw["input_shape"]),
                num_classes=int(raw["num_classes"]),
                max_reduction=int(raw["max_reduction"]),
                input_levels=int(raw["input_levels"]),
                config=dict(raw.get("config", {})),
                act_format=str(raw.get("act_format", "calibrated")),  # exports before the formats
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QuasarError(f"malformed model export: {type(exc).__name__}: {exc}") from None
        export.check()
        return export

    def to_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelExport:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise QuasarError(f"cannot read model export {path}: {exc}") from None
        try:
            return cls.from_dict(raw)
        except QuasarError as exc:
            raise QuasarError(f"{path}: {exc}") from None

    def arrays(self) -> dict[str, np.ndarray]:
        """Every integer array, keyed '<layer>.<array>' (e.g. for np.savez)."""
        out = {}
        for layer in self.layers:
            for key in (*_ARRAYS, "lo_ch", "hi_ch", "v_lo_ch", "v_hi_ch"):
                value = getattr(layer, key)
                if value is not None:
                    out[f"{layer.name}.{key}"] = value
        return out

    def save_npz(self, path: str | os.PathLike) -> Path:
        """The integer arrays alone, as an .npz (the JSON stays the reference)."""
        path = Path(path)
        np.savez(path, **self.arrays())
        return path
