"""Checks of utils.sample_gaussian (the reparameterization trick).

Any correct way of drawing the noise passes: nothing is compared with a seeded tensor.
The statistics are judged against thresholds derived in stats.py. Each check establishes
one property, from arrays this process decoded itself (never from what the child says about
them): 1.1 shape and dtype, 1.2 the distribution N(m, v), 1.3 independence (judged on
draws standardized by their own column mean and sd, so a wrong mean or variance is
reported by 1.2 only), 1.4 the pathwise gradient, 1.5 inputs left alone.

1.1-1.3 are written for any sampler of N(m, diag(variance)) whose second argument is a function of the
variance (a `Sampler`): the log-variance VAE's sample_gaussian_logvar(m, s) (checks/logvar.py) runs the
same statistics with s = log v.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import stats
from .base import CheckCase, ask, check, decoded, describe, output

FAMILY = "sample_gaussian"
N = 20000
# Columns of the statistics input: means and variances across scales.
MEANS = np.array([0.0, 0.0, 0.0, -3.0, 5.0, 100.0, 0.5, -1.0])
VARIANCES = np.array([1.0, 1e-4, 1e4, 9.0, 0.25, 4.0, 2.0, 0.01])



def shape_cases(spread="v"):
    """{name: (m, spread, expected shape, expected dtype)}; each spread 1 or 2 (a variance or a log-variance)."""
    return {
        "float32 (4, 3)": (np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32), (4, 3), "float32"),
        "float64 (2, 5)": (np.ones((2, 5)), np.full((2, 5), 2.0), (2, 5), "float64"),
        f"m (6, 4) with {spread} (1, 4)": (np.zeros((6, 4), np.float32), np.ones((1, 4), np.float32), (6, 4),
                                           "float32"),
        f"m (3, 2, 5) with {spread} (5,)": (np.zeros((3, 2, 5), np.float32), np.ones(5, np.float32), (3, 2, 5),
                                            "float32"),
    }


SHAPE_CASES = shape_cases()  # name: (m, v, expected shape, expected dtype)


@dataclass(frozen=True)
class Sampler:
    """A student sampler of N(m, diag(variance)) as the statistical checks see it: its family and module,
    its spread argument (`spread`, computed from the variances by `spread_of`), the columns of the
    statistics input, how its messages write the standard deviation, and the hint for wrong moments."""
    family: str
    module: str
    spread: str                          # "v" | "s": the second argument's name
    spread_of: Callable                  # variances -> that argument
    means: np.ndarray
    variances: np.ndarray
    law: str                             # "N(m, v)": the distribution, as messages write it
    scale: str                           # "sqrt(v)": the standard deviation, as messages write it
    parameter_hint: Callable             # (sampler, draws, observed variances) -> sentence or ""

    @property
    def function(self):
        return self.family.rsplit("/", 1)[-1]

    @property
    def called(self):
        return f"{self.function}(m, {self.spread})"

    def column(self, j):
        """'m=0, v=1' (or 'm=0, s=0.3'): column j's parameters as its messages name them."""
        return f"m={self.means[j]:g}, {self.spread}={self.spread_of(self.variances)[j]:g}"

    def call(self, submission, key, m, spread, **params):
        return ask(submission, self.family, "call", dict(function=self.function, args=["m", self.spread], **params,
                                                         **({"module": self.module} if self.module != "utils" else {})),
                   {"m": m, self.spread: spread}, key=key)

    def statistics_draws(self, submission):
        """Two calls on (N, columns) inputs, reseeded differently before each: the two draws."""
        m = np.broadcast_to(self.means, (N, len(self.means))).copy()
        spread = np.broadcast_to(self.spread_of(self.variances), (N, len(self.means))).copy()
        reply = self.call(submission, "stats", m, spread, repeat=2, seeds=[11, 12])
        first = output(reply, "out0", self.called, shape=m.shape)
        second = output(reply, "out1", self.called, shape=m.shape)
        return first, second


