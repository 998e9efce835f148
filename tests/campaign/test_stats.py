"""Statistics: Leveugle sample sizes, interval coverage of known cases, the paired bootstrap."""

import numpy as np
import pytest

from fault_campaigns import stats
from quasar.errors import ConfigError


@pytest.mark.parametrize(
    ("population", "margin", "confidence", "expected"),
    [
        (10**12, 0.02, 0.95, 2401),  # the infinite-population limit t^2 p(1-p) / e^2
        (10**12, 0.01, 0.95, 9604),
        (10**6, 0.01, 0.95, 9513),  # Leveugle et al. 2009, finite-population correction
        (100, 0.02, 0.95, 97),
        (1, 0.05, 0.99, 1),
    ],
)
def test_leveugle_sample_size(population, margin, confidence, expected):
    assert stats.leveugle_sample_size(population, margin, confidence) == expected


def test_leveugle_grows_with_confidence_and_shrinks_with_margin():
    n = [stats.leveugle_sample_size(10**7, 0.02, c) for c in (0.9, 0.95, 0.99)]
    assert n[0] < n[1] < n[2]
    assert stats.leveugle_sample_size(10**7, 0.01, 0.95) > stats.leveugle_sample_size(10**7, 0.05, 0.95)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), "x"])
def test_bad_margin_and_confidence_are_named(bad):
    with pytest.raises(ConfigError, match="margin"):
        stats.leveugle_sample_size(1000, bad, 0.95)
    with pytest.raises(ConfigError, match="confidence"):
        stats.leveugle_sample_size(1000, 0.02, bad)


def test_wilson_interval_matches_closed_form():
    r = stats.rate(5, 100, 0.95)
    z = 1.959963984540054
    p, n = 0.05, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert r.low == pytest.approx(centre - half)
    assert r.high == pytest.approx(centre + half)
    assert r.value == 0.05


def test_clopper_pearson_zero_events():
    r = stats.rate(0, 100, 0.95, method="clopper-pearson")
    assert r.low == 0.0
    assert r.high == pytest.approx(1 - 0.025 ** (1 / 100))


def test_rate_of_nothing_is_nan_not_zero():
    assert np.isnan(stats.rate(0, 0).value)


def test_paired_reduction_recovers_known_effect_and_is_seeded():
    rng = np.random.default_rng(1)
    u = rng.random(4000) < 0.2
    p = u & (rng.random(4000) < 0.5)  # protection removes about half of the events
    a = stats.paired_reduction(u, p, seed=3)
    b = stats.paired_reduction(u, p, seed=3)
    assert a == b
    assert a.relative_low < a.relative < a.relative_high
    assert 0.4 < a.relative < 0.6
    assert a.absolute == pytest.approx(u.mean() - p.mean())
    assert a.absolute_low > 0


def test_paired_reduction_without_events_is_nan():
    r = stats.paired_reduction(np.zeros(10, bool), np.zeros(10, bool))
    assert np.isnan(r.relative) and r.absolute == 0
