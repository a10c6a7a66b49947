"""Instructor tests of the MMD-VAE's reference (problem `mmd`), in-process (trusted)."""
import math

import torch

import train
import utils as ut
from mmd_vae import LAMBDA, MMDVAE, LossAsBound, mmd


def _by_definition(x, y, biased):
    """The estimator written out pair by pair (float64), with the kernel exp(-|a - b|^2 / dim)."""
    dim = x.shape[1]
    k = lambda a, b: math.exp(-float(((a - b) ** 2).sum()) / dim)  # noqa: E731
    n, m = len(x), len(y)
    xx = [k(x[i], x[j]) for i in range(n) for j in range(n) if biased or i != j]
    yy = [k(y[i], y[j]) for i in range(m) for j in range(m) if biased or i != j]
    xy = [k(x[i], y[j]) for i in range(n) for j in range(m)]
    return sum(xx) / len(xx) + sum(yy) / len(yy) - 2 * sum(xy) / len(xy)


def test_mmd_is_the_estimator_written_out():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64) + 1
    for biased in (True, False):
        assert math.isclose(float(mmd(x, y, biased=biased)), _by_definition(x, y, biased), rel_tol=1e-12)
    assert float(mmd(x, x)) == 0 or abs(float(mmd(x, x))) < 1e-15
    assert math.isclose(float(mmd(x, y)), float(mmd(y, x)), rel_tol=1e-12)


def test_the_unbiased_form_averages_zero_and_the_biased_does_not():
    g = torch.Generator().manual_seed(1)
    pairs = [(torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64))
             for _ in range(1000)]
    unbiased = torch.stack([mmd(x, y, biased=False) for x, y in pairs])
    biased = torch.stack([mmd(x, y) for x, y in pairs])
    standard_error = float(unbiased.std() / math.sqrt(len(pairs)))
    assert abs(float(unbiased.mean())) < 6 * standard_error
    assert float(biased.mean()) > 20 * standard_error        # the V-statistic's positive bias at n = 5


def test_the_loss_weights_the_mmd_and_its_gradient_reaches_both_networks():
    torch.manual_seed(0)
    model = MMDVAE()
    x = torch.bernoulli(torch.full((64, 784), 0.3), generator=torch.Generator().manual_seed(2))
    loss, divergence, rec = model.loss(x)
    assert loss.shape == divergence.shape == rec.shape == ()
    assert torch.isclose(loss, rec + LAMBDA * divergence)
    assert torch.isclose(rec, -ut.log_bernoulli_with_logits(x, model.dec(model.encode(x))).mean())
    loss.backward()
    assert model.enc.net[0].weight.grad.abs().sum() > 0 and model.dec.net[0].weight.grad.abs().sum() > 0


def test_a_short_training_lowers_the_loss():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (500, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    model = MMDVAE()
    x = torch.bernoulli(images.float() / 255, generator=torch.Generator().manual_seed(4))
    before = float(model.loss(x)[2])
    train.train(LossAsBound(model), images, 60, seed=0)
    assert float(model.loss(x)[2]) < before
