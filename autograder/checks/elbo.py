"""Checks of VAE.negative_elbo_bound, run with the reference utils (no double penalty).

The trusted side builds a seeded model, sends its weights and a batch, and recomputes
every term with the oracle (torch.distributions). When the submission draws z through
ut.sample_gaussian (the reference one here), the worker records that z and the
reconstruction term is compared exactly; otherwise statistically (stats.py).
"""
import functools
import unittest

import numpy as np
import torch

from .. import config, oracle
from ..reference import vae as ref_vae
from . import stats
from .base import ask, check, describe, output

FAMILY = "negative_elbo_bound"
BATCH = 2000  # large, so the statistical comparison of the one-sample rec term is sharp


def _model_and_batch():
    torch.manual_seed(1234)
    model = ref_vae.VAE(z_dim=config.Z_DIM)
    rng = np.random.default_rng(1234)
    base = (rng.random((50, 784)) < rng.uniform(0.05, 0.4, (50, 1))).astype(np.float32)
    x = np.tile(base, (BATCH // 50, 1))
    return model, x


_MODEL, _X = _model_and_batch()
_WEIGHTS = {f"w_{k}": v.float().numpy() for k, v in _MODEL.state_dict().items()}
_FLOAT_MODEL = ref_vae.VAE(z_dim=config.Z_DIM)
_FLOAT_MODEL.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in _WEIGHTS.items()})


def _bound(x, key, grads=False):
    reply = ask(FAMILY, "elbo", {"z_dim": config.Z_DIM, "seed": 3, "grads": grads}, dict(_WEIGHTS, x=x), key=key)
    described = reply.info.get("result", [])
    return reply, described


def _terms(reply):
    return [float(output(reply, name, f"the {name} value", shape=None).reshape(-1)[0]) for name in ("nelbo", "kl", "rec")]


def _reference_terms(x):
    """Exact kl (batch mean), and the distribution of the one-sample rec term."""
    x = torch.from_numpy(x)
    with torch.no_grad():
        m, v = _FLOAT_MODEL.enc(x)
        kl = oracle.kl_normal(m, v, _FLOAT_MODEL.z_prior_m, _FLOAT_MODEL.z_prior_v)
        generator = torch.Generator().manual_seed(0)
        draws = torch.stack([oracle.reconstruction(x, _FLOAT_MODEL.dec(m + v.sqrt() * torch.randn(m.shape, generator=generator)))
                             for _ in range(10)])                           # (10, batch)
        rec_at_mean = oracle.reconstruction(x, _FLOAT_MODEL.dec(m))
        mse_at_sample = ((x - torch.sigmoid(_FLOAT_MODEL.dec(m))) ** 2).sum(-1)
    return {"kl": kl.mean().item(), "kl_sum": kl.sum().item(), "rec_mean": draws.mean().item(),
            "rec_sd": draws.std().item(), "rec_at_mean": rec_at_mean.mean().item(), "mse": mse_at_sample.mean().item()}


@functools.lru_cache(maxsize=None)
def _expected():
    return _reference_terms(_X)


