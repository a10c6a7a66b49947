"""How often noise shared by an image's latent dimensions (z = m + sqrt(v) * randn(batch, 1)) passes the
residual checks of the decoded z (VAE 3.3's, also the CVAE's and the beta-VAE's; the convolutional VAE's
15.9), with the grader's encoders on its batches: without the neighbouring-dimension correlation test (its
marginals are right, so mean, variance and Kolmogorov tests pass it often) and with it.
Usage: python bench/chance_shared_noise.py [draws]"""
import sys
from unittest import mock

import numpy as np
import torch

from autograder.checks import conv_elbo, elbo, stats


def pass_rates(draws, rng):
    m, v = (t.numpy() for t in elbo._MODEL.encode(torch.from_numpy(elbo._X).double()))
    cm, clv = (t.numpy() for t in conv_elbo._MODEL.encode(conv_elbo._t(conv_elbo._X)))
    vae = conv = 0
    for _ in range(draws):
        vae += elbo._residual_problem(m + np.sqrt(v) * rng.normal(size=(len(m), 1)), m, v) is None
        conv += conv_elbo._residual_problem(cm + np.exp(clv / 2) * rng.normal(size=(len(cm), 1)), cm, clv) is None
    return vae / draws, conv / draws


def main():
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rng = np.random.default_rng(0)
    with mock.patch.object(stats, "neighbour_correlation_z", lambda residuals: (0.0, 0.0)):
        before = pass_rates(draws, rng)
    after = pass_rates(draws, rng)
    print(f"noise shared by an image's dimensions passes: VAE 3.3 {before[0]:.2f} before, {after[0]:.2f} after; "
          f"conv 15.9 {before[1]:.2f} before, {after[1]:.2f} after ({draws} draws each)")


if __name__ == "__main__":
    main()
