"""Checks of the log-variance VAE's helpers (problem `logvar`, logvar_utils.py): the reparameterisation
sample_gaussian_logvar(m, s) and kl_normal_logvar(qm, qs, pm, ps), where s = log(sigma^2).

The statistics and the closed-form comparison are those of the CS236 VAE's checks (sampling.py, kl.py),
run with s = log v:
  9.1 shape and dtype (broadcasting; float64 noise for float64 inputs)   9.2 the draws follow N(m, exp(s))
  9.3 independent noise (adjacent columns, calls, rows, s of shape (1, dim))
  9.4 pathwise gradient against float64 autograd of z = m + exp(s / 2) eps at the implied eps
  9.5 float32 at |s| where exp(s) overflows or underflows and exp(s / 2) does not
  10.1 closed form (float64, a (1,) prior, float32)   10.2 q = p, a single row, variances from 1e-8 to 1e8
  10.3 >= 0 and = 0 iff q = p (hypothesis)   10.4 gradients in all four arguments against float64 autograd
  10.5 float32 at |s| where exp(qs) / exp(ps) or log(exp(s)) overflow or underflow and exp(qs - ps) does not
9.5 and 10.5 judge only a function that is right at ordinary s (9.2's moments, 10.1's values): a fault
there is that check's, not reported again as a large-|s| fault.

Where float32 breaks (IEEE binary32; FLT_MAX = 3.4028e38, smallest normal 2^-126 = 1.18e-38, smallest
subnormal 2^-149 = 1.4e-45): exp(s) is inf for s > ln(FLT_MAX) = 88.72 and rounds to 0 for
s < ln(2^-150) = -103.97; exp(s / 2) is a normal number for -174.7 < s < 177.4. So at s = 100 and 150
sqrt(exp(s)) is inf and exp(s / 2) finite; at s = -120 and -150 sqrt(exp(s)) is 0 and exp(s / 2) normal.
"""
import math

import numpy as np
import torch
from hypothesis import strategies as st

from .. import oracle
from . import kl as kl_checks
from . import sampling, stats
from .base import CheckCase, check, decoded, describe, output
from .submission import SubmissionFault

SAMPLE = "logvar/sample_gaussian_logvar"
KL = "logvar/kl_normal_logvar"
MODULE = "logvar_utils"

FLOAT32_EXP_OVERFLOW = math.log(np.finfo(np.float32).max)                   # 88.72
FLOAT32_EXP_UNDERFLOW = math.log(2.0 ** -150)                              # -103.97: exp rounds to 0 below
FLOAT32_NORMAL_LOW = math.log(np.finfo(np.float32).tiny)                     # -87.34: exp(s) subnormal below

# The statistics' columns: the sampling checks' means, log-variances over the same scales (none 0, so
# that sigma = s is never a column without noise).
LOG_VARIANCES = np.array([0.3, math.log(1e-4), math.log(1e4), math.log(9.0), math.log(0.25), math.log(4.0),
                          math.log(2.0), math.log(0.01)])
# 9.5: float32 log-variances beyond both ends of exp's range, inside exp(s / 2)'s (m = 0 there: at
# s = -150 a draw is about 3e-33, which any non-zero m would absorb in float32).
EXTREME_S = np.array([-150.0, -120.0, 100.0, 150.0], np.float32)
assert all(s < FLOAT32_EXP_UNDERFLOW or s > FLOAT32_EXP_OVERFLOW for s in EXTREME_S)
assert all(2 * FLOAT32_NORMAL_LOW < s < 2 * FLOAT32_EXP_OVERFLOW - 2 * math.log(1e3) for s in EXTREME_S)


