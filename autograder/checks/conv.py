"""Checks of the convolutional VAE (problem `conv`): log_normal_pdf and ConvDecoder (conv_vae.py).

log_normal_pdf(sample, mean, logvar) is called in its sandbox on inputs chosen here and compared with
oracle.log_normal_pdf (torch.distributions, float64):
  15.1 values on fixed float32 inputs (tolerance below); the message names the mistake it recognises
       (logvar used as the variance, as the standard deviation or as log sigma, exp(+logvar), no 1/2, no
       log(2 pi), a mean over the last dimension, the sign)
  15.2 shapes: (n, d) -> (n,), (k, n, d) -> (k, n), mean and logvar of shape (1, d) or (d,) broadcast
       against sample, each broadcast result equal to the function's own value on the expanded inputs (so a
       wrong value is 15.1's fault only); float32 in, float32 out; float64 in, float64 out
  15.3 the gradients with respect to sample, mean and logvar are those of the value it returns (float64
       central differences along random directions, as mmd's 13.6: a wrong value is 15.1's fault)
ConvDecoder(z_dim) is built in its sandbox (op conv_decoder: named parameters as plain data, the grader's
weights loaded by name, outputs and gradients as arrays) and compared with oracle.conv_decoder (float64,
torch.nn.functional, the reference's parameter names and shapes):
  15.4 the parameters' names and shapes are exactly the reference decoder's at z_dim = 2 and 10
  15.5 the output of n codes is (n, 1, 28, 28), float32, for n = 1, 3, 64 and z_dim = 2, 10
  15.6 with the grader's weights loaded, the output equals the float64 decoder's (n = 5, z_dim = 2 and 10);
       recognised mistakes named: a sigmoid or ReLU on the logits, a ReLU left out, the fc's output read as
       (7, 7, 32). An output of the right size but the wrong shape is judged reshaped (its shape is 15.5's).
  15.7 the gradients of sum(output * c) with respect to z and to every parameter equal float64 autograd of
       the function the forward computes: the reference's, or the recognised mistake 15.6 named (so a
       sigmoid on the logits costs 15.6 only).
15.6 and 15.7 need the grader's weights in the decoder: where a parameter the reference has is missing or
has another shape (15.4's fault), they fail and say that they cannot be judged, and why (parameters beyond
the reference's are 15.4's fault alone: they keep their own values).

Float32 tolerance of 15.1 and 15.2 (derived; u = 2^-24): each term t = (x - m)^2 exp(-s) + s + log(2 pi)
carries the rounding of a difference, a square, an exponential (<= 1 ulp = 2u relative), a product, two
additions and the constant, below 16 u (|q| + |s| + log(2 pi)) with q = (x - m)^2 exp(-s) (torch.distributions'
form, exp(s / 2) squared and log(exp(s / 2)), stays within it too); the sum of d terms adds gamma_d <= 1.01 d u
times the sum of their magnitudes; the factor -1/2 is exact and the margin 2 absorbs it:
    |error| <= (16 + 1.01 d) u sum_d (|q| + |s| + log(2 pi)),   the bound used (twice it where two values meet).
Float32 tolerance of 15.6 and 15.7 (derived): a float32 sum of N products is within gamma_N = N u / (1 - N u)
of the exact one relative to the sum of the products' magnitudes, whatever the order of summation; ReLU and
the sigmoid do not increase errors. The codes are drawn (rows redrawn) until every pre-activation of the float64
decoder and of each mistake the checks name (before each ReLU) lies farther from 0 than twice its error bound,
so float32 and float64 agree on which units are active, and an inactive unit carries no error. So the output's
error is bounded through M, the decoder with |weights| and |biases| at |z|, each ReLU replaced by the float64 decoder's
mask (float64), and each gamma_N that of one layer's sums: N = z_dim + 1 for fc, 32 x 2 x 2 + 1 = 129 for
deconv1 and 16 x 2 x 2 + 1 = 65 for deconv2 (an output of a 4 x 4 transposed convolution of stride 2 receives
2 x 2 taps from each input channel; terms that are exactly 0 add no rounding), first order:
    |error| <= (gamma_fc + gamma_deconv1 + gamma_deconv2) M.   A gradient goes through the
forward sums up to its layer, the backward products down to it and a sum over the batch and the positions where
the parameter is used: it is within (sum of their gamma_N) G, G the same gradient of sum(|c| * M) at |z| and the
|parameters| (first order; gradient_factors lists the sums). The checks allow twice these bounds.
"""
import functools
import math

import numpy as np
import torch

from .. import oracle, reference
from .base import CheckCase, ask, check, decoded, describe, output

