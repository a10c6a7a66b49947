"""Checks of the convolutional VAE (problem `conv`): ConvVAE.negative_elbo_bound, the one-sample Monte Carlo bound.

The student's ConvVAE runs in its sandbox (_worker.op_conv_elbo) with self.enc, self.dec and
conv_vae.log_normal_pdf replaced by stand-ins answered here (remote.ConvTrustedModel, remote.ConvSession):
the encoder hands out log-variances spread over [log 0.05, log 20], the decoder logits of shape
(batch, 1, 28, 28), log_normal_pdf is the oracle's (a wrong log_normal_pdf costs points in 15.1-15.3 only;
the student's ConvDecoder is never built here, 15.4-15.7's). The child draws z itself (self.reparameterize);
everything judged is read from what this side answered or decoded: the (mean, logvar) of q(z|x), every z
the decoder received, the three values returned, the gradients that came back.

One property per check; a value one check owns is not judged again by another (a term 15.10 finds wrong
has its gradient left out of 15.12):
  15.8  three finite scalars (nelbo, kl, rec)
  15.9  one draw per image: self.dec got one batch of z, one row per image (the same z decoded again is
        still one draw), (z - mean) / exp(logvar / 2) standard normal (mean and variance z-tests, stats.py's
        share each, and neighbouring latent dimensions and images uncorrelated: 4 comparisons), not the mean itself,
        drawn afresh at a second call
  15.10 the Monte Carlo terms at the decoded z: rec = batch mean of -log p(x|z), kl = batch mean of
        log q(z|x) - log p(z) at that same z (not the closed-form KL), nelbo = kl + rec; judged on four calls
        (200 images three times, 120 once)
  15.11 unbiased: over n = 10,000 draws, the mean of nelbo is the closed-form negative ELBO (1 comparison)
  15.12 the gradients reaching the decoder's logits and the encoder's (mean, logvar) are the pathwise
        gradients of the reference estimator at the student's own draws (float64 here)

Float32 tolerance of 15.10 (derived). The child's values are float32. A term's per-image value is a sum
of D float32 terms (D = 784 pixels for rec, the latent dimension for kl), each carrying a rounding error
below eps |t| (eps = 2^-24; the stand-in answers are float64 rounded once), then averaged over the B
images; summed naively, the error of the batch mean is below (D + B + 4) eps S, S the batch mean of the
sum of the terms' magnitudes (rec: |logit| + 1 per pixel, as softplus(l) - x l carries |l| eps; kl:
0.5 ((z - m)^2 exp(-logvar) + |logvar| + z^2 + 2 log 2 pi) per dimension). TOLERANCE_FACTOR doubles it.
With B = 200 the tolerance is about 1.7e-3 while the batch mean of the Monte Carlo kl differs from the
closed-form one by about 1.1 (its standard deviation over one draw per image): the closed form lands
within the tolerance on about 1.5e-3 of the calls (measured, bench/chance_conv_kl.py), so 15.10 judges
four independent calls (_terms_replies), about 1e-11 for a closed-form kl to pass them all.

The z-test of 15.11 (derived). Let t(z) = log q(z|x) - log p(z) - log p(x|z) be the per-draw negative
ELBO of one image x (encoder's mean and logvar as answered), mu = E_q[t] = KL(q || p) + E_q[-log p(x|z)]
its expectation (the negative ELBO) and sigma^2 = Var_q[t]. The request sends x repeated C times, four
calls: a correct bound returns nelbo_i = mean of C independent t's per call, so their mean S over
n = 4C = 10,000 draws has mean mu and variance sigma^2 / n. This side computes the KL in closed form
(oracle.kl_normal) and estimates E_q[-log p(x|z)] by R, the mean over N = 40,000 draws of its own (a
generator independent of the child's), variance sigma_r^2 / N; it estimates sigma^2 and sigma_r^2 from
the same draws (never from the student's values). D = S - KL - R then has mean 0 and variance
sigma^2 / n + sigma_r^2 / N, and D / sqrt(that) is N(0, 1) by the central limit theorem (n, N >= 10,000;
the plug-in variances are off by O(N^-1/2), under 2%). The check fails when |D| exceeds Z_LIMIT standard
errors plus the float32 allowance of the mean (above, with C images), so that P(fail | correct) is within
stats.py's share. A biased estimator (z at the mean, the prior's log-variance 1, a sign) moves S by units.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import config, oracle
from . import elbo, remote, stats
from .base import CheckCase, ask, check
from .submission import SubmissionFault

FAMILY = "conv/negative_elbo_bound"
IMAGE_DIM = remote.IMAGE_DIM
Z_DIM = config.Z_DIM
BATCH = 200                     # x 10 latent dimensions: 2,000 standardized residuals per z-test
SMALLER_BATCH = 120             # 15.10's fourth batch: a batch size of its own
COPIES, CALLS = 2500, 4         # 15.11: one image, n = 10,000 draws
GRADER_DRAWS, CHUNK = 40_000, 2_500     # this side's draws, decoded a chunk at a time (16 MB of logits)
EPS32 = 2.0 ** -24
TOLERANCE_FACTOR = 2.0
GRAD_RTOL = 1e-3                # float32 backward passes against float64 here, relative to the largest entry
LOG_2PI = math.log(2 * math.pi)
NAMES = ("nelbo", "kl", "rec")

_MODEL = remote.ConvTrustedModel(Z_DIM)


def _images(count, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((count, IMAGE_DIM)) < rng.uniform(0.05, 0.4, (count, 1))).astype(np.float32)


_X = _images(BATCH, 2468)


def _one_image_copies():
    """15.11's batch: the first image COPIES times (8 MB: built when 15.11 runs, not held from import)."""
    return np.repeat(_X[:1], COPIES, axis=0)