def _moments_hint(sampler, draws, observed_var):
    """The likely mistake behind wrong moments of sample_gaussian_logvar, from the values observed."""
    said = sampling.noise_hint(sampler, draws, observed_var)
    if said:
        return said
    s = sampler.spread_of(sampler.variances)
    if np.allclose(observed_var, np.exp(2 * s), rtol=0.1):
        return (" The variance comes out as exp(2 s): the noise was scaled by exp(s); s is log(sigma^2), so the "
                "standard deviation is exp(s / 2).")
    if np.allclose(observed_var, s ** 2, rtol=0.1):
        return " The variance comes out as s^2: s is a log-variance, not a standard deviation: scale by exp(s / 2)."
    if np.allclose(observed_var, np.exp(s / 2), rtol=0.1):
        return " The variance comes out as exp(s / 2): scale the noise by exp(s / 2), not by exp(s / 4)."
    if np.allclose(observed_var, 1, rtol=0.1):
        return " The variance does not depend on s: multiply the noise by exp(s / 2)."
    return ""


SAMPLER = sampling.Sampler(SAMPLE, MODULE, "s", np.log, sampling.MEANS, np.exp(LOG_VARIANCES), "N(m, exp(s))",
                           "exp(s / 2)", _moments_hint)
ADJACENT = {(j, j + 1) for j in range(len(LOG_VARIANCES) - 1)}


def _sample_of(submission, key, m, s, **params):
    return SAMPLER.call(submission, key, m, s, **params)


def _gradients(reply, names, shape, what):
    """{name: d/dname} the child returned, or an AssertionError naming what did not come back."""
    if not any(f"grad_{name}" in reply.arrays for name in names):
        raise AssertionError(f"The result carries no gradient: backpropagating through it reached none of "
                             f"{', '.join(names)}. {what}")
    for name in names:
        if f"grad_{name}" not in reply.arrays:
            raise AssertionError(f"No gradient reaches {name}: compute the result from {name} with torch operations "
                                 "(no .detach(), .item(), numpy or torch.no_grad()).")
    return {name: output(reply, f"grad_{name}", f"d/d{name}", shape=shape) for name in names}


def _owned_elsewhere(right_at_ordinary_s):
    """Whether a large-|s| fault belongs to the check of ordinary s (9.2, 10.1): right_at_ordinary_s()
    is False there, or fails as a check does (wrong shape, NaN). A sandbox that stopped is no such fault."""
    try:
        return not right_at_ordinary_s()
    except SubmissionFault:
        raise
    except AssertionError:
        return True


