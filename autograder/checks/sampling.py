"""Checks of utils.sample_gaussian (the reparameterization trick).

Any correct way of drawing the noise passes: nothing is compared with a seeded tensor.
The statistics are judged against thresholds derived in stats.py. Each check establishes
one property, from arrays this process decoded itself (never from what the child says about
them): 1.1 shape and dtype, 1.2 the distribution N(m, v), 1.3 independence (judged on
draws standardized by their own column mean and sd, so a wrong mean or variance is
reported by 1.2 only), 1.4 the pathwise gradient, 1.5 inputs left alone.
"""
import numpy as np

from . import stats
from .base import CheckCase, ask, check, decoded, describe, output

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


def _call(submission, key, m, v, **params):
    return ask(submission, FAMILY, "call", dict(function=FAMILY, args=["m", "v"], **params), {"m": m, "v": v}, key=key)


def _statistics_draws(submission):
    """Two calls on (N, 8) inputs, reseeded differently before each: the draws and the reply."""
    m = np.broadcast_to(MEANS, (N, len(MEANS))).copy()
    v = np.broadcast_to(VARIANCES, (N, len(MEANS))).copy()
    reply = _call(submission, "stats", m, v, repeat=2, seeds=[11, 12])
    first = output(reply, "out0", "sample_gaussian(m, v)", shape=m.shape)
    second = output(reply, "out1", "sample_gaussian(m, v)", shape=m.shape)
    return first, second


def _parameter_problems(draws):
    """-> ({column: sentence} of means or variances beyond Z_LIMIT, observed variances)."""
    mean_z = stats.mean_z(draws, MEANS, VARIANCES)
    var_z = stats.variance_z(draws, VARIANCES)
    observed_var = draws.var(axis=0, ddof=1)
    problems = {}
    for j, (m, v) in enumerate(zip(MEANS, VARIANCES)):
        said = []
        if abs(mean_z[j]) > stats.Z_LIMIT:
            said.append(f"sample mean {draws[:, j].mean():.6g}, expected {m:g}")
        if abs(var_z[j]) > stats.Z_LIMIT:
            said.append(f"sample variance {observed_var[j]:.6g}, expected {v:g}")
        if said:
            problems[j] = f"with m={m:g}, v={v:g}: " + " and ".join(said)
    return problems, observed_var


def _parameter_hint(draws, observed_var):
    """The likely mistake behind wrong means or variances, from the values observed."""
    moved = MEANS != 0
    if np.allclose(observed_var, 0, atol=1e-12) and not np.allclose(draws, MEANS):
        return (" The samples do not vary down a column, though they differ from m: every row got the same noise. "
                "Draw a separate standard normal for every element, e.g. torch.randn_like(m).")
    if np.allclose(observed_var, 0, atol=1e-12):
        return " The samples do not vary: add noise (z = m + sqrt(v) * eps, eps ~ N(0, 1))."
    if np.allclose(draws.mean(axis=0)[moved], 0, atol=0.1) and np.allclose(observed_var, 1, rtol=0.1):
        return " The samples ignore m and v (they look like the noise itself): return z = m + sqrt(v) * eps."
    if np.allclose(draws.mean(axis=0)[moved], 0, atol=0.1):
        return " The sample mean does not follow m: add m to the scaled noise."
    if np.allclose(observed_var, VARIANCES ** 2, rtol=0.1):
        return " The variance comes out as v^2: v is a variance, so scale the noise by sqrt(v), not by v."
    if np.allclose(observed_var, 1, rtol=0.1):
        return " The variance does not depend on v: multiply the noise by sqrt(v)."
    if np.allclose(observed_var, np.sqrt(VARIANCES), rtol=0.1):
        return " The variance comes out as sqrt(v): scale the noise by sqrt(v), not by v ** 0.25."
    return ""


