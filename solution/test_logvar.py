"""Instructor tests of the log-variance VAE's reference (problem `logvar`), in-process (trusted)."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import logvar_utils as lu
import nns
import utils as ut
from logvar_vae import LogVarVAE
from vae import VAE

HERE = Path(__file__).resolve().parent


def _batch(count=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((count, 784), 0.3), generator=g)


def test_float32_leaves_exps_range_where_the_checks_say():
    """The thresholds checks/logvar.py derives (88.72, -103.97) are where torch's float32 exp breaks."""
    exp = lambda s: torch.exp(torch.tensor(s, dtype=torch.float32)).item()   # noqa: E731
    assert math.isfinite(exp(88.72)) and exp(88.73) == math.inf
    assert exp(-103.97) > 0 and exp(-103.98) == 0.0
    assert exp(-87.33) >= np.finfo(np.float32).tiny > exp(-87.34)              # subnormal below -87.34


def test_the_reference_helpers_are_the_variance_helpers_at_v_exp_s():
    g = torch.Generator().manual_seed(3)
    qm, pm = torch.randn(32, 10, generator=g, dtype=torch.float64), torch.randn(32, 10, generator=g, dtype=torch.float64)
    qs, ps = torch.randn(32, 10, generator=g, dtype=torch.float64), torch.randn(32, 10, generator=g, dtype=torch.float64)
    assert torch.allclose(lu.kl_normal_logvar(qm, qs, pm, ps), ut.kl_normal(qm, qs.exp(), pm, ps.exp()))
    torch.manual_seed(5)
    z = lu.sample_gaussian_logvar(qm, qs)
    torch.manual_seed(5)
    assert torch.allclose(z, ut.sample_gaussian(qm, qs.exp()))


def test_the_reference_helpers_stay_exact_at_large_s_in_float32():
    s = torch.tensor([-150.0, -120.0, 100.0, 150.0])
    z = lu.sample_gaussian_logvar(torch.zeros(1000, 4), s.expand(1000, 4))
    assert torch.isfinite(z).all() and (z != 0).all(dim=0).any()
    assert ((z / torch.exp(s.double() / 2)).std(0) - 1).abs().max() < 0.15
    assert torch.isinf(torch.sqrt(torch.exp(s[2:]))).all() and (torch.sqrt(torch.exp(s[:2])) == 0).all()
    qs, ps = torch.tensor([[95.0, 90.0, -120.0]]), torch.tensor([[90.0, 80.0, -80.0]])
    kl = lu.kl_normal_logvar(torch.zeros(1, 3), qs, torch.zeros(1, 3), ps)
    expected = 0.5 * (ps.double() - qs.double() + torch.exp(qs.double() - ps.double()) - 1).sum()
    assert torch.isclose(kl.double(), expected, rtol=1e-6).all()
    assert torch.isnan((torch.exp(qs) / torch.exp(ps))[0, 0])          # the naive ratio breaks there


def test_the_encoder_is_the_vaes_with_its_second_half_a_log_variance():
    torch.manual_seed(0)
    model, vae = LogVarVAE(), VAE()
    assert list(model.state_dict()) == [key.replace("z_prior_v", "z_prior_s") for key in vae.state_dict()]
    model.enc.load_state_dict(vae.enc.state_dict())
    x = _batch()
    m, s = model.enc(x)
    h = vae.enc.net(x)
    assert torch.equal(m, h[:, :10]) and torch.equal(s, h[:, 10:])
    assert isinstance(model.enc, nns.Encoder) and model.z_prior_s.item() == 0.0


def test_the_bound_is_kl_plus_rec_with_the_students_helpers():
    torch.manual_seed(0)
    model = LogVarVAE()
    x = _batch()
    m, s = model.enc(x)
    torch.manual_seed(1)
    nelbo, kl, rec = model.negative_elbo_bound(x)
    assert nelbo.shape == kl.shape == rec.shape == () and torch.isclose(nelbo, kl + rec)
    assert torch.isclose(kl, ut.kl_normal(m, s.exp(), torch.zeros(1), torch.ones(1)).mean())
    torch.manual_seed(1)
    z = lu.sample_gaussian_logvar(m, s)
    assert torch.isclose(rec, -ut.log_bernoulli_with_logits(x, model.dec(z)).mean())
    nelbo.backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad)
    niwae, _, _ = model.negative_iwae_bound(x, 1)
    assert abs(niwae.item() - nelbo.item()) < 0.1 * nelbo.item()         # one sample: the ELBO, up to noise


def test_run_logvar_vae_prints_the_bound_and_writes_samples_and_reconstructions(tmp_path):
    done = subprocess.run([sys.executable, "run_logvar_vae.py", "--iters", "3", "--out", str(tmp_path), "--quiet",
                           "--device", "cpu"], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("NELBO: ") and ". KL: " in lines[0] and ". Rec: " in lines[0]
    assert lines[1].startswith("log-variance s of q(z|x) on the test subset: min ")
    for name in ("model.pt", "samples.png", "reconstructions.png"):
        assert (tmp_path / name).is_file(), name
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "z_prior_s" in state and state["enc.net.4.weight"].shape == (20, 300)
    bad = subprocess.run([sys.executable, "run_logvar_vae.py", "--iters", "0"], cwd=HERE, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--iters must be at least 1" in bad.stderr