class SampleGaussianLogvarChecks(CheckCase):

    @check(SAMPLE, "shape_dtype")
    def test_shape_dtype(self):
        """logvar/sample_gaussian_logvar: output shape and dtype follow m and s (with broadcasting)"""
        def noise():            # m = 0, s = 0 in float64: z is the noise itself
            zeros = np.zeros((2000, 4))
            return output(_sample_of(self.submission, "float64 noise", zeros, zeros.copy()), "out0",
                          SAMPLER.called, shape=zeros.shape).ravel()
        sampling.judge_shape_dtype(self, SAMPLER, noise)

    @check(SAMPLE, "mean_and_variance")
    def test_mean_and_variance(self):
        """logvar/sample_gaussian_logvar: the draws follow N(m, exp(s)): mean, variance and normal shape"""
        sampling.judge_distribution(self, SAMPLER)

    @check(SAMPLE, "independent_noise")
    def test_independent_noise(self):
        """logvar/sample_gaussian_logvar: noise is independent across elements and calls; no reseeding"""
        sampling.judge_independence(self, SAMPLER, pairs=ADJACENT)

    @check(SAMPLE, "pathwise_gradient")
    def test_pathwise_gradient(self):
        """logvar/sample_gaussian_logvar: gradients flow through the sample (dz/dm = 1, dz/ds = exp(s/2) eps / 2)"""
        rng = np.random.default_rng(15)
        m, s = rng.normal(size=(50, 6)), rng.uniform(-4.0, 4.0, size=(50, 6))
        reply = _sample_of(self.submission, "gradient", m, s, grad_wrt=["m", "s"])
        z = output(reply, "out0", SAMPLER.called, shape=m.shape)
        grads = _gradients(reply, ("m", "s"), m.shape, "Do not detach the sample or build it with "
                           "torch.normal(m, std) or .sample(); write z = m + exp(s / 2) * eps, or use .rsample().")
        # The expected gradients: float64 autograd of z = m + exp(s / 2) eps at the eps this draw implies.
        m_t, s_t = torch.tensor(m, requires_grad=True), torch.tensor(s, requires_grad=True)
        eps = torch.from_numpy((z - m) / np.exp(s / 2))
        oracle.pathwise_sample_logvar(m_t, s_t, eps).sum().backward()
        if np.allclose(grads["m"], 0) and np.allclose(grads["s"], 0):
            self.fail("No gradient flows through the sample (dz/dm and dz/ds are 0): torch.normal(m, std) and "
                      "sampling from torch.distributions with .sample() are not differentiable; write "
                      "z = m + exp(s / 2) * eps with eps ~ N(0, 1), or use .rsample().")
        expected_m, expected_s = m_t.grad.numpy(), s_t.grad.numpy()
        self.assertTrue(np.allclose(grads["m"], expected_m, rtol=1e-6, atol=1e-9),
                        f"dz/dm should be 1 everywhere, got {describe(grads['m'])}.")
        self.assertTrue(np.allclose(grads["s"], expected_s, rtol=1e-5, atol=1e-8),
                        f"dz/ds should be exp(s / 2) eps / 2 = (z - m) / 2 = {describe(expected_s)}, got "
                        f"{describe(grads['s'])}. Is the noise scaled by exp(s / 2), and is s not detached?")

    @check(SAMPLE, "large_log_variance")
    def test_large_log_variance(self):
        """logvar/sample_gaussian_logvar: float32 draws at s = -150, -120, 100, 150, where exp(s) is 0 or inf"""
        m = np.zeros((sampling.N, len(EXTREME_S)), np.float32)
        s = np.broadcast_to(EXTREME_S, m.shape).copy()
        got = decoded(_sample_of(self.submission, "extreme s", m, s), "out0", f"{SAMPLER.called} at large |s|")
        if got.shape != m.shape or got.dtype.kind != "f":
            if _owned_elsewhere(lambda: SAMPLER.statistics_draws(self.submission)):
                return
            self.fail(f"At large |s|: expected a float tensor of shape {m.shape}, got {got.dtype} of shape "
                      f"{got.shape}.")
        draws = got.astype(np.float64)
        sigma = np.exp(EXTREME_S.astype(np.float64) / 2)
        eps = draws / sigma                       # N(0, 1) for a correct sampler, to float32's precision
        overflow, underflow = [], []
        for j, value in enumerate(EXTREME_S):
            column = draws[:, j]
            if not np.all(np.isfinite(column)):
                overflow.append(f"at s = {value:g}, {int(np.sum(~np.isfinite(column)))} of {len(column)} draws are "
                                f"inf or NaN: exp({value:g}) overflows float32 (its largest number is "
                                f"exp({FLOAT32_EXP_OVERFLOW:.2f})), so sqrt(exp(s)) is inf, while exp(s / 2) = "
                                f"{sigma[j]:.3g} is an ordinary float32")
            elif np.all(column == 0):
                underflow.append(f"at s = {value:g} (m = 0) every draw is 0: exp({value:g}) underflows to 0 in "
                                 f"float32 (below s = {FLOAT32_EXP_UNDERFLOW:.2f}), so sqrt(exp(s)) = 0, while "
                                 f"exp(s / 2) = {sigma[j]:.3g} is an ordinary float32")
        bad = overflow[:1] + underflow[:1]           # one of each kind
        if not bad:
            mean_z, var_z = stats.mean_z(eps, 0.0, 1.0), stats.variance_z(eps, 1.0)
            bad = [f"at s = {value:g}, the draws divided by exp(s / 2) = {sigma[j]:.3g} have mean "
                   f"{eps[:, j].mean():.4g} and variance {eps[:, j].var(ddof=1):.4g} (expected 0 and 1, within "
                   f"{stats.Z_LIMIT:g} standard errors)" for j, value in enumerate(EXTREME_S)
                   if abs(mean_z[j]) > stats.Z_LIMIT or abs(var_z[j]) > stats.Z_LIMIT]
        if not bad:
            return
        if _owned_elsewhere(lambda: not sampling._parameter_problems(SAMPLER.statistics_draws(self.submission)[0],
                                                                     SAMPLER)[0]):
            return                 # wrong moments at ordinary s already: check 9.2's fault, not a float32 one
        self.fail("In float32, sample_gaussian_logvar breaks at large |s| though it is right at ordinary s: "
                  + "; ".join(bad[:2]) + ". Compute the standard deviation as exp(s / 2) (or exp(0.5 * s)), "
                  "never as sqrt(exp(s)) or exp(s) ** 0.5.")


