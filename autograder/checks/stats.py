"""Thresholds for statistical checks, derived so that a correct function fails rarely.

Every statistical check below compares a statistic that is standard normal under a correct
implementation (exactly, or by the central limit theorem with N >= 10,000 draws) with
Z_LIMIT. With at most TESTS_PER_SUBMISSION such comparisons per submission, the union
bound gives P(a correct submission fails any) <= TESTS_PER_SUBMISSION * 2 * (1 - Phi(Z_LIMIT)).
With Z_LIMIT = 6 that is 100 * 2 * 9.9e-10 = 2.0e-7 < 1e-6.
"""
import math

import numpy as np

Z_LIMIT = 6.0
TESTS_PER_SUBMISSION = 100


def two_sided_tail(z):
    return math.erfc(abs(z) / math.sqrt(2))


def mean_z(samples, mean, variance):
    """(sample mean - mean) / sqrt(variance / n) per column: N(0, 1) for a correct sampler."""
    n = samples.shape[0]
    return (samples.mean(axis=0) - mean) / np.sqrt(variance / n)


def variance_z(samples, variance):
    """Wilson-Hilferty: with k = n - 1 and s2 the sample variance, (k s2 / v) ~ chi2_k and
    ((s2 / v)^(1/3) - (1 - 2 / (9k))) / sqrt(2 / (9k)) is N(0, 1) to within 1e-3 for k > 1000."""
    k = samples.shape[0] - 1
    ratio = samples.var(axis=0, ddof=1) / variance
    return (np.cbrt(ratio) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))


def correlation_z(a, b):
    """sqrt(n) * Pearson r of two columns: N(0, 1) for independent draws (n large)."""
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt((a * a).sum() * (b * b).sum())
    if not scale > 0:              # a constant column: no noise at all, as damning as full correlation
        return math.inf, 1.0
    r = float((a * b).sum() / scale)
    return r * math.sqrt(len(a)), r


assert TESTS_PER_SUBMISSION * two_sided_tail(Z_LIMIT) < 1e-6
