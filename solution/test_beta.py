"""Instructor tests of the beta-VAE's reference (problem `beta`), in-process (trusted)."""
import subprocess
import sys
from pathlib import Path

import torch

import run_beta_vae
import train
import utils as ut
from beta_vae import BetaVAE, KLWeighted
from vae import VAE

HERE = Path(__file__).resolve().parent


def _batch(count=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((count, 784), 0.3), generator=g)


def test_the_loss_weights_the_kl_term_only():
    torch.manual_seed(0)
    model = BetaVAE()
    x = _batch()
    m, v = model.enc(x)
    closed_form = ut.kl_normal(m, v, model.z_prior_m, model.z_prior_v).mean()
    for beta in (0.0, 0.5, 1.0, 2.5):
        loss, kl, rec = model.negative_elbo_bound(x, beta)
        assert loss.shape == kl.shape == rec.shape == ()
        assert torch.isclose(loss, rec + beta * kl) and torch.isclose(kl, closed_form)
    torch.manual_seed(1)
    default = model.negative_elbo_bound(x)
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(default, model.negative_elbo_bound(x, beta=1.0)))


def test_the_gradient_is_that_of_rec_plus_beta_kl():
    model = BetaVAE()
    x = _batch()
    grads = {}
    for beta in (0.0, 2.5):
        model.zero_grad()
        torch.manual_seed(3)                               # the same z at both weights
        loss, kl, rec = model.negative_elbo_bound(x, beta)
        loss.backward()
        grads[beta] = model.enc.net[0].weight.grad.clone()
    model.zero_grad()
    torch.manual_seed(3)
    _, kl, _ = model.negative_elbo_bound(x, 1.0)
    (2.5 * kl).backward()
    kl_part = model.enc.net[0].weight.grad
    assert torch.allclose(grads[2.5], grads[0.0] + kl_part, rtol=1e-4, atol=1e-6)


def test_at_beta_one_training_is_the_vaes_step_for_step():
    """The same networks, seeds and loop: the reference BetaVAE trained through KLWeighted(model, 1.0)
    ends with the very weights of the reference VAE (what lets the gate use the VAE's calibration)."""
    images = (torch.rand(300, 784, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    trained = []
    for make in (VAE, lambda: KLWeighted(BetaVAE(), 1.0)):
        torch.manual_seed(7)
        model = make()
        train.train(model, images, 30, seed=7)
        trained.append(model.state_dict() if isinstance(model, VAE) else model.model.state_dict())
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_klweighted_passes_the_weight_and_trains_the_models_parameters():
    model = BetaVAE()
    wrapped = KLWeighted(model, 0.25)
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in model.parameters()]
    x = _batch(16)
    torch.manual_seed(5)
    loss, kl, rec = wrapped.negative_elbo_bound(x)
    assert torch.isclose(loss, rec + 0.25 * kl)


def test_figure_rows_show_test_images_reconstructions_and_samples():
    torch.manual_seed(0)
    model = BetaVAE()
    test_x = _batch(100)
    rows = run_beta_vae.figure_rows(model, test_x)
    assert rows.shape == (3, 16, 784)
    assert torch.equal(rows[0], test_x[run_beta_vae.figure_positions()])
    assert torch.allclose(rows[1], torch.sigmoid(model.dec(model.enc(rows[0])[0])))
    assert ((rows[2] > 0) & (rows[2] < 1)).all()
    assert sorted({p // 10 for p in run_beta_vae.figure_positions()}) == list(range(10))   # every digit shown


def test_run_beta_vae_prints_the_figures_and_writes_the_figure(tmp_path):
    done = subprocess.run([sys.executable, "run_beta_vae.py", "--iters", "3", "--beta", "4", "--figure", "--out",
                           str(tmp_path), "--quiet", "--device", "cpu"], cwd=HERE, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("NELBO: ") and ". KL: " in lines[0] and ". Rec: " in lines[0]
    assert lines[1].startswith("Loss (rec + beta * kl, beta = 4): ")
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "samples.png").is_file()
    from PIL import Image
    with Image.open(tmp_path / "figure.png") as picture:
        width, height = picture.size
    assert width > 3 * height / 2          # three rows of 16 digits: a wide picture
    bad = subprocess.run([sys.executable, "run_beta_vae.py", "--beta", "-1"], cwd=HERE, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--beta must be" in bad.stderr