def _call(submission, key, m, v, **params):
    return SAMPLER.call(submission, key, m, v, **params)


def _statistics_draws(submission):
    return SAMPLER.statistics_draws(submission)


def _parameter_problems(draws, sampler=None):
    """-> ({column: sentence} of means or variances beyond Z_LIMIT, observed variances)."""
    sampler = sampler or SAMPLER
    means, variances = sampler.means, sampler.variances
    mean_z = stats.mean_z(draws, means, variances)
    var_z = stats.variance_z(draws, variances)
    observed_var = draws.var(axis=0, ddof=1)
    problems = {}
    for j, (m, v) in enumerate(zip(means, variances)):
        said = []
        if abs(mean_z[j]) > stats.Z_LIMIT:
            said.append(f"sample mean {draws[:, j].mean():.6g}, expected {m:g}")
        if abs(var_z[j]) > stats.Z_LIMIT:
            said.append(f"sample variance {observed_var[j]:.6g}, expected {v:g}")
        if said:
            problems[j] = f"with {sampler.column(j)}: " + " and ".join(said)
    return problems, observed_var


def noise_hint(sampler, draws, observed_var):
    """The likely mistake behind wrong means or variances that does not depend on how the spread is
    given (no noise, shared noise, m ignored), else ""."""
    moved = sampler.means != 0
    if np.allclose(observed_var, 0, atol=1e-12) and not np.allclose(draws, sampler.means):
        return (" The samples do not vary down a column, though they differ from m: every row got the same noise. "
                "Draw a separate standard normal for every element, e.g. torch.randn_like(m).")
    if np.allclose(observed_var, 0, atol=1e-12):
        return f" The samples do not vary: add noise (z = m + {sampler.scale} * eps, eps ~ N(0, 1))."
    if np.allclose(draws.mean(axis=0)[moved], 0, atol=0.1) and np.allclose(observed_var, 1, rtol=0.1):
        return (f" The samples ignore m and {sampler.spread} (they look like the noise itself): return "
                f"z = m + {sampler.scale} * eps.")
    if np.allclose(draws.mean(axis=0)[moved], 0, atol=0.1):
        return " The sample mean does not follow m: add m to the scaled noise."
    return ""


def _parameter_hint(sampler, draws, observed_var):
    """The likely mistake behind sample_gaussian's wrong means or variances, from the values observed."""
    variances = sampler.variances
    said = noise_hint(sampler, draws, observed_var)
    if said:
        return said
    if np.allclose(observed_var, variances ** 2, rtol=0.1):
        return " The variance comes out as v^2: v is a variance, so scale the noise by sqrt(v), not by v."
    if np.allclose(observed_var, 1, rtol=0.1):
        return " The variance does not depend on v: multiply the noise by sqrt(v)."
    if np.allclose(observed_var, np.sqrt(variances), rtol=0.1):
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


def _no_noise_message(draws, sampler=None):
    """A sentence when some column of the draws does not vary (so there is no noise whose
    independence could be judged), else None."""
    sampler = sampler or SAMPLER
    constant = np.all(draws == draws[0], axis=0)       # exact: a computed sd of equal values need not be 0
    if not np.any(constant):
        return None
    if np.allclose(draws, sampler.means):
        return ("The sample equals m: no noise was added, so there is no noise whose independence could be "
                f"checked. Add noise: z = m + {sampler.scale} * eps with eps ~ N(0, 1).")
    if np.all(constant):
        return ("Every row of the sample is the same (m and v were the same in every row): the noise was drawn once "
                "and shared by all rows, e.g. torch.randn(dim). Draw a separate standard normal for every element, "
                "e.g. torch.randn_like(m).")
    still = ", ".join(sampler.column(j) for j in np.flatnonzero(constant)[:3])
    return (f"Some columns of the sample do not vary at all ({still}): every element needs its own noise, "
            "e.g. torch.randn_like(m).")


