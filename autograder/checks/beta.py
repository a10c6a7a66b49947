"""Checks of BetaVAE.negative_elbo_bound(x, beta) (problem `beta`), with stand-ins answered by the grader.

As for the VAE (checks/elbo.py, whose analysis this reuses): the student's BetaVAE runs in its sandbox
with the grader's encoder x -> (m, v), decoder z -> logits, ut.sample_gaussian and ut.kl_normal
(remote.TrustedModel, the VAE's stand-ins); the child holds no reference code and no weight. The
first value returned is the loss rec + beta * kl (the worker calls it "nelbo"); kl and rec are the
unweighted terms. Every value judged is read from what this side decoded or answered.

  7.1 three scalars, loss = kl + rec at beta = 1    7.2 kl's per-image value is the closed-form KL, on
      each of four calls (a one-sample Monte Carlo kl sometimes matches on one)
  7.3 the decoded z is drawn from q(z|x), and rec is -log p(x|z) at it     7.4 batch means, not sums
  7.5 loss = rec + beta * kl at beta = 0, 0.5 and 2.5 (the weight on rec, on the whole loss, squared,
      1 - beta, beta ignored, the kl term dropped: each named)
  7.6 the weight multiplies the KL term of the loss only: at every beta, the kl returned is the closed
      form and rec is -log p(x|z) at the decoded z (a weighted kl or rec, or a kl computed only at
      beta = 1, is named); a term already wrong at beta = 1 (kl: on any of 7.2's calls) is 7.2's or 7.3's
  7.7 at beta = 2.5 the gradients at the decoder's logits and the encoder's m and v are those of
      rec + 2.5 kl (beta * kl.detach(), or a weight applied to the value only, is named)
  7.8 the default weight is 1: negative_elbo_bound(x) is the negative ELBO
A fault one check owns is not reported again by another: 7.5 judges the loss against the kl and rec
returned (or, where a returned term is weighted, against the true terms, 7.6's to report).
"""
import numpy as np

from .. import config
from . import elbo, remote
from .base import CheckCase, ask, check

FAMILY = "beta/negative_elbo_bound"
WEIGHTS = (0.0, 0.5, 2.5)            # 7.5 and 7.6 (beta = 1 is the main request's)
GRADIENT_WEIGHT = 2.5
_MODEL = remote.TrustedModel(config.Z_DIM)
_X = elbo._X
_SMALL = _X[:elbo.GRADIENT_BATCH]


def said(text):
    """A message of the VAE's checks, said of the weighted loss (the first value is the loss)."""
    return text.replace("nelbo = kl + rec", "loss = rec + beta * kl").replace("nelbo", "loss")


def _run(submission, x, key, beta=1.0, grads=False):
    """The reply of negative_elbo_bound(x, beta=beta) (None: negative_elbo_bound(x)), cached per key,
    with .session, .x and .beta."""
    session = remote.Session(_MODEL)
    reply = ask(submission, FAMILY, "elbo", {"z_dim": config.Z_DIM, "grads": grads, "model": "beta", "beta": beta},
                {"x": x}, key=key, on_callback=session)
    if getattr(reply, "session", None) is None:
        reply.session, reply.x, reply.beta = session, x, beta
    return reply


def _main(submission):
    return _run(submission, _X, "main")


def _weighted(submission, beta):
    return _run(submission, _SMALL, f"beta={beta:g}", beta=beta)


def _scalars(reply):
    """(loss, kl, rec) as returned, or a sentence saying why they are not three finite scalars."""
    values = []
    for name in ("nelbo", "kl", "rec"):
        value, problem = elbo._term(reply, name)
        if problem:
            return None, said(problem)
        values.append(value)
    return values, None


def _close(a, b):
    return bool(np.isclose(a, b, rtol=1e-5, atol=1e-4))


def _truth(reply):
    """(KL, -log p(x|z)) batch means as this side computes them for the request (None where nothing
    can be judged): the closed form at the encoder's (m, v), rec at the z the decoder received."""
    analysis = elbo._analysis(reply)
    if analysis.problem or analysis.kl_rows is None or analysis.used is None:
        return None
    return float(analysis.kl_rows.mean()), float(analysis.used.rec_rows.mean())


def _signed(weight):
    """'+ 1.5' or '- 1.5': a weight written after a term."""
    return f"{'-' if weight < 0 else '+'} {abs(weight):.3g}"