# ---------------------------------------------------------------- kl_normal_logvar

def closed_form(qm, qs, pm, ps):
    """The KL in float64 from log-variances: 1/2 sum_j [ps - qs + exp(qs - ps) + (qm - pm)^2 exp(-ps) - 1]."""
    qm, qs, pm, ps = (np.asarray(a, np.float64) for a in (qm, qs, pm, ps))
    return 0.5 * (ps - qs + np.exp(qs - ps) + (qm - pm) ** 2 * np.exp(-ps) - 1).sum(-1)


def _term_sizes(qm, qs, pm, ps):
    """Per row, the sum of the closed form's terms' magnitudes: what float32 rounding is relative to."""
    qm, qs, pm, ps = (np.asarray(a, np.float64) for a in (qm, qs, pm, ps))
    return 0.5 * (np.abs(ps - qs) + np.exp(qs - ps) + (qm - pm) ** 2 * np.exp(-ps) + 1).sum(-1)


def _diagnose(got, qm, qs, pm, ps):
    """Name the likely mistake from the value returned."""
    with np.errstate(all="ignore"):
        element = 0.5 * (ps - qs + np.exp(qs - ps) + (qm - pm) ** 2 * np.exp(-ps) - 1)
        candidates = {
            "KL(p || q) instead of KL(q || p) (reversed arguments)": closed_form(pm, ps, qm, qs),
            "the factor 1/2 is missing": 2 * closed_form(qm, qs, pm, ps),
            "the sign is flipped (-KL)": -closed_form(qm, qs, pm, ps),
            "s was read as log(sigma) instead of log(sigma^2)": closed_form(qm, 2 * qs, pm, 2 * ps),
            "a mean over the last dimension instead of a sum": element.mean(-1),
            "the '- 1' term is missing": closed_form(qm, qs, pm, ps) + 0.5 * np.shape(qm)[-1],
            "the log-variance difference has the wrong sign (qs - ps instead of ps - qs)":
                closed_form(qm, qs, pm, ps) + (np.broadcast_to(qs - ps, element.shape)).sum(-1),
            "the mean term is divided by the log-variance ps instead of the variance exp(ps)":
                (element - 0.5 * (qm - pm) ** 2 * np.exp(-ps) + 0.5 * (qm - pm) ** 2 / ps).sum(-1),
        }
    return kl_checks.named_mistake(got, candidates, (qm, qs, pm, ps))


KL_SPEC = kl_checks.Kl(KL, MODULE, ("qm", "qs", "pm", "ps"), closed_form, _diagnose)