def _t(array):
    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def _run(submission, x, key, grads=False, calls=1, kept_phases=None):
    """The reply of negative_elbo_bound(x) (cached per key), with .session: what this side recorded (the
    answers of `kept_phases` only, where given)."""
    session = remote.ConvSession(_MODEL, kept_phases)
    reply = ask(submission, FAMILY, "conv_elbo", {"z_dim": Z_DIM, "grads": grads, "calls": calls}, {"x": x},
                key=key, on_callback=session)
    if getattr(reply, "session", None) is None:
        reply.session, reply.x = session, x
    return reply


def _terms_replies(submission):
    """15.10's replies: "main" and "again" (their failures are the check's), then those of the further
    batches that came back (a failed request is left to the checks that own it). A closed-form kl lands
    within the float tolerance of the Monte Carlo one about once in 700 calls of 200 images (measured,
    this side's encoder: bench/chance_conv_kl.py), so two calls let it through about once in 500,000
    gradings; on four (one of 120 images), about once in 10^11."""
    replies = [_run(submission, _X, "main"), _run(submission, _X, "again")]
    for key, x in (("third", _X), ("smaller", _X[:SMALLER_BATCH])):
        try:
            replies.append(_run(submission, x, key))
        except SubmissionFault:
            continue
    return replies


def _value(reply, name, per_image=False):
    """(value, problem): the term `name` as decoded here, or why it is not one finite number. per_image:
    one value per image stands for their batch mean (its shape is 15.8's to report)."""
    array = reply.arrays.get(name)
    if array is None or array.dtype.kind not in "fiub":
        return None, f"negative_elbo_bound returned no numeric tensor as its {name}."
    batch = len(reply.x)
    if array.size != 1 and not (per_image and array.size == batch):
        return None, (f"{name} has shape {tuple(array.shape)}: return the batch mean, a scalar (e.g. "
                      f"{name}.mean()).")
    value = float(array.astype(np.float64).mean())
    if not math.isfinite(value):
        return None, f"{name} is {value}."
    return value, None


# ---------------------------------------------------------------- what one call's records say

