"""Checks of CVAE.negative_elbo_bound(x, y) (problem `cvae`), with stand-ins answered by the grader.

As for the VAE (checks/elbo.py, whose analysis this reuses): the student's CVAE runs in its sandbox
with an encoder (x, y) -> (m, v), a decoder (z, y) -> logits, ut.sample_gaussian and ut.kl_normal
whose forward and backward passes are computed here (remote.ConditionalTrustedModel: the label
moves both networks' outputs a lot); the child holds no reference code and no weight. Every
value judged is read from what this side decoded or answered.

  5.1 three scalars, nelbo = kl + rec (finite)       5.2 kl's per-image value is the closed-form KL, on
      each of four calls (a one-sample Monte Carlo kl sometimes matches on one)
  5.3 the decoded z is drawn from q(z|x,y), and rec is -log p(x|z,y) at it
  5.4 kl and rec are batch means, not sums          5.6 gradients are those of the bound at that z
  5.5 the label reaches both networks: with two labellings of the same images, the encoder got
      (x, y) and the decoder (z, y) each time, so the bound changes with y through the KL (the
      encoder's q) and through rec (the decoder's p)
A wrong label does not fail 5.2 or 5.3 too: kl and rec are judged at the encoder's and decoder's
answers for what they were given, and 5.5 alone says whether that was the label.
"""
import numpy as np

from .. import config
from . import elbo, remote
from .base import CheckCase, ask, check

FAMILY = "cvae/negative_elbo_bound"
CLASSES = remote.ConditionalTrustedModel.classes
_MODEL = remote.ConditionalTrustedModel(config.Z_DIM)
_X = elbo._X


def _labels(count, seed):
    """One-hot float32 labels, every digit about as often."""
    digits = np.random.default_rng(seed).integers(0, CLASSES, count)
    return np.eye(CLASSES, dtype=np.float32)[digits]


_Y = _labels(len(_X), 4321)
_Y_OTHER = np.roll(_Y, 1, axis=1)             # every image relabelled: digit d becomes d + 1


def conditional(text):
    """A message of the VAE's checks, said of the conditional model."""
    for old, new in (("q(z|x)", "q(z|x,y)"), ("p(x|z)", "p(x|z,y)"), ("self.enc(x)", "self.enc(x, y)"),
                     ("self.dec(z)", "self.dec(z, y)"), ("self.dec(ut.sample_gaussian(m, v))",
                                                          "self.dec(ut.sample_gaussian(m, v), y)")):
        text = text.replace(old, new)
    return text


def _run(submission, x, y, key, grads=False):
    """The reply of negative_elbo_bound(x, y) (cached per key), with .session, .x and .y."""
    session = remote.Session(_MODEL)
    reply = ask(submission, FAMILY, "elbo", {"z_dim": config.Z_DIM, "grads": grads, "model": "cvae"},
                {"x": x, "y": y}, key=key, on_callback=session)
    if getattr(reply, "session", None) is None:
        reply.session, reply.x, reply.y = session, x, y
    return reply


def _main(submission):
    return _run(submission, _X, _Y, "main")


def _label_problem(reply, network, given):
    """Why the label `network` got is not y (None if it is): `given` is what it received, row by row."""
    y = reply.y
    call = "self.enc(x, y)" if network == "encoder" else "self.dec(z, y)"
    if given.shape == y.shape and np.array_equal(given, y):
        return None
    seen = given.reshape(len(given), -1) if given.size else given
    if not np.any(given):
        what = "a label of zeros"
    elif given.shape == y.shape and np.array_equal(np.sort(given, axis=0), np.sort(y, axis=0)):
        what = "the labels of other images (the rows of y in another order)"
    elif given.shape == y.shape and np.allclose(given, given[:1]):
        what = "the same label for every image"
    else:
        what = f"something else (first rows {np.round(seen[:2], 3).tolist()} where y is {y[:2].tolist()})"
    return f"The {network} got {what}, not the y given to negative_elbo_bound: call {call} with y itself."


