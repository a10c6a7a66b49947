"""Unit checks of the linear autoencoder (problem `ae`): LinearAutoencoder (11.1-11.3) and
reconstruction_loss (11.4-11.5).

The model is known here only through what its encode, decode and forward return at points this
process chose (0, the basis vectors, random points: ae_evaluation.probe_points) and through its
parameters and their gradients as arrays; every property is read from those arrays. An affine map
is determined by its value at 0 (the bias) and at the basis vectors (the weight's columns); the
random points then must lie on it within float32 rounding (ae_evaluation.affine_fit's bound)."""
import numpy as np

from .. import ae_evaluation as measure
from .base import CheckCase, ask, check, decoded, describe, output

MODEL = "ae/LinearAutoencoder"
LOSS = "ae/reconstruction_loss"
PIXELS = 784
CODE_SIZES = (3, 7)               # not the graded k: a model must work for any k
BATCH = 50
FLOAT32_UNIT = 2.0 ** -24
PROBE_SEED = 11


def _probe(submission, k):
    enc_in, dec_in = measure.probe_points(k, PROBE_SEED + k)
    rng = np.random.default_rng(PROBE_SEED)
    arrays = {"enc_in": enc_in, "dec_in": dec_in, "x": rng.uniform(0, 1, (BATCH, PIXELS)).astype(np.float32),
              "cotangent": rng.standard_normal((BATCH, PIXELS)).astype(np.float32)}
    reply = ask(submission, MODEL, "ae_probe", {"k": k, "seed": 0}, arrays, key=f"probe{k}")
    return reply, enc_in, dec_in


def _shape_problem(reply, name, expected):
    got = decoded(reply, name, name)
    return None if tuple(got.shape) == tuple(expected) else tuple(got.shape)


def _nonlinearity(outputs):
    """A guess at the non-linearity from the values a map returned."""
    if np.all(outputs >= 0) and np.mean(outputs == 0) > 0.05:
        return " Its outputs are never negative and often exactly 0: a ReLU?"
    if np.all((outputs > 0) & (outputs < 1)):
        return " Its outputs all lie in (0, 1): a sigmoid?"
    if np.all(np.abs(outputs) < 1):
        return " Its outputs all lie in (-1, 1): a tanh?"
    return " A non-linearity (ReLU, sigmoid, tanh, clamp) or a rule that depends on the input?"


def _found(target, arrays, exclude=(), offset=None):
    """Index of a parameter equal to `target` (or its transpose) within rounding, else None. A weight
    read from the probes is fl(W e_i + b) - b: within one float32 rounding of |W| + |b| (`offset`: b);
    a bias is the value at 0, exact up to one rounding."""
    flat = target.ravel()
    scale = np.abs(target).max() + (np.abs(offset).max() if offset is not None else 0.0)
    tolerance = 2 * FLOAT32_UNIT * scale + 1e-30
    for index, array in arrays.items():
        if index in exclude or array.size != target.size:
            continue
        for candidate in ((array.reshape(target.shape), array.reshape(target.shape[::-1]).T)
                          if target.ndim == 2 else (array.reshape(target.shape),)):
            if np.max(np.abs(candidate.ravel() - flat)) <= tolerance:
                return index
    return None


def maps_from_parameters(enc, dec, parameters, k):
    """None when the two affine maps are made of four distinct parameters (W_e, b_e, W_d, b_d) and
    nothing else is trained; otherwise the sentence saying what differs."""
    expected = 2 * PIXELS * k + k + PIXELS
    trained = {i: a for i, (a, grad) in parameters.items() if grad}
    count = sum(a.size for a in trained.values())
    w_e = _found(enc.weight, trained, offset=enc.bias)
    w_d = _found(dec.weight, trained, exclude=(w_e,), offset=dec.bias)
    b_e = _found(enc.bias, trained, exclude=(w_e, w_d))
    b_d = _found(dec.bias, trained, exclude=(w_e, w_d, b_e))
    missing = []
    if w_e is None:
        missing.append(f"no trained parameter holds the encoder's weight ({k} x {PIXELS})")
    if w_d is None:
        tied = w_e is not None and _found(dec.weight, trained, offset=dec.bias) is not None
        missing.append("the decoder's weight is the encoder's parameter (tied): the two maps must have weights "
                       "of their own" if tied else f"no trained parameter holds the decoder's weight ({PIXELS} x {k})")
    if b_e is None:
        missing.append(f"no trained parameter holds the encoder's bias ({k} values; encode(0) = "
                       f"{describe(enc.bias)})")
    if b_d is None:
        missing.append(f"no trained parameter holds the decoder's bias ({PIXELS} values; decode(0) = "
                       f"{describe(dec.bias)})")
    if not missing and count != expected:
        missing.append(f"the model trains {count:,} numbers, the two maps need {expected:,} "
                       f"(2 x 784 x {k} weights + {k} + 784 biases)")
    return "; ".join(missing) or None


