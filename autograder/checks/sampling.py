"""Checks of utils.sample_gaussian (the reparameterization trick).

Any correct way of drawing the noise passes: nothing is compared with a seeded tensor.
The statistics are judged against thresholds derived in stats.py.
"""
import unittest

import numpy as np

from . import stats
from .base import ask, check, describe, output

FAMILY = "sample_gaussian"
N = 20000
# Columns of the statistics input: means and variances across scales.
MEANS = np.array([0.0, 0.0, 0.0, -3.0, 5.0, 100.0, 0.5, -1.0])
VARIANCES = np.array([1.0, 1e-4, 1e4, 9.0, 0.25, 4.0, 2.0, 0.01])

SHAPE_CASES = {  # name: (m, v, expected shape, expected dtype)
    "float32 (4, 3)": (np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32), (4, 3), "float32"),
    "float64 (2, 5)": (np.ones((2, 5)), np.full((2, 5), 2.0), (2, 5), "float64"),
    "m (6, 4) with v (1, 4)": (np.zeros((6, 4), np.float32), np.ones((1, 4), np.float32), (6, 4), "float32"),
    "m (3, 2, 5) with v (5,)": (np.zeros((3, 2, 5), np.float32), np.ones(5, np.float32), (3, 2, 5), "float32"),
}


def _call(key, m, v, **params):
    return ask(FAMILY, "call", dict(function=FAMILY, args=["m", "v"], **params), {"m": m, "v": v}, key=key)


def _statistics_draws():
    """Two calls on (N, 8) inputs, reseeded differently before each: the draws and the reply."""
    m = np.broadcast_to(MEANS, (N, len(MEANS))).copy()
    v = np.broadcast_to(VARIANCES, (N, len(MEANS))).copy()
    reply = _call("stats", m, v, repeat=2, seeds=[11, 12])
    first = output(reply, "out0", "sample_gaussian(m, v)", shape=m.shape)
    second = output(reply, "out1", "sample_gaussian(m, v)", shape=m.shape)
    return first, second