@dataclass
class Draw:
    """One call of negative_elbo_bound as this side saw it (float64 copies of what was exchanged)."""
    x: np.ndarray
    m: np.ndarray = None
    logvar: np.ndarray = None
    enc_call: remote.Call = None
    decoded: list = None            # the decoder calls whose z has one row per image
    calls: int = 0                  # the draws decoded in this phase (the same z decoded again counts once)
    problem: str = None
    session: remote.ConvSession = None
    phase: str = "forward"

    def terms(self, call):
        """(rec rows, kl rows, closed-form kl rows, rec scale, kl scale) at the z of decoder call `call`."""
        z, x = _t(call.inputs[0]), _t(self.x)
        logits = _t(call.outputs[0]).reshape(len(self.x), -1)
        m, lv = _t(self.m), _t(self.logvar)
        zero = torch.zeros(1, dtype=torch.float64)
        rec = oracle.reconstruction(x, logits)
        kl = oracle.log_normal_pdf(z, m, lv) - oracle.log_normal_pdf(z, zero, zero)
        closed = oracle.kl_normal(m, lv.exp(), zero, zero.exp())
        return (rec.numpy(), kl.numpy(), closed.numpy(), *self.scales(call))

    def scales(self, call):
        """(rec scale, kl scale): the magnitudes the float32 rounding of the terms at decoder call `call` is
        relative to (15.10's and 15.11's tolerances), without float64 copies of the batch's logits."""
        logits = call.outputs[0].reshape(len(self.x), -1)
        rec_scale = float((np.abs(logits).sum(-1, dtype=np.float64) + logits.shape[-1]).mean())
        z, m, lv = _t(call.inputs[0]), _t(self.m), _t(self.logvar)
        kl_scale = (0.5 * ((z - m) ** 2 * torch.exp(-lv) + lv.abs() + z ** 2 + 2 * LOG_2PI)).sum(-1).mean()
        return rec_scale, float(kl_scale)


def _draw(reply, phase="forward"):
    """What the records of one call (its `phase`) say, computed once per reply and phase."""
    cache = reply.__dict__.setdefault("draws", {})
    if phase in cache:
        return cache[phase]
    x = reply.x
    found = Draw(x, session=reply.session, phase=phase)
    cache[phase] = found
    for call in reply.session.of("enc", phase):
        seen = call.inputs[0]
        if seen.size == x.size and np.array_equal(seen.reshape(x.shape), x):
            found.enc_call = call
            found.m, found.logvar = (o.astype(np.float64) for o in call.outputs)
            break
    if found.enc_call is None:
        found.problem = ("negative_elbo_bound never passed its batch x to self.enc: q(z|x) comes from "
                         "mean, logvar = self.enc(x).")
        return found
    calls = reply.session.of("dec", phase)
    found.calls = len({(c.inputs[0].shape, c.inputs[0].dtype.str, c.inputs[0].tobytes()) for c in calls})
    found.decoded = [c for c in calls if c.inputs[0].shape == found.m.shape]
    if not found.decoded:
        shapes = ", ".join(str(c.inputs[0].shape) for c in calls[:3]) or "none"
        found.problem = (f"self.dec never received a batch of z of shape ({len(x)}, {Z_DIM}), one z per image "
                         f"(it got: {shapes}): rec is -log p(x|z) at logits = self.dec(z).")
    return found


def _tolerance(scale, dims, batch):
    return TOLERANCE_FACTOR * (dims + batch + 4) * EPS32 * scale


def _close(value, rows, scale, dims):
    return value is not None and abs(value - rows.mean()) <= _tolerance(scale, dims, len(rows))


# ---------------------------------------------------------------- 15.9: is the decoded z one draw of q(z|x)?