SAMPLER = Sampler(FAMILY, "utils", "v", lambda variances: variances, MEANS, VARIANCES, "N(m, v)", "sqrt(v)",
                  _parameter_hint)


class SampleGaussianChecks(CheckCase):

    @check(FAMILY, "shape_dtype_device")
    def test_shape_dtype_device(self):
        """sample_gaussian: output shape, dtype and device follow m and v (with broadcasting)"""
        # m = 0, v = 1 in the statistics' first column: z is the noise itself, in float64
        judge_shape_dtype(self, SAMPLER, lambda: _statistics_draws(self.submission)[0][:, 0])
        # The device a result lives on never crosses the wire (arrays arrive in host memory), so it
        # cannot be verified here: what is graded is that a call on CUDA inputs succeeds, which fails
        # when the noise is made on the CPU (adding a CPU tensor to a CUDA one raises).
        import torch
        if torch.cuda.is_available():
            _call(self.submission, "device cuda", *SHAPE_CASES["float32 (4, 3)"][:2], device="cuda")

    @check(FAMILY, "mean_and_variance")
    def test_mean_and_variance(self):
        """sample_gaussian: the draws follow N(m, v): mean, variance and normal shape across scales"""
        judge_distribution(self, SAMPLER)

    @check(FAMILY, "independent_noise")
    def test_independent_noise(self):
        """sample_gaussian: noise is independent across elements and across calls; no reseeding"""
        judge_independence(self, SAMPLER)

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
        changed = [name for name, array in sent.items()      # after the call, and after the backward pass
                   if not all(np.array_equal(reply.arrays.get(f"{when}_{name}"), array)
                              for when in ("after", "after_backward"))]
        self.assertFalse(changed, f"The function changed its input(s) {', '.join(changed)} in place "
                                  "(e.g. v.sqrt_() or m.add_()): use out-of-place operations.")


def judge_distribution(case, sampler):
    """Fail `case` unless the sampler's draws follow N(m, variance) in every column: mean and variance
    (z-scores), then the shape of the distribution (the DKW bound of stats.ks_limit)."""
    draws, _ = sampler.statistics_draws(case.submission)
    problems, observed_var = _parameter_problems(draws, sampler)
    if problems:
        case.fail(f"{N} draws per (m, {sampler.spread}) pair do not follow {sampler.law} (each deviation is beyond "
                  f"{stats.Z_LIMIT:g} standard errors): " + "; ".join(list(problems.values())[:4]) + "."
                  + sampler.parameter_hint(sampler, draws, observed_var))
    # Right mean and variance; now the shape. Standardized by the true m and v, a correct
    # sampler's draws are exactly N(0, 1), so the distance-to-Phi bound of stats.ks_limit holds.
    eps = ((draws - sampler.means) / np.sqrt(sampler.variances)).ravel()
    distance, at = stats.ks_distance(eps)
    limit = stats.ks_limit(eps.size)
    if distance > limit:
        case.fail(f"The draws have the right mean and variance but are not normally distributed: "
                  f"standardized as (z - m) / {sampler.scale}, their distribution function is {distance:.4f} away "
                  f"from the standard normal's at {at:.3g} (at most {limit:.4f} expected from {eps.size} normal "
                  f"draws; skewness {stats.skewness(eps):.2f}, normal 0)." + _shape_hint(stats.excess_kurtosis(eps)))


