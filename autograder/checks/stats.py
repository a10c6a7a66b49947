"""Thresholds for statistical checks, derived so that a correct function fails rarely.

Every statistical comparison below has a false-fail probability of at most
two_sided_tail(Z_LIMIT) under a correct implementation: z-scores that are standard normal
(exactly, or by the central limit theorem with N >= 10,000 draws) are compared with
Z_LIMIT, and the distribution-shape test spends the same probability through an exact
inequality (ks_limit). With at most TESTS_PER_SUBMISSION comparisons per submission, the
union bound gives P(a correct submission fails any) <= TESTS_PER_SUBMISSION * 2 * (1 - Phi(Z_LIMIT)).
With Z_LIMIT = 6 that is 200 * 2 * 9.9e-10 = 3.9e-7 < 1e-6.

The comparisons made today (each counted once, however many checks share its draws):
sample_gaussian 62 (8 means, 8 variances, 1 shape; 28 column pairs, 8 call pairs, 1
neighbouring-row, 8 broadcast-v variance ratios), negative_elbo_bound 3 (the decoded z's
standardized residuals: mean, variance, Kolmogorov distance): 65; a grading on every problem adds
the same 3 for the CVAE's and the beta-VAE's bounds, the log-variance VAE's sample_gaussian_logvar 49 (8 means,
8 variances, 1 shape; 7 adjacent column pairs, 8 call pairs, 1 neighbouring-row, 8 broadcast-s
variance ratios; at large |s| 4 means and 4 variances) and the MMD-VAE's 6 (13.5's mean of the
unbiased estimator, counted as 4: below; 13.8's mean and variance of the prior draws) and the
convolutional VAE's bound 3 (15.9's mean and variance of the standardized draws, 15.11's mean of the
estimator); the decoded z's neighbouring-dimension and neighbouring-image correlations
(neighbour_correlation_z) add 2 to each of the four bounds (VAE, CVAE, beta-VAE, convolutional VAE):
137 <= 200. kl_normal and every other check compare exact values.

13.5 is the one z-score whose tail is not the normal's: it studentizes the mean of 1,000 values of a
skewed statistic (the unbiased MMD on 5 x 2 samples, skewness 1.2), whose lower tail is heavier. Measured
(bench/chance_mmd_unbiased.py): P(T < -z) is 1.5 to 2.2 times the normal tail at z = 3 to 4.5, as the
one-term Edgeworth expansion says; at Z_LIMIT that expansion gives 3.8e-9, about twice a comparison's
share (15.11's estimator, skewness 0.3 over 10,000 draws, stays within its own: 1.1e-9 + 0.9e-9).
"""
import math

import numpy as np

Z_LIMIT = 6.0
TESTS_PER_SUBMISSION = 200


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


def variance_ratio_z(a, b):
    """Whether two samples of normal draws share one variance, per column: with k_a, k_b degrees
    of freedom, log(s_a^2 / s_b^2) is the difference of two log-chi2 / k variables, each normal
    with variance 2 / k to O(1/k^2) (delta method): z = log ratio / sqrt(2/k_a + 2/k_b).
    A column without any spread in one of them gives a huge (or infinite) z."""
    ka, kb = a.shape[0] - 1, b.shape[0] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(a.var(axis=0, ddof=1)) - np.log(b.var(axis=0, ddof=1))
    return np.nan_to_num(log_ratio, nan=np.inf) / math.sqrt(2 / ka + 2 / kb)


def correlation_z(a, b):
    """sqrt(n) * Pearson r of two columns: N(0, 1) for independent draws (n large)."""
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt((a * a).sum() * (b * b).sum())
    if not scale > 0:              # a constant column: no noise at all, as damning as full correlation
        return math.inf, 1.0
    r = float((a * b).sum() / scale)
    return r * math.sqrt(len(a)), r


def neighbour_correlation_z(residuals):
    """sqrt(n) * Pearson r of each column of (rows, columns) `residuals` against the next one, pooled over the
    rows: N(0, 1) for independent draws (the products of neighbours are uncorrelated). Noise drawn once per
    row and shared by its columns gives r = 1."""
    residuals = np.asarray(residuals, dtype=np.float64)
    return correlation_z(residuals[:, :-1].ravel(), residuals[:, 1:].ravel())


def standardized(samples):
    """Each column minus its own sample mean, over its own sample sd: correlations and pooled
    statistics then do not depend on whether the sampler got the location and scale right."""
    sd = samples.std(axis=0, ddof=1)
    return (samples - samples.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def ks_limit(n):
    """The largest sup_x |F_n(x) - Phi(x)| that n independent N(0, 1) draws may show. By the
    Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant, P(sup |F_n - F| > e) <=
    2 exp(-2 n e^2) for every n and every continuous F; solving for the share of one
    comparison, p = two_sided_tail(Z_LIMIT), gives e = sqrt(log(2 / p) / (2 n))."""
    return math.sqrt(math.log(2 / two_sided_tail(Z_LIMIT)) / (2 * n))


_PHI = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)), otypes=[float])


def ks_distance(draws):
    """-> (sup_x |F_n(x) - Phi(x)| of `draws` against the standard normal, the x where it is)."""
    x = np.sort(np.asarray(draws, dtype=np.float64).ravel())
    n = len(x)
    cdf = _PHI(x)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(0, n) / n
    i, j = int(np.argmax(above)), int(np.argmax(below))
    return (float(above[i]), float(x[i])) if above[i] >= below[j] else (float(below[j]), float(x[j]))


def excess_kurtosis(draws):
    """E[(x - mean)^4] / var^2 - 3: 0 for a normal, -1.2 for a uniform, 3 for a Laplace."""
    centred = draws - draws.mean()
    return float((centred ** 4).mean() / (centred ** 2).mean() ** 2 - 3)


def skewness(draws):
    centred = draws - draws.mean()
    return float((centred ** 3).mean() / (centred ** 2).mean() ** 1.5)


assert TESTS_PER_SUBMISSION * two_sided_tail(Z_LIMIT) < 1e-6