def _residual_problem(z, m, logvar):
    """None if (z - m) / exp(logvar / 2) passes as standard normal (mean, variance), else what was observed."""
    if np.max(np.abs(z - m)) <= 1e-6 * (1 + np.max(np.abs(m))):
        return ("The z that reached self.dec is the mean of q(z|x) itself (no noise at all): decode one draw, "
                "z = self.reparameterize(mean, logvar).")
    residuals = ((z - m) / np.exp(logvar / 2)).ravel()
    mean_z = float(stats.mean_z(residuals[:, None], 0.0, 1.0)[0])
    variance_z = float(stats.variance_z(residuals[:, None], 1.0)[0])
    if abs(mean_z) <= stats.Z_LIMIT and abs(variance_z) <= stats.Z_LIMIT:
        return elbo._dimensions_problem((z - m) / np.exp(logvar / 2), "The z that reached self.dec is not one "
                                        "draw of q(z|x) = N(mean, diag(exp(logvar)))", "mean")
    observed = (f"the residuals (z - mean) / exp(logvar / 2) have mean {residuals.mean():.3g} and variance "
                f"{residuals.var():.3g} over {residuals.size} values (expected 0 and 1: z-scores {mean_z:.1f} and "
                f"{variance_z:.1f}, |z| <= {stats.Z_LIMIT:g} expected)")
    sample = "The z that reached self.dec is not one draw of q(z|x) = N(mean, diag(exp(logvar)))"
    squared = residuals ** 2
    spread = squared > 0
    slope = float(np.polyfit(logvar.ravel()[spread], np.log(squared[spread]), 1)[0]) if spread.sum() > 10 else 0.0
    if abs(slope - 1) < 0.25:
        return (f"{sample}: its spread around the mean grows like exp(logvar), the variance, not exp(logvar / 2), "
                f"the standard deviation ({observed}): z = mean + exp(0.5 * logvar) * eps.")
    if abs(slope + 1) < 0.25:
        return (f"{sample}: its spread around the mean does not depend on logvar ({observed}): "
                "z = mean + exp(0.5 * logvar) * eps.")
    return f"{sample}: {observed}. The noise must be standard normal, z = mean + exp(0.5 * logvar) * eps."


# ---------------------------------------------------------------- 15.10: the terms at the decoded z

def _match(draw, values):
    """The decoder call whose z both terms were computed at (rec and kl right there), else the one rec
    or kl fits, else the first; with its terms."""
    scored = []
    for call in draw.decoded:
        rec_rows, kl_rows, closed, rec_scale, kl_scale = terms = draw.terms(call)
        ok = (_close(values["rec"], rec_rows, rec_scale, IMAGE_DIM), _close(values["kl"], kl_rows, kl_scale, Z_DIM))
        scored.append((sum(ok), call, terms, ok))
    best = max(scored, key=lambda item: item[0])
    return best[1], best[2], best[3]


def _rec_hint(rec, rows, logits_rows):
    batch = len(rows)
    for value, what in (
            (-rows.mean(), "the sign is reversed: rec is -log p(x|z), a positive number"),
            (rows.sum(), "it is the sum over the batch: average over the images (.mean())"),
            (rows.mean() / 28, "it is summed over one row of 28 pixels only: flatten the logits to (batch, 784), "
                               "like x, before ut.log_bernoulli_with_logits (which sums over the last dimension)"),
            (rows.mean() / IMAGE_DIM, "it is a mean over the pixels too: -log p(x|z) sums over the 784 pixels"),
            (logits_rows.mean(), "it is a squared error between x and sigmoid(logits): use the Bernoulli "
                                 "log-likelihood, -ut.log_bernoulli_with_logits(x, logits)")):
        if batch > 1 or "sum over the batch" not in what:
            if abs(rec - value) <= 1e-4 * (abs(value) + 1):
                return f" It looks like {what}."
    return ""