def judge_independence(case, sampler, pairs=None):
    """Fail `case` unless the noise is independent across elements (the column `pairs`, default every
    pair), rows and calls, with no reseeding, also when the spread argument has shape (1, dim)."""
    first, second = sampler.statistics_draws(case.submission)
    no_noise = _no_noise_message(first, sampler)
    if no_noise:
        case.fail(no_noise)
    if np.array_equal(first, second):
        case.fail("Two calls, with the global seed set differently before each, returned identical samples: "
                  "the function must not set a seed or reuse a fixed noise tensor.")
    # Each column standardized by its own mean and sd: a wrong mean or variance (the distribution check)
    # changes nothing here.
    eps1, eps2 = stats.standardized(first), stats.standardized(second)
    columns = len(sampler.means)
    for i in range(columns):
        for j in range(i + 1, columns):
            if pairs is not None and (i, j) not in pairs:
                continue
            z, r = stats.correlation_z(eps1[:, i], eps1[:, j])
            if abs(z) > stats.Z_LIMIT:
                case.fail(f"The noise of columns {i} and {j} is correlated (r = {r:.3f}, expected about 0): "
                          "draw a separate standard normal for every element, e.g. torch.randn_like(m).")
        z, r = stats.correlation_z(eps1[:, i], eps2[:, i])
        if abs(z) > stats.Z_LIMIT:
            case.fail(f"Two successive calls drew correlated noise (r = {r:.3f}): draw fresh noise every call.")
    z, r = stats.correlation_z(eps1[:-1].ravel(), eps1[1:].ravel())
    if abs(z) > stats.Z_LIMIT:
        case.fail(f"The noise of neighbouring rows is correlated (r = {r:.3f}): draw it per element, not per row.")
    # The spread of shape (1, dim) broadcast against m of shape (N, dim): every row needs its own noise, so the
    # spread of each column must be what the same function gives with a spread of shape (N, dim).
    spread = sampler.spread
    m = np.broadcast_to(sampler.means, (N, columns)).copy()
    one_row = sampler.spread_of(sampler.variances)[None, :].copy()
    reply = sampler.call(case.submission, f"broadcast {spread}", m, one_row)
    draws = output(reply, "out0", f"{sampler.called} with {spread} of shape (1, dim)", shape=m.shape)
    ratio_z = stats.variance_ratio_z(draws, first)
    if np.any(np.abs(ratio_z) > stats.Z_LIMIT):
        j = int(np.argmax(np.abs(ratio_z)))
        case.fail(f"With m of shape (N, dim) and {spread} of shape (1, dim), the rows do not get independent noise "
                  f"(column {j}: sample variance {draws[:, j].var(ddof=1):.6g}, against "
                  f"{first[:, j].var(ddof=1):.6g} when {spread} has shape (N, dim); torch.randn_like({spread}) draws "
                  "one row and broadcasts it): draw the noise with the broadcast shape, e.g. "
                  f"torch.randn_like(m + {spread}) or torch.broadcast_shapes(m.shape, {spread}.shape).")


def judge_shape_dtype(case, sampler, noise_of):
    """Fail `case` unless the output's shape and dtype follow m and the spread (with broadcasting), and
    the noise of float64 inputs (noise_of(): float64 draws of N(0, 1) the sampler made) is float64."""
    spread = sampler.spread
    for name, (m, v, shape, dtype) in shape_cases(spread).items():
        got = decoded(sampler.call(case.submission, f"shape {name}", m, v), "out0", f"{sampler.function} for {name}")
        case.assertEqual(tuple(got.shape), shape,
                         f"For {name}: expected shape {shape}, got {tuple(got.shape)}. "
                         f"Draw the noise with the broadcast shape of m and {spread} (e.g. torch.randn_like on "
                         f"m + {spread}... or torch.broadcast_shapes).")
        case.assertEqual(str(got.dtype), dtype,
                         f"For {name}: expected dtype {dtype}, got {got.dtype}. "
                         "Draw the noise in the inputs' dtype (torch.randn_like does).")
    noise = noise_of()
    if np.array_equal(noise, noise.astype(np.float32).astype(np.float64)) and np.any(noise != 0):
        case.fail("With float64 inputs the noise was drawn in float32 (every draw is a float32 value): create "
                  "it in the inputs' dtype and device, e.g. torch.randn_like(m) or "
                  "torch.randn(shape, dtype=m.dtype, device=m.device).")
