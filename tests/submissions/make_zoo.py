"""Generate the submission zoo: `python tests/submissions/make_zoo.py` (from the repo root).

Every case is the reference solution (solution/utils.py, solution/vae.py) with one or more
student regions (`# BEGIN SOLUTION` ... `# END SOLUTION`) replaced by a student's code;
the regions it does not touch keep the reference code (markers dropped, as in a student's
file). Each case is one `tests/submissions/<case>/case.json` in the format of tests/cases.py:
both files `from` the reference with the edits that put the student's code in, and the honest
scores as words ("full" cases: full everywhere, training included; the buggy ones: "less" in
their tag, or the exact failing checks under "fails", and "full" in the other unit tags,
training left out; the handout: "none" everywhere), and "hint" where the feedback must say
something specific.

In CASES, a case's "append" ({file: text}) adds the student's own helpers after the provided
code of that file, "imports" ({file: [lines]}) goes after its last import, "subdir" puts both
files in a folder and "extra" ({path: "handout:utils.py"}) adds files beside them.

tests/test_zoo.py grades each case and checks that the committed case.json files are what this
script generates (`render()`), so edit CASES here, then rerun the script.
"""
import re
import shutil
import sys
import textwrap
from pathlib import Path

ZOO = Path(__file__).resolve().parent
ROOT = ZOO.parent.parent
SOLUTION = ROOT / "solution"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests import cases  # noqa: E402  (the case format)

UNIT_TAGS = ("sample_gaussian", "kl_normal", "negative_elbo_bound")

FILE_OF = {"sample_gaussian": "utils.py", "kl_normal": "utils.py", "negative_elbo_bound": "vae.py"}
BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEF = re.compile(r"^\s*def (\w+)\(")