class NegativeElboBoundChecks(unittest.TestCase):
    longMessage = False  # students read our message, not unittest's repr of the values

    @check(FAMILY, "three_scalars")
    def test_three_scalars(self):
        """negative_elbo_bound: returns three scalar tensors with nelbo = kl + rec"""
        reply, described = _bound(_X, "main")
        for name, item in zip(("nelbo", "kl", "rec"), described):
            self.assertEqual(item.get("type"), "Tensor", f"{name} is a {item.get('type')}, expected a torch.Tensor.")
            size = int(np.prod(item["shape"])) if item["shape"] else 1
            self.assertEqual(size, 1, f"{name} has shape {tuple(item['shape'])}: return batch means "
                                      "(scalars), e.g. kl.mean(), not one value per image.")
        nelbo, kl, rec = _terms(reply)
        self.assertTrue(np.isclose(nelbo, kl + rec, rtol=1e-5, atol=1e-4),
                        f"nelbo should equal kl + rec: got nelbo {nelbo:.6g}, kl + rec = {kl + rec:.6g}.")

    @check(FAMILY, "kl_term")
    def test_kl_term(self):
        """negative_elbo_bound: kl is the batch mean of KL(q(z|x) || p(z)) for the model's encoder"""
        reply, _ = _bound(_X, "main")
        kl = _terms(reply)[1]
        expected = _expected()["kl"]
        if not np.isclose(kl, expected, rtol=1e-4, atol=1e-4):
            hint = ""
            if np.isclose(kl, _expected()["kl_sum"], rtol=1e-3):
                hint = " That is the sum over the batch: average over the batch instead (.mean())."
            elif np.isclose(kl, -expected, rtol=1e-3):
                hint = " The sign is reversed: kl must be positive."
            self.fail(f"Expected kl = {expected:.6g} (KL of the encoder's q(z|x) from the prior "
                      f"N(self.z_prior_m, self.z_prior_v), averaged over the batch), got {kl:.6g}.{hint}")

    @check(FAMILY, "rec_term")
    def test_rec_term(self):
        """negative_elbo_bound: rec is -log p(x|z) (Bernoulli, summed over pixels) at a z sampled from q"""
        reply, _ = _bound(_X, "main")
        rec = _terms(reply)[2]
        if "z" in reply.arrays and reply.arrays["z"].shape == (len(_X), config.Z_DIM):
            z = torch.from_numpy(reply.arrays["z"].astype(np.float32))
            with torch.no_grad():
                exact = oracle.reconstruction(torch.from_numpy(_X), _FLOAT_MODEL.dec(z)).mean().item()
            if np.isclose(rec, exact, rtol=1e-4, atol=1e-3):
                return
        # Statistical comparison: rec is a mean of BATCH one-sample draws.
        standard_error = _expected()["rec_sd"] / np.sqrt(len(_X))
        z_score = (rec - _expected()["rec_mean"]) / standard_error
        if abs(z_score) <= stats.Z_LIMIT:
            return
        hint = ""
        if np.isclose(rec, _expected()["rec_at_mean"], atol=3 * standard_error):
            hint = (" It matches decoding the mean of q(z|x): decode a sample z = ut.sample_gaussian(m, v), "
                    "not m.")
        elif np.isclose(rec, -_expected()["rec_mean"], rtol=0.05):
            hint = " The sign is reversed: rec is the negative log-likelihood, a positive number."
        elif rec < 0.5 * _expected()["rec_mean"] and rec > 0:
            hint = (" It is far too small: is it a squared error (MSE) rather than the Bernoulli log-likelihood "
                    "ut.log_bernoulli_with_logits(x, logits), or a mean over pixels instead of a sum?")
        elif np.isclose(rec, _expected()["rec_mean"] * len(_X), rtol=0.05):
            hint = " That is the sum over the batch: average over the batch instead."
        self.fail(f"Expected rec around {_expected()['rec_mean']:.4g} (+- {stats.Z_LIMIT * standard_error:.2g}): "
                  f"the batch mean of -log p(x|z) summed over the 784 pixels, with one z sampled from q(z|x). "
                  f"Got {rec:.6g}.{hint}")

    @check(FAMILY, "batch_mean")
    def test_batch_mean(self):
        """negative_elbo_bound: terms are batch means (unchanged when the batch is repeated)"""
        _, kl, rec = _terms(_bound(_X, "main")[0])
        _, kl2, rec2 = _terms(_bound(np.concatenate([_X, _X]), "doubled")[0])
        self.assertTrue(np.isclose(kl2, kl, rtol=1e-4),
                        f"kl changed from {kl:.6g} to {kl2:.6g} when the batch was repeated twice: average over the "
                        "batch (.mean()) instead of summing.")
        standard_error = _expected()["rec_sd"] / np.sqrt(len(_X))
        self.assertLess(abs(rec2 - rec), 2 * stats.Z_LIMIT * standard_error,
                        f"rec changed from {rec:.6g} to {rec2:.6g} when the batch was repeated twice: average over the "
                        "batch instead of summing.")

    @check(FAMILY, "gradients")
    def test_gradients(self):
        """negative_elbo_bound: gradients reach the encoder's mean and variance outputs and the decoder"""
        x = _X[:200]
        reply, _ = _bound(x, "gradients", grads=True)
        head = "enc.net.4.weight"       # last encoder layer: rows [:z] give the mean, rows [z:] the variance
        for name in (head, "dec.net.0.weight", "dec.net.4.weight"):
            self.assertIn(f"grad_{name}", reply.arrays,
                          f"No gradient reached {name}: the returned nelbo must be computed from the model's outputs "
                          "with torch operations (no .item(), .detach(), numpy or torch.no_grad()).")
        grad_head = output(reply, f"grad_{head}", "the encoder's gradient")
        if "z" not in reply.arrays:
            mean_rows, var_rows = grad_head[:config.Z_DIM], grad_head[config.Z_DIM:]
            self.assertGreater(np.abs(mean_rows).sum(), 0, "No gradient reaches the encoder's mean output.")
            self.assertGreater(np.abs(var_rows).sum(), 0, "No gradient reaches the encoder's variance output.")
            return
        # Recompute the reference gradient at the very z the submission sampled.
        model = ref_vae.VAE(z_dim=config.Z_DIM)
        model.load_state_dict(_FLOAT_MODEL.state_dict())
        eps_source = torch.from_numpy(reply.arrays["z"].astype(np.float32))
        xt = torch.from_numpy(x)
        m, v = model.enc(xt)
        eps = ((eps_source - m) / v.sqrt()).detach()
        z = m + v.sqrt() * eps
        kl = oracle.kl_normal(m, v, model.z_prior_m, model.z_prior_v)
        rec = oracle.reconstruction(xt, model.dec(z))
        (kl + rec).mean().backward()
        expected = model.enc.net[4].weight.grad.numpy().astype(np.float64)
        _, got_kl, got_rec = _terms(reply)
        values_right = np.isclose(got_kl, kl.mean().item(), rtol=1e-4, atol=1e-4) and \
            np.isclose(got_rec, rec.mean().item(), rtol=1e-4, atol=1e-3)
        for rows, part in ((slice(0, config.Z_DIM), "mean"), (slice(config.Z_DIM, None), "variance")):
            got, want = grad_head[rows], expected[rows]
            close = np.allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max())
            if not values_right:
                hint = " The values of kl and rec differ from the reference too (see the checks above): fix those first."
            elif part == "mean":
                hint = " Is z detached, or drawn without the reparameterization trick?"
            else:
                hint = " Does the sample z depend on v through sqrt(v)?"
            self.assertTrue(close, f"The gradient reaching the encoder's {part} output differs from the reference "
                                   f"(expected {describe(want)}, got {describe(got)}).{hint}")
        for name in ("dec.net.4.weight",):
            got = output(reply, f"grad_{name}", "the decoder's gradient")
            want = dict(model.named_parameters())[name].grad.numpy()
            self.assertTrue(np.allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max()),
                            "The gradient reaching the decoder differs from the reference: is rec the Bernoulli "
                            "log-likelihood of x under the decoder's logits at the sampled z?")