PDF = "conv/log_normal_pdf"
DECODER = "conv/ConvDecoder"
MODULE = "conv_vae"
EPS32 = 2.0 ** -24
LOG_2PI = math.log(2 * math.pi)
ARGS = ("sample", "mean", "logvar")
# 15.3: central differences of step STEP in float64 along random directions; 0.25 <= s <= 1.25 (positive, so
# that a log or square root of the log-variance, 15.1's fault, still has a gradient to judge) and unit-variance
# directions keep the third derivative of the sum over the 24 elements below about 100: truncation
# STEP^2 |f'''| / 6 < 2e-7, rounding 2 eps64 |f| / STEP < 1e-10; SLOPE_TOLERANCE leaves a margin of 50.
GRADIENT_DIRECTIONS, STEP, SLOPE_TOLERANCE = 4, 1e-4, 1e-5

Z_DIMS = (2, 10)
BATCHES = (1, 3, 64)
VALUE_BATCH = 5
GRADIENT_BATCH = 4
SEED = 0
LAYERS = ("fc: nn.Linear(z_dim, 32 * 7 * 7), deconv1: nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, "
          "padding=1), deconv2: nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)")
SIDE_RULE = ("a transposed convolution with kernel k, stride s and padding p maps a side of n pixels to "
             "(n - 1) s - 2p + k: (7 - 1) 2 - 2 + 4 = 14, then (14 - 1) 2 - 2 + 4 = 28")
DECONV1_SUM, DECONV2_SUM = 32 * 4 + 1, 16 * 4 + 1     # the products one output of each sums, and its bias


def _gamma(n):
    return n * EPS32 / (1 - n * EPS32)


# ---------------------------------------------------------------- log_normal_pdf

def pdf_tolerance(sample, mean, logvar):
    """15.1's bound on |float32 value - exact value|, one per row of the broadcast inputs (docstring)."""
    x, m, s = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (sample, mean, logvar)))
    q = (x - m) ** 2 * np.exp(-s)
    return (16 + 1.01 * x.shape[-1]) * EPS32 * (np.abs(q) + np.abs(s) + LOG_2PI).sum(-1)


def expected_pdf(sample, mean, logvar):
    return oracle.log_normal_pdf(*(torch.from_numpy(np.asarray(a, np.float64)) for a in (sample, mean, logvar))).numpy()


def _pdf(submission, key, sample, mean, logvar, cotangent=None):
    params = {"module": MODULE, "function": "log_normal_pdf", "args": list(ARGS)}
    arrays = dict(zip(ARGS, (sample, mean, logvar)))
    if cotangent is not None:
        params["grad_wrt"] = list(ARGS)
        arrays["cotangent"] = cotangent
    return ask(submission, PDF, "call", params, arrays, key=key)


def _numeric(reply, name, what):
    array = decoded(reply, name, what)
    if array.dtype.kind not in "fiu":
        raise AssertionError(f"{what}: expected a floating-point tensor, got dtype {array.dtype}")
    return array


def _pdf_inputs(seed, shape, low=-3.0, high=3.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0, 2, shape)
    logvar = rng.uniform(low, high, shape)
    sample = mean + 1.5 * np.exp(logvar / 2) * rng.normal(0, 1, shape)
    return tuple(a.astype(dtype) for a in (sample, mean, logvar))


def _pdf_candidates(sample, mean, logvar):
    """(values, mistake) of the mistakes 15.1 names, float64."""
    x, m, s = (np.asarray(a, np.float64) for a in (sample, mean, logvar))
    d2 = (x - m) ** 2
    with np.errstate(all="ignore"):
        return [
            (-0.5 * (d2 / s + np.log(s) + LOG_2PI).sum(-1), "logvar used as the variance: it is log sigma^2, the "
                                                          "variance is exp(logvar)"),
            (-0.5 * (d2 / s ** 2 + np.log(s ** 2) + LOG_2PI).sum(-1), "logvar used as the standard deviation: it "
                                                                     "is log sigma^2, sigma = exp(logvar / 2)"),
            (-0.5 * (d2 * np.exp(-2 * s) + 2 * s + LOG_2PI).sum(-1), "logvar used as log sigma (the variance "
                                                                    "exp(2 logvar)): the variance is exp(logvar)"),
            (-0.5 * (d2 * np.exp(s) + s + LOG_2PI).sum(-1), "(x - mean)^2 multiplied by exp(logvar): divide by the "
                                                           "variance, i.e. multiply by exp(-logvar)"),
            (-0.5 * (d2 * np.exp(-s) + LOG_2PI).sum(-1), "the logvar term left out of the normaliser"),
            (-(d2 * np.exp(-s) + s + LOG_2PI).sum(-1), "the factor 1/2 left out"),
            (-0.5 * (d2 * np.exp(-s) + s).sum(-1), "log(2 pi) left out"),
            (-0.5 * (d2 * np.exp(-s) + s).sum(-1) - 0.5 * LOG_2PI, "log(2 pi) counted once per row instead of once "
                                                                 "per dimension"),
            (-0.5 * (d2 * np.exp(-s) + s + LOG_2PI).mean(-1), "a mean over the last dimension: sum it"),
            (0.5 * (d2 * np.exp(-s) + s + LOG_2PI).sum(-1), "the sign reversed: the log-density is -1/2 (...)"),
            (-0.5 * (d2 * np.exp(-s) - s + LOG_2PI).sum(-1), "the logvar term's sign reversed: + logvar inside "
                                                            "the -1/2 (...)"),
            (-0.5 * (np.abs(x - m) * np.exp(-s) + s + LOG_2PI).sum(-1), "|x - mean| where its square belongs"),
            (-0.5 * (d2 * np.exp(-s / 2) + s + LOG_2PI).sum(-1), "(x - mean)^2 divided by sigma, not sigma^2: "
                                                                "multiply by exp(-logvar)"),
        ]