def _label_problems(reply):
    """What is wrong with the labels the encoder and the decoder (at the z rec was computed at) got."""
    analysis = elbo._analysis(reply)
    if analysis.problem:
        return [conditional(analysis.problem)]
    encoded = next(c for c in reply.session.of("enc") if np.array_equal(c.inputs[0], reply.x))
    problems = [_label_problem(reply, "encoder", encoded.inputs[1]),
                _label_problem(reply, "decoder", analysis.used.rows(analysis.used.call.inputs[1]))]
    return [p for p in problems if p]


class CvaeElboChecks(CheckCase):

    @check(FAMILY, "three_scalars")
    def test_three_scalars(self):
        """cvae/negative_elbo_bound: returns three scalar tensors with nelbo = kl + rec"""
        reply = _main(self.submission)
        terms = {name: elbo._term(reply, name) for name in ("nelbo", "kl", "rec")}
        for name, (value, problem) in terms.items():
            if problem and value is None:
                self.fail(problem)
        (nelbo, bad_nelbo), (kl, bad_kl), (rec, bad_rec) = terms.values()
        if bad_kl or bad_rec:
            return                   # a non-finite kl or rec is reported by its own check
        if bad_nelbo:
            self.fail(f"nelbo is {nelbo} although kl = {kl:.6g} and rec = {rec:.6g} are finite: nelbo = kl + rec.")
        self.assertTrue(np.isclose(nelbo, kl + rec, rtol=1e-5, atol=1e-4),
                        f"nelbo should equal kl + rec: got nelbo {nelbo:.6g}, kl + rec = {kl + rec:.6g}.")

    @check(FAMILY, "kl_term")
    def test_kl_term(self):
        """cvae/negative_elbo_bound: kl is KL(q(z|x,y) || p(z)) in closed form for the model's encoder"""
        replies = elbo.kl_replies(lambda key: _run(self.submission, _X, _Y, key))
        elbo.assert_kl_term(self, replies, given="x,y", reword=conditional)

    @check(FAMILY, "rec_term")
    def test_rec_term(self):
        """cvae/negative_elbo_bound: rec is -log p(x|z,y) (Bernoulli, summed over pixels) at a z drawn from q(z|x,y)"""
        reply = _main(self.submission)
        analysis = elbo._analysis(reply)
        if analysis.problem:
            self.fail(conditional(analysis.problem))
        rec, problem = elbo._term(reply, "rec", per_image=True)
        if problem:
            self.fail(problem)
        problems = []
        wrong_z = elbo._wrong_z(reply)
        if wrong_z:
            problems.append(wrong_z)
        if not analysis.rec_match:
            problems.append(elbo._rec_value_problem(rec, analysis, reply.x.astype(np.float64)))
        if problems:
            self.fail(conditional(" ".join(problems)))

    @check(FAMILY, "batch_mean")
    def test_batch_mean(self):
        """cvae/negative_elbo_bound: kl and rec are batch means (unchanged when the batch is repeated)"""
        half, labels = _X[:elbo.GRADIENT_BATCH], _Y[:elbo.GRADIENT_BATCH]
        once = _run(self.submission, half, labels, "half")
        twice = _run(self.submission, np.concatenate([half, half]), np.concatenate([labels, labels]), "doubled")
        elbo.assert_batch_means(self, once, twice)

    @check(FAMILY, "label_reaches_both")
    def test_label_reaches_both(self):
        """cvae/negative_elbo_bound: the label reaches both networks: the encoder gets (x, y) and the decoder (z, y), for two labellings of the same images"""
        problems = []
        for labels, key in ((_Y, "main"), (_Y_OTHER, "relabelled")):
            found = _label_problems(_run(self.submission, _X, labels, key))
            problems += [p for p in found if p not in problems]
        if problems:
            self.fail(" ".join(problems))

    @check(FAMILY, "gradients")
    def test_gradients(self):
        """cvae/negative_elbo_bound: the gradients at the decoder's logits and the encoder's m and v are those of the bound at the sampled z"""
        reply = _run(self.submission, _X[:elbo.GRADIENT_BATCH], _Y[:elbo.GRADIENT_BATCH], "gradients", grads=True)
        problems = elbo._gradient_problems(reply, wrong_z=elbo._wrong_z(_main(self.submission)) is not None)
        if problems:
            self.fail(conditional(" ".join(problems)))