def _loss_hint(beta, loss, kl, rec):
    """What loss is, in terms of the kl and rec returned at weight `beta` (beta != 1), or None."""
    candidates = [
        (rec + kl, f"the loss is rec + kl: beta is ignored (it must multiply kl: rec + {beta:g} * kl)"),
        (beta * rec + kl, f"the loss is {beta:g} * rec + kl: the weight multiplies rec; it belongs on kl alone"),
        (beta * (rec + kl), f"the loss is {beta:g} * (rec + kl): the weight multiplies the whole loss; it belongs "
                            "on kl alone"),
        (rec + beta * beta * kl, f"the loss is rec + {beta * beta:g} * kl, beta squared: the weight is beta itself"),
        (rec + (1 - beta) * kl, f"the loss is rec + (1 - beta) * kl = rec {_signed(1 - beta)} * kl: the weight is "
                                "beta itself"),
        ((1 - beta) * rec + beta * kl, "the loss is (1 - beta) * rec + beta * kl: rec keeps the weight 1, only kl "
                                       "is weighted"),
        (rec - beta * kl, f"the loss is rec - {beta:g} * kl: the kl term is added, not subtracted"),
        (rec, "the loss is rec alone: the kl term is missing from the loss at this beta"),
    ]
    if beta:
        candidates.append((rec + kl / beta, f"the loss is rec + kl / {beta:g}: the kl term is multiplied by beta, "
                                            "not divided"))
    return next((hint for value, hint in candidates if _close(loss, value)), None)


class BetaElboChecks(CheckCase):

    @check(FAMILY, "three_scalars")
    def test_three_scalars(self):
        """beta/negative_elbo_bound: returns three scalar tensors with loss = rec + kl at beta = 1"""
        reply = _main(self.submission)
        terms = {name: elbo._term(reply, name) for name in ("nelbo", "kl", "rec")}
        for name, (value, problem) in terms.items():
            if problem and value is None:
                self.fail(said(problem))
        (loss, bad_loss), (kl, bad_kl), (rec, bad_rec) = terms.values()
        if bad_kl or bad_rec:
            return                   # a non-finite kl or rec is reported by its own check
        if bad_loss:
            self.fail(f"loss is {loss} although kl = {kl:.6g} and rec = {rec:.6g} are finite: loss = rec + beta * kl.")
        if not np.isclose(loss, kl + rec, rtol=1e-5, atol=1e-4):
            hint = " It equals rec alone: the kl term is missing from the loss." if _close(loss, rec) else ""
            self.fail(f"At beta = 1 the loss should equal rec + kl (the negative ELBO): got loss {loss:.6g}, "
                      f"rec + kl = {kl + rec:.6g}.{hint}")

    @check(FAMILY, "kl_term")
    def test_kl_term(self):
        """beta/negative_elbo_bound: kl is KL(q(z|x) || p(z)) in closed form for the model's encoder"""
        elbo.assert_kl_term(self, elbo.kl_replies(lambda key: _run(self.submission, _X, key)))

    @check(FAMILY, "rec_term")
    def test_rec_term(self):
        """beta/negative_elbo_bound: rec is -log p(x|z) (Bernoulli, summed over pixels) at a z drawn from q(z|x)"""
        reply = _main(self.submission)
        analysis = elbo._analysis(reply)
        if analysis.problem:
            self.fail(analysis.problem)
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
            self.fail(" ".join(problems))

    @check(FAMILY, "batch_mean")
    def test_batch_mean(self):
        """beta/negative_elbo_bound: kl and rec are batch means (unchanged when the batch is repeated)"""
        once = _run(self.submission, _SMALL, "half")
        twice = _run(self.submission, np.concatenate([_SMALL, _SMALL]), "doubled")
        elbo.assert_batch_means(self, once, twice)

    @check(FAMILY, "weighted_loss")
    def test_weighted_loss(self):
        """beta/negative_elbo_bound: the loss is rec + beta * kl at beta = 0, 0.5 and 2.5"""
        problems = []
        for beta in WEIGHTS:
            reply = _weighted(self.submission, beta)
            values, problem = _scalars(reply)
            if problem:
                problems.append(f"At beta = {beta:g}: {problem}")
                continue
            loss, kl, rec = values
            truth = _truth(reply)
            if _close(loss, rec + beta * kl) or (truth is not None and _close(loss, truth[1] + beta * truth[0])):
                continue             # right (a weighted kl or rec returned with it is 7.6's)
            hint = _loss_hint(beta, loss, kl, rec) if beta != 1 else None
            problems.append(f"At beta = {beta:g} the loss should be rec + {beta:g} * kl = {rec + beta * kl:.6g} "
                            f"(with the kl = {kl:.6g} and rec = {rec:.6g} returned); got {loss:.6g}"
                            + (f": {hint}." if hint else "."))
        if problems:
            self.fail(" ".join(problems))

    @check(FAMILY, "weight_on_kl_only")
    def test_weight_on_kl_only(self):
        """beta/negative_elbo_bound: the weight multiplies the KL term of the loss only: kl and rec returned are the unweighted terms at every beta"""
        main = elbo._analysis(_main(self.submission))
        kl_right = elbo.wrong_kl(elbo.kl_replies(lambda key: _run(self.submission, _X, key))) is None
        judged = [name for name, match, right in (("kl", main.kl_match, kl_right), ("rec", main.rec_match, True))
                  if match == "mean" and right]
        problems = []
        for beta in WEIGHTS:
            reply = _weighted(self.submission, beta)
            values, problem = _scalars(reply)
            truth = _truth(reply)
            if problem or truth is None:
                continue             # 7.5 reports a value that is no finite scalar; 7.1-7.3 what cannot be judged
            _, kl, rec = values
            for name, got, want in (("kl", kl, truth[0]), ("rec", rec, truth[1])):
                if name not in judged or _close(got, want):
                    continue
                what = "KL(q(z|x) || p(z))" if name == "kl" else "-log p(x|z) at the z your code decoded"
                if beta and _close(got, beta * want):
                    problems.append(f"At beta = {beta:g} the {name} returned is {got:.6g}, {beta:g} times {what} "
                                    f"({want:.6g}): return the unweighted {name}; beta weights kl inside the loss only.")
                elif name == "kl" and _close(got, 0.0):
                    cause = "weighted by beta = 0 or not computed" if not beta else "not computed at this beta"
                    problems.append(f"At beta = {beta:g} the kl returned is 0 ({cause}), although it is "
                                    f"KL(q(z|x) || p(z)) = {want:.6g} here: return the unweighted KL at every beta.")
                else:
                    problems.append(f"At beta = {beta:g} the {name} returned is {got:.6g}, not {what} ({want:.6g}) as "
                                    f"at beta = 1: kl and rec must not depend on beta.")
        if problems:
            self.fail(" ".join(problems))

    @check(FAMILY, "gradients")
    def test_gradients(self):
        """beta/negative_elbo_bound: at beta = 2.5 the gradients at the decoder's logits and the encoder's m and v are those of rec + 2.5 kl at the sampled z"""
        reply = _run(self.submission, _SMALL, "gradients", beta=GRADIENT_WEIGHT, grads=True)
        problems = elbo._gradient_problems(reply, wrong_z=elbo._wrong_z(_main(self.submission)) is not None,
                                           kl_weight=GRADIENT_WEIGHT)
        problems += _decoder_problems(reply)
        if problems:
            self.fail(said(" ".join(problems)))

    @check(FAMILY, "default_beta")
    def test_default_beta(self):
        """beta/negative_elbo_bound: the default weight is 1: negative_elbo_bound(x) is the negative ELBO"""
        reply = _run(self.submission, _SMALL, "default", beta=None)
        values, problem = _scalars(reply)
        if problem:
            self.fail(f"Called as negative_elbo_bound(x): {problem}")
        loss, kl, rec = values
        if _close(loss, rec + kl):
            return
        implied = (loss - rec) / kl if kl else None
        weight = "" if implied is None else f" = rec {_signed(implied)} * kl"
        self.fail(f"Called as negative_elbo_bound(x), without beta, the loss is {loss:.6g}{weight}, not rec + kl = "
                  f"{rec + kl:.6g}: the default weight must be 1 (def negative_elbo_bound(self, x, beta=1.0)), so that "
                  "the loss is the negative ELBO.")