class SampleGaussianChecks(unittest.TestCase):
    longMessage = False  # students read our message, not unittest's repr of the values

    @check(FAMILY, "shape_dtype_device")
    def test_shape_dtype_device(self):
        """sample_gaussian: output shape, dtype and device follow m and v (with broadcasting)"""
        for name, (m, v, shape, dtype) in SHAPE_CASES.items():
            reply = _call(f"shape {name}", m, v)
            described = reply.info["outputs"][0]
            self.assertEqual(described["type"], "Tensor", f"For {name}: expected a torch.Tensor, got {described['type']}.")
            self.assertEqual(tuple(described["shape"]), shape,
                             f"For {name}: expected shape {shape}, got {tuple(described['shape'])}. "
                             "Draw the noise with the broadcast shape of m and v (e.g. torch.randn_like on m + v... "
                             "or torch.broadcast_shapes).")
            self.assertEqual(described["dtype"], dtype,
                             f"For {name}: expected dtype {dtype}, got {described['dtype']}. "
                             "Draw the noise in the inputs' dtype (torch.randn_like does).")
        draws, _ = _statistics_draws()
        noise = draws[:, 0]                       # m = 0, v = 1: z is the noise itself, in float64
        if np.array_equal(noise, noise.astype(np.float32).astype(np.float64)):
            self.fail("With float64 inputs the noise was drawn in float32 (every draw is a float32 value): create "
                      "it in the inputs' dtype and device, e.g. torch.randn_like(m) or "
                      "torch.randn(shape, dtype=m.dtype, device=m.device).")
        import torch  # device: only where a second device exists to test with
        if torch.cuda.is_available():
            reply = _call("device cuda", *SHAPE_CASES["float32 (4, 3)"][:2], device="cuda")
            self.assertEqual(reply.info["outputs"][0]["device"], "cuda",
                             "With inputs on CUDA the sample must be on CUDA too: create the noise on m.device.")

    @check(FAMILY, "mean_and_variance")
    def test_mean_and_variance(self):
        """sample_gaussian: empirical mean and variance match m and v across scales"""
        draws, _ = _statistics_draws()
        mean_z = stats.mean_z(draws, MEANS, VARIANCES)
        var_z = stats.variance_z(draws, VARIANCES)
        observed_var = draws.var(axis=0, ddof=1)
        problems = []
        for j, (m, v) in enumerate(zip(MEANS, VARIANCES)):
            if abs(mean_z[j]) > stats.Z_LIMIT:
                problems.append(f"with m={m:g}, v={v:g}: sample mean {draws[:, j].mean():.6g}, expected {m:g}")
            if abs(var_z[j]) > stats.Z_LIMIT:
                problems.append(f"with m={m:g}, v={v:g}: sample variance {observed_var[j]:.6g}, expected {v:g}")
        if problems:
            ratio = observed_var / VARIANCES
            hint = ""
            if np.allclose(observed_var, VARIANCES ** 2, rtol=0.1):
                hint = " The variance comes out as v^2: v is a variance, so scale the noise by sqrt(v), not by v."
            elif np.allclose(ratio, 1 / VARIANCES, rtol=0.1) or np.allclose(observed_var, 1, rtol=0.1):
                hint = " The variance does not depend on v: multiply the noise by sqrt(v)."
            elif np.allclose(observed_var, np.sqrt(VARIANCES), rtol=0.1):
                hint = " The variance comes out as sqrt(v): scale the noise by sqrt(v), not by v ** 0.25."
            elif np.allclose(observed_var, 0, atol=1e-12):
                hint = " The samples do not vary: add noise (z = m + sqrt(v) * eps, eps ~ N(0, 1))."
            self.fail(f"{N} draws per (m, v) pair do not follow N(m, v) (each deviation is beyond "
                      f"{stats.Z_LIMIT:g} standard errors): " + "; ".join(problems[:4]) + "." + hint)

    @check(FAMILY, "independent_noise")
    def test_independent_noise(self):
        """sample_gaussian: noise is independent across elements and across calls; no reseeding"""
        first, second = _statistics_draws()
        eps1 = (first - MEANS) / np.sqrt(VARIANCES)
        eps2 = (second - MEANS) / np.sqrt(VARIANCES)
        if np.array_equal(first, second):
            self.fail("Two calls, with the global seed set differently before each, returned identical samples: "
                      "the function must not set a seed or reuse a fixed noise tensor.")
        for i in range(len(MEANS)):
            for j in range(i + 1, len(MEANS)):
                z, r = stats.correlation_z(eps1[:, i], eps1[:, j])
                if abs(z) > stats.Z_LIMIT:
                    self.fail(f"The noise of columns {i} and {j} is correlated (r = {r:.3f}, expected about 0): "
                              "draw a separate standard normal for every element, e.g. torch.randn_like(m).")
            z, r = stats.correlation_z(eps1[:, i], eps2[:, i])
            if abs(z) > stats.Z_LIMIT:
                self.fail(f"Two successive calls drew correlated noise (r = {r:.3f}): draw fresh noise every call.")
        z, r = stats.correlation_z(eps1[:-1].ravel(), eps1[1:].ravel())
        if abs(z) > stats.Z_LIMIT:
            self.fail(f"The noise of neighbouring rows is correlated (r = {r:.3f}): draw it per element, not per row.")
        # v of shape (1, dim) broadcast against m of shape (N, dim): every row needs its own noise.
        m = np.broadcast_to(MEANS, (N, len(MEANS))).copy()
        reply = _call("broadcast v", m, VARIANCES[None, :].copy())
        draws = output(reply, "out0", "sample_gaussian(m, v) with v of shape (1, dim)", shape=m.shape)
        if np.any(np.abs(stats.variance_z(draws, VARIANCES)) > stats.Z_LIMIT):
            self.fail("With m of shape (N, dim) and v of shape (1, dim), the rows do not get independent noise "
                      "(e.g. torch.randn_like(v) draws one row and broadcasts it): draw the noise with the "
                      "broadcast shape, e.g. torch.randn_like(m + v) or torch.broadcast_shapes(m.shape, v.shape).")

    @check(FAMILY, "pathwise_gradient")
    def test_pathwise_gradient(self):
        """sample_gaussian: gradients flow through the sample (dz/dm = 1, dz/dv = eps / (2 sqrt v))"""
        rng = np.random.default_rng(5)
        m = rng.normal(size=(50, 6))
        v = rng.uniform(0.5, 4.0, size=(50, 6))
        reply = _call("gradient", m, v, grad_wrt=["m", "v"])
        described = reply.info["outputs"][0]
        if not described.get("requires_grad"):
            self.fail("The sample carries no gradient (requires_grad is False): do not detach it, do not build it "
                      "with torch.normal(m, std) or under torch.no_grad(); write z = m + sqrt(v) * eps.")
        z = output(reply, "out0", "sample_gaussian(m, v)", shape=m.shape)
        self.assertIn("grad_m", reply.arrays, "No gradient reaches m: z must be computed from m.")
        self.assertIn("grad_v", reply.arrays, "No gradient reaches v: z must be computed from v.")
        grad_m = output(reply, "grad_m", "dz/dm", shape=m.shape)
        grad_v = output(reply, "grad_v", "dz/dv", shape=m.shape)
        expected_v = (z - m) / (2 * v)       # eps / (2 sqrt v), with eps = (z - m) / sqrt v
        if np.allclose(grad_m, 0) and np.allclose(grad_v, 0):
            self.fail("No gradient flows through the sample (dz/dm and dz/dv are 0): torch.normal(m, std) and "
                      "sampling from torch.distributions with .sample() are not differentiable; write "
                      "z = m + sqrt(v) * eps with eps ~ N(0, 1), or use .rsample().")
        self.assertTrue(np.allclose(grad_m, 1.0, rtol=1e-6, atol=1e-9),
                        f"dz/dm should be 1 everywhere, got {describe(grad_m)}.")
        self.assertTrue(np.allclose(grad_v, expected_v, rtol=1e-5, atol=1e-8),
                        f"dz/dv should be eps / (2 sqrt v) = {describe(expected_v)}, got {describe(grad_v)}. "
                        "Is the noise scaled by sqrt(v) (not v, not exp(v))?")

    @check(FAMILY, "inputs_unchanged")
    def test_inputs_unchanged(self):
        """sample_gaussian: m and v are not modified in place"""
        sent = {"m": np.full((5, 4), 1.5), "v": np.full((5, 4), 3.0)}
        reply = _call("in place", sent["m"].copy(), sent["v"].copy())
        changed = [name for name, array in sent.items()
                   if not np.array_equal(reply.arrays.get(f"after_{name}"), array)]
        self.assertFalse(changed, f"The function changed its input(s) {', '.join(changed)} in place "
                                  "(e.g. v.sqrt_() or m.add_()): use out-of-place operations.")