def diagnose_pdf(got, sample, mean, logvar):
    tolerance = pdf_tolerance(sample, mean, logvar)
    for values, mistake in _pdf_candidates(sample, mean, logvar):
        if np.all(np.isfinite(values)) and values.shape == got.shape and np.all(np.abs(got - values) <= 2 * tolerance
                                                                               + 1e-4 * np.abs(values)):
            return f" It looks like {mistake}."
    return ""


class LogNormalPdfChecks(CheckCase):

    def assert_values(self, key, sample, mean, logvar):
        reply = _pdf(self.submission, key, sample, mean, logvar)
        got = _numeric(reply, "out0", f"log_normal_pdf on {key}")
        rows = sample.shape[:-1]
        if got.size != int(np.prod(rows)):
            hint = ""
            if got.shape == sample.shape:
                hint = " It returned one value per coordinate: sum over the last dimension."
            elif got.size == 1:
                hint = " It returned a single number: sum over the last dimension only, one value per row."
            self.fail(f"log_normal_pdf on {key} returned shape {tuple(got.shape)}: its values cannot be compared "
                      f"with the {int(np.prod(rows))} expected, one per row.{hint}")
        got = got.astype(np.float64).reshape(rows)
        if not np.all(np.isfinite(got)):
            self.fail(f"log_normal_pdf on {key}: {int(np.sum(~np.isfinite(got)))} of {got.size} values are NaN or "
                      "infinite, for finite inputs with log-variances between -3 and 3. logvar may be negative: is it "
                      "used where a variance or a standard deviation belongs (a log or square root of it)?")
        want = expected_pdf(sample, mean, logvar)
        tolerance = pdf_tolerance(sample, mean, logvar)
        wrong = np.abs(got - want) > tolerance
        if np.any(wrong):
            i = int(np.argmax(np.abs(got - want) - tolerance))
            self.fail(f"log_normal_pdf on {key}: {int(wrong.sum())} of {got.size} values differ from log N(sample; "
                      f"mean, diag(exp(logvar))) summed over the last dimension; e.g. row {i}: expected {want[i]:.8g}, "
                      f"got {got[i]:.8g} (float32 tolerance {tolerance[i]:.2g}). Expected values {describe(want)}, got "
                      f"{describe(got)}." + diagnose_pdf(got, sample, mean, logvar))

    @check(PDF, "reference_values")
    def test_reference_values(self):
        """conv/log_normal_pdf: the values equal log N(sample; mean, diag(exp(logvar))) summed over the last dimension (float32 inputs)"""
        self.assert_values("inputs of shape (40, 6), log-variances in [-3, 3]", *_pdf_inputs(1, (40, 6)))
        self.assert_values("inputs of shape (25, 3), log-variances in [0.5, 2.5]", *_pdf_inputs(2, (25, 3), 0.5, 2.5))

    @check(PDF, "shapes_and_broadcasting")
    def test_shapes_and_broadcasting(self):
        """conv/log_normal_pdf: (n, d) -> (n,), (k, n, d) -> (k, n), mean and logvar of shape (1, d) or (d,) broadcast; float32 and float64 kept"""
        x, m, s = _pdf_inputs(3, (3, 7, 5))
        for (a, b, c), want, what in (((x[0], m[0], s[0]), (7,), "sample, mean, logvar of shape (7, 5)"),
                                      ((x, m, s), (3, 7), "sample, mean, logvar of shape (3, 7, 5)")):
            got = self.shaped(f"shape {want}", a, b, c, want, what)
            if len(want) == 2:
                rows = np.stack([self.shaped(f"slice {k}", x[k], m[k], s[k], (7,), "inputs of shape (7, 5)")
                                 for k in range(3)])
                self.consistent(got, rows, x, m, s, "log_normal_pdf of inputs (3, 7, 5)", "its values on each of "
                                "the three (7, 5) slices: the sum is over the last dimension only")
        for shape in ((1, 5), (5,)):
            mean, logvar = m[0, :1].reshape(shape), s[0, :1].reshape(shape)
            what = f"sample of shape (7, 5), mean and logvar of shape {shape}"
            got = self.shaped(f"broadcast {shape}", x[0], mean, logvar, (7,), what)
            full = self.shaped("broadcast expanded", x[0], *np.broadcast_arrays(mean, logvar, x[0])[:2], (7,),
                               "sample, mean, logvar of shape (7, 5)")
            self.consistent(got, full, x[0], mean, logvar, f"log_normal_pdf with {what}", "its values with mean and "
                            "logvar repeated to (7, 5): broadcast them against sample")
        for dtype in (np.float32, np.float64):
            inputs = [a.astype(dtype) for a in (x[0], m[0], s[0])]
            got = _numeric(_pdf(self.submission, f"dtype {dtype.__name__}", *inputs), "out0", "log_normal_pdf")
            if got.dtype != dtype:
                self.fail(f"log_normal_pdf of {dtype.__name__} inputs returned {got.dtype}: keep the inputs' dtype "
                          "(no torch.tensor(...) constants of another dtype, no .float() or .double()).")

    def shaped(self, key, sample, mean, logvar, want, what):
        got = _numeric(_pdf(self.submission, key, np.ascontiguousarray(sample), np.ascontiguousarray(mean),
                            np.ascontiguousarray(logvar)), "out0", f"log_normal_pdf with {what}")
        if tuple(got.shape) != tuple(want):
            hint = ""
            if tuple(got.shape) == tuple(want) + (1,):
                hint = " It keeps the summed dimension (keepdim=True): drop it."
            elif got.size == 1:
                hint = " It sums over every dimension: sum over the last one only (.sum(-1))."
            elif len(got.shape) == len(want) and len(want) == 2:
                hint = " Is the sum taken over a fixed axis (dim=1) rather than the last one (dim=-1)?"
            self.fail(f"log_normal_pdf with {what} returned shape {tuple(got.shape)}, expected {tuple(want)}: the "
                      f"broadcast shape of the inputs without its last dimension.{hint}")
        return got.astype(np.float64)

    def consistent(self, got, other, sample, mean, logvar, what, reference_what):
        tolerance = 2 * pdf_tolerance(sample, mean, logvar).reshape(got.shape)
        same = (np.abs(got - other) <= tolerance) | (np.isnan(got) & np.isnan(other)) | (got == other)
        if not np.all(same):       # NaN or inf in both at the same rows: a value's fault (15.1), not broadcasting
            self.fail(f"{what} gives {describe(got)}, but {reference_what} ({describe(other)}).")

    @check(PDF, "gradients")
    def test_gradients(self):
        """conv/log_normal_pdf: the gradients with respect to sample, mean and logvar are those of the value it returns (float64 central differences)"""
        rng = np.random.default_rng(16)
        shape = (6, 4)
        point = [rng.normal(0, 1, shape), rng.normal(0, 1, shape), rng.uniform(0.25, 1.25, shape)]
        center = _numeric(_pdf(self.submission, "gradient center", *point), "out0", "log_normal_pdf of float64 inputs")
        cotangent = rng.normal(0, 1, center.shape)
        reply = _pdf(self.submission, "gradients", *point, cotangent=cotangent)
        missing = [name for name in ARGS if f"grad_{name}" not in reply.arrays]
        if missing:
            self.fail(f"No gradient of log_normal_pdf reached {', '.join(missing)}: compute it from all three inputs "
                      "with torch operations (no .detach(), .item(), numpy or torch.no_grad()).")
        grads = [output(reply, f"grad_{name}", f"the gradient with respect to {name}", shape) for name in ARGS]
        for d in range(GRADIENT_DIRECTIONS):
            direction = [rng.normal(0, 1, shape) for _ in ARGS]
            values = []
            for sign in (1, -1):
                moved = [p + sign * STEP * u for p, u in zip(point, direction)]
                out = output(_pdf(self.submission, f"direction {d} {sign}", *moved), "out0",
                             "log_normal_pdf of float64 inputs", center.shape)
                values.append(float((out * cotangent).sum()))
            slope = (values[0] - values[1]) / (2 * STEP)
            claimed = float(sum((g * u).sum() for g, u in zip(grads, direction)))
            if abs(slope - claimed) > SLOPE_TOLERANCE * (1 + abs(slope)):
                parts = ", ".join(f"{name} {float((g * u).sum()):.6g}" for name, g, u in zip(ARGS, grads, direction))
                self.fail(f"The gradient of log_normal_pdf (float64 inputs of shape {shape}) does not match its own "
                          f"values: along a random direction the values change at the rate {slope:.8g} (central "
                          f"differences), the gradient says {claimed:.8g} (by input: {parts}). Is part of it detached "
                          "(.detach(), .item(), numpy) or computed in float32?")