def _decoder_problems(reply):
    """The loss's gradient at the decoder's logits must be rec's (the weight is on kl alone); judged
    when the loss is rec + beta * kl in value (7.5 reports it otherwise)."""
    analysis = elbo._analysis(reply)
    values = [elbo._term(reply, name, per_image=True)[0] for name in ("nelbo", "kl", "rec")]
    if analysis.problem or any(v is None or not np.isfinite(v) for v in values) or \
            not _close(values[0], values[2] + reply.beta * values[1]):
        return []
    arrived = {phase: [g[0].astype(np.float64) for c, g in reply.session.arrivals("dec", phase) if c is analysis.used.call]
               for phase in ("rec", "nelbo")}
    if not arrived["rec"]:
        return []                    # the rec part of the gradient check says so
    want = arrived["rec"][0]
    got = sum(arrived["nelbo"]) if arrived["nelbo"] else np.zeros_like(want)
    if np.allclose(got, want, rtol=elbo.GRAD_RTOL, atol=elbo.GRAD_RTOL * np.abs(want).max()):
        return []
    return [f"The gradient of the loss at the decoder's logits is not that of rec: at beta = {reply.beta:g} the "
            "loss's dependence on the decoder is rec's alone (the weight multiplies kl, which the decoder does not "
            "reach)."]
