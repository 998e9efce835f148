"""Population-weighted (stratified) rates with an interval that stays honest at zero events.

A campaign samples each stratum (a layer, or a layer and register kind) on its own, with sample sizes
that do not follow the strata's populations (Leveugle's n saturates near 2,400 per layer whatever the
layer's size), so the rate over the whole fault space is the stratified estimate
    p_w = sum_h W_h * x_h / n_h,    W_h = N_h / N,
with variance  V = sum_h W_h^2 * p_h (1 - p_h) / n_h * (N_h - n_h) / (N_h - 1).
A normal interval p_w +- z sqrt(V) collapses to [0, 0] when no stratum saw an event, although the
unweighted Wilson bound beside it is not zero. Here the interval is the Wilson score interval taken
at the effective sample size (Kish; Korn & Graubard 1998; Dean & Pagano 2015):
    n_eff = p_w (1 - p_w) / V            when 0 < p_w < 1 and V > 0,
    n_eff = 1 / sum_h W_h^2 (1 - f_h) / n_h   otherwise (f_h = (n_h - 1) / (N_h - 1), the sampled share),
so zero events give [0, z^2 / (n_eff + z^2)], and a stratum sampled exhaustively adds no uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from fault_campaigns.stats import z_value

METHOD = "stratified, Wilson score at the effective sample size (Kish)"


def weighted_rate(strata: Iterable[tuple[int, int, int]], confidence: float) -> dict:
    """`strata`: (population N_h, sampled n_h, events x_h) per stratum. Returns rate, ci_low, ci_high,
    n_eff, confidence and method; empty when nothing was sampled."""
    strata = [(int(big), int(n), int(x)) for big, n, x in strata if n > 0 and big > 0]
    total = sum(big for big, _, _ in strata)
    if not total:
        return {}
    est, var, kish = 0.0, 0.0, 0.0
    for big, n, x in strata:
        w = big / total
        p = x / n
        fpc = (big - n) / (big - 1) if big > 1 else 0.0
        est += w * p
        var += w * w * p * (1 - p) / n * fpc
        kish += w * w * fpc / n
    if 0 < est < 1 and var > 0:
        n_eff = est * (1 - est) / var
    elif kish > 0:
        n_eff = 1 / kish
    else:  # every stratum sampled whole: the rate is known exactly
        return {"rate": est, "ci_low": est, "ci_high": est, "n_eff": None, "confidence": confidence,
                "method": METHOD}
    low, high = wilson(est, n_eff, z_value(confidence))
    return {"rate": est, "ci_low": low, "ci_high": high, "n_eff": n_eff, "confidence": confidence, "method": METHOD}


def wilson(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on a (possibly fractional) sample size n."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if p <= 0 else max(0.0, centre - half)  # exact ends where rounding would leave 1e-19
    high = 1.0 if p >= 1 else min(1.0, centre + half)
    return low, high