# ---------------------------------------------------------------- ConvDecoder

def expected_parameters(z_dim):
    """{name: shape} of the reference decoder's parameters."""
    return {name: tuple(p.shape) for name, p in reference.conv_vae.ConvDecoder(z_dim).named_parameters()}


def grader_weights(z_dim):
    """The weights loaded into the decoder for 15.6 and 15.7: He-scaled normal weights (fan-in: the taps one
    output sums), biases of either sign and size 0.1 to 0.3, float32."""
    rng = np.random.default_rng(100 + z_dim)
    weights = {}
    for name, shape in expected_parameters(z_dim).items():
        if name.endswith("bias"):        # 0.1 to 0.3 in size: a bias left out shows in every output
            weights[name] = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 0.3, shape)
        else:
            fan_in = shape[1] if len(shape) == 2 else shape[0] * shape[2] * shape[3] // 4
            weights[name] = rng.normal(0, math.sqrt(2 / fan_in), shape)
    return {name: w.astype(np.float32) for name, w in weights.items()}


VARIANTS = (
    ({}, None),
    ({"last": torch.sigmoid}, "a sigmoid on the output: the decoder returns logits, no activation after deconv2"),
    ({"last": torch.relu}, "a ReLU after deconv2: the decoder returns logits, no activation after deconv2"),
    ({"relu": (False, True)}, "no ReLU after fc"),
    ({"relu": (True, False)}, "no ReLU after deconv1"),
    ({"relu": (False, False)}, "no ReLU at all (after fc and after deconv1)"),
    ({"layout": "hwc"}, "the fc's output reshaped to (batch, 7, 7, 32) and then permuted: reshape it to "
                        "(batch, 32, 7, 7) directly, channels first"),
)


