"""Latency of one inference on an array: every layer of a network tiled onto it, `cfg.tile_cycles(K)` per tile."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from hdl_gen.synth.settings import LENET

if TYPE_CHECKING:
    from hdl_gen import ArrayConfig


def inference_latency(cfg: ArrayConfig, fmax_mhz: float | None, net: str = LENET) -> dict[str, Any]:
    """Compute cycles of one inference: every layer tiled onto the array, `cfg.tile_cycles(K)` per tile.

    Counts the array's tile runs only (operand loading and pooling outside the array are not included).
    A layer whose K exceeds k_max cannot run on this array: then the totals are None and `error` says why.
    """
    from models.nets import get_net

    layers = []
    error = None
    for g in get_net(net).geometry():
        k, p, n = g.reduction, g.pixels, g.out_channels
        tiles = math.ceil(p / cfg.rows) * math.ceil(n / cfg.cols)
        row: dict[str, Any] = {"layer": g.name, "K": k, "P": p, "N": n, "tiles": tiles}
        if k > cfg.k_max:
            error = error or f"layer {g.name} has K={k} > k_max={cfg.k_max}: it does not fit the operand buffers"
            row.update(tile_cycles=None, cycles=None)
        else:
            tc = cfg.tile_cycles(k)
            row.update(tile_cycles=tc, cycles=tiles * tc)
        layers.append(row)
    total = None if error else sum(r["cycles"] for r in layers)
    time_us = None if total is None or not fmax_mhz else round(total / fmax_mhz, 3)
    return {
        "net": net,
        "layers": layers,
        "total_cycles": total,
        "fmax_mhz": fmax_mhz,
        "time_us": time_us,
        "inferences_per_s": None if time_us is None else round(1e6 / time_us, 1),
        "note": "tile runs only: operand loading through the ld port and pooling are not counted",
        "error": error,
    }
