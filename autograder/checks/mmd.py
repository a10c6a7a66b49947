"""Checks of the MMD-VAE (problem `mmd`): the module function mmd_vae.mmd and MMDVAE.loss.

mmd(x, y, biased=True) is called in its sandbox on inputs this side chose and compared with the
oracle's float64 estimator (oracle.mmd, kernel exp(-|a - b|^2 / dim), h^2 = dim / 2):
  13.1 values of both forms on fixed float32 inputs; tolerance from float32 rounding (below)
  13.2 the kernel's bandwidth, read off pairs of repeated points: x = [a, a], y = [b, b] gives
       2 - 2 k(a, b) whatever the estimator does with the diagonals, so k(a, b), hence h, is observed
  13.3 symmetric: mmd(x, y) = mmd(y, x), both forms, n != m
  13.4 the biased form is zero for identical samples (x with itself, and with a copy)
  13.5 the unbiased form's expectation is zero when x and y come from one distribution: the mean of
       R independent values is within Z_LIMIT standard errors of 0 (a z-test; stats.py counts it as four
       shares: the estimator is skewed, its studentized mean's lower tail heavier than the normal's)
  13.6 the gradients with respect to x and y are those of the value mmd returns (central differences in
       float64 along random directions: a wrong value is 13.1's fault, not this check's)
MMDVAE.loss(x) runs with the grader's encoder and decoder (remote.TrustedModel) and mmd_vae.mmd
replaced by a stand-in answered here (remote: no double penalty: a wrong mmd costs points in 13.1-13.6
only), so every value judged is one this side decoded or answered:
  13.7 three finite scalars             13.8 mmd got the codes (the encoder's means) and as many fresh
  prior draws N(0, I) (mean and variance z-tests; a second call's draws differ), biased form
  13.9 the decoder got the codes, rec = batch mean of -log p(x|z) there
  13.10 mmd returned as the stand-in answered (not weighted), loss = rec + LAMBDA * mmd
  13.11 the gradient at the encoder's means is that of rec + LAMBDA * mmd (float64 here)

Float32 tolerance of 13.1 (derived): each squared distance |a - b|^2 = sum_d (a_d - b_d)^2 is computed
with a relative error below dim * eps (eps = 2^-24, summation), or, when expanded as |a|^2 - 2 a.b +
|b|^2, an absolute error below 4 dim eps (|a|^2 + |b|^2); divided by dim and exponentiated, a kernel
value k = exp(-s) carries an error below k * |ds| + eps <= 4 eps (|a|^2 + |b|^2) + eps; each of the
three means is an average of such values (plus dim * eps of summation), and the estimator adds them with
weights 1, 1, 2: |error| <= 4 * (4 eps max(|a|^2 + |b|^2) + (dim + 1) eps). ATOL below is 8 times that.
"""
import math

import numpy as np
import torch

from .. import config, oracle, reference
from . import remote, stats
from .base import CheckCase, ask, check, decoded

FAMILY = "mmd/mmd"
LOSS_FAMILY = "mmd/loss"
EPS32 = 2.0 ** -24
LOSS_BATCH = 400               # x 10 dimensions: 4,000 prior draws per z-test
UNBIASED_PAIRS = 1000          # 13.5: R values of the unbiased estimator
UNBIASED_N, UNBIASED_DIM = 5, 2
GRAD_RTOL = 1e-3
# 13.6: central differences of step STEP along random directions, in float64. Their error is the
# truncation STEP^2 |f'''| / 6 (the kernel's third derivatives along unit-variance directions are O(10) in sum,
# about 2e-8) plus rounding 2 eps64 |f| / STEP (2e-12): 1e-6 relative leaves a margin of 50.
GRADIENT_DIRECTIONS, STEP, SLOPE_TOLERANCE = 4, 1e-4, 1e-6


def _lam():
    return float(reference.mmd_vae.LAMBDA)


def float32_atol(x, y):
    """13.1's tolerance for float32 inputs x, y (module docstring)."""
    largest = float((x.astype(np.float64) ** 2).sum(-1).max() + (y.astype(np.float64) ** 2).sum(-1).max())
    return 8 * 4 * (4 * EPS32 * largest + (x.shape[1] + 1) * EPS32)


def expected(x, y, biased=True):
    return float(oracle.mmd(torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(y, np.float64)),
                            biased=biased))