# the VARIANTS whose ReLUs see pre-activations of their own (the others' are among these)
KINKS = ({}, {"layout": "hwc"}, {"relu": (False, True)})


def _tensors(weights, absolute=False):
    return {name: torch.from_numpy(np.abs(w) if absolute else w).double() for name, w in weights.items()}


def decoder64(z, weights, **variant):
    return oracle.conv_decoder(torch.from_numpy(np.asarray(z, np.float64)), _tensors(weights), **variant)


def _reshaped(h, layout):
    return h.reshape(len(h), 32, 7, 7) if layout == "chw" else h.reshape(len(h), 7, 7, 32).permute(0, 3, 1, 2)


def _trace(z, weights, relu=(True, True), layout="chw", last=None):
    """The float64 decoder (or a VARIANTS mistake) at z: [(pre-activation, its error bound)] before each ReLU it
    applies, and its two masks (1 where its ReLU lets the unit through; all 1 where it applies none)."""
    import torch.nn.functional as F
    w, a = _tensors(weights), _tensors(weights, True)
    zt, za = torch.from_numpy(np.asarray(z, np.float64)), torch.from_numpy(np.abs(np.asarray(z, np.float64)))
    first, first_m = F.linear(zt, w["fc.weight"], w["fc.bias"]), F.linear(za, a["fc.weight"], a["fc.bias"])
    fc_error = _gamma(zt.shape[-1] + 1)
    pre, masks = [], []
    masks.append((first > 0).double() if relu[0] else torch.ones_like(first))
    if relu[0]:
        pre.append((first, fc_error * first_m))
    second = F.conv_transpose2d(_reshaped(first * masks[0], layout), w["deconv1.weight"], w["deconv1.bias"],
                                stride=2, padding=1)
    second_m = F.conv_transpose2d(_reshaped(first_m * masks[0], layout), a["deconv1.weight"], a["deconv1.bias"],
                                  stride=2, padding=1)
    masks.append((second > 0).double() if relu[1] else torch.ones_like(second))
    if relu[1]:
        pre.append((second, (fc_error + _gamma(DECONV1_SUM)) * second_m))
    return pre, masks


def _magnitude(z, absolute, masks, layout="chw"):
    """The decoder with |weights|, |biases|, at |z|, each ReLU replaced by the float64 decoder's mask (no error
    passes a unit both computations leave at 0: the codes are clear of the kinks)."""
    import torch.nn.functional as F
    h = F.linear(z, absolute["fc.weight"], absolute["fc.bias"]) * masks[0]
    h = F.conv_transpose2d(_reshaped(h, layout), absolute["deconv1.weight"], absolute["deconv1.bias"],
                           stride=2, padding=1) * masks[1]
    return F.conv_transpose2d(h, absolute["deconv2.weight"], absolute["deconv2.bias"], stride=2, padding=1)


def forward_bound(z, weights, variant=None):
    """Half 15.6's tolerance per output element (docstring): (gamma_fc + gamma_deconv1 + gamma_deconv2) M."""
    variant = variant or {}
    _, masks = _trace(z, weights, **variant)
    magnitude = _magnitude(torch.from_numpy(np.abs(z)).double(), _tensors(weights, True), masks,
                           variant.get("layout", "chw"))
    return _forward_factor(z.shape[-1]) * magnitude.numpy()


def _forward_factor(z_dim):
    return _gamma(z_dim + 1) + _gamma(DECONV1_SUM) + _gamma(DECONV2_SUM)