def _shape_hint(kurtosis):
    if kurtosis < -0.5:
        return (" Its tails are too light (excess kurtosis {:.2f}; a normal has 0, uniform noise -1.2): "
                "is the noise uniform (torch.rand) rescaled? Draw it with torch.randn_like.").format(kurtosis)
    if kurtosis > 0.5:
        return (" Its tails are too heavy (excess kurtosis {:.2f}; a normal has 0, Laplace noise 3): "
                "draw standard normal noise, e.g. torch.randn_like(m).").format(kurtosis)
    return " Draw standard normal noise, e.g. torch.randn_like(m)."


def _no_noise_message(draws):
    """A sentence when some column of the draws does not vary (so there is no noise whose
    independence could be judged), else None."""
    constant = np.all(draws == draws[0], axis=0)       # exact: a computed sd of equal values need not be 0
    if not np.any(constant):
        return None
    if np.allclose(draws, MEANS):
        return ("The sample equals m: no noise was added, so there is no noise whose independence could be "
                "checked. Add noise: z = m + sqrt(v) * eps with eps ~ N(0, 1).")
    if np.all(constant):
        return ("Every row of the sample is the same (m and v were the same in every row): the noise was drawn once "
                "and shared by all rows, e.g. torch.randn(dim). Draw a separate standard normal for every element, "
                "e.g. torch.randn_like(m).")
    still = ", ".join(f"m={MEANS[j]:g}, v={VARIANCES[j]:g}" for j in np.flatnonzero(constant)[:3])
    return (f"Some columns of the sample do not vary at all ({still}): every element needs its own noise, "
            "e.g. torch.randn_like(m).")