# ---------------------------------------------------------------------------------------
# Correct submissions, in different styles: full marks in every unit tag.
# ---------------------------------------------------------------------------------------
CORRECT = {
    "distributions": dict(
        why="torch.distributions.Normal(m, v.sqrt()).rsample(); KL via kl_divergence(Normal, Normal).sum(-1)",
        code={
            "sample_gaussian": """
                z = torch.distributions.Normal(m, v.sqrt()).rsample()
            """,
            "kl_normal": """
                q = torch.distributions.Normal(qm, qv.sqrt())
                p = torch.distributions.Normal(pm, pv.sqrt())
                kl = torch.distributions.kl_divergence(q, p).sum(-1)
            """,
        }),
    "randn_broadcast_logvar": dict(
        why="torch.randn(broadcast_shapes(...), dtype=, device=) with v ** 0.5; KL in log-variance form",
        code={
            "sample_gaussian": """
                shape = torch.broadcast_shapes(m.shape, v.shape)
                eps = torch.randn(shape, dtype=m.dtype, device=m.device)
                z = m + v ** 0.5 * eps
            """,
            "kl_normal": """
                q_logv, p_logv = torch.log(qv), torch.log(pv)
                kl = 0.5 * torch.sum(p_logv - q_logv + torch.exp(q_logv - p_logv)
                                     + (qm - pm) ** 2 * torch.exp(-p_logv) - 1, dim=-1)
            """,
        }),
    "exp_half_log": dict(
        why="std as exp(0.5 * log v), noise from randn_like(m); KL with log(pv / qv) and torch.sum(dim=-1)",
        code={
            "sample_gaussian": """
                std = torch.exp(0.5 * torch.log(v))
                z = m + std * torch.randn_like(m)
            """,
            "kl_normal": """
                kl = 0.5 * torch.sum(torch.log(pv / qv) + qv / pv + (qm - pm) ** 2 / pv - 1, dim=-1)
            """,
        }),
    "normal_inplace_loop": dict(
        why="noise from zeros_like(m + std).normal_() (in place on a fresh tensor), mul/add methods; "
            "KL accumulated over the dimensions in a Python loop",
        code={
            "sample_gaussian": """
                std = torch.sqrt(v)
                eps = torch.zeros_like(m + std).normal_()
                z = eps.mul(std).add(m)
            """,
            "kl_normal": """
                pm, pv = pm.expand_as(qm), pv.expand_as(qv)
                kl = torch.zeros_like(qm[..., 0])
                for j in range(qm.shape[-1]):
                    kl = kl + 0.5 * (torch.log(pv[..., j] / qv[..., j])
                                     + (qv[..., j] + (qm[..., j] - pm[..., j]) ** 2) / pv[..., j] - 1)
            """,
        }),
    "bce_with_logits": dict(
        why="rec via F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1), batch means first",
        imports={"vae.py": ["import torch.nn.functional as F"]},
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                z = ut.sample_gaussian(m, v)
                logits = self.dec(z)
                rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                nelbo = kl + rec
            """,
        }),
    "bernoulli_distribution": dict(
        why="rec via torch.distributions.Bernoulli(logits=...).log_prob(x).sum(-1); prior expanded to q's shape",
        code={
            "negative_elbo_bound": """
                qm, qv = self.enc(x)
                kl = ut.kl_normal(qm, qv, self.z_prior_m.expand_as(qm), self.z_prior_v.expand_as(qv))
                z = ut.sample_gaussian(qm, qv)
                p_x_given_z = torch.distributions.Bernoulli(logits=self.dec(z))
                rec = -p_x_given_z.log_prob(x).sum(-1)
                nelbo = torch.mean(kl + rec)
                kl, rec = torch.mean(kl), torch.mean(rec)
            """,
        }),
    "all_distributions": dict(
        why="negative_elbo_bound with torch.distributions everywhere: q.rsample(), kl_divergence, Bernoulli "
            "(never calls ut.sample_gaussian, so the rec term is judged statistically)",
        code={
            "negative_elbo_bound": """
                D = torch.distributions
                m, v = self.enc(x)
                q = D.Normal(m, v.sqrt())
                prior = D.Normal(self.z_prior_m, self.z_prior_v.sqrt())
                kl = D.kl_divergence(q, prior).sum(-1).mean()
                z = q.rsample()
                rec = -D.Bernoulli(logits=self.dec(z)).log_prob(x).sum(-1).mean()
                nelbo = kl + rec
            """,
        }),
    "sum_over_batch_size": dict(
        why="batch means written as .sum() / batch_size",
        code={
            "negative_elbo_bound": """
                batch_size = x.shape[0]
                m, v = self.enc(x)
                z = ut.sample_gaussian(m, v)
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).sum() / batch_size
                rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).sum() / batch_size
                nelbo = kl + rec
            """,
        }),
    "multivariate_normal": dict(
        why="a full-covariance MultivariateNormal with diag_embed(v): rsample() and kl_divergence (Cholesky-based)",
        code={
            "sample_gaussian": """
                z = torch.distributions.MultivariateNormal(m, torch.diag_embed(v)).rsample()
            """,
            "kl_normal": """
                q = torch.distributions.MultivariateNormal(qm, torch.diag_embed(qv))
                p = torch.distributions.MultivariateNormal(pm.expand_as(qm), torch.diag_embed(pv.expand_as(qv)))
                kl = torch.distributions.kl_divergence(q, p)
            """,
        }),
    "logsigmoid": dict(
        why="rec written out with F.logsigmoid: x * logsigmoid(l) + (1 - x) * logsigmoid(-l)",
        imports={"vae.py": ["from torch.nn import functional as F"]},
        code={
            "negative_elbo_bound": """
                mu, var = self.enc(x)
                z = ut.sample_gaussian(mu, var)
                logits = self.dec(z)
                log_px = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(dim=1)
                kl = ut.kl_normal(mu, var, self.z_prior_m, self.z_prior_v).mean()
                rec = -log_px.mean()
                nelbo = rec + kl
            """,
        }),
    "student_helper": dict(
        why="utils.py defines the student's own helper bernoulli_nll, which negative_elbo_bound uses; vae.py imports "
            "sample_gaussian and kl_normal with `from utils import ...`",
        append={"utils.py": """


            def bernoulli_nll(x, logits):
                \"\"\"-log p(x | logits) summed over pixels: my own helper.\"\"\"
                return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        """},
        imports={"vae.py": ["from utils import kl_normal, sample_gaussian"]},
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                kl = kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                rec = ut.bernoulli_nll(x, self.dec(sample_gaussian(m, v))).mean()
                nelbo = kl + rec
            """,
        }),
    "probabilities_epsilon_bce": dict(
        why="rec from the pixel probabilities compute_sigmoid_given(z) with the student's own Bernoulli helper, "
            "1e-7 added inside both logs for stability (the bce2 helper of the public CS236 code divymurli/VAEs "
            "and VictorHoffmann1/CausalVAE, codebase/utils.py): the bound agrees to 1e-4, the gradient at the "
            "few saturated logits by a few percent",
        append={"utils.py": """


            def bernoulli_log_prob_from_probs(x, probs, eps=1e-7):
                \"\"\"log p(x) of Bernoulli pixels given their probabilities, summed over the last dimension.\"\"\"
                return (x * torch.log(probs + eps) + (1 - x) * torch.log(1 - probs + eps)).sum(-1)
        """},
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                z = ut.sample_gaussian(m, v)
                probs = self.compute_sigmoid_given(z)
                rec = -ut.bernoulli_log_prob_from_probs(x, probs).mean()
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                nelbo = kl + rec
            """,
        }),
    "decoder_twice": dict(
        why="decodes the same z twice: probabilities for a sanity assert (compute_sigmoid_given), then rec from "
            "self.dec(z); only the second decoding carries rec's gradient",
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                z = ut.sample_gaussian(m, v)
                probs = self.compute_sigmoid_given(z)
                assert probs.shape == x.shape, probs.shape
                rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).mean()
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                nelbo = kl + rec
            """,
        }),
    "decoder_sample_axis": dict(
        why="z given a leading sample axis of one, as an importance-weighted bound's (iw, batch, z_dim), and "
            "decoded so: self.dec(z.unsqueeze(0)).squeeze(0) (the provided Decoder takes any leading shape)",
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                z = ut.sample_gaussian(m, v).unsqueeze(0)
                logits = self.dec(z).squeeze(0)
                rec = -ut.log_bernoulli_with_logits(x, logits).mean()
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                nelbo = kl + rec
            """,
        }),
    "detached_terms": dict(
        why="returns kl and rec detached, for logging (as the docstring allows: scalar tensors); nelbo keeps the "
            "whole gradient of the bound",
        code={
            "negative_elbo_bound": """
                m, v = self.enc(x)
                kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                rec = -ut.log_bernoulli_with_logits(x, self.dec(ut.sample_gaussian(m, v))).mean()
                nelbo = kl + rec
                kl, rec = kl.detach(), rec.detach()
            """,
        }),
    "network_layers": dict(
        why="reads the provided networks' layers: the device from self.enc.net[0].weight, the pixel count from "
            "self.dec.net[-1].out_features (asserted against x), then calls self.enc.net and self.dec.net itself",
        code={
            "negative_elbo_bound": """
                device = self.enc.net[0].weight.device
                assert x.shape[-1] == self.dec.net[-1].out_features, x.shape
                m, v = ut.gaussian_parameters(self.enc.net(x), dim=-1)
                prior_m = torch.zeros(self.z_dim, device=device)
                kl = ut.kl_normal(m, v, prior_m, torch.ones_like(prior_m)).mean()
                rec = -ut.log_bernoulli_with_logits(x, self.dec.net(ut.sample_gaussian(m, v))).mean()
                nelbo = kl + rec
            """,
        }),
    "subfolder": dict(
        why="both files in a subfolder my_hw2/ (as zipped by a student), with a stale untouched stub in "
            "my_hw2/backup/utils.py; addcmul sampler, KL with .square(), nelbo as -(elbo).mean()",
        subdir="my_hw2",
        extra={"backup/utils.py": "handout:utils.py"},
        code={
            "sample_gaussian": """
                z = torch.addcmul(m, v.sqrt(), torch.randn_like(m))
            """,
            "kl_normal": """
                kl = (0.5 * (pv.log() - qv.log()) + (qv + (qm - pm).square()) / (2 * pv) - 0.5).sum(-1)
            """,
            "negative_elbo_bound": """
                m, v = self.enc(x)
                kl_per_image = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)
                log_px = ut.log_bernoulli_with_logits(x, self.dec(ut.sample_gaussian(m, v)))
                elbo = log_px - kl_per_image
                nelbo = -elbo.mean()
                kl = kl_per_image.mean()
                rec = -log_px.mean()
            """,
        }),
}

# ---------------------------------------------------------------------------------------
# Buggy submissions: one typical mistake each; they must lose points in their tag only.
# ---------------------------------------------------------------------------------------
REF_SG = "eps = torch.randn_like(m + v)\nz = m + torch.sqrt(v) * eps"
REF_KL = "element_wise = 0.5 * (torch.log(pv) - torch.log(qv) + qv / pv + (qm - pm).pow(2) / pv - 1)"


def _kl(element_wise, reduce="kl = element_wise.sum(-1)"):
    return f"element_wise = {element_wise}\n{reduce}"


def _elbo(kl="kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)",
          z="z = ut.sample_gaussian(m, v)",
          rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z))",
          nelbo="nelbo = kl + rec",
          means="nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()"):
    return "\n".join(["m, v = self.enc(x)", kl, z, rec, nelbo, means])


BUGGY = {
    # sample_gaussian -------------------------------------------------------------------
    "sg_variance_as_std": ("sample_gaussian", "the variance used as the standard deviation: m + v * eps "
                                              "(the noise itself is independent: only 1.2 and 1.4 may fail)",
                           "eps = torch.randn_like(m + v)\nz = m + v * eps", ["sqrt(v)"], {}, ["mean_and_variance", "pathwise_gradient"]),
    "sg_uniform_noise": ("sample_gaussian", "uniform noise rescaled to mean 0 and variance 1: right mean and "
                                            "variance, wrong distribution",
                         "eps = (torch.rand_like(m + v) - 0.5) * math.sqrt(12)\nz = m + torch.sqrt(v) * eps",
                         ["not normally distributed", "uniform"], {}, ["mean_and_variance"]),
    "sg_laplace_noise": ("sample_gaussian", "Laplace noise with variance 1: right mean and variance, heavy tails",
                         "scale = torch.full_like(m + v, 0.5 ** 0.5)\n"
                         "eps = torch.distributions.Laplace(torch.zeros_like(scale), scale).rsample()\n"
                         "z = m + torch.sqrt(v) * eps", ["not normally distributed", "too heavy"], {}, ["mean_and_variance"]),
    "sg_student_t_noise": ("sample_gaussian", "Student-t noise (5 degrees of freedom) rescaled to variance 1",
                           "df = torch.full_like(m + v, 5.0)\n"
                           "eps = torch.distributions.StudentT(df).rsample() * math.sqrt(3 / 5)\n"
                           "z = m + torch.sqrt(v) * eps", ["not normally distributed"], {}, ["mean_and_variance"]),
    "sg_ignores_m_v": ("sample_gaussian", "returns the standard normal noise itself, ignoring m and v (no "
                                          "gradient either; the noise is independent, so 1.3 passes)",
                       "z = torch.randn_like(m + v)", ["ignore m and v"], {}, ["mean_and_variance", "pathwise_gradient"]),
    "sg_fourth_root": ("sample_gaussian", "sqrt applied twice: m + v ** 0.25 * eps",
                       "eps = torch.randn_like(m + v)\nz = m + torch.sqrt(torch.sqrt(v)) * eps", ["sqrt(v)"]),
    "sg_exp_v": ("sample_gaussian", "v treated as a log-variance: m + exp(v) * eps",
                 "eps = torch.randn_like(m + v)\nz = m + torch.exp(v) * eps", []),
    "sg_shared_noise_across_batch": ("sample_gaussian", "one noise vector of shape (dim,) shared by every row",
                                     "eps = torch.randn(m.shape[-1], dtype=m.dtype)\nz = m + torch.sqrt(v) * eps",
                                     ["shared by all rows"]),
    "sg_noise_per_row": ("sample_gaussian", "one noise value per row, shared by every column: randn(batch, 1)",
                         "eps = torch.randn(*m.shape[:-1], 1, dtype=m.dtype)\nz = m + torch.sqrt(v) * eps",
                         ["correlated"]),
    "sg_randn_like_v": ("sample_gaussian", "noise drawn with v's shape (randn_like(v)): when v broadcasts, as (1, dim), "
                                           "every row gets the same noise",
                        "z = m + torch.sqrt(v) * torch.randn_like(v)", []),
    "sg_rand_like_v": ("sample_gaussian", "uniform noise torch.rand_like(v), neither centred nor scaled, and shaped "
                                          "like v (as DanielDworakowski/CS236, codebase/utils.py): wrong mean, "
                                          "variance and shape, and one noise row when v broadcasts",
                       "eps = torch.rand_like(v)\nz = eps * v.sqrt() + m", ["do not follow N(m, v)"], {},
                       ["mean_and_variance", "independent_noise"]),
    "sg_manual_seed": ("sample_gaussian", "torch.manual_seed(0) inside the function: the same noise every call",
                       "torch.manual_seed(0)\n" + REF_SG, ["seed"]),
    "sg_torch_normal": ("sample_gaussian", "torch.normal(m, sqrt(v)): no pathwise gradient",
                        "z = torch.normal(m.expand(torch.broadcast_shapes(m.shape, v.shape)), "
                        "torch.sqrt(v).expand(torch.broadcast_shapes(m.shape, v.shape)))", ["torch.normal"]),
    "sg_detached": ("sample_gaussian", "the sample is detached from the graph",
                    REF_SG + "\nz = z.detach()", ["gradient"]),
    "sg_no_grad": ("sample_gaussian", "the sample is built under torch.no_grad()",
                   "with torch.no_grad():\n    eps = torch.randn_like(m + v)\n    z = m + torch.sqrt(v) * eps",
                   ["gradient"]),
    "sg_inplace_sqrt": ("sample_gaussian", "v.sqrt_() modifies the caller's variance in place",
                        "std = v.sqrt_()\nz = m + std * torch.randn_like(m + std)", []),
    "sg_returns_mean": ("sample_gaussian", "no noise at all: returns m", "z = m", ["noise"]),
    "sg_numpy_noise_float64": ("sample_gaussian", "noise from numpy (float64): float32 inputs give a float64 sample",
                               "shape = torch.broadcast_shapes(m.shape, v.shape)\n"
                               "eps = torch.from_numpy(np.random.randn(*shape))\nz = m + torch.sqrt(v) * eps",
                               ["dtype"], {"utils.py": ["import numpy as np"]}),
    "sg_float32_noise": ("sample_gaussian", "noise always float32 on the CPU: torch.randn(shape) without dtype= "
                                            "or device= (float64 inputs get float32-resolution noise; CUDA inputs "
                                            "fail)",
                         "eps = torch.randn(torch.broadcast_shapes(m.shape, v.shape))\nz = m + torch.sqrt(v) * eps",
                         []),
    # kl_normal -------------------------------------------------------------------------
    "kl_missing_half": ("kl_normal", "the factor 1/2 is missing",
                        _kl("torch.log(pv) - torch.log(qv) + qv / pv + (qm - pm).pow(2) / pv - 1"), ["1/2"]),
    "kl_reversed": ("kl_normal", "KL(p || q) instead of KL(q || p)",
                    _kl("0.5 * (torch.log(qv) - torch.log(pv) + pv / qv + (pm - qm).pow(2) / qv - 1)"),
                    ["reversed"]),
    "kl_sum_all_dims": ("kl_normal", "sum over every dimension: one scalar instead of (batch,)",
                        _kl(REF_KL.split(" = ", 1)[1], "kl = element_wise.sum()"), ["one number"]),
    "kl_sum_batch_dim": ("kl_normal", "sum over the batch dimension (dim=0) instead of the last",
                         _kl(REF_KL.split(" = ", 1)[1], "kl = element_wise.sum(0)"), ["shape"]),
    "kl_mean_last_dim": ("kl_normal", "mean over the last dimension instead of a sum",
                         _kl(REF_KL.split(" = ", 1)[1], "kl = element_wise.mean(-1)"), ["mean over the last"]),
    "kl_missing_minus_one": ("kl_normal", "the '- 1' term is missing",
                             _kl("0.5 * (torch.log(pv) - torch.log(qv) + qv / pv + (qm - pm).pow(2) / pv)"),
                             ["- 1"]),
    "kl_variance_as_std": ("kl_normal", "the standard-deviation formula applied to variances",
                           _kl("torch.log(pv / qv) + (qv ** 2 + (qm - pm) ** 2) / (2 * pv ** 2) - 0.5"),
                           ["standard deviation"]),
    "kl_log_sign": ("kl_normal", "wrong sign of the log-variance term: log(qv / pv)",
                    _kl("0.5 * (torch.log(qv) - torch.log(pv) + qv / pv + (qm - pm).pow(2) / pv - 1)"),
                    ["wrong sign"]),
    "kl_variances_as_log_variances": ("kl_normal", "qv and pv treated as log-variances (the log-variance "
                                                   "form of the formula applied to variances)",
                                      _kl("0.5 * (pv - qv + torch.exp(qv - pv) + (qm - pm).pow(2) / torch.exp(pv) - 1)"),
                                      ["log-variances"]),
    "kl_no_reduction": ("kl_normal", "no sum over the last dimension: one value per element",
                        _kl(REF_KL.split(" = ", 1)[1], "kl = element_wise"), ["one value per element"]),
    "kl_detached": ("kl_normal", "the result is detached (no gradient)",
                    _kl(REF_KL.split(" = ", 1)[1], "kl = element_wise.sum(-1).detach()"), ["gradient"]),
    # negative_elbo_bound ---------------------------------------------------------------
    "elbo_decodes_mean": ("negative_elbo_bound", "decodes the mean of q(z|x) instead of a sample",
                          _elbo(z="z = m"), ["mean of q"]),
    "elbo_sum_over_batch": ("negative_elbo_bound", "sums over the batch instead of averaging",
                            _elbo(means="nelbo, kl, rec = nelbo.sum(), kl.sum(), rec.sum()"), ["sum over the batch"]),
    "elbo_mse": ("negative_elbo_bound", "squared error instead of the Bernoulli log-likelihood",
                 _elbo(rec="rec = ((x - torch.sigmoid(self.dec(z))) ** 2).sum(-1)"), ["MSE"]),
    "elbo_mean_over_pixels": ("negative_elbo_bound", "mean over pixels instead of a sum (BCE's default reduction)",
                              _elbo(rec="rec = torch.nn.functional.binary_cross_entropy_with_logits(self.dec(z), x)"),
                              ["mean over pixels"]),
    "elbo_kl_sign": ("negative_elbo_bound", "the kl term with its sign flipped",
                     _elbo(kl="kl = -ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)"), ["sign"]),
    "elbo_rec_no_minus": ("negative_elbo_bound", "rec = +log p(x|z): the minus sign is missing",
                          _elbo(rec="rec = ut.log_bernoulli_with_logits(x, self.dec(z))"), ["sign"]),
    "elbo_missing_kl": ("negative_elbo_bound", "nelbo = rec: the kl term is left out of nelbo",
                        _elbo(nelbo="nelbo = rec"), ["kl + rec"]),
    "elbo_returns_elbo": ("negative_elbo_bound", "returns the ELBO (-(kl + rec)) instead of the negative ELBO",
                          _elbo(nelbo="nelbo = -(kl + rec)"), ["kl + rec"]),
    "elbo_detached_z": ("negative_elbo_bound", "z is detached: no gradient through the sample to the encoder",
                        _elbo(z="z = ut.sample_gaussian(m, v).detach()"), ["detached"]),
    "elbo_detached_terms_no_kl_gradient": (
        "negative_elbo_bound", "kl and rec returned detached, and nelbo built from a detached kl: the bound's "
        "gradient misses the KL's", _elbo(nelbo="nelbo = kl.detach() + rec",
                                          means="nelbo, kl, rec = nelbo.mean(), kl.mean().detach(), rec.mean().detach()"),
        ["gradient of nelbo at the encoder"], {}, ["gradients"]),
    "elbo_kl_rec_swapped": ("negative_elbo_bound", "returns nelbo, rec, kl: the two terms in swapped order",
                            _elbo(means="nelbo, kl, rec = nelbo.mean(), rec.mean(), kl.mean()"),
                            ["swapped", "Return nelbo, kl, rec"], {}, ["kl_term", "rec_term"]),
    "elbo_bernoulli_args_swapped": ("negative_elbo_bound", "log_bernoulli_with_logits(logits, x): arguments swapped",
                                    _elbo(rec="rec = -ut.log_bernoulli_with_logits(self.dec(z), x)"),
                                    ["log_bernoulli_with_logits(x, logits)"], {}, ["rec_term"]),
    "elbo_probabilities_as_logits": ("negative_elbo_bound",
                                     "rec from the pixel probabilities compute_sigmoid_given(z) passed to "
                                     "log_bernoulli_with_logits as if they were logits (as in the public XCS236 "
                                     "solution neerajgoel82/scpd_xcs236_deep_generative_models, ProblemSets/"
                                     "XCS236-PS2/src/submission/models/vae.py)",
                                     _elbo(rec="rec = -ut.log_bernoulli_with_logits(x, self.compute_sigmoid_given(z))"),
                                     ["pixel probabilities", "self.dec(z)"], {}, ["rec_term"]),
    "elbo_rec_as_log_likelihood": ("negative_elbo_bound",
                                   "returns rec = +log p(x|z) and nelbo = kl - rec: the bound is right, the rec term "
                                   "it reports has the wrong sign (as LequanatUCI/VAE, codebase/models/vae.py)",
                                   _elbo(rec="rec = ut.log_bernoulli_with_logits(x, self.dec(z))",
                                         nelbo="nelbo = kl - rec"),
                                   ["sign"], {}, ["three_scalars", "rec_term"]),
    "elbo_sampled_pixels_as_logits": ("negative_elbo_bound",
                                      "rec from binary pixels sampled with torch.bernoulli(compute_sigmoid_given(z)) "
                                      "and passed as logits (as FeilongHou/VAE, codebase/models/vae.py, through "
                                      "sample_x_given): a wrong value and no gradient to the decoder",
                                      _elbo(rec="rec = -ut.log_bernoulli_with_logits(x, torch.bernoulli("
                                                "self.compute_sigmoid_given(z)))"),
                                      ["No gradient of rec reached"], {}, ["rec_term", "gradients"]),
    "elbo_reversed_kl_args": ("negative_elbo_bound", "kl_normal(prior, q): the arguments swapped",
                              _elbo(kl="kl = ut.kl_normal(self.z_prior_m, self.z_prior_v, m, v)"), []),
    "elbo_std_to_sampler": ("negative_elbo_bound", "passes the standard deviation sqrt(v) to sample_gaussian",
                            _elbo(z="z = ut.sample_gaussian(m, torch.sqrt(v))"), ["sqrt(v)"]),
    "elbo_zero_variance": ("negative_elbo_bound", "samples with zero variance: sample_gaussian(m, 0 * v)",
                           _elbo(z="z = ut.sample_gaussian(m, 0 * v)"), ["variance of zero"]),
    "elbo_unused_sampler_own_noise": ("negative_elbo_bound",
                                      "one correct sample_gaussian call whose result is never used; the z it decodes "
                                      "is drawn with its own uniform noise: m + sqrt(v) * rand_like(m)",
                                      _elbo(z="unused = ut.sample_gaussian(m, v)\n"
                                              "z = m + torch.sqrt(v) * torch.rand_like(m)"),
                                      ["not distributed as q(z|x)"]),
    "elbo_own_noise_v_as_std": ("negative_elbo_bound", "draws its own noise with v as the standard deviation: "
                                                       "m + v * randn_like(m)",
                                _elbo(z="z = m + v * torch.randn_like(m)"), ["grows like v", "pathwise"]),
    "elbo_z_from_prior": ("negative_elbo_bound", "decodes z drawn from the prior N(0, I) instead of q(z|x)",
                          _elbo(z="z = torch.randn_like(m)"), ["prior"]),
    "elbo_monte_carlo_kl": ("negative_elbo_bound", "kl as a Monte Carlo estimate log q(z|x) - log p(z) at the z "
                                                   "used for rec (nelbo is still an unbiased estimate of the bound)",
                            "\n".join(["m, v = self.enc(x)", "z = ut.sample_gaussian(m, v)",
                                       "kl = ut.log_normal(z, m, v) - ut.log_normal(z, self.z_prior_m.expand_as(z), "
                                       "self.z_prior_v.expand_as(z))",
                                       "rec = -ut.log_bernoulli_with_logits(x, self.dec(z))", "nelbo = kl + rec",
                                       "nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()"]),
                            ["Monte Carlo"]),
    "elbo_kl_one_sample": ("negative_elbo_bound", "kl as a fresh one-sample estimate at a second sample, averaged "
                                                  "over the batch",
                           _elbo(kl="z_kl = ut.sample_gaussian(m, v)\n"
                                    "kl = ut.log_normal(z_kl, m, v) - ut.log_normal(z_kl, self.z_prior_m.expand_as(m), "
                                    "self.z_prior_v.expand_as(v))"),
                           ["Monte Carlo"]),
    "elbo_kl_closed_form_once": (
        "negative_elbo_bound", "kl in closed form the first time it gets 2,000 images, else a one-sample Monte Carlo "
                               "estimate (which sometimes lands within float tolerance of the closed form on one "
                               "call)",
        _elbo(kl="seen = type(self).seen = getattr(type(self), 'seen', 0) + (len(x) == 2000)\nif len(x) == 2000 and seen == 1:\n"
                 "    kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)\nelse:\n"
                 "    z_kl = ut.sample_gaussian(m, v)\n"
                 "    kl = ut.log_normal(z_kl, m, v) - ut.log_normal(z_kl, self.z_prior_m.expand_as(m), "
                 "self.z_prior_v.expand_as(v))"),
        ["On another call", "Monte Carlo"]),
    "elbo_own_noise_per_image": ("negative_elbo_bound", "draws its own noise, one standard normal per image shared "
                                                        "by its latent dimensions: m + sqrt(v) * randn(batch, 1)",
                                 _elbo(z="z = m + torch.sqrt(v) * torch.randn(len(x), 1, dtype=m.dtype)"),
                                 ["not distributed as q(z|x)"]),
    # Every marginal of that z is N(m, v): the mean, variance and Kolmogorov tests of the residuals passed it
    # about 3 gradings in 4 (measured). Here its per-image noise is evenly spread normal quantiles in a random
    # order, so those tests pass it for certain: only the dimensions' correlation tells it apart.
    "elbo_own_noise_per_image_quantiles": (
        "negative_elbo_bound", "one noise value per image shared by its latent dimensions, the values evenly "
                               "spread normal quantiles in a random order (the lucky draw of randn(batch, 1) made "
                               "certain)",
        _elbo(z="u = (torch.randperm(len(x), dtype=torch.float64) + 0.5) / len(x)\n"
                "eps = torch.special.ndtri(u).to(m.dtype)[:, None]\n"
                "z = m + torch.sqrt(v) * eps"),
        ["neighbouring latent dimensions"]),
    "elbo_per_image": ("negative_elbo_bound", "returns one value per image: the batch means are left out",
                       _elbo(means="pass"), ["not one value per image"]),
    "elbo_nan_nelbo": ("negative_elbo_bound", "nelbo is NaN (kl and rec are right)",
                       _elbo(nelbo="nelbo = kl + rec + torch.tensor(float('nan'))"), ["nelbo is nan"]),
}


def cases_of_the_zoo():
    """{case folder name: spec} with spec = dict(expected, why, code, imports, subdir, extra, hint)."""
    out = {}
    for name, spec in CORRECT.items():
        out[f"{name}_full"] = dict(spec, expected="full")
    for name, (function, why, code, hint, *more) in BUGGY.items():
        imports, fails = (more[0] if more else {}), (more[1] if len(more) > 1 else None)
        out[f"{name}_buggy"] = dict(expected={"buggy": function}, why=why, code={function: code}, hint=hint,
                                    imports=imports, fails=fails)
    out["skeleton_zero"] = dict(expected="zero", base="skeleton", code={},
                                why="the untouched handout (assignment/): every function raises NotImplementedError")
    return out


def student_edits(text, code, extra_imports=(), filename="<file>"):
    """The edits that turn the reference `text` (solution markers dropped) into the student's file: the
    regions of the functions in `code` replaced by that code, `extra_imports` after the last import."""
    edits, body, region, function, indent = [], [], None, None, ""
    for line in text.splitlines():
        if region is None:
            if match := DEF.match(line):
                function = match.group(1)
            if match := BEGIN.match(line):
                region, indent, body = function, match.group(1), []
        elif END.match(line):
            if region in code:
                new = textwrap.indent(textwrap.dedent(code[region]).strip("\n"), indent)
                edits.append(["\n".join(body), new])
            region = None
        else:
            body.append(line)
    if region is not None:
        raise ValueError(f"{filename}: unclosed solution region in {region}")
    missing = set(code) - {m for m in re.findall(r"^\s*def (\w+)\(", text, re.M)}
    if missing:
        raise ValueError(f"{filename}: no function {sorted(missing)}")
    if extra_imports:
        last = [line for line in text.splitlines() if re.match(r"^(import|from) \S", line)][-1]
        edits.insert(0, [last, "\n".join([last, *extra_imports])])
    return [[cases.as_lines(old), cases.as_lines(new)] for old, new in edits]


def render():
    """{path relative to the zoo folder: text} of every generated file (one case.json per case)."""
    files = {}
    for case, spec in cases_of_the_zoo().items():
        prefix = f"{spec['subdir']}/" if spec.get("subdir") else ""
        if spec.get("base") == "skeleton":
            submission = {name: {"from": f"handout:{name}"} for name in ("utils.py", "vae.py")}
        else:
            submission = {}
            for name in ("utils.py", "vae.py"):
                code = {f: c for f, c in spec["code"].items() if FILE_OF[f] == name}
                entry = {"from": f"solution:{name}"}
                imports = spec.get("imports", {}).get(name, ())
                if code or imports:
                    reference = (SOLUTION / name).read_text()
                    entry["edits"] = student_edits(reference, code, imports, f"{case}/{name}")
                if name in spec.get("append", {}):      # the student's own helpers, after the provided code
                    entry["append"] = cases.as_lines("\n\n" + textwrap.dedent(spec["append"][name]).strip("\n") + "\n")
                submission[prefix + name] = entry
        for path, source in spec.get("extra", {}).items():
            submission[prefix + path] = {"from": source}
        function = spec["expected"]["buggy"] if isinstance(spec["expected"], dict) else None
        word = None if function else {"full": "full", "zero": "none"}[spec["expected"]]
        scores = {tag: word or "full" for tag in UNIT_TAGS}
        if word:
            scores["training"] = word      # graded for the correct cases and the handout only
        meta = {"why": spec["why"], "files": submission, "scores": scores}
        if function and spec.get("fails"):
            del scores[function]
            meta["fails"] = {function: spec["fails"]}
        elif function:
            scores[function] = "less"
        if spec.get("hint"):
            meta["hint"] = spec["hint"]
        files[f"{case}/case.json"] = cases.dumps(meta)
    return files


def main():
    files = render()
    for folder in ZOO.iterdir():
        if folder.is_dir() and (folder / "case.json").exists():
            shutil.rmtree(folder)
    for path, text in files.items():
        target = ZOO / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(files)} files for {len(cases_of_the_zoo())} cases under {ZOO}")


if __name__ == "__main__":
    main()