def gradient_factors(z_dim, batch):
    """{gradient: the sum of gamma_N over the float32 sums it goes through} (docstring): the forward sums up to
    the layer, the backward products down to it (one input pixel of a 4 x 4 transposed convolution of stride 2
    reaches 4 x 4 outputs per output channel: deconv2's 1 x 16, deconv1's 16 x 16; fc's 1568), then the sum over
    the batch and the positions where the parameter is used."""
    fc, deconv1 = _gamma(z_dim + 1), _gamma(DECONV1_SUM)
    forward = _forward_factor(z_dim)
    back2, back1, back_fc = _gamma(16), _gamma(256), _gamma(1568)
    return {"z": forward + back2 + back1 + back_fc,
            "fc.weight": forward + back2 + back1 + _gamma(batch),
            "fc.bias": forward + back2 + back1 + _gamma(batch),
            "deconv1.weight": forward + back2 + _gamma(49 * batch),
            "deconv1.bias": forward + back2 + _gamma(196 * batch),
            "deconv2.weight": fc + deconv1 + _gamma(196 * batch),
            "deconv2.bias": _gamma(784 * batch)}


def gradient_bounds(z, weights, cotangent, variant=None):
    """Half 15.7's tolerance per gradient element, {"z": ..., name: ...} (docstring): its factor times G."""
    variant = variant or {}
    _, masks = _trace(z, weights, **variant)
    absolute = {name: t.requires_grad_(True) for name, t in _tensors(weights, True).items()}
    at = torch.from_numpy(np.abs(z)).double().requires_grad_(True)
    out = _magnitude(at, absolute, masks, variant.get("layout", "chw"))
    found = torch.autograd.grad((out * torch.from_numpy(np.abs(cotangent)).double().reshape(out.shape)).sum(),
                                [at, *absolute.values()])
    factors = gradient_factors(z.shape[-1], len(z))
    return {name: factors[name] * g.numpy() for name, g in zip(["z", *absolute], found)}


def _pre_activation_margin(z, weights):
    """min over the pre-activations (before each ReLU) of the float64 decoder and of every VARIANTS mistake of
    |a| / (2 x its error bound), per row."""
    ratios = [(value.abs() / (2 * bound)).flatten(1).min(1).values
              for variant in KINKS for value, bound in _trace(z, weights, **variant)[0]]
    return torch.stack(ratios).min(0).values.numpy()


@functools.lru_cache(maxsize=None)
def clear_codes(z_dim, batch, seed):
    """batch codes (float32) whose every pre-activation is clear of 0 by twice its bound: rows drawn 256 at a
    time, the clear ones kept; judged 32 rows at a time (256 at once held 140 MB of float64 feature maps, a
    fifth of Gradescope's smallest container)."""
    rng = np.random.default_rng(seed)
    rows = []
    weights = grader_weights(z_dim)
    for _ in range(100):
        drawn = rng.normal(0, 1, (256, z_dim)).astype(np.float32)
        for start in range(0, len(drawn), 32):
            block = drawn[start:start + 32]
            rows.extend(block[_pre_activation_margin(block, weights) > 1])
            if len(rows) >= batch:
                return np.stack(rows[:batch])
    raise RuntimeError("no codes clear of the ReLUs' kinks")


def _decoder(submission, key, z_dim, zs=(), weights=None, cotangent=None):
    params = {"z_dim": z_dim, "seed": SEED, "batches": len(zs), "grads": cotangent is not None}
    arrays = {f"z{i}": z for i, z in enumerate(zs)}
    if weights is not None:
        params["load"] = list(weights)
        arrays.update({f"w{j}": w for j, w in enumerate(weights.values())})
    if cotangent is not None:
        arrays["cotangent"] = cotangent
    return ask(submission, DECODER, "conv_decoder", params, arrays, key=key)


def listed_parameters(reply):
    """[(name, shape, requires_grad)] the sandbox listed, validated as plain data."""
    listed = reply.info.get("parameters")
    out = []
    for entry in listed if isinstance(listed, list) else []:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], list) and all(isinstance(n, int) and not isinstance(n, bool)
                                                       for n in entry[1]) and isinstance(entry[2], bool)):
            raise AssertionError("The decoder's parameters could not be read (a malformed listing came back).")
        out.append((entry[0], tuple(entry[1]), entry[2]))
    return out


def architecture_problems(listed, z_dim):
    """The sentences saying how the parameters differ from the reference's ([] if they do not)."""
    want = expected_parameters(z_dim)
    got = {name: shape for name, shape, _ in listed}
    problems = []
    for name, shape in want.items():
        if name not in got:
            problems.append(f"no parameter {name} (shape {shape})")
        elif got[name] != shape:
            hint = ""
            if len(shape) == 4 and got[name] == (shape[1], shape[0], *shape[2:]):
                hint = (" (the shape of a Conv2d's weight, (out, in, k, k): use nn.ConvTranspose2d, whose weight is "
                        "(in, out, k, k))")
            problems.append(f"{name} has shape {got[name]}, expected {shape}{hint}")
    extra = [name for name in got if name not in want]
    if extra:
        shown = ", ".join(extra[:6]) + (", ..." if len(extra) > 6 else "")
        problems.append(f"parameters the decoder should not have: {shown}")
    return problems