# 10.5: float32 rows (4 dimensions each) where exp(qs) / exp(ps) or log(exp(s)) leave float32's range and the
# stable form does not: every term of 1/2 [ps - qs + exp(qs - ps) + (qm - pm)^2 exp(-ps) - 1] is finite there
# (ps > -87.3 keeps exp(-ps) finite; (qm - pm)^2 exp(-ps) is 0 or tiny), so any honest float32 formula is accurate.
EXTREME_ROWS = {                          # name: (qs, ps, qm - pm)
    "qs = ps = 100": (100.0, 100.0, 1.0),
    "qs = 95, ps = 90": (95.0, 90.0, 1.0),
    "qs = 90, ps = 80": (90.0, 80.0, 0.5),
    "qs = 60, ps = 100": (60.0, 100.0, 2.0),
    "qs = -120, ps = -80 (qm = pm)": (-120.0, -80.0, 0.0),
}
# An honest float32 evaluation makes about 10 roundings of relative size 2^-24 (exp and log within 2 ulp)
# per element and 4 in the sum, each relative to the terms it combines: its error is below
# 30 * 2^-24 = 1.8e-6 of the row's term sizes. Allowed: 1e-4 of them (55 times that).
FLOAT32_TERM_TOLERANCE = 1e-4


def _extreme_inputs():
    rows = list(EXTREME_ROWS.values())
    qs = np.array([[q] * 4 for q, _, _ in rows], np.float32)
    ps = np.array([[p] * 4 for _, p, _ in rows], np.float32)
    pm = np.array([[0.5, -1.0, 2.0, 0.0]] * len(rows), np.float32)
    qm = pm + np.array([[d] * 4 for _, _, d in rows], np.float32)
    return qm, qs, pm, ps


