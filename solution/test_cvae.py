"""Instructor tests of the conditional VAE's reference (problem `cvae`), in-process (trusted)."""
import subprocess
import sys
from pathlib import Path

import torch

import train_cvae
import utils as ut
from cvae import CVAE

HERE = Path(__file__).resolve().parent


def _batch(count=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((count, 784), 0.3), generator=g)
    return x, train_cvae.one_hot(torch.randint(0, 10, (count,), generator=g))


def test_negative_elbo_bound_terms_with_the_label_in_both_networks():
    torch.manual_seed(0)
    model = CVAE()
    x, y = _batch()
    nelbo, kl, rec = model.negative_elbo_bound(x, y)
    assert nelbo.shape == kl.shape == rec.shape == ()
    assert torch.isclose(nelbo, kl + rec)
    m, v = model.enc(x, y)
    assert torch.isclose(kl, ut.kl_normal(m, v, model.z_prior_m, model.z_prior_v).mean())
    nelbo.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    # the label reaches both networks: another label changes the encoder's q and the decoder's p
    other = y.roll(1, dims=1)
    assert not torch.allclose(model.enc(x, y)[0], model.enc(x, other)[0])
    z = torch.zeros(len(x), model.z_dim)
    assert not torch.allclose(model.dec(z, y), model.dec(z, other))


def test_one_hot_and_the_labelled_batches_follow_the_images():
    assert train_cvae.one_hot(torch.tensor([0, 3, 9])).tolist() == [[float(i == d) for i in range(10)] for d in (0, 3, 9)]
    images = torch.arange(10, dtype=torch.uint8)[:, None].expand(10, 784) * 25    # image i is grey i * 25
    labels = torch.arange(10)
    batches = train_cvae.LabelledBatches(images, labels, 5, torch.Generator().manual_seed(0))
    seen = []
    for _ in range(4):                                     # two epochs of two batches
        x, y = batches.next()
        assert x.shape == (5, 784) and y.shape == (5, 10)
        seen += y.argmax(-1).tolist()
        assert torch.equal(x.mean(-1) > 0.5, y.argmax(-1) * 25 > 127)    # each row's label is its own image's
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))


def test_training_lowers_the_bound_and_evaluate_averages_it():
    torch.manual_seed(0)
    model = CVAE()
    g = torch.Generator().manual_seed(1)
    images = torch.full((500, 784), 77, dtype=torch.uint8)            # every pixel on with probability 0.3
    labels = torch.randint(0, 10, (500,), generator=g)
    x, y = _batch(100)                                                 # Bernoulli(0.3) pixels too
    before = train_cvae.evaluate(model, x, y, repeats=3)[0]
    train_cvae.train(model, images, labels, 150, seed=0)
    after = train_cvae.evaluate(model, x, y, repeats=3)[0]
    assert after < before - 30 and after < 784 * 0.62, (before, after)   # 784 H(0.3) = 478 nats
    iwae = train_cvae.evaluate_iwae(model, x[:20], y[:20], sample_counts=(1, 10), samples_per_point=20)
    assert iwae[10] <= iwae[1] + 1.0


def test_run_cvae_prints_the_figures_and_writes_one_row_per_digit(tmp_path):
    done = subprocess.run([sys.executable, "run_cvae.py", "--iters", "3", "--out", str(tmp_path), "--quiet",
                           "--device", "cpu"], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("NELBO: ") and ". KL: " in done.stdout and ". Rec: " in done.stdout
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "curves.png").is_file()
    from PIL import Image
    with Image.open(tmp_path / "samples.png") as picture:
        assert picture.size == (280, 280) and picture.mode == "L"
