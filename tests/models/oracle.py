"""An independent, literal implementation of a network's integer inference for the tests.

Per image: hand-written im2col with explicit loops, `quasar.arithmetic.layer` for the matmul and
requantization, hand-written max-pool and flatten. Slow on purpose; shares no code with models/integer.py.
"""

import numpy as np

from quasar import arithmetic
from quasar.protection import ProtectionSpec


def im2col(a: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """a (C, H, W) -> (P, K): one row per output pixel (row-major), columns in (c, ky, kx) order."""
    c, h, w = a.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding), dtype=np.int64)
    padded[:, padding : padding + h, padding : padding + w] = a
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    rows = []
    for oy in range(ho):
        for ox in range(wo):
            patch = []
            for ci in range(c):
                for ky in range(kernel):
                    for kx in range(kernel):
                        patch.append(padded[ci, oy * stride + ky, ox * stride + kx])
            rows.append(patch)
    return np.array(rows, dtype=np.int64)


def maxpool(a: np.ndarray, q: int) -> np.ndarray:
    c, h, w = a.shape
    out = np.zeros((c, h // q, w // q), dtype=np.int64)
    for ci in range(c):
        for py in range(h // q):
            for px in range(w // q):
                out[ci, py, px] = a[ci, py * q : py * q + q, px * q : px * q + q].max()
    return out


def run_image(export, codes: np.ndarray, protection: str = "none", per_channel: bool = False) -> list[dict]:
    """Every layer of one image (codes (C, H, W)): dicts with X, v, z (the layer output) and violations."""
    a = codes.astype(np.int64)
    out = []
    for layer in export.layers:
        if layer.kind == "conv":
            x = im2col(a.reshape(layer.in_channels, *layer.in_hw), layer.kernel, layer.stride, layer.padding)
        else:
            x = a.reshape(1, -1)
        spec = ProtectionSpec.parse(protection, "channel" if per_channel else None)
        bounds = None
        if spec.protected and spec.domain == "acc":
            bounds = (layer.v_lo_ch, layer.v_hi_ch) if spec.per_channel else (layer.v_lo, layer.v_hi)
        elif spec.protected and not layer.is_last:
            bounds = (layer.lo_ch, layer.hi_ch) if spec.per_channel else (layer.lo, layer.hi)
        r = arithmetic.layer(x, layer.weight, layer.bias, layer.mult, layer.shift, export.act_bits, bounds,
                             spec.policy, spec.domain)
        z = r["v"] if layer.is_last else r["z"]
        out.append({"X": x, "v": r["v"], "z": z, "violations": r["violations"]})
        if layer.kind == "conv":
            fmap = np.zeros((layer.out_channels, *layer.out_hw), dtype=np.int64)
            for p in range(x.shape[0]):
                fmap[:, p // layer.out_hw[1], p % layer.out_hw[1]] = z[p]
            a = maxpool(fmap, layer.pool) if layer.pool > 1 else fmap
        else:
            a = z.reshape(-1)
    return out