class KlNormalLogvarChecks(CheckCase):

    def assert_kl(self, key, qm, qs, pm, ps, rtol=1e-6, atol=1e-9):
        kl_checks.judge_kl(self, KL_SPEC, key, qm, qs, pm, ps, rtol=rtol, atol=atol)

    def _random(self):
        rng = np.random.default_rng(17)
        qm, pm = rng.normal(0, 2, (64, 10)), rng.normal(0, 2, (64, 10))
        qs, ps = rng.normal(0, 1.5, (64, 10)), rng.normal(0, 1.5, (64, 10))
        return qm, qs, pm, ps

    @check(KL, "closed_form")
    def test_closed_form(self):
        """logvar/kl_normal_logvar: equals the closed form, summed over the last dimension, for random inputs"""
        qm, qs, pm, ps = self._random()
        self._finite_or_hint(qm, qs, pm, ps)
        self.assert_kl("random q and p of shape (64, 10)", qm, qs, pm, ps)
        self.assert_kl("a standard-normal prior of shape (1,) (pm = 0, ps = 0)", qm, qs, np.zeros(1), np.zeros(1))
        self.assert_kl("float32 inputs", *(a.astype(np.float32) for a in (qm, qs, pm, ps)), rtol=1e-4, atol=1e-4)

    def _finite_or_hint(self, qm, qs, pm, ps):
        """Fail with the likely cause when the value at ordinary inputs is NaN or infinite."""
        reply = KL_SPEC.call(self.submission, "random q and p of shape (64, 10)", qm, qs, pm, ps)
        got = decoded(reply, "out0", "kl_normal_logvar")
        if got.dtype.kind == "f" and not np.all(np.isfinite(got)):
            self.fail(f"kl_normal_logvar returned NaN or infinite values ({describe(got)}) for ordinary inputs (log-"
                      "variances between -6 and 6). Negative s are valid log-variances: taking log(s) or sqrt(s), "
                      "i.e. treating s as a variance, gives NaN. Use s itself as log(sigma^2) and exp(s) as sigma^2.")

    @check(KL, "edge_cases")
    def test_edge_cases(self):
        """logvar/kl_normal_logvar: equal distributions, a single row, variances from 1e-8 to 1e8"""
        rng = np.random.default_rng(18)
        qm, qs = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
        self.assert_kl("q equal to p", qm, qs, qm, qs.copy(), atol=1e-12)
        self.assert_kl("a single row", qm[:1], np.full((1, 5), 0.7), np.zeros(1), np.zeros(1))
        self.assert_kl("tiny variances (s = log 1e-8)", qm, np.full((8, 5), math.log(1e-8)), np.zeros(1), np.zeros(1))
        self.assert_kl("huge variances (qs = log 1e8, ps = log 1e7)", qm, np.full((8, 5), math.log(1e8)), qm,
                       np.full((8, 5), math.log(1e7)))

    @check(KL, "properties")
    def test_properties(self):
        """logvar/kl_normal_logvar: non-negative, and zero exactly when q = p (property-based, hypothesis)"""
        kl_checks.judge_properties(self, KL_SPEC, st.floats(-7, 7, allow_nan=False, allow_infinity=False))

    @check(KL, "gradient")
    def test_gradient(self):
        """logvar/kl_normal_logvar: differentiable, with the gradients of the closed form in qm, qs, pm and ps"""
        rng = np.random.default_rng(19)
        arrays = [rng.normal(size=(16, 6)), rng.uniform(-2, 2, (16, 6)), rng.normal(size=(16, 6)),
                  rng.uniform(-2, 2, (16, 6))]
        names = KL_SPEC.args
        reply = KL_SPEC.call(self.submission, "gradient", *arrays, grad_wrt=list(names))
        grads = _gradients(reply, names, arrays[0].shape, "Compute it with torch operations on the inputs.")
        # The expected gradients: float64 autograd of the oracle's KL (torch.distributions) at the same point.
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        oracle.kl_normal_logvar(*tensors).sum().backward()
        for name, tensor in zip(names, tensors):
            expected = tensor.grad.numpy()
            self.assertTrue(np.allclose(grads[name], expected, rtol=1e-5, atol=1e-8),
                            f"dKL/d{name} should be {describe(expected)} (the closed form's: dKL/dqm = (qm - pm) "
                            f"exp(-ps), dKL/dqs = (exp(qs - ps) - 1) / 2), got {describe(grads[name])}.")

    @check(KL, "large_log_variance")
    def test_large_log_variance(self):
        """logvar/kl_normal_logvar: float32 at |qs|, |ps| up to 120, where exp(s) alone overflows or underflows"""
        qm, qs, pm, ps = _extreme_inputs()
        reply = KL_SPEC.call(self.submission, "extreme s", qm, qs, pm, ps)
        got = decoded(reply, "out0", "kl_normal_logvar at large |s|")
        expected = closed_form(qm, qs, pm, ps)
        ordinary = self._random()

        def right_at_ordinary_s():
            value = output(KL_SPEC.call(self.submission, "random q and p of shape (64, 10)", *ordinary), "out0",
                           "kl_normal_logvar", shape=(len(ordinary[0]),))
            return np.allclose(value, closed_form(*ordinary), rtol=1e-6, atol=1e-9)

        if got.shape != expected.shape or got.dtype.kind != "f":
            if _owned_elsewhere(right_at_ordinary_s):
                return
            self.fail(f"At large |s|: expected a float tensor of shape {expected.shape}, got {got.dtype} of shape "
                      f"{got.shape}.")
        got = got.astype(np.float64)
        tolerance = FLOAT32_TERM_TOLERANCE * _term_sizes(qm, qs, pm, ps)
        with np.errstate(invalid="ignore"):
            wrong = ~(np.abs(got - expected) <= tolerance)
        if not np.any(wrong):
            return
        if _owned_elsewhere(right_at_ordinary_s):
            return                 # wrong at ordinary s already: check 10.1's fault, not a float32 one
        said = [f"{name}: expected {expected[i]:.6g}, got {got[i]:.6g}"
                for i, name in enumerate(EXTREME_ROWS) if wrong[i]]
        self.fail("In float32, kl_normal_logvar breaks at large |s| though it is right at ordinary s ("
                  + "; ".join(said) + f"). exp(s) is inf in float32 for s > {FLOAT32_EXP_OVERFLOW:.2f} and 0 for s < "
                  f"{FLOAT32_EXP_UNDERFLOW:.2f}, so exp(qs) / exp(ps) gives inf / inf = NaN and log(exp(s)) gives inf "
                  "or -inf, where the KL is an ordinary number. Write the variance ratio as exp(qs - ps), the log of "
                  "the ratio as ps - qs, and the mean term as (qm - pm)^2 * exp(-ps).")
