"""How often a closed-form kl passes 15.10 (conv bound) by chance: per call of B images, the share of
draws z ~ q(z|x) (this side's encoder on 15.10's images) whose Monte Carlo kl batch mean lies within
15.10's float32 tolerance of the closed form's. Usage: python bench/chance_conv_kl.py [draws]"""
import math
import sys

import numpy as np
import torch

from autograder import oracle
from autograder.checks import conv_elbo as ce


def per_call_share(batch, draws, generator):
    x = ce._t(ce._X[:batch])
    m, lv = (t.double() for t in ce._MODEL.encode(x))
    zero = torch.zeros(1, dtype=torch.float64)
    closed = float(oracle.kl_normal(m, lv.exp(), zero, zero.exp()).mean())
    hits, gaps, tolerances = 0, [], []
    for _ in range(draws):
        z = m + torch.exp(lv / 2) * torch.randn(m.shape, generator=generator, dtype=torch.float64)
        mc = float((oracle.log_normal_pdf(z, m, lv) - oracle.log_normal_pdf(z, zero, zero)).mean())
        kl_scale = float((0.5 * ((z - m) ** 2 * torch.exp(-lv) + lv.abs() + z ** 2 + 2 * ce.LOG_2PI)).sum(-1).mean())
        tolerance = ce._tolerance(kl_scale, ce.Z_DIM, batch)
        hits += abs(closed - mc) <= tolerance
        gaps.append(closed - mc)
        tolerances.append(tolerance)
    sd, tolerance = float(np.std(gaps)), float(np.mean(tolerances))
    normal = 2 * tolerance / (sd * math.sqrt(2 * math.pi))      # density at 0 times the window
    print(f"B={batch}: sd {sd:.4f}, tolerance {tolerance:.3g}; hits {hits}/{draws} = {hits / draws:.2e}, "
          f"normal approximation {normal:.2e}")
    return max(hits / draws, normal)


def main():
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    generator = torch.Generator().manual_seed(3)
    full = per_call_share(ce.BATCH, draws, generator)
    smaller = per_call_share(ce.SMALLER_BATCH, draws, generator)
    print(f"P(closed-form kl passes 15.10): before (two calls of {ce.BATCH}) {full ** 2:.1e}; "
          f"after (three of {ce.BATCH}, one of {ce.SMALLER_BATCH}) {full ** 3 * smaller:.1e}")


if __name__ == "__main__":
    main()