class LinearAutoencoderChecks(CheckCase):

    def fits(self, k):
        reply, enc_in, dec_in = _probe(self.submission, k)
        enc = output(reply, "enc", f"encode at k = {k}", (len(enc_in), k))
        dec = output(reply, "dec", f"decode at k = {k}", (len(dec_in), PIXELS))
        return reply, measure.affine_fit(enc_in, enc), measure.affine_fit(dec_in, dec), enc, dec

    @check(MODEL, "shapes")
    def test_shapes(self):
        """ae/LinearAutoencoder: encode (batch, 784) -> (batch, k), decode (batch, k) -> (batch, 784), float32 in and out, for k = 3 and 7"""
        for k in CODE_SIZES:
            reply, enc_in, dec_in = _probe(self.submission, k)
            for name, expected, what in (("enc", (len(enc_in), k), "encode"), ("dec", (len(dec_in), PIXELS), "decode"),
                                         ("forward", (BATCH, PIXELS), "the model (decode(encode(x)))")):
                got = _shape_problem(reply, name, expected)
                if got is not None:
                    self.fail(f"LinearAutoencoder({k}): {what} of a batch gave shape {got}, expected {expected}.")
                dtype = decoded(reply, name, what).dtype
                if dtype != np.float32:
                    self.fail(f"LinearAutoencoder({k}): {what} of float32 inputs returned {dtype}, expected float32.")

    @check(MODEL, "affine_maps")
    def test_affine_maps(self):
        """ae/LinearAutoencoder: encode and decode are affine maps (no non-linearity): random points lie on the map through 0 and the basis vectors"""
        for k in CODE_SIZES:
            _, enc, dec, enc_out, dec_out = self.fits(k)
            for fit, out, what in ((enc, enc_out, "encode"), (dec, dec_out, "decode")):
                if not fit.worst_ratio <= 1:
                    self.fail(f"LinearAutoencoder({k}).{what} is not affine: at random points it differs from the "
                              f"affine map through its values at 0 and at the basis vectors by up to "
                              f"{fit.worst_error:.3g}, {fit.worst_ratio:.3g} times what float32 rounding allows."
                              + _nonlinearity(out) + " The linear autoencoder has no non-linearity anywhere.")

    @check(MODEL, "two_maps_with_biases")
    def test_two_maps_with_biases(self):
        """ae/LinearAutoencoder: two separate affine maps, each with its weight and its bias, are the parameters the model trains, and each receives a gradient"""
        for k in CODE_SIZES:
            reply, enc, dec, _, _ = self.fits(k)
            listed = reply.info.get("parameters") if isinstance(reply.info.get("parameters"), list) else []
            parameters = {i: (output(reply, f"p{i}", f"parameter {i}"), bool(entry[1]) if isinstance(entry, list)
                              and len(entry) == 2 else False)
                          for i, entry in enumerate(listed[:16]) if f"p{i}" in reply.arrays}
            if enc.worst_ratio <= 1 and dec.worst_ratio <= 1:
                problem = maps_from_parameters(enc, dec, parameters, k)
            else:       # maps that are not affine (11.2's fault): only what the parameters themselves show
                problem = parameter_count_problem(parameters, k)
            if problem is not None:
                self.fail(f"LinearAutoencoder({k}): {problem}. Expected an encoder x -> W_e x + b_e and a decoder "
                          "z -> W_d z + b_d with four trained parameters of their own (nn.Linear twice, or explicit "
                          "Parameters).")
            silent = [i for i, (_, trained) in parameters.items() if trained
                      and not np.any(reply.arrays.get(f"grad{i}", np.zeros(1)) != 0)]
            if silent:
                self.fail(f"LinearAutoencoder({k}): the model's output does not depend on {len(silent)} of its trained "
                          "parameters (no gradient reaches them): does forward use encode and decode, and do they "
                          "use the parameters?")


def parameter_count_problem(parameters, k):
    """None when the trained parameters hold 2 x 784 k + k + 784 numbers, else the sentence."""
    expected = 2 * PIXELS * k + k + PIXELS
    count = sum(a.size for a, trained in parameters.values() if trained)
    if count == expected:
        return None
    return (f"the model trains {count:,} numbers, the two maps need {expected:,} (2 x 784 x {k} weights + {k} + "
            "784 biases)" + (": no biases?" if count == 2 * PIXELS * k else ""))


def _loss(submission, key, x, x_hat):
    return ask(submission, LOSS, "call", {"module": "ae", "function": "reconstruction_loss", "args": ["x", "x_hat"],
                                          "grad_wrt": ["x", "x_hat"]}, {"x": x, "x_hat": x_hat}, key=key)


def _inputs(batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, PIXELS))
    return x.astype(np.float32), (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)


