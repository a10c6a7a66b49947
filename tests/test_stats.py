"""The statistics behind sample_gaussian's checks: normal draws pass, the wrong shapes fail,
and a statistic judges one property only (correlations do not see offsets or scales)."""
import math

import numpy as np
import pytest

from autograder.checks import stats

N = 160000      # what check 1.2 pools: 8 columns of 20,000 draws


def test_shape_bound_follows_from_dkw():
    limit = stats.ks_limit(N)
    assert 2 * math.exp(-2 * N * limit ** 2) == pytest.approx(stats.two_sided_tail(stats.Z_LIMIT))


def test_normal_draws_are_within_the_shape_bound():
    distance, _ = stats.ks_distance(np.random.default_rng(0).standard_normal(N))
    assert distance < stats.ks_limit(N)


@pytest.mark.parametrize("name, draw", [
    ("uniform", lambda rng: (rng.random(N) - 0.5) * math.sqrt(12)),
    ("laplace", lambda rng: rng.laplace(0, math.sqrt(0.5), N)),
    ("student t, 5 degrees of freedom", lambda rng: rng.standard_t(5, N) * math.sqrt(3 / 5)),
])
def test_unit_variance_noise_of_another_shape_is_caught(name, draw):
    eps = draw(np.random.default_rng(1))
    assert abs(eps.mean()) < 0.01 and abs(eps.var() - 1) < 0.05      # right mean and variance...
    distance, _ = stats.ks_distance(eps)
    assert distance > 2 * stats.ks_limit(N), name                    # ...wrong distribution


def test_excess_kurtosis_names_the_tails():
    rng = np.random.default_rng(2)
    assert abs(stats.excess_kurtosis(rng.standard_normal(N))) < 0.1
    assert stats.excess_kurtosis(rng.random(N)) == pytest.approx(-1.2, abs=0.05)
    assert stats.excess_kurtosis(rng.laplace(size=N)) == pytest.approx(3, abs=0.3)


def test_pooled_correlation_ignores_column_offsets_and_scales():
    """Noise that ignores m and v, pooled over columns with different means and variances, looked
    correlated (r = 0.18) before each column was standardized by its own mean and sd."""
    rng = np.random.default_rng(3)
    offsets, scales = np.array([0.0, 100.0, -3.0, 5.0]), np.array([1.0, 0.01, 100.0, 0.5])
    draws = offsets + scales * rng.standard_normal((20000, 4))
    eps = stats.standardized(draws)
    z, _ = stats.correlation_z(eps[:-1].ravel(), eps[1:].ravel())
    assert abs(z) < stats.Z_LIMIT
    raw_z, _ = stats.correlation_z(draws[:-1].ravel(), draws[1:].ravel())
    assert abs(raw_z) > stats.Z_LIMIT       # what pooling the raw columns used to report


def test_variance_ratio():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((20000, 3)) * [1, 10, 0.1], rng.standard_normal((20000, 3)) * [1, 10, 0.1]
    assert np.all(np.abs(stats.variance_ratio_z(a, b)) < stats.Z_LIMIT)
    shared = np.broadcast_to(rng.standard_normal(3), (20000, 3))      # one row broadcast to every row
    assert np.all(np.abs(stats.variance_ratio_z(shared, b)) > 100 * stats.Z_LIMIT)