def _kl_hint(kl, draw, call, kl_rows, closed):
    z, m, lv = _t(call.inputs[0]), _t(draw.m), _t(draw.logvar)
    zero = torch.zeros(1, dtype=torch.float64)
    log_q = oracle.log_normal_pdf(z, m, lv).numpy()
    candidates = (
        (closed.mean(), "the closed-form KL(q(z|x) || p(z)): this bound's kl is the one-sample Monte Carlo "
                        "estimate, log q(z|x) - log p(z) at the drawn z (log_normal_pdf twice)"),
        (-kl_rows.mean(), "log p(z) - log q(z|x): the sign is reversed, kl = log q(z|x) - log p(z)"),
        (kl_rows.sum(), "the sum over the batch: average over the images (.mean())"),
        ((log_q - oracle.log_normal_pdf(z, zero, zero + 1).numpy()).mean(),
         "log p(z) computed with log-variance 1: the prior N(0, I) has mean 0 and log-variance 0"),
        ((log_q - oracle.log_normal_pdf(z, zero, lv).numpy()).mean(),
         "log p(z) computed with the encoder's logvar: the prior N(0, I) has mean 0 and log-variance 0"),
        (log_q.mean(), "log q(z|x) alone: subtract log p(z), the prior N(0, I)'s log-density at z"),
        ((oracle.log_normal_pdf(m, m, lv) - oracle.log_normal_pdf(m, zero, zero)).numpy().mean(),
         "log q - log p at the mean of q(z|x): evaluate both at the drawn z that reached self.dec"))
    for value, what in candidates:
        if math.isfinite(value) and abs(kl - value) <= 1e-4 * (abs(value) + 1):
            return f" It looks like {what}."
    for other in session_samples(draw, call):
        value = (oracle.log_normal_pdf(other, m, lv) - oracle.log_normal_pdf(other, zero, zero)).numpy().mean()
        if abs(kl - value) <= 1e-4 * (abs(value) + 1):
            return (" It is log q(z|x) - log p(z) at another z than the one decoded (a second draw?): evaluate kl at "
                    "the very z that reached self.dec.")
    return ""


def session_samples(draw, call):
    """The samples log_normal_pdf got in the same call, other than the decoded z (float64 tensors)."""
    decoded = call.inputs[0]
    return [_t(c.inputs[0]) for c in draw.session.of("log_normal_pdf", draw.phase)
            if c.inputs[0].shape == decoded.shape and not np.array_equal(c.inputs[0], decoded)]


def _terms_problems(reply):
    """What is wrong with the three values of one call at the z it decoded (empty: nothing)."""
    draw = _draw(reply)
    if draw.problem:
        return [draw.problem]
    values, problems = {}, []
    for name in NAMES:
        values[name], problem = _value(reply, name, per_image=True)
        if problem:
            problems.append(problem)
    if problems:
        return problems
    call, (rec_rows, kl_rows, closed, rec_scale, kl_scale), (rec_ok, kl_ok) = _match(draw, values)
    where = "at the z your code passed to self.dec"
    if not rec_ok:
        x = _t(draw.x)
        logits = _t(call.outputs[0]).reshape(len(draw.x), -1)
        squared = ((x - torch.sigmoid(logits)) ** 2).sum(-1).numpy()
        problems.append(f"Expected rec = {rec_rows.mean():.6g}, the batch mean of -log p(x|z) (Bernoulli with the "
                        f"decoder's logits, summed over the 784 pixels) {where}; got {values['rec']:.6g}."
                        + _rec_hint(values["rec"], rec_rows, squared))
    if not kl_ok:
        problems.append(f"Expected kl = {kl_rows.mean():.6g}, the batch mean of log q(z|x) - log p(z) {where} (the "
                        f"one-sample Monte Carlo KL; the closed form would be {closed.mean():.6g}); got "
                        f"{values['kl']:.6g}." + _kl_hint(values["kl"], draw, call, kl_rows, closed))
    nelbo, kl, rec = values["nelbo"], values["kl"], values["rec"]
    allowance = _tolerance(rec_scale, IMAGE_DIM, len(draw.x)) + _tolerance(kl_scale, Z_DIM, len(draw.x))
    if abs(nelbo - (kl + rec)) > allowance:
        hint = ""
        for value, what in ((rec - kl, "rec - kl: kl is added"), (-(kl + rec), "-(kl + rec): the sign is reversed"),
                            (rec, "rec alone"), (kl, "kl alone")):
            if abs(nelbo - value) <= allowance:
                hint = f" It is {what}."
        problems.append(f"nelbo should be kl + rec = {kl + rec:.6g}; got {nelbo:.6g}.{hint}")
    return problems