def unloadable(reply, z_dim):
    """None when every parameter of the reference is in the decoder with its shape and was loaded, else why not."""
    problems = [p for p in architecture_problems(listed_parameters(reply), z_dim) if not p.startswith("parameters the")]
    loaded = [name for name in reply.info.get("loaded") or () if isinstance(name, str)] \
        if isinstance(reply.info.get("loaded"), list) else []
    if problems or set(loaded) != set(expected_parameters(z_dim)):
        shown = "; ".join(problems) or "the weights could not be loaded"
        return (f"This check loads the grader's weights into fc, deconv1 and deconv2 by name and cannot be judged "
                f"while the decoder's parameters differ from them (check 15.4): {shown}.")
    return None


def _as_output(reply, name, batch, what):
    """The output, reshaped to (batch, 1, 28, 28) where it holds that many values (its shape is 15.5's)."""
    got = _numeric(reply, name, what)
    if got.size != batch * 784:
        raise AssertionError(f"{what}: returned shape {tuple(got.shape)}, which does not hold {batch} x 784 values "
                             f"(one 28 x 28 image per code): it cannot be compared with the expected logits; "
                             f"{SIDE_RULE}.")
    got = got.astype(np.float64).reshape(batch, 1, 28, 28)
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{what}: {int(np.sum(~np.isfinite(got)))} values are NaN or infinite.")
    return got


def identify(got, z, weights):
    """(variant keywords, its mistake or None) of VARIANTS whose float64 output got equals within 15.6's
    tolerance, or None."""
    for variant, mistake in VARIANTS:
        bound = forward_bound(z, weights, variant)
        want = decoder64(z, weights, **variant).numpy()
        if np.all(np.abs(got - want) <= 2 * bound + 4 * EPS32 * np.abs(want)):
            return variant, mistake
    return None


