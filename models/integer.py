"""Integer-only inference of a `ModelExport`, bit-exact with docs/arithmetic.md and the RTL.

This is the golden reference: each conv is lowered to exactly the matmul (im2col, patch order
(in_channel, ky, kx), output pixels row-major) that the array computes; requantization, ReLU/saturation
and the optional range protection follow the contract literally. The fault campaign also uses it to
carry a faulty layer output to the classification (`forward_from`).

Speed: the matmul runs in float64 BLAS when that is provably exact (every product and every partial sum
is an integer below 2^53, checked per call), else in int64; both give the same integers.
Never import torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.export import LayerExport, ModelExport
from quasar.errors import QuasarError
from quasar.protection import ProtectionSpec

PROTECTIONS = ("none", "range")  # the short names; any protection spec (quasar/protection.py) is accepted
_EXACT_FLOAT = float(2**53)


@dataclass(eq=False)
class LayerTrace:
    X: np.ndarray  # (B, P, K) lowered input codes
    V: np.ndarray  # (B, P, N) biased accumulator v = X @ W + b (the logits for the last layer); protected (acc)
    Y: np.ndarray  # (B, P, N) output activations leaving the array (requantized, protected); v for the last
    violations: np.ndarray  # (B,) corrected values per image (0 without protection)


@dataclass(eq=False)
class Trace:
    layers: list[LayerTrace]
    logits: np.ndarray  # (B, num_classes) int64


class IntegerModel:
    """Integer inference of `export`, protected as the spec `protection` says (quasar/protection.py), as
    the RTL protection unit does: `range` clamps every hidden layer's output activations to the export's
    bounds; the zero policy resets out-of-range values to 0; the acc domain protects every layer's biased
    accumulator v (the logits included) before requantization. `per_channel=True` is the legacy way to
    ask for per-channel bounds (a spec naming a granularity wins)."""

    def __init__(self, export: ModelExport, protection: str = "none", per_channel: bool = False) -> None:
        spec = ProtectionSpec.parse(protection, "channel" if per_channel else None)
        self.spec = spec
        self.export = export
        self.protection = spec.kind
        self.per_channel = spec.per_channel
        self.layers: list[LayerExport] = export.layers
        self.act_max = (1 << export.act_bits) - 1
        last = self.layers[-1]
        if not last.is_last or last.kind != "fc":
            raise ValueError("the last layer of an exported net must be an fc layer marked is_last")
        self._w = [np.ascontiguousarray(layer.weight, dtype=np.int64) for layer in self.layers]
        self._wf = [w.astype(np.float64) for w in self._w]
        self._wabs = [float(np.abs(w).sum(axis=0).max(initial=0)) for w in self._w]
        self._half = [
            np.where(layer.shift > 0, np.left_shift(np.int64(1), np.maximum(layer.shift - 1, 0)), 0)
            for layer in self.layers
        ]
        self._bounds = export.bounds(self.per_channel, spec.domain) if spec.protected else None
        if spec.domain == "acc" and self._bounds is not None and any(b is None for b in self._bounds):
            raise QuasarError(f"protection {str(spec)!r} needs accumulator bounds for every layer; this export has "
                              "none (models.integer.set_acc_bounds extracts them from training data)")
        if self._bounds is not None and any(b is None for b in self._bounds[:-1]):
            raise ValueError("protection='range' needs bounds for every hidden layer; this export has none")

    # --------------------------------------------------------------------------------- the steps

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Image x in [0, 1] (B, C, H, W) -> activation codes, int64: round_half_up(x * (2^A - 1)), or
        for the pow2 format min(round_half_up(x * 2^A), 2^A - 1) (input_levels is 2^A - 1 or 2^A)."""
        x = np.asarray(x, dtype=np.float64)
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ValueError(f"input images must lie in [0, 1], got {x.min()}..{x.max()}")
        return np.minimum(np.floor(x * self.export.input_levels + 0.5), self.act_max).astype(np.int64)

    def lower(self, layer_index: int, layer_input: np.ndarray) -> np.ndarray:
        """The layer's operand matrix X (B, P, K) int64, exactly as the array is fed (fc: P = 1)."""
        return self._lower(layer_index, np.asarray(layer_input, dtype=np.int64))

    def _lower(self, i: int, a: np.ndarray) -> np.ndarray:
        layer = self.layers[i]
        b = a.shape[0]
        if layer.kind == "fc":
            return a.reshape(b, 1, layer.reduction)
        c, (h, w) = layer.in_channels, layer.in_hw
        a = a.reshape(b, c, h, w)
        k, s, p = layer.kernel, layer.stride, layer.padding
        if p:
            a = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))  # activation code 0, as the contract says
        win = np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(2, 3))  # (B, C, H', W', k, k)
        ho, wo = layer.out_hw
        win = win[:, :, : (ho - 1) * s + 1 : s, : (wo - 1) * s + 1 : s]
        return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(b, ho * wo, layer.reduction)

    def _matmul(self, i: int, x: np.ndarray) -> np.ndarray:
        amax = float(np.abs(x).max(initial=0))
        if amax * self._wabs[i] < _EXACT_FLOAT:
            return np.rint(x.astype(np.float64) @ self._wf[i]).astype(np.int64)
        return x.astype(np.int64) @ self._w[i]

    def _layer(self, i: int, x: np.ndarray):
        """(V, Y, violations per image) of layer i for lowered input x (B, P, K)."""
        layer = self.layers[i]
        v = self._matmul(i, x) + layer.bias
        none = np.zeros(len(x), dtype=np.int64)
        if self._bounds is not None and self.spec.domain == "acc":
            v, violations = self._protect(v, i)
            if layer.is_last:
                return v, v, violations
            return v, np.clip((v * layer.mult + self._half[i]) >> layer.shift, 0, self.act_max), violations
        if layer.is_last:
            return v, v, none
        y = np.clip((v * layer.mult + self._half[i]) >> layer.shift, 0, self.act_max)
        if self._bounds is None:
            return v, y, none
        z, violations = self._protect(y, i)
        return v, z, violations

    def _protect(self, values: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The protection of layer i on values (B, P, N): (protected values, out-of-range count per image)."""
        lo, hi = self._bounds[i]  # type: ignore[index]
        out = (values < lo) | (values > hi)
        fixed = np.minimum(np.maximum(values, lo), hi) if self.spec.policy == "clamp" else 0
        return np.where(out, fixed, values), out.reshape(len(values), -1).sum(axis=1)

    def layer_output(self, layer_index: int, X: np.ndarray, return_violations: bool = False):
        """Y (B, P, N): requantized (and protected) activations of the layer, or the logits v of the last
        layer. With return_violations, also the number of corrected values per image (B,)."""
        _, y, violations = self._layer(layer_index, np.asarray(X))
        return (y, violations) if return_violations else y

    def next_input(self, layer_index: int, Y: np.ndarray) -> np.ndarray:
        """The next layer's input from this layer's output Y (B, P, N): max-pool, then flatten before fc."""
        layer = self.layers[layer_index]
        b = Y.shape[0]
        if layer.kind == "fc":
            return Y.reshape(b, layer.out_channels)
        ho, wo = layer.out_hw
        a = Y.reshape(b, ho, wo, layer.out_channels).transpose(0, 3, 1, 2)
        if layer.pool > 1:
            q = layer.pool
            hp, wp = layer.pooled_hw
            a = a[:, :, : hp * q, : wp * q].reshape(b, layer.out_channels, hp, q, wp, q).max(axis=(3, 5))
        a = np.ascontiguousarray(a)
        return a.reshape(b, -1) if layer.flatten else a

    def forward_from(self, layer_index: int, Y: np.ndarray, return_violations: bool = False):
        """Logits (B, num_classes) given layer `layer_index`'s output Y (B, P, N) (e.g. a faulty one).
        With return_violations, also the clamped values per image in the layers after it (B,)."""
        y = np.asarray(Y, dtype=np.int64)
        total = np.zeros(len(y), dtype=np.int64)
        for i in range(layer_index + 1, len(self.layers)):
            x = self._lower(i, self.next_input(i - 1, y))
            _, y, violations = self._layer(i, x)
            total += violations
        logits = y.reshape(len(y), -1)
        return (logits, total) if return_violations else logits

    # ------------------------------------------------------------------------------ whole network

    def trace(self, x_codes: np.ndarray) -> Trace:
        """Every layer's operands, accumulators and outputs for input codes (B, C, H, W)."""
        a = np.asarray(x_codes, dtype=np.int64)
        out = []
        for i in range(len(self.layers)):
            x = self._lower(i, a)
            v, y, violations = self._layer(i, x)
            out.append(LayerTrace(X=x, V=v, Y=y, violations=violations))
            if i + 1 < len(self.layers):
                a = self.next_input(i, y)
        return Trace(layers=out, logits=out[-1].Y.reshape(len(a), -1))

    def logits_codes(self, x_codes: np.ndarray) -> np.ndarray:
        """Logits for input codes, without keeping the intermediate tensors."""
        a = np.asarray(x_codes, dtype=np.int64)
        x = self._lower(0, a)
        _, y, _ = self._layer(0, x)
        return self.forward_from(0, y)

    def logits(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Logits for images x in [0, 1] (B, C, H, W), processed in batches."""
        x = np.asarray(x)
        parts = [self.logits_codes(self.quantize_input(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.layers[-1].out_channels), np.int64)

    def predict(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Top-1 class for images x in [0, 1]: argmax of the logits, the lowest index on a tie."""
        return np.argmax(self.logits(x, batch_size), axis=1)

    def output_ranges(self, x: np.ndarray, batch_size: int = 500) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per-channel (min, max) of every hidden layer's output activations over images x (unprotected
        values when protection is off); None for the last layer."""
        mins: list[np.ndarray | None] = [None] * len(self.layers)
        maxs: list[np.ndarray | None] = [None] * len(self.layers)
        for start in range(0, len(x), batch_size):
            trace = self.trace(self.quantize_input(x[start : start + batch_size]))
            for i, lt in enumerate(trace.layers[:-1]):
                n = lt.Y.shape[-1]
                lo, hi = lt.Y.reshape(-1, n).min(axis=0), lt.Y.reshape(-1, n).max(axis=0)
                mins[i] = lo if mins[i] is None else np.minimum(mins[i], lo)
                maxs[i] = hi if maxs[i] is None else np.maximum(maxs[i], hi)
        return [None if mins[i] is None else (mins[i], maxs[i]) for i in range(len(self.layers))]

    def acc_ranges(self, x: np.ndarray, batch_size: int = 500) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-channel (min, max) of every layer's biased accumulator v (the logits for the last) over
        images x (unprotected values when protection is off)."""
        mins: list[np.ndarray | None] = [None] * len(self.layers)
        maxs: list[np.ndarray | None] = [None] * len(self.layers)
        for start in range(0, len(x), batch_size):
            trace = self.trace(self.quantize_input(x[start : start + batch_size]))
            for i, lt in enumerate(trace.layers):
                n = lt.V.shape[-1]
                lo, hi = lt.V.reshape(-1, n).min(axis=0), lt.V.reshape(-1, n).max(axis=0)
                mins[i] = lo if mins[i] is None else np.minimum(mins[i], lo)
                maxs[i] = hi if maxs[i] is None else np.maximum(maxs[i], hi)
        return [(mins[i], maxs[i]) for i in range(len(self.layers))]  # type: ignore[misc]


def set_acc_bounds(export: ModelExport, x: np.ndarray) -> None:
    """Accumulator-domain range extraction: every layer's per-channel and per-layer min/max of v over the
    (training) images x, stored in the export (v_lo, v_hi, v_lo_ch, v_hi_ch). Deterministic in the export
    and x, so a campaign can fill an older export's bounds itself."""
    if len(x) == 0:
        raise QuasarError("accumulator bounds need at least one training image")
    for layer, (lo, hi) in zip(export.layers, IntegerModel(export).acc_ranges(x), strict=True):
        layer.v_lo_ch, layer.v_hi_ch = lo.astype(np.int64), hi.astype(np.int64)
        layer.v_lo, layer.v_hi = int(lo.min()), int(hi.max())


def has_acc_bounds(export: ModelExport) -> bool:
    return all(layer.v_lo is not None for layer in export.layers)