def _call(submission, key, pairs, biased=None, grads=False):
    """mmd(x, y[, biased]) on each (x, y) of `pairs` in one request -> (values or None, reply)."""
    arrays = {}
    for i, (x, y) in enumerate(pairs):
        arrays[f"x{i}"], arrays[f"y{i}"] = x, y
    reply = ask(submission, FAMILY, "mmd", {"pairs": len(pairs), "biased": biased, "grads": grads}, arrays, key=key)
    return reply


def _value(reply, i, what):
    """out{i} as a float, or AssertionError saying why it is not one finite scalar."""
    array = decoded(reply, f"out{i}", what)
    if array.dtype.kind not in "fiu":
        raise AssertionError(f"{what}: expected a floating-point scalar tensor, got dtype {array.dtype}")
    if array.size != 1:
        raise AssertionError(f"{what}: expected a scalar (one number), got shape {tuple(array.shape)}: average the "
                             "kernel matrices over both axes.")
    value = float(array.astype(np.float64).ravel()[0])
    if not math.isfinite(value):
        raise AssertionError(f"{what}: the value is {value}.")
    return value


def _inputs(seed, n, m, dim, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return ((rng.normal(0, scale, (n, dim))).astype(np.float32),
            (rng.normal(shift, scale, (m, dim))).astype(np.float32))


def _diagnose(got, x, y, biased):
    """Name the likely mistake from the value returned for (x, y) in the form asked."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    dim, n, m = x.shape[1], len(x), len(y)

    def kernel(a, b, h2=dim / 2, sign=-1.0, squared=None):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) if squared is None else squared(a, b)
        with np.errstate(over="ignore"):
            return np.exp(sign * d / (2 * h2))

    def estimate(k, unbiased, keep_diagonal=None):
        kxx, kyy, kxy = k(x64, x64), k(y64, y64), k(x64, y64)
        if unbiased:
            xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        else:
            xx, yy = kxx.mean(), kyy.mean()
        return xx + yy - 2 * kxy.mean()

    plus = lambda a, b: (a ** 2).sum(-1)[:, None] + (b ** 2).sum(-1)[None, :] + 2 * a @ b.T  # noqa: E731
    candidates = [
        (estimate(kernel, biased), "the other form: biased=True is the V-statistic (every pair, diagonals "
                                   "included), biased=False the U-statistic (the xx and yy diagonals left out)"),
        (estimate(lambda a, b: kernel(a, b, h2=dim), not biased), "a bandwidth h^2 = dim (k = exp(-|a-b|^2 / (2 dim))): "
                                                                 "h^2 is dim / 2, k = exp(-|a-b|^2 / dim)"),
        (estimate(lambda a, b: kernel(a, b, h2=0.5), not biased), "a bandwidth h = 1/sqrt(2) (k = exp(-|a-b|^2)): "
                                                                 "divide the squared distance by dim"),
        (estimate(lambda a, b: kernel(a, b, h2=1.0), not biased), "a bandwidth h = 1 (k = exp(-|a-b|^2 / 2)): "
                                                                 "h^2 is dim / 2"),
        (estimate(lambda a, b: kernel(a, b, h2=dim * dim / 2), not biased), "the distance divided by dim^2: "
                                                                           "k = exp(-|a-b|^2 / dim)"),
        (estimate(lambda a, b: kernel(a, b, sign=1.0), not biased), "exp(+|a-b|^2 / dim): the exponent's sign is "
                                                                   "reversed"),
        (estimate(lambda a, b: kernel(a, b, squared=plus), not biased), "squared distances computed as "
                                                                       "|a|^2 + |b|^2 + 2 a.b: the cross term is "
                                                                       "subtracted"),
        (estimate(lambda a, b: kernel(a, b, squared=lambda p, q: np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1))),
                  not biased), "the distance |a - b| where its square belongs"),
    ]
    kxx, kyy, kxy = kernel(x64, x64), kernel(y64, y64), kernel(x64, y64)
    candidates += [
        (kxx.mean() + kyy.mean() - kxy.mean(), "the cross term with weight 1: it is - 2 mean k(x, y)"),
        (kxx.mean() + kyy.mean() + 2 * kxy.mean(), "the cross term added: it is subtracted, - 2 mean k(x, y)"),
        (kxx.sum() + kyy.sum() - 2 * kxy.sum(), "sums of the kernel matrices where their means belong"),
        (math.sqrt(max(estimate(kernel, not biased), 0.0)), "the MMD itself (a square root): return its square"),
    ]
    for value, mistake in candidates:
        if math.isfinite(value) and np.isclose(got, value, rtol=1e-4, atol=1e-5):
            return f" It looks like {mistake}."
    return ""


class MmdChecks(CheckCase):

    def assert_value(self, key, x, y, biased):
        reply = _call(self.submission, f"{key} biased={biased}", [(x, y)], biased=biased)
        form = "biased" if biased is None or biased else "unbiased"
        call = f"mmd(x, y{'' if biased is None else f', biased={biased}'})"
        got = _value(reply, 0, f"{call} ({key})")
        want = expected(x, y, biased is None or biased)
        atol = float32_atol(x, y)
        if abs(got - want) > atol:
            self.fail(f"{call} for {key}: expected {want:.8g} (the {form} estimator with k(a, b) = exp(-|a - b|^2 / "
                      f"dim)), got {got:.8g} (difference {got - want:.3g}, tolerance {atol:.2g})."
                      + _diagnose(got, x, y, biased is None or biased))

    @check(FAMILY, "reference_values")
    def test_reference_values(self):
        """mmd/mmd: both forms equal the float64 estimator on fixed float32 inputs"""
        x, y = _inputs(11, 40, 30, 10, shift=0.5)
        self.assert_value("x of shape (40, 10), y of shape (30, 10)", x, y, None)
        self.assert_value("x of shape (40, 10), y of shape (30, 10)", x, y, True)
        self.assert_value("x of shape (40, 10), y of shape (30, 10)", x, y, False)
        x, y = _inputs(12, 25, 25, 3, scale=1.5)
        self.assert_value("x, y of shape (25, 3)", x, y, False)

    @check(FAMILY, "bandwidth")
    def test_bandwidth(self):
        """mmd/mmd: the kernel is exp(-|a - b|^2 / dim) (h^2 = dim / 2), read off at several dims and distances"""
        rng = np.random.default_rng(13)
        pairs, shown = [], []
        for dim, distance in ((2, 1.0), (10, 2.0), (10, 4.0), (30, 5.0)):
            a = rng.normal(0, 1, dim)
            direction = rng.normal(0, 1, dim)
            b = a + distance * direction / np.linalg.norm(direction)
            pairs.append((np.stack([a, a]).astype(np.float32), np.stack([b, b]).astype(np.float32)))
            shown.append((dim, float(((pairs[-1][0][0].astype(np.float64) - pairs[-1][1][0]) ** 2).sum())))
        reply = _call(self.submission, "bandwidth", pairs, biased=True)
        for i, (dim, squared) in enumerate(shown):
            got = _value(reply, i, f"mmd(x, y, biased=True) with x = [a, a], y = [b, b] in dim {dim}")
            kernel = 1 - got / 2                  # 2 - 2 k(a, b) for repeated points, diagonals or not
            want = math.exp(-squared / dim)
            if abs(kernel - want) > 1e-4:
                bandwidth = (f"h^2 = {-squared / (2 * math.log(kernel)):.4g}" if 0 < kernel < 1 else
                             f"k(a, b) = {kernel:.4g}, which no Gaussian kernel gives")
                self.fail(f"With x = [a, a] and y = [b, b], |a - b|^2 = {squared:.4g}, dim = {dim}, the biased MMD is "
                          f"2 - 2 k(a, b) = {2 - 2 * want:.6g} for k(a, b) = exp(-|a - b|^2 / dim); got {got:.6g}, "
                          f"so your kernel gives k(a, b) = {kernel:.6g} ({bandwidth}; expected h^2 = dim / 2 = "
                          f"{dim / 2:g}). The bandwidth rule is h^2 = dim / 2, dim = x.shape[1].")

    @check(FAMILY, "symmetric")
    def test_symmetric(self):
        """mmd/mmd: mmd(x, y) = mmd(y, x) in both forms (n != m)"""
        x, y = _inputs(14, 20, 35, 10, shift=0.3)
        for biased in (True, False):
            reply = _call(self.submission, f"symmetric {biased}", [(x, y), (y, x)], biased=biased)
            forward = _value(reply, 0, f"mmd(x, y, biased={biased})")
            backward = _value(reply, 1, f"mmd(y, x, biased={biased})")
            if abs(forward - backward) > float32_atol(x, y):
                self.fail(f"mmd(x, y, biased={biased}) = {forward:.8g} but mmd(y, x, biased={biased}) = "
                          f"{backward:.8g} for x of 20 rows and y of 35: the MMD is symmetric. Is a mean taken over "
                          "the wrong axis, or are n and m swapped in the unbiased form's normalisers?")

    @check(FAMILY, "biased_zero_on_identical")
    def test_biased_zero_on_identical(self):
        """mmd/mmd: the biased form is zero for identical samples"""
        x, _ = _inputs(15, 30, 1, 10, scale=2.0)
        reply = _call(self.submission, "identical", [(x, x), (x, x.copy()[::-1].copy())], biased=True)
        for i, what in enumerate(("mmd(x, x)", "mmd(x, x in reversed row order)")):
            got = _value(reply, i, what)
            if abs(got) > float32_atol(x, x):
                self.fail(f"{what} = {got:.6g} with biased=True; the biased estimator (V-statistic) is exactly 0 when "
                          "both samples are the same: every mean of the kernel matrix Kxx appears twice with + and "
                          "once with - 2. Keep the diagonals in the biased form, and average all three matrices the "
                          "same way.")

    @check(FAMILY, "unbiased_expectation_zero")
    def test_unbiased_expectation_zero(self):
        """mmd/mmd: the unbiased form's expectation is zero for two samples of one distribution (a z-test)"""
        rng = np.random.default_rng()
        pairs = [tuple(rng.normal(0, 1, (2, UNBIASED_N, UNBIASED_DIM)).astype(np.float32)) for _ in
                 range(UNBIASED_PAIRS)]
        reply = _call(self.submission, "unbiased", pairs, biased=False)
        values = np.array([_value(reply, i, "mmd(x, y, biased=False)") for i in range(UNBIASED_PAIRS)])
        z = float(values.mean() / (values.std(ddof=1) / math.sqrt(len(values)))) if values.std() > 0 else math.inf
        if abs(z) > stats.Z_LIMIT:
            self.fail(f"Over {UNBIASED_PAIRS} pairs of samples x, y of {UNBIASED_N} rows each, both drawn from "
                      f"N(0, I) in dim {UNBIASED_DIM}, mmd(x, y, biased=False) averages {values.mean():.4g} "
                      f"(standard error {values.std(ddof=1) / math.sqrt(len(values)):.3g}, z = {z:.1f}; "
                      f"|z| <= {stats.Z_LIMIT:g} expected): the unbiased estimator's expectation is 0. Leave out the "
                      "diagonals of Kxx and Kyy and divide their sums by n (n - 1) and m (m - 1).")

    @check(FAMILY, "gradients")
    def test_gradients(self):
        """mmd/mmd: the gradients with respect to x and y are those of the value mmd returns (float64 central differences)"""
        rng = np.random.default_rng(16)
        x, y = rng.normal(0, 1, (30, 4)), rng.normal(0.4, 1.2, (25, 4))
        directions = [(rng.normal(0, 1, x.shape), rng.normal(0, 1, y.shape)) for _ in range(GRADIENT_DIRECTIONS)]
        pairs = [(x, y)] + [(x + sign * STEP * u, y + sign * STEP * w) for u, w in directions for sign in (1, -1)]
        reply = _call(self.submission, "gradients", pairs, grads=True)
        values = [_value(reply, i, "mmd(x, y) of float64 inputs") for i in range(len(pairs))]
        for name in ("x", "y"):
            if f"grad_{name}" not in reply.arrays:
                self.fail(f"No gradient of mmd(x, y) reached {name}: compute it with torch operations (no .item(), "
                          ".detach(), numpy or torch.no_grad()).")
        gx, gy = (reply.arrays[f"grad_{name}"].astype(np.float64) for name in ("x", "y"))
        if gx.shape != x.shape or gy.shape != y.shape:
            self.fail(f"The gradients of mmd(x, y) have shapes {gx.shape} and {gy.shape}, not those of x and y.")
        for i, (u, w) in enumerate(directions):
            slope = (values[1 + 2 * i] - values[2 + 2 * i]) / (2 * STEP)
            claimed = float((gx * u).sum() + (gy * w).sum())
            if abs(slope - claimed) > SLOPE_TOLERANCE * (1 + abs(slope)):
                self.fail(f"The gradient of mmd(x, y) (float64 inputs of shapes {x.shape} and {y.shape}) does not match "
                          f"its own values: along a random direction the values change at the rate {slope:.8g} "
                          f"(central differences), the gradient says {claimed:.8g}. Is part of it detached "
                          "(.detach(), .item(), numpy) or computed in float32?")


# ---------------------------------------------------------------- MMDVAE.loss

class MmdSession(remote.Session):
    """The loss sandbox's stand-ins: the VAE's encoder and decoder, and mmd (oracle.mmd, float64)."""

    def __init__(self, model):
        super().__init__(model)
        self.shapes["mmd"] = (3, 1)

    def _evaluate(self, function, tensors, eps=None):
        if function == "mmd":
            x, y, flag = tensors
            return (oracle.mmd(x, y, biased=bool(flag.reshape(-1)[0] > 0.5)).reshape(()),)
        return super()._evaluate(function, tensors, eps)

    def _forward(self, function, arrays):
        if function == "mmd":
            x, y = arrays.get("in0"), arrays.get("in1")
            if x is None or y is None or x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
                shapes = ", ".join(str(getattr(a, "shape", None)) for a in (x, y))
                raise remote.CallbackError(f"mmd(x, y) takes two sets of rows of one dimension, (n, dim) and "
                                           f"(m, dim); got shapes {shapes}")
            if len(x) < 2 or len(y) < 2 or len(x) * len(y) > 4 * LOSS_BATCH ** 2:
                raise remote.CallbackError(f"mmd(x, y) got {len(x)} and {len(y)} rows: one code per image of the "
                                           "batch and as many prior draws")
        return super()._forward(function, arrays)


_MODEL = remote.TrustedModel(config.Z_DIM)


def _images(count, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((count, remote.IMAGE_DIM)) < rng.uniform(0.05, 0.4, (count, 1))).astype(np.float32)


_X = _images(LOSS_BATCH, 4321)


def _run_loss(submission, key, grads=False):
    session = MmdSession(_MODEL)
    reply = ask(submission, LOSS_FAMILY, "mmd_loss", {"z_dim": config.Z_DIM, "grads": grads}, {"x": _X}, key=key,
                on_callback=session)
    if getattr(reply, "session", None) is None:
        reply.session = session
    return reply


def _scalar(reply, name):
    array = reply.arrays.get(name)
    if array is None or array.dtype.kind not in "fiu":
        raise AssertionError(f"loss returned no numeric tensor as its {name}.")
    if array.size != 1:
        raise AssertionError(f"loss's {name} has shape {tuple(array.shape)}: return batch means (scalars).")
    value = float(array.astype(np.float64).ravel()[0])
    if not math.isfinite(value):
        raise AssertionError(f"loss's {name} is {value}.")
    return value


def _codes(reply):
    """The encoder's means for the batch, as this side answered (float64), or AssertionError."""
    calls = [c for c in reply.session.of("enc") if np.array_equal(c.inputs[0], _X)]
    if not calls:
        raise AssertionError("loss never passed its batch x to self.enc: the codes are the encoder's means, "
                             "z = self.encode(x).")
    return calls[0].outputs[0].astype(np.float64), calls[0]


def _mmd_call(reply):
    calls = reply.session.of("mmd")
    if len(calls) != 1:
        raise AssertionError(f"loss called mmd {len(calls)} times for one batch; call the module function mmd once, "
                             "mmd(z, z_prior), with the codes and as many prior draws (not a copy of it, not a KL).")
    return calls[0]


class MmdLossChecks(CheckCase):

    @check(LOSS_FAMILY, "three_scalars")
    def test_three_scalars(self):
        """mmd/loss: returns three finite scalar tensors (loss, mmd, rec)"""
        reply = _run_loss(self.submission, "main")
        for name in ("loss", "mmd", "rec"):
            _scalar(reply, name)

    @check(LOSS_FAMILY, "codes_and_prior")
    def test_codes_and_prior(self):
        """mmd/loss: mmd compares the codes (encoder means) with as many fresh N(0, I) prior draws, biased form"""
        reply = _run_loss(self.submission, "main")
        codes, _ = _codes(reply)
        call = _mmd_call(reply)
        first, second = (a.astype(np.float64) for a in call.inputs[:2])
        biased = bool(call.inputs[2].reshape(-1)[0] > 0.5)
        close = lambda a: a.shape == codes.shape and np.allclose(a, codes, rtol=1e-6, atol=1e-6)  # noqa: E731
        if close(first) and close(second):
            self.fail("mmd got the codes as both of its arguments: compare them with draws from the prior, "
                      "mmd(z, self.sample_z(batch)).")
        if close(first) or close(second):
            prior = second if close(first) else first
        else:
            self.fail(f"Neither argument of mmd is the batch's codes (the encoder's means m, shape {codes.shape}): got "
                      f"shapes {first.shape} and {second.shape}. The codes are z = self.encode(x) (the mean, not a "
                      "sample of q(z|x)).")
        if prior.shape != codes.shape:
            self.fail(f"The prior draws passed to mmd have shape {prior.shape}; draw as many as the batch, "
                      f"{codes.shape}: self.sample_z(x.shape[0]).")
        values = prior.ravel()[:, None]
        mean_z = float(stats.mean_z(values, 0.0, 1.0)[0])
        variance_z = float(stats.variance_z(values, 1.0)[0]) if values.std() > 0 else math.inf
        if abs(mean_z) > stats.Z_LIMIT or abs(variance_z) > stats.Z_LIMIT:
            self.fail(f"The samples compared with the codes are not N(0, I) draws: their {values.size} values have mean "
                      f"{values.mean():.4g} and variance {values.var():.4g} (z = {mean_z:.1f} and {variance_z:.1f}, "
                      f"|z| <= {stats.Z_LIMIT:g} expected). Draw them from the prior: self.sample_z(batch).")
        again = _mmd_call(_run_loss(self.submission, "again"))
        other = again.inputs[1] if close(first) else again.inputs[0]
        if np.array_equal(other, call.inputs[1] if close(first) else call.inputs[0]):
            self.fail("Two calls of loss compared the codes with the same prior draws: draw them afresh at each call "
                      "(no fixed seed, no draws kept from __init__).")
        if not biased:
            self.fail("loss called mmd(..., biased=False): the loss uses the biased estimator, mmd's default.")

    @check(LOSS_FAMILY, "rec_term")
    def test_rec_term(self):
        """mmd/loss: rec is the batch mean of -log p(x|z) (Bernoulli, summed over pixels) at the codes"""
        reply = _run_loss(self.submission, "main")
        codes, _ = _codes(reply)
        rec = _scalar(reply, "rec")
        decoded_calls = [c for c in reply.session.of("dec") if c.inputs[0].shape == codes.shape]
        if not decoded_calls:
            self.fail(f"self.dec never received a batch of codes of shape {codes.shape}: rec is -log p(x|z) at "
                      "z = self.encode(x).")
        call = decoded_calls[0]
        if not np.allclose(call.inputs[0].astype(np.float64), codes, rtol=1e-6, atol=1e-6):
            self.fail("The z that reached self.dec is not the codes (the encoder's means): decode z = self.encode(x), "
                      "the same z that mmd compares with the prior.")
        rows = oracle.reconstruction(torch.from_numpy(_X.astype(np.float64)),
                                     torch.from_numpy(call.outputs[0].astype(np.float64))).numpy()
        if np.isclose(rec, rows.mean(), rtol=1e-4, atol=1e-3):
            return
        hint = ""
        if np.isclose(rec, rows.sum(), rtol=1e-4):
            hint = " It is the sum over the batch: take the mean."
        elif np.isclose(rec, rows.mean() / remote.IMAGE_DIM, rtol=1e-4):
            hint = " It is a mean over pixels too: sum over the 784 pixels, then average over the batch."
        elif np.isclose(rec, _lam() * rows.mean(), rtol=1e-4):
            hint = f" It is {_lam():g} * rec: the weight belongs on the MMD term only."
        self.fail(f"Expected rec = {rows.mean():.6g} (batch mean of -log p(x|z) summed over pixels at the codes); "
                  f"got {rec:.6g}.{hint}")

    @check(LOSS_FAMILY, "weighted_loss")
    def test_weighted_loss(self):
        """mmd/loss: mmd is returned unweighted and loss = rec + LAMBDA * mmd"""
        reply = _run_loss(self.submission, "main")
        answered = float(_mmd_call(reply).outputs[0].astype(np.float64))
        loss, divergence, rec = (_scalar(reply, name) for name in ("loss", "mmd", "rec"))
        lam = _lam()
        if not np.isclose(divergence, answered, rtol=1e-5, atol=1e-7):
            hint = f" It is {lam:g} times that: return the MMD unweighted." if \
                np.isclose(divergence, lam * answered, rtol=1e-5) else ""
            self.fail(f"The mmd returned ({divergence:.6g}) is not the value mmd(z, z_prior) gave ({answered:.6g}).{hint}")
        if np.isclose(loss, rec + lam * divergence, rtol=1e-5, atol=1e-3):
            return
        candidates = [(rec + divergence, "rec + mmd: the weight self.lam is missing"),
                      (lam * rec + divergence, "self.lam * rec + mmd: the weight belongs on the MMD"),
                      (lam * (rec + divergence), "self.lam * (rec + mmd): the weight belongs on the MMD only"),
                      (rec - lam * divergence, "rec - self.lam * mmd: the MMD is added"),
                      (rec, "rec alone: the MMD term is missing")]
        hint = next((f" It is {what}." for value, what in candidates if np.isclose(loss, value, rtol=1e-5, atol=1e-3)), "")
        self.fail(f"Expected loss = rec + {lam:g} * mmd = {rec + lam * divergence:.6g}; got {loss:.6g}.{hint}")

    @check(LOSS_FAMILY, "gradients")
    def test_gradients(self):
        """mmd/loss: the gradient at the encoder's means is that of rec + LAMBDA * mmd"""
        reply = _run_loss(self.submission, "grads", grads=True)
        codes, enc_call = _codes(reply)
        call = _mmd_call(reply)
        decoded_calls = [c for c in reply.session.of("dec") if c.inputs[0].shape == codes.shape]
        if not decoded_calls:
            self.fail("self.dec never received the codes: rec is -log p(x|z) at z = self.encode(x).")
        prior = call.inputs[1] if np.allclose(call.inputs[0], codes, atol=1e-6) else call.inputs[0]
        m = torch.from_numpy(codes).requires_grad_(True)
        x = torch.from_numpy(_X.astype(np.float64))
        lam = _lam()
        rows = oracle.reconstruction(x, _MODEL.decode(m))
        # a rec summed over the batch is 13.9's fault: the gradient is then judged against that rec
        summed = np.isclose(_scalar(reply, "rec"), float(rows.detach().sum()), rtol=1e-4)
        loss = (rows.sum() if summed else rows.mean()) + lam * oracle.mmd(m, torch.from_numpy(prior.astype(np.float64)))
        want = torch.autograd.grad(loss, m)[0].numpy()
        arrived = np.zeros_like(codes)
        for arrival_call, grads in reply.session.arrivals("enc", "loss"):
            if arrival_call is enc_call and grads[0].shape == codes.shape:
                arrived = arrived + grads[0].astype(np.float64)
        scale = np.abs(want).max()
        if np.allclose(arrived, want, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale):
            return
        mmd_part = lam * torch.autograd.grad(oracle.mmd(m, torch.from_numpy(prior.astype(np.float64))), m)[0].numpy()
        rec_part = want - mmd_part
        if not np.any(arrived):
            hint = " No gradient reached the encoder: are the codes detached (z.detach(), torch.no_grad())?"
        elif np.allclose(arrived, rec_part, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale):
            hint = (" It is the gradient of rec alone: the MMD term reaches the encoder without gradient (detached "
                    "codes in mmd, or a value added with .item()).")
        elif np.allclose(arrived, mmd_part, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale):
            hint = " It is the gradient of the MMD term alone: rec is computed from detached codes."
        else:
            hint = " Is part of the loss detached or computed outside torch?"
        self.fail(f"The gradient of loss at the encoder's means is not that of rec + {lam:g} * mmd(z, z_prior) "
                  f"(largest difference {np.abs(arrived - want).max():.3g}, scale {scale:.3g}).{hint}")
