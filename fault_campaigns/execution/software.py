"""Software-level fault injection: the same faults, injected into the integer reference computation.

What a PyTorchFI-style tool does, at the place of the tile computation that the RTL register feeds
(docs/rtl.md gives the timing): a transient flip of PE activation register `a_reg(i, j)` after edge
e flips the bits of operand `X[i, k]`, `k = e - 2 - i - j`, in the products of output columns
`j..C-1` of the tile (the PE uses it and forwards it to the right); a flip of output-activation
register `oact_j` after edge `K + C + 8 + r` (`cfg.stage_edge(K, "oact", r)`) flips the requantized
`y[r, j]` before the protection; a flip while the register holds a padding zero, or no operand, or
no valid row, changes nothing. The tile is then computed by `quasar.arithmetic` (matmul, bias,
requantization, protection) and turned into records of exactly the format the RTL shard worker
writes, so the same classifier turns them into outcomes. Other registers and fault models (weights,
accumulators, the post-processing pipeline registers, stuck-at) come from the analytic dataflow model
(`testbenches.model.predict`). Uses: the software injector that `quasar bench` compares RTL
injection with, and an independent check of RTL campaigns (the outcomes must agree).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np

from fault_campaigns.planning.mapping import diff_entries

_A_REG = re.compile(r"pe_(\d+)_(\d+)\.a_reg")
_OACT = re.compile(r"oact_(\d+)")


def inject(cfg, tile, site: str, mask: int, cycle: int, model: str = "flip"):  # type: ignore[no-untyped-def]
    """The tile's outputs (testbenches.model.Expected) with one fault injected in software."""
    from quasar import arithmetic as ar
    from testbenches.model import finish, golden, operand_index, predict

    a_reg, oact = _A_REG.fullmatch(site), _OACT.fullmatch(site)
    if cfg.protected and cfg.protect_domain == "acc":
        oact = None  # oact lies behind an accumulator-domain protection: the analytic model places it
    if model != "flip" or (a_reg is None and oact is None):
        return predict(cfg, tile, site, mask, cycle, model)
    x = np.asarray(tile.x, dtype=np.int64)
    wt = np.asarray(tile.wt, dtype=np.int64)
    bias = np.asarray(tile.bias, dtype=np.int64)
    if a_reg is not None:
        i, j = int(a_reg.group(1)), int(a_reg.group(2))
        k = operand_index(cycle, i, j)
        if not 0 <= k < tile.k:
            return golden(cfg, tile)  # a padding zero meets zero weights
        acc = ar.matmul(x, wt)
        row = x[i].copy()
        row[k] ^= mask  # the corrupted activation, as the PE and those to its right see it
        acc[i, j:] = ar.matmul(row[None, :], wt[:, j:])[0]
        return finish(cfg, tile, acc + bias)
    j = int(oact.group(1))
    r = cycle - cfg.stage_edge(tile.k, "oact", 0)
    logits = ar.matmul(x, wt) + bias
    y = ar.requantize(logits, tile.mult, tile.shift, cfg.act_bits)
    if 0 <= r < cfg.rows:
        y[r, j] ^= mask
    return finish(cfg, tile, logits, y)


def software_records(campaign, design, faults: Sequence) -> list[dict]:
    """One worker-format record per fault (fault id as run id), from the software-level injector."""
    from testbenches.model import Tile

    cfg = design.array
    groups: dict[tuple[int, int, int], dict] = {}
    out = []
    for f in faults:
        key = (f.image, f.layer, f.tile)
        if key not in groups:
            groups[key] = campaign.tile_group(design, f.image, f.layer, f.tile, [])
        g = groups[key]
        ops = g["ops"]
        tile = Tile(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi, ops.valid)
        t0 = time.perf_counter()
        run = f.run()
        exp = inject(cfg, tile, run["site"], run["mask"], run["cycle"], run["model"])
        got = exp.logits if g["is_last"] else exp.out_act
        want = g["logit"] if g["is_last"] else g["act"]
        rec = {"id": f.fault_id, "fin": True, "cyc": campaign.tile_cycles[f.layer],
               "viol": int(exp.violations), "diff": diff_entries(np.asarray(got), want),
               "t": time.perf_counter() - t0}
        if not g["is_last"]:  # the changed biased accumulators, as the RTL worker reports them
            rec["vd"] = diff_entries(np.asarray(exp.logits), g["logit"])
        out.append(rec)
    return out