class SampleGaussianChecks(CheckCase):

    @check(FAMILY, "shape_dtype_device")
    def test_shape_dtype_device(self):
        """sample_gaussian: output shape, dtype and device follow m and v (with broadcasting)"""
        for name, (m, v, shape, dtype) in SHAPE_CASES.items():
            got = decoded(_call(self.submission, f"shape {name}", m, v), "out0", f"sample_gaussian for {name}")
            self.assertEqual(tuple(got.shape), shape,
                             f"For {name}: expected shape {shape}, got {tuple(got.shape)}. "
                             "Draw the noise with the broadcast shape of m and v (e.g. torch.randn_like on m + v... "
                             "or torch.broadcast_shapes).")
            self.assertEqual(str(got.dtype), dtype,
                             f"For {name}: expected dtype {dtype}, got {got.dtype}. "
                             "Draw the noise in the inputs' dtype (torch.randn_like does).")
        draws, _ = _statistics_draws(self.submission)
        noise = draws[:, 0]                       # m = 0, v = 1: z is the noise itself, in float64
        if np.array_equal(noise, noise.astype(np.float32).astype(np.float64)) and np.any(noise != 0):
            self.fail("With float64 inputs the noise was drawn in float32 (every draw is a float32 value): create "
                      "it in the inputs' dtype and device, e.g. torch.randn_like(m) or "
                      "torch.randn(shape, dtype=m.dtype, device=m.device).")
        # The device a result lives on never crosses the wire (arrays arrive in host memory), so it
        # cannot be verified here: what is graded is that a call on CUDA inputs succeeds, which fails
        # when the noise is made on the CPU (adding a CPU tensor to a CUDA one raises).
        import torch
        if torch.cuda.is_available():
            _call(self.submission, "device cuda", *SHAPE_CASES["float32 (4, 3)"][:2], device="cuda")

    @check(FAMILY, "mean_and_variance")
    def test_mean_and_variance(self):
        """sample_gaussian: the draws follow N(m, v): mean, variance and normal shape across scales"""
        draws, _ = _statistics_draws(self.submission)
        problems, observed_var = _parameter_problems(draws)
        if problems:
            self.fail(f"{N} draws per (m, v) pair do not follow N(m, v) (each deviation is beyond "
                      f"{stats.Z_LIMIT:g} standard errors): " + "; ".join(list(problems.values())[:4]) + "."
                      + _parameter_hint(draws, observed_var))
        # Right mean and variance; now the shape. Standardized by the true m and v, a correct
        # sampler's draws are exactly N(0, 1), so the distance-to-Phi bound of stats.ks_limit holds.
        eps = ((draws - MEANS) / np.sqrt(VARIANCES)).ravel()
        distance, at = stats.ks_distance(eps)
        limit = stats.ks_limit(eps.size)
        if distance > limit:
            self.fail(f"The draws have the right mean and variance but are not normally distributed: "
                      f"standardized as (z - m) / sqrt(v), their distribution function is {distance:.4f} away from "
                      f"the standard normal's at {at:.3g} (at most {limit:.4f} expected from {eps.size} normal "
                      f"draws; skewness {stats.skewness(eps):.2f}, normal 0)." + _shape_hint(stats.excess_kurtosis(eps)))

    @check(FAMILY, "independent_noise")
    def test_independent_noise(self):
        """sample_gaussian: noise is independent across elements and across calls; no reseeding"""
        first, second = _statistics_draws(self.submission)
        no_noise = _no_noise_message(first)
        if no_noise:
            self.fail(no_noise)
        if np.array_equal(first, second):
            self.fail("Two calls, with the global seed set differently before each, returned identical samples: "
                      "the function must not set a seed or reuse a fixed noise tensor.")
        # Each column standardized by its own mean and sd: a wrong m or v (check 1.2) changes nothing here.
        eps1, eps2 = stats.standardized(first), stats.standardized(second)
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
        # v of shape (1, dim) broadcast against m of shape (N, dim): every row needs its own noise, so the
        # spread of each column must be what the same function gives with v of shape (N, dim).
        m = np.broadcast_to(MEANS, (N, len(MEANS))).copy()
        reply = _call(self.submission, "broadcast v", m, VARIANCES[None, :].copy())
        draws = output(reply, "out0", "sample_gaussian(m, v) with v of shape (1, dim)", shape=m.shape)
        ratio_z = stats.variance_ratio_z(draws, first)
        if np.any(np.abs(ratio_z) > stats.Z_LIMIT):
            j = int(np.argmax(np.abs(ratio_z)))
            self.fail("With m of shape (N, dim) and v of shape (1, dim), the rows do not get independent noise "
                      f"(column {j}: sample variance {draws[:, j].var(ddof=1):.6g}, against "
                      f"{first[:, j].var(ddof=1):.6g} when v has shape (N, dim); torch.randn_like(v) draws one "
                      "row and broadcasts it): draw the noise with the broadcast shape, e.g. "
                      "torch.randn_like(m + v) or torch.broadcast_shapes(m.shape, v.shape).")

    @check(FAMILY, "pathwise_gradient")
    def test_pathwise_gradient(self):
        """sample_gaussian: gradients flow through the sample (dz/dm = 1, dz/dv = eps / (2 sqrt v))"""
        rng = np.random.default_rng(5)
        m = rng.normal(size=(50, 6))
        v = rng.uniform(0.5, 4.0, size=(50, 6))
        # The gradients are asked for here and checked against values computed here: whether the
        # sample "requires grad" is never taken from a flag the child sets.
        reply = _call(self.submission, "gradient", m, v, grad_wrt=["m", "v"])
        z = output(reply, "out0", "sample_gaussian(m, v)", shape=m.shape)
        if "grad_m" not in reply.arrays and "grad_v" not in reply.arrays:
            self.fail("The sample carries no gradient: backpropagating through it reached neither m nor v. Do not "
                      "detach it, do not build it with torch.normal(m, std) or under torch.no_grad(); write "
                      "z = m + sqrt(v) * eps.")
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
        reply = _call(self.submission, "in place", sent["m"].copy(), sent["v"].copy())
        changed = [name for name, array in sent.items()
                   if not np.array_equal(reply.arrays.get(f"after_{name}"), array)]
        self.assertFalse(changed, f"The function changed its input(s) {', '.join(changed)} in place "
                                  "(e.g. v.sqrt_() or m.add_()): use out-of-place operations.")
