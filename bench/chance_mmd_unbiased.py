"""How often a correct mmd fails 13.5 by chance: the check's z is the studentized mean of R = 1,000 values
of the unbiased MMD estimator on pairs of 5 x 2 normal samples, whose distribution is skewed (about 1.2),
so its lower tail is heavier than the normal's the union bound of stats.py assumes. Resamples a pool of
the estimator's values (centred: expectation exactly 0), measures P(T < -z), P(T > z) at moderate z, and
extrapolates to Z_LIMIT by the one-term Edgeworth expansion of the studentized mean, which matches the
measured tails at 3 to 4.5. Usage: python bench/chance_mmd_unbiased.py [gradings]"""
import math
import sys

import numpy as np

from autograder.checks import mmd, stats


def kernel_sums(a, b, dim):
    squared = ((a[..., :, None, :] - b[..., None, :, :]) ** 2).sum(-1)
    return np.exp(-squared / dim).sum((-1, -2))


def estimator_pool(size, rng):
    n, dim = mmd.UNBIASED_N, mmd.UNBIASED_DIM
    x, y = rng.normal(0, 1, (2, size, n, dim))
    pool = ((kernel_sums(x, x, dim) - n) / (n * (n - 1)) + (kernel_sums(y, y, dim) - n) / (n * (n - 1))
            - 2 * kernel_sums(x, y, dim) / (n * n))
    return pool - pool.mean()


def main():
    gradings = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(5)
    pool, pairs = estimator_pool(1_000_000, rng), mmd.UNBIASED_PAIRS
    skew = float((pool ** 3).mean() / pool.std() ** 3)
    t = np.concatenate([(v.mean(1) / (v.std(1, ddof=1) / math.sqrt(pairs)))
                        for v in (pool[rng.integers(0, len(pool), (2000, pairs))] for _ in range(gradings // 2000))])
    normal = lambda z: 0.5 * math.erfc(z / math.sqrt(2))                        # noqa: E731
    edgeworth = lambda z: normal(z) + skew / 6 * (2 * z * z + 1) * math.exp(-z * z / 2) / math.sqrt(
        2 * math.pi * pairs)                                                     # noqa: E731
    print(f"skewness {skew:.3f}; {len(t)} gradings")
    for z in (3.0, 3.5, 4.0, 4.5):
        print(f"z={z}: P(T < -z) {(t < -z).mean():.2e} (normal {normal(z):.2e}, Edgeworth {edgeworth(z):.2e}); "
              f"P(T > z) {(t > z).mean():.2e}")
    z = stats.Z_LIMIT
    print(f"at Z_LIMIT={z:g}: P(fail) about {edgeworth(z):.1e} (lower tail; the upper is lighter than the normal's), "
          f"against a share of {stats.two_sided_tail(z):.1e}")


if __name__ == "__main__":
    main()