class ConvDecoderChecks(CheckCase):

    @check(DECODER, "architecture")
    def test_architecture(self):
        """conv/ConvDecoder: its parameters are exactly fc, deconv1 and deconv2's weights and biases, of the reference's shapes (z_dim = 2 and 10)"""
        for z_dim in Z_DIMS:
            reply = _decoder(self.submission, f"parameters {z_dim}", z_dim)
            count = reply.info.get("parameter_count")
            problems = architecture_problems(listed_parameters(reply), z_dim)
            if isinstance(count, int) and count > len(listed_parameters(reply)):
                problems.append(f"{count} parameters in all")
            if problems:
                want = ", ".join(f"{name} {shape}" for name, shape in expected_parameters(z_dim).items())
                self.fail(f"ConvDecoder({z_dim}): {'; '.join(problems)}. Expected exactly the parameters {want}: "
                          f"{LAYERS}, under those attribute names (the grader loads weights by name); {SIDE_RULE}.")

    @check(DECODER, "output_shape")
    def test_output_shape(self):
        """conv/ConvDecoder: the output of n codes is (n, 1, 28, 28) float32, for n = 1, 3, 64 and z_dim = 2, 10"""
        for z_dim in Z_DIMS:
            rng = np.random.default_rng(z_dim)
            zs = [rng.normal(0, 1, (n, z_dim)).astype(np.float32) for n in BATCHES]
            reply = _decoder(self.submission, f"shapes {z_dim}", z_dim, zs)
            for i, n in enumerate(BATCHES):
                got = _numeric(reply, f"out{i}", f"ConvDecoder({z_dim}) on z of shape {(n, z_dim)}")
                want = (n, 1, 28, 28)
                if tuple(got.shape) != want:
                    self.fail(f"ConvDecoder({z_dim}) on z of shape {(n, z_dim)} returned shape {tuple(got.shape)}, "
                              f"expected {want}.{_shape_hint(got.shape, n)}")
                if got.dtype != np.float32:
                    self.fail(f"ConvDecoder({z_dim}) on float32 codes returned {got.dtype}, expected float32.")

    def judged(self, z_dim, key, batch, grads=False):
        """(reply, z, weights, cotangent) of the decoder with the grader's weights, or the check fails saying
        why it cannot be judged."""
        weights = grader_weights(z_dim)
        z = clear_codes(z_dim, batch, 20 + z_dim).copy()
        cotangent = np.random.default_rng(5).normal(0, 1, (batch, 784)).astype(np.float32) if grads else None
        reply = _decoder(self.submission, key, z_dim, [z], weights, cotangent)
        why = unloadable(reply, z_dim)
        if why:
            self.fail(why)
        return reply, z, weights, cotangent

    @check(DECODER, "forward_values")
    def test_forward_values(self):
        """conv/ConvDecoder: with the grader's weights loaded, the logits equal the float64 decoder's (fc, ReLU, (32, 7, 7), deconv1, ReLU, deconv2)"""
        for z_dim in Z_DIMS:
            reply, z, weights, _ = self.judged(z_dim, f"values {z_dim}", VALUE_BATCH)
            what = f"ConvDecoder({z_dim}) with the grader's weights on {VALUE_BATCH} codes"
            got = _as_output(reply, "out0", VALUE_BATCH, what)
            want = decoder64(z, weights).numpy()
            tolerance = 2 * forward_bound(z, weights)
            if np.all(np.abs(got - want) <= tolerance):
                continue
            found = identify(got, z, weights)
            hint = f" It looks like {found[1]}." if found else ""
            if np.all((got > 0) & (got < 1)) and not found:
                hint = " Its outputs all lie in (0, 1): a sigmoid? The decoder returns logits."
            self.fail(f"{what}: the output differs from fc -> ReLU -> reshape (batch, 32, 7, 7) -> deconv1 -> ReLU -> "
                      f"deconv2 (no activation after it) by up to {np.max(np.abs(got - want)):.3g} (float32 tolerance "
                      f"about {np.median(tolerance):.2g}); expected {describe(want)}, got {describe(got)}.{hint}")

    @check(DECODER, "gradients")
    def test_gradients(self):
        """conv/ConvDecoder: the gradients with respect to z and every parameter are those of the function its forward computes (float64 autograd)"""
        z_dim = Z_DIMS[-1]
        reply, z, weights, cotangent = self.judged(z_dim, f"gradients {z_dim}", GRADIENT_BATCH, grads=True)
        what = f"ConvDecoder({z_dim}) with the grader's weights"
        got = _as_output(reply, "out0", GRADIENT_BATCH, what)
        found = identify(got, z, weights)
        if found is None:
            self.fail(f"{what}: its gradients cannot be judged, as its output is neither the expected decoder's nor a "
                      "mistake check 15.6 recognises (see 15.6).")
        variant, mistake = found
        listed = listed_parameters(reply)
        index = {name: i for i, (name, _, _) in enumerate(listed)}
        trainable = {name: grad for name, _, grad in listed}
        frozen = [name for name in weights if not trainable.get(name)]
        if frozen:
            self.fail(f"{what}: {', '.join(frozen)} do not require gradients: leave every parameter trainable.")
        if "grad_z" not in reply.arrays:
            self.fail(f"{what}: no gradient reaches z: compute the output from z with torch operations (no .detach(), "
                      ".item(), numpy or torch.no_grad()).")
        silent = [name for name in weights if f"grad{index[name]}" not in reply.arrays]
        if silent:
            self.fail(f"{what}: no gradient reaches {', '.join(silent)}: does forward use every layer, without "
                      ".detach(), .data or torch.no_grad()?")
        zt = torch.from_numpy(z.astype(np.float64)).requires_grad_(True)
        tensors = {name: t.requires_grad_(True) for name, t in _tensors(weights).items()}
        out = oracle.conv_decoder(zt, tensors, **variant)
        true = torch.autograd.grad((out * torch.from_numpy(cotangent.astype(np.float64)).reshape(out.shape)).sum(),
                                   [zt, *tensors.values()])
        bounds = gradient_bounds(z, weights, cotangent, variant)
        for name, want in zip(["z", *tensors], true):
            array = "grad_z" if name == "z" else f"grad{index[name]}"
            grad = output(reply, array, f"the gradient with respect to {name}", want.shape)
            wrong = np.abs(grad - want.numpy()) > 2 * bounds[name] + 1e-300
            if np.any(wrong):
                self.fail(f"{what}: the gradient of sum(output * c) with respect to {name} differs from that of "
                          f"{'the decoder' if mistake is None else 'its forward (' + mistake + ')'} in "
                          f"{int(wrong.sum())} of {wrong.size} entries (largest difference "
                          f"{np.max(np.abs(grad - want.numpy())):.3g}, scale {np.max(np.abs(want.numpy())):.3g}). Is part "
                          "of the forward pass detached, or computed outside torch?")


def _shape_hint(shape, n):
    shape = tuple(shape)
    if shape in ((n, 784), (n, 28, 28)):
        return " Return the logits as images: reshape nothing after deconv2, whose output is (batch, 1, 28, 28)."
    if n == 1 and shape in ((1, 28, 28), (28, 28)):
        return " A dimension of size 1 was squeezed away: keep the batch and the channel dimensions."
    if len(shape) == 4 and shape[0] == n and shape[2:] != (28, 28):
        return f" The images are {shape[2]} x {shape[3]}: {SIDE_RULE}."
    if len(shape) == 4 and shape[0] == n and shape[1] != 1:
        return " deconv2 has one output channel: nn.ConvTranspose2d(16, 1, ...)."
    if len(shape) >= 1 and shape[0] != n:
        return (f" The first dimension is {shape[0]}, not the number of codes: reshape the fc's output with "
                "reshape(-1, 32, 7, 7) or reshape(z.shape[0], 32, 7, 7), not a fixed batch size.")
    return f" {SIDE_RULE}."
