"""Software-level fault injection: the same faults, predicted by the analytic dataflow model.

`testbenches.model.predict` knows when each operand passes each register of the generated array
(docs/rtl.md) and computes, without a simulator, the tile output a fault produces. This module turns
that into records of exactly the format the RTL shard worker writes, so the same classifier turns
them into outcomes. Uses: an independent check of the RTL campaign (the outcomes must agree), and
the software injector that RTL throughput is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from fault_campaigns.mapping import diff_entries


def software_records(campaign, design, faults: Sequence) -> list[dict]:
    """One worker-format record per fault (fault id as run id), from the analytic model."""
    from testbenches.model import Tile, predict

    cfg = design.array
    groups: dict[tuple[int, int, int], dict] = {}
    out = []
    for f in faults:
        key = (f.image, f.layer, f.tile)
        if key not in groups:
            groups[key] = campaign.tile_group(design, f.image, f.layer, f.tile, [])
        g = groups[key]
        ops = g["ops"]
        tile = Tile(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi)
        t0 = time.perf_counter()
        run = f.run()
        exp = predict(cfg, tile, run["site"], run["mask"], run["cycle"], run["model"])
        got = exp.logits if g["is_last"] else exp.out_act
        want = g["logit"] if g["is_last"] else g["act"]
        out.append({"id": f.fault_id, "fin": True, "cyc": campaign.tile_cycles[f.layer],
                    "viol": int(exp.violations), "diff": diff_entries(np.asarray(got), want),
                    "t": time.perf_counter() - t0})
    return out
