"""How often a one-sample Monte Carlo kl (log q(z|x) - log p(z) at a draw z ~ q(z|x)) passes the VAE's kl check
(3.2; the CVAE's 5.2 and the beta-VAE's 7.2 compare the same way) by chance: per call of B images, the share of
draws whose batch mean lies within elbo._matches' tolerance of the closed form (this side's encoder on 3.2's
images). Usage: python bench/chance_elbo_kl.py [draws]"""
import math
import sys

import numpy as np
import torch

from autograder import oracle
from autograder.checks import elbo


def per_call_share(batch, draws, generator):
    m, v = elbo._MODEL.encode(torch.from_numpy(elbo._X[:batch]).double())
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    closed = oracle.kl_normal(m, v, zero, one).numpy()
    hits, estimates = 0, []
    for _ in range(draws):
        z = m + v.sqrt() * torch.randn(m.shape, generator=generator, dtype=torch.float64)
        estimate = float((oracle.log_normal(z, m, v) - oracle.log_normal(z, zero, one)).mean())
        hits += elbo._matches(estimate, closed) is not None
        estimates.append(estimate)
    sd = float(np.std(estimates))
    window = 2 * (elbo.ATOL + elbo.RTOL * abs(closed.mean()))
    normal = window / (sd * math.sqrt(2 * math.pi))              # density at the closed form times the window
    print(f"B={batch}: sd {sd:.3f}, window {window:.3g}; hits {hits}/{draws} = {hits / draws:.2e}, "
          f"normal approximation {normal:.2e}")
    return max(hits / draws, normal)


def main():
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    share = per_call_share(elbo.BATCH, draws, torch.Generator().manual_seed(1))
    print(f"P(a Monte Carlo kl passes 3.2): one call {share:.1e}; {len(elbo.KL_KEYS)} calls {share ** len(elbo.KL_KEYS):.1e}")


if __name__ == "__main__":
    main()
