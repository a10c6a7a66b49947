"""How often noise shared by an image's latent dimensions (z = m + sqrt(v) * randn(batch, 1)), or by the batch (randn(z_dim)), passes the
residual checks of the decoded z (VAE 3.3's, also the CVAE's and the beta-VAE's; the convolutional VAE's
15.9), with the grader's encoders on its batches: without the neighbouring-dimension correlation test (its
marginals are right, so mean, variance and Kolmogorov tests pass it often) and with it.
Usage: python bench/chance_shared_noise.py [draws]"""
import sys
from unittest import mock

import numpy as np
import torch

from autograder.checks import conv_elbo, elbo, stats


def pass_rates(draws, rng, shape):
    """shape(rows, columns) -> the noise's shape: (rows, 1) shared by an image's dimensions, (1, columns) by the batch."""
    m, v = (t.numpy() for t in elbo._MODEL.encode(torch.from_numpy(elbo._X).double()))
    cm, clv = (t.numpy() for t in conv_elbo._MODEL.encode(conv_elbo._t(conv_elbo._X)))
    vae = conv = 0
    for _ in range(draws):
        vae += elbo._residual_problem(m + np.sqrt(v) * rng.normal(size=shape(*m.shape)), m, v) is None
        conv += conv_elbo._residual_problem(cm + np.exp(clv / 2) * rng.normal(size=shape(*cm.shape)), cm, clv) is None
    return vae / draws, conv / draws


def main():
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rng = np.random.default_rng(0)
    for what, shape in (("an image's dimensions", lambda rows, columns: (rows, 1)),
                        ("the batch", lambda rows, columns: (1, columns))):
        with mock.patch.object(stats, "neighbour_correlation_z", lambda residuals: (0.0, 0.0)):
            before = pass_rates(draws, rng, shape)
        after = pass_rates(draws, rng, shape)
        print(f"noise shared by {what} passes: VAE 3.3 {before[0]:.3f} before, {after[0]:.3f} after; "
              f"conv 15.9 {before[1]:.3f} before, {after[1]:.3f} after ({draws} draws each)")


if __name__ == "__main__":
    main()