# ---------------------------------------------------------------- 15.11: unbiased

def _grader_estimate(x, m, logvar):
    """(closed-form KL, mean rec R, Var t, Var rec) from this side's own draws (fixed seed, float64)."""
    generator = torch.Generator().manual_seed(20261207)
    x, m, lv = _t(x)[None], _t(m)[None], _t(logvar)[None]
    zero = torch.zeros(1, dtype=torch.float64)
    recs, totals = [], []
    with torch.no_grad():
        for _ in range(GRADER_DRAWS // CHUNK):
            z = m + torch.exp(lv / 2) * torch.randn((CHUNK, Z_DIM), generator=generator, dtype=torch.float64)
            rec = oracle.reconstruction(x, _MODEL.decode(z).reshape(CHUNK, -1))
            recs.append(rec)
            totals.append(rec + oracle.log_normal_pdf(z, m, lv) - oracle.log_normal_pdf(z, zero, zero))
        kl = float(oracle.kl_normal(m, lv.exp(), zero, zero.exp())[0])
    recs, totals = torch.cat(recs), torch.cat(totals)
    return kl, float(recs.mean()), float(totals.var()), float(recs.var())


# ---------------------------------------------------------------- 15.12: gradients

def _arrivals(session, call, phase, index=None):
    """The sum of the gradients that reached `call`'s outputs in `phase` (float64 arrays)."""
    total = [np.zeros(o.shape) for o in call.outputs]
    for arrived, grads in session.arrivals(call.name, phase):
        if arrived is call:
            total = [t + g.astype(np.float64) for t, g in zip(total, grads)]
    return total


def _detached_terms(session):
    """kl and rec among those that came back without any gradient while nelbo has one: returned detached (for
    logging; the docstring asks for scalar tensors), their gradients are judged through nelbo's."""
    def reached(phase):
        return any(session.arrivals(name, phase) for name in ("enc", "dec"))
    return {name for name in ("rec", "kl") if not reached(name)} if reached("nelbo") else set()


def _gradient_problems(reply):
    draw = _draw(reply)
    if draw.problem:
        return [draw.problem]
    values = {name: _value(reply, name, per_image=True)[0] for name in NAMES}
    if any(v is None for v in values.values()):
        return []                  # 15.8 / 15.10 report it; no value, no gradient to judge
    call, _, (rec_ok, kl_ok) = _match(draw, values)
    batch, session = len(draw.x), reply.session
    scale = {name: 1 / batch if reply.arrays[name].size == 1 else 1.0 for name in NAMES}
    x = _t(draw.x)
    m, lv = _t(draw.m).requires_grad_(True), _t(draw.logvar).requires_grad_(True)
    eps = (_t(call.inputs[0]) - _t(draw.m)) / torch.exp(_t(draw.logvar) / 2)
    z = m + torch.exp(lv / 2) * eps
    zero = torch.zeros(1, dtype=torch.float64)
    rec_rows = oracle.reconstruction(x, _MODEL.decode(z).reshape(batch, -1))
    kl_rows = oracle.log_normal_pdf(z, m, lv) - oracle.log_normal_pdf(z, zero, zero)
    want = {"rec": [g.numpy() for g in torch.autograd.grad(rec_rows.sum() * scale["rec"], (m, lv), retain_graph=True)],
            "kl": [g.numpy() for g in torch.autograd.grad(kl_rows.sum() * scale["kl"], (m, lv))]}
    want["nelbo"] = [a / scale["rec"] * scale["nelbo"] + b / scale["kl"] * scale["nelbo"]
                     for a, b in zip(want["rec"], want["kl"])]
    problems = []
    wrong_z = _residual_problem(call.inputs[0].astype(np.float64), draw.m, draw.logvar)
    because = ("The z that reached self.dec is not one draw of q(z|x) (see 15.9), and so " if wrong_z else "")
    detached = _detached_terms(session)
    if rec_ok:
        rec_phase = "nelbo" if "rec" in detached else "rec"
        call = _decoding_reached(draw, call, rec_phase)
        logits = call.outputs[0].astype(np.float64).reshape(batch, -1)
        want_logits = (1 / (1 + np.exp(-logits)) - draw.x) * scale[rec_phase]
        got_logits = _arrivals(session, call, rec_phase)[0].reshape(batch, -1)
        if not np.any(got_logits):
            problems.append("No gradient of rec reached the decoder's logits: compute rec from self.dec(z) with torch "
                            "operations (no .item(), .detach(), numpy or torch.no_grad()).")
        elif not _near(got_logits, want_logits):
            problems.append("The gradient of rec at the decoder's logits is not that of -log p(x|z) averaged over "
                            "the batch: is part of rec detached or computed outside torch?")
    terms = [name for name, ok in (("rec", rec_ok), ("kl", kl_ok)) if ok]
    if rec_ok and kl_ok and abs(values["nelbo"] - values["kl"] - values["rec"]) <= 1e-4 * (abs(values["nelbo"]) + 1):
        terms.append("nelbo")
    missing, wrong = [], {}
    for name in (t for t in terms if t not in detached):
        got = _arrivals(session, draw.enc_call, name)
        wanted = want[name]
        if not np.any(got[0]) and not np.any(got[1]):
            missing.append(name)
            continue
        for which, got_i, want_i in (("mean", got[0], wanted[0]), ("logvar", got[1], wanted[1])):
            if not _near(got_i, want_i):
                wrong.setdefault(which, []).append(name)
    if missing:
        problems.append(because + f"no gradient of {' and '.join(missing)} reached the encoder's mean and logvar: is "
                        "z drawn without the reparameterization trick, or a term detached (.detach(), .item(), numpy)?")
    if wrong:
        where = "; ".join(f"of {', '.join(names)} at the encoder's {which}" for which, names in wrong.items())
        problems.append((because if not missing else "") + f"the gradients {where} are not the pathwise ones of the "
                        "estimator at your draw z = mean + exp(logvar / 2) * eps (dz/dmean = 1, dz/dlogvar = "
                        "(z - mean) / 2): is z, or a term, detached or drawn some other way?")
    return [p[0].upper() + p[1:] for p in problems]


def _decoding_reached(draw, call, phase):
    """`call`, or another decoding of the same z that `phase`'s gradient came back to (a draw decoded twice,
    e.g. once to check the logits' shape: rec's gradient reaches the decoding rec was computed from)."""
    def reached(candidate):
        return any(np.any(g) for g in _arrivals(draw.session, candidate, phase))

    if reached(call):
        return call
    same_z = (c for c in draw.decoded if c is not call and np.array_equal(c.inputs[0], call.inputs[0]))
    return next((c for c in same_z if reached(c)), call)


def _near(got, want):
    return got.shape == want.shape and np.allclose(got, want, rtol=GRAD_RTOL,
                                                   atol=GRAD_RTOL * max(np.abs(want).max(), 1e-30))


class ConvElboChecks(CheckCase):

    @check(FAMILY, "three_scalars")
    def test_three_scalars(self):
        """conv/negative_elbo_bound: returns three finite scalar tensors (nelbo, kl, rec)"""
        reply = _run(self.submission, _X, "main")
        for name in NAMES:
            _, problem = _value(reply, name)
            if problem:
                self.fail(problem)

    @check(FAMILY, "one_draw_per_image")
    def test_one_draw_per_image(self):
        """conv/negative_elbo_bound: self.dec gets one fresh draw z ~ q(z|x) per image"""
        reply = _run(self.submission, _X, "main")
        draw = _draw(reply)
        if draw.problem:
            self.fail(draw.problem)
        if draw.calls != 1:
            self.fail(f"self.dec was called {draw.calls} times in one call of negative_elbo_bound: decode one draw "
                      "z per image, once (z = self.reparameterize(mean, logvar); logits = self.dec(z)).")
        z = draw.decoded[0].inputs[0].astype(np.float64)
        problem = _residual_problem(z, draw.m, draw.logvar)
        if problem:
            self.fail(problem)
        again = _draw(_run(self.submission, _X, "again"))
        if again.decoded and np.array_equal(again.decoded[0].inputs[0], draw.decoded[0].inputs[0]):
            self.fail("Two calls of negative_elbo_bound on the same images decoded the same z: draw it afresh at "
                      "each call (no fixed seed, no noise kept from an earlier call).")

    @check(FAMILY, "monte_carlo_terms")
    def test_monte_carlo_terms(self):
        """conv/negative_elbo_bound: rec and kl are the Monte Carlo terms at the decoded z, nelbo = kl + rec"""
        for reply in _terms_replies(self.submission):
            problems = _terms_problems(reply)
            if problems:
                self.fail(" ".join(problems))

    @check(FAMILY, "unbiased")
    def test_unbiased(self):
        """conv/negative_elbo_bound: over 10,000 draws nelbo averages the closed-form negative ELBO (a z-test)"""
        reply = _run(self.submission, _one_image_copies(), "unbiased", calls=CALLS, kept_phases=("call0",))
        values = []
        for i in range(CALLS):
            value, problem = _value(reply, f"nelbo{i}", per_image=True)      # its shape is 15.8's
            if problem:
                self.fail(problem.replace(f"nelbo{i}", "nelbo"))
            values.append(value)
        draw = _draw(reply, "call0")
        if draw.problem:
            self.fail(draw.problem)
        m, logvar = draw.m[0], draw.logvar[0]
        kl, rec, variance, rec_variance = _grader_estimate(_X[0], m, logvar)
        truth = kl + rec
        n = CALLS * COPIES
        error = math.sqrt(variance / n + rec_variance / GRADER_DRAWS)
        rec_scale, kl_scale = draw.scales(draw.decoded[0]) if draw.decoded else (0, 0)
        allowance = _tolerance(rec_scale, IMAGE_DIM, COPIES) + _tolerance(kl_scale, Z_DIM, COPIES)
        got = float(np.mean(values))
        if abs(got - truth) > stats.Z_LIMIT * error + allowance:
            summed = abs(got - COPIES * truth) <= COPIES * (stats.Z_LIMIT * error + allowance)
            hint = (" It is about the sum over the batch of the per-image values: average over the images (.mean())."
                    if summed else "")
            self.fail(f"Over {n} draws of one image ({CALLS} calls on a batch of it repeated {COPIES} times), nelbo "
                      f"averages {got:.6g}; the negative ELBO (closed-form KL {kl:.6g} + E[-log p(x|z)] "
                      f"{rec:.6g}) is {truth:.6g}, standard error {error:.3g} (z = {(got - truth) / error:.1f}, "
                      f"|z| <= {stats.Z_LIMIT:g} expected): the estimate is biased. Its expectation over the draw "
                      "z ~ q(z|x) must be the negative ELBO: is z a draw of q(z|x), and are log q(z|x), log p(z) "
                      "and log p(x|z) (and their signs) right?" + hint)

    @check(FAMILY, "gradients")
    def test_gradients(self):
        """conv/negative_elbo_bound: the gradients at the decoder's logits and the encoder's outputs are pathwise"""
        problems = _gradient_problems(_run(self.submission, _X, "grads", grads=True))
        if problems:
            self.fail(" ".join(problems))
