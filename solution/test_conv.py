"""Instructor tests of the convolutional VAE's reference (problem `conv`) and its run script, in-process (trusted)."""
import math
import subprocess
import sys
from pathlib import Path

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import figures_conv
import train
from conv_vae import ConvDecoder, ConvVAE, log_normal_pdf

HERE = Path(__file__).resolve().parent


def _batch(count=64, seed=0):
    return torch.bernoulli(torch.full((count, 784), 0.3), generator=torch.Generator().manual_seed(seed))


def test_log_normal_pdf_is_the_gaussian_density_with_log_variances():
    g = torch.Generator().manual_seed(0)
    z, m, s = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    expected = Normal(m, torch.exp(0.5 * s)).log_prob(z).sum(-1)
    assert torch.allclose(log_normal_pdf(z, m, s), expected, rtol=1e-12, atol=1e-12)
    assert log_normal_pdf(z, torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)).shape == (5,)
    assert torch.isfinite(log_normal_pdf(torch.zeros(3), torch.zeros(3), torch.full((3,), 80.0)))


def test_the_decoder_mirrors_the_encoder_and_gives_28_by_28_logits():
    decoder = ConvDecoder(10)
    assert tuple(decoder.fc.weight.shape) == (32 * 7 * 7, 10)
    assert tuple(decoder.deconv1.weight.shape) == (32, 16, 4, 4) and tuple(decoder.deconv2.weight.shape) == (16, 1, 4, 4)
    side = lambda n, k=4, s=2, p=1: (n - 1) * s - 2 * p + k  # noqa: E731  the transposed convolution's output side
    assert side(7) == 14 and side(14) == 28
    logits = decoder(torch.randn(3, 10))
    assert logits.shape == (3, 1, 28, 28) and (logits < 0).any()          # logits, no sigmoid after deconv2


def test_the_bound_is_the_one_sample_estimate_at_the_drawn_code():
    torch.manual_seed(0)
    model = ConvVAE().double()                                 # float64: the KL is a small difference
    x = _batch().double()
    torch.manual_seed(5)
    nelbo, kl, rec = model.negative_elbo_bound(x)
    mean, logvar = model.enc(x)
    torch.manual_seed(5)
    z = model.reparameterize(mean, logvar)                     # the same draw
    log_q = Normal(mean, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_px = Bernoulli(logits=model.dec(z).reshape(len(x), -1)).log_prob(x).sum(-1)
    assert nelbo.shape == kl.shape == rec.shape == ()
    assert torch.isclose(kl, (log_q - log_p).mean(), rtol=1e-9) and torch.isclose(rec, -log_px.mean(), rtol=1e-12)
    assert torch.isclose(nelbo, kl + rec)


def test_the_kl_estimate_averages_to_the_closed_form():
    torch.manual_seed(0)
    model = ConvVAE()
    x = _batch(20)
    with torch.no_grad():
        mean, logvar = model.enc(x)
        closed = float(kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1).mean())
        draws = torch.stack([model.negative_elbo_bound(x)[1] for _ in range(2000)])
    assert abs(float(draws.mean()) - closed) < 5 * float(draws.std()) / math.sqrt(len(draws)) + 1e-4


def test_a_short_training_lowers_the_bound():
    torch.manual_seed(0)
    grey = torch.rand(784, generator=torch.Generator().manual_seed(3)) * 255       # each pixel its own odds
    images = grey.expand(500, 784).to(torch.uint8)
    model = ConvVAE()
    x = torch.bernoulli(images.float() / 255, generator=torch.Generator().manual_seed(4))
    before = train.evaluate(model, x, repeats=3)[0]
    train.train(model, images, 60, seed=0)
    after = train.evaluate(model, x, repeats=3)[0]
    assert after < before - 50, (before, after)


def test_the_walk_runs_between_the_mean_codes_of_the_two_digits(tmp_path):
    torch.manual_seed(0)
    model = ConvVAE()
    codes, labels = torch.randn(30, 10), torch.arange(30) % 3
    line = figures_conv.save_walk(model, codes, labels, tmp_path / "walk.png", 1, 2)
    assert line.shape == (figures_conv.WALK_STEPS, 10)
    assert torch.allclose(line[0], codes[labels == 1].mean(0)) and torch.allclose(line[-1], codes[labels == 2].mean(0))
    from PIL import Image
    with Image.open(tmp_path / "walk.png") as picture:
        zoom = figures_conv.WALK_ZOOM
        assert picture.size == (28 * zoom * figures_conv.WALK_STEPS, 28 * zoom) and picture.mode == "L"
        pixels = torch.tensor(list(picture.getdata()), dtype=torch.float32).reshape(28 * zoom, -1)
    decoded = model.compute_sigmoid_given(line).detach().reshape(-1, 28, 28)
    first = (decoded[0] * 255).round()                       # the first digit, each pixel a zoom x zoom block
    assert torch.equal(pixels[:28 * zoom, :28 * zoom], first.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1))


def test_run_conv_vae_prints_the_figures_and_writes_every_picture(tmp_path):
    done = subprocess.run([sys.executable, "run_conv_vae.py", "--iters", "30", "--out", str(tmp_path), "--device",
                           "cpu", "--walk", "3", "8"], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("NELBO: ") and ". KL: " in done.stdout and ". Rec: " in done.stdout
    nelbo, kl, rec = (float(part.split(": ")[1]) for part in done.stdout.strip().rstrip(".").split(". "))
    assert math.isclose(nelbo, kl + rec, rel_tol=1e-4) and 100 < nelbo < 600
    for name in ("model.pt", "curves.png", "reconstructions.png", "latent.png", "walk.png", "samples.png"):
        assert (tmp_path / name).is_file(), name
    from PIL import Image
    with Image.open(tmp_path / "samples.png") as picture:
        assert picture.size == (560, 280) and picture.mode == "L"
    bad = subprocess.run([sys.executable, "run_conv_vae.py", "--walk", "4", "4"], cwd=HERE, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--walk" in bad.stderr
