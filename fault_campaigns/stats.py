"""Statistics of a fault-injection campaign.

Sample sizes follow the statistical fault-injection formula of Leveugle et al. (DATE 2009):

    n = N / (1 + e^2 * (N - 1) / (t^2 * p * (1 - p)))

with N the size of the fault population, e the margin of error, t the normal quantile of the
confidence level and p the expected proportion (0.5, the worst case, unless told otherwise).
Every rate is reported with a Wilson score interval (Clopper-Pearson on request). The protection's
effect is a paired comparison (the same faults on both designs), so its interval comes from a
seeded paired bootstrap, never from formulas for independent samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from quasar.errors import ConfigError

INTERVAL_METHODS = ("wilson", "clopper-pearson")


def check_unit_interval(name: str, value: float) -> float:
    """A probability-like setting strictly inside (0, 1); a ConfigError naming it otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ConfigError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return value


def z_value(confidence: float) -> float:
    """Two-sided normal quantile t for a confidence level (1.96 for 0.95)."""
    confidence = check_unit_interval("confidence", confidence)
    return float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))


def leveugle_sample_size(population: int, margin: float, confidence: float, p: float = 0.5) -> int:
    """Number of faults to inject from a population of `population` faults (Leveugle et al. 2009)."""
    margin = check_unit_interval("margin", margin)
    p = check_unit_interval("p", p)
    if population < 1:
        raise ConfigError(f"the fault population must hold at least one fault, got {population!r}")
    t = z_value(confidence)
    n = population / (1.0 + margin**2 * (population - 1) / (t**2 * p * (1.0 - p)))
    return min(population, math.ceil(n))


@dataclass(frozen=True)
class Rate:
    """A proportion with its confidence interval."""

    count: int
    total: int
    low: float
    high: float
    confidence: float
    method: str

    @property
    def value(self) -> float:
        return self.count / self.total if self.total else float("nan")

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "count": self.count,
            "total": self.total,
            "rate": self.value,
            "ci_low": self.low,
            "ci_high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }

    def __str__(self) -> str:
        if not self.total:
            return "n/a (0 faults)"
        return f"{100 * self.value:.2f}% [{100 * self.low:.2f}, {100 * self.high:.2f}] ({self.count}/{self.total})"


def rate(count: int, total: int, confidence: float = 0.95, method: str = "wilson") -> Rate:
    """`count / total` with a Wilson (default) or Clopper-Pearson interval."""
    if method not in INTERVAL_METHODS:
        raise ConfigError(f"interval method must be one of {', '.join(INTERVAL_METHODS)}; got {method!r}")
    if total == 0:
        return Rate(0, 0, float("nan"), float("nan"), confidence, method)
    alpha = 1.0 - check_unit_interval("confidence", confidence)
    sm_method = "wilson" if method == "wilson" else "beta"
    low, high = proportion_confint(count, total, alpha=alpha, method=sm_method)
    return Rate(int(count), int(total), float(low), float(high), confidence, method)


@dataclass(frozen=True)
class PairedReduction:
    """Effect of protection on the same fault list: absolute and relative reduction of a rate."""

    unprotected: float
    protected: float
    absolute: float
    absolute_low: float
    absolute_high: float
    relative: float
    relative_low: float
    relative_high: float
    total: int
    confidence: float
    resamples: int

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def paired_reduction(
    unprotected: np.ndarray,
    protected: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedReduction:
    """Reduction of an event rate from `unprotected` to `protected` (boolean arrays over the same faults).

    absolute = p_u - p_p (percentage points); relative = 1 - p_p / p_u (the fraction of events the
    protection removes). Percentile intervals from a paired bootstrap with a seeded generator.
    """
    u = np.asarray(unprotected, dtype=bool)
    p = np.asarray(protected, dtype=bool)
    if u.shape != p.shape or u.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D and equal in length, got {u.shape} and {p.shape}")
    n = len(u)
    alpha = 1.0 - check_unit_interval("confidence", confidence)
    pu, pp = (u.mean(), p.mean()) if n else (float("nan"), float("nan"))
    rel = 1.0 - pp / pu if n and pu > 0 else float("nan")
    if n == 0:
        nan = float("nan")
        return PairedReduction(nan, nan, nan, nan, nan, nan, nan, nan, 0, confidence, resamples)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    bu = u[idx].mean(axis=1)
    bp = p[idx].mean(axis=1)
    abs_samples = bu - bp
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_samples = np.where(bu > 0, 1.0 - bp / bu, np.nan)
    rel_samples = rel_samples[~np.isnan(rel_samples)]
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    a_lo, a_hi = np.percentile(abs_samples, q)
    r_lo, r_hi = np.percentile(rel_samples, q) if len(rel_samples) else (float("nan"), float("nan"))
    return PairedReduction(
        float(pu), float(pp), float(pu - pp), float(a_lo), float(a_hi),
        float(rel), float(r_lo), float(r_hi), n, confidence, resamples,
    )