def _loss_diagnosis(got, x, x_hat):
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    d = x - x_hat
    batch = len(x)
    candidates = {
        "a sum over the batch instead of its mean": np.sum(np.mean(d ** 2, -1)),
        "a sum over the pixels without the 1/784": np.mean(np.sum(d ** 2, -1)),
        "a sum over everything (no mean at all)": np.sum(d ** 2),
        "the mean absolute error (|x - y| instead of (x - y)^2)": np.mean(np.abs(d)),
        "(x - y) not squared": np.mean(d),
        "(y - x) not squared": -np.mean(d),
        "the root of the mean squared error": np.sqrt(np.mean(d ** 2)),
        "half the mean squared error": 0.5 * np.mean(d ** 2),
    }
    if got.shape == (batch,):
        return " It returned one value per image: take the mean over the batch."
    if got.shape == x.shape:
        return " It returned one value per pixel: take the mean over pixels and images."
    for mistake, value in candidates.items():
        if got.size == 1 and np.isclose(float(got.ravel()[0]), value, rtol=1e-4):
            return f" It looks like {mistake}."
    return ""


class ReconstructionLossChecks(CheckCase):

    def judged(self, batch, seed):
        x, x_hat = _inputs(batch, seed)
        reply = _loss(self.submission, f"batch{batch}", x, x_hat)
        expected = float(np.mean((x.astype(np.float64) - x_hat.astype(np.float64)) ** 2))
        return reply, x, x_hat, expected

    @check(LOSS, "loss_value")
    def test_loss_value(self):
        """ae/reconstruction_loss: a scalar equal to the batch mean of (1/784) sum (x - y)^2, for batches of 50 and 7"""
        for batch, seed in ((BATCH, 1), (7, 2)):
            reply, x, x_hat, expected = self.judged(batch, seed)
            got = decoded(reply, "out0", "reconstruction_loss")
            if got.shape != ():
                numeric = got.dtype.kind in "fiu"
                self.fail(f"reconstruction_loss of a batch of {batch} returned shape {tuple(got.shape)}, expected a "
                          "scalar (shape ())." + (_loss_diagnosis(got.astype(np.float64), x, x_hat) if numeric else ""))
            got = output(reply, "out0", "reconstruction_loss")
            # float32: squares and a sum of n = batch x 784 terms (Higham's gamma_n), then two divisions
            n = batch * PIXELS + 3
            tolerance = 2 * n * FLOAT32_UNIT / (1 - n * FLOAT32_UNIT) * expected
            if abs(float(got) - expected) > tolerance:
                self.fail(f"For a batch of {batch} images: expected {expected:.7g} (the mean over images of (1/784) "
                          f"sum (x - y)^2), got {float(got):.7g}." + _loss_diagnosis(got, x, x_hat))

    @check(LOSS, "loss_gradient")
    def test_loss_gradient(self):
        """ae/reconstruction_loss: its gradients with respect to x and y are those of its value: 2 (y - x) / (784 batch) and its negative"""
        reply, x, x_hat, expected = self.judged(BATCH, 1)
        got = output(reply, "out0", "reconstruction_loss")
        n = BATCH * PIXELS + 3
        # A value that is a constant multiple of the right one (a sum over the batch, no 1/784: 11.4's fault)
        # is judged by the gradient of that multiple; any other wrong value has no right gradient to compare.
        scale = float(np.sum(got)) / expected if got.size == 1 else float("nan")
        factors = (1.0, BATCH, PIXELS, BATCH * PIXELS, 0.5, 0.5 * BATCH, 0.5 * PIXELS)
        factor = next((f for f in factors if abs(scale - f) <= 2 * n * FLOAT32_UNIT / (1 - n * FLOAT32_UNIT) * f), None)
        if factor is None:
            self.fail("The gradient is judged once the value is the mean squared error or a constant multiple of it "
                      f"(check 11.4): the value returned, {describe(got)}, is neither, so no gradient can be right.")
        true = factor * 2 * (x_hat.astype(np.float64) - x.astype(np.float64)) / (BATCH * PIXELS)
        for name, sign in (("x_hat", 1), ("x", -1)):
            if f"grad_{name}" not in reply.arrays:
                self.fail(f"No gradient reached {'y (x_hat)' if name == 'x_hat' else 'x'}: is the loss computed with "
                          ".item(), numpy or .detach() somewhere?")
            grad = output(reply, f"grad_{name}", f"the gradient with respect to {name}", x.shape)
            # a few float32 operations per element: within 16 units of rounding of the largest
            if np.max(np.abs(grad - sign * true)) > 16 * FLOAT32_UNIT * np.max(np.abs(true)) + 1e-30:
                ratio = float(np.sum(grad * sign * true) / np.sum(true * true))
                self.fail(f"The gradient with respect to {name} differs from {'' if sign > 0 else '-'}2 (y - x) / "
                          f"(784 batch): got {describe(grad)}, expected {describe(sign * true)} (best scale "
                          f"{ratio:.4g}). Is part of the loss detached, or computed outside torch?")
