"""Generate the variants' zoo: `python tests/variants/make_variants.py` (from the repo root).

The cases of the problems other than the CS236 VAE (autograder/problems.py), in the format of
tests/cases.py, each graded on its "problems": the conditional VAE alone (`cvae`: the submission
is cvae.py; utils.py is the grader's) and together with the CS236 VAE (`vae,cvae`: utils.py,
vae.py and cvae.py, tags `problem/function`); the VAE with a KL weight alone (`beta`: beta_vae.py)
and the three problems together (`vae,cvae,beta`). As in tests/submissions/make_zoo.py, a case is the
reference with the student regions of the functions it names replaced by a student's code:
correct styles get full marks (training included), each buggy one loses points in its own
function only ("less", or the exact failing checks under "fails"; training left out), the
untouched handout gets nothing. tests/test_variants.py grades them and checks that the committed
case.json files are what this script generates (`render()`).
"""
import importlib.util
import shutil
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOLUTION = ROOT / "solution"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests import cases  # noqa: E402  (the case format)


def _zoo():
    spec = importlib.util.spec_from_file_location("make_zoo", ROOT / "tests" / "submissions" / "make_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILE_OF = {"sample_gaussian": "utils.py", "kl_normal": "utils.py", "negative_elbo_bound": "vae.py",
           "cvae.negative_elbo_bound": "cvae.py", "beta.negative_elbo_bound": "beta_vae.py",
           "logvar.sample_gaussian_logvar": "logvar_utils.py", "logvar.kl_normal_logvar": "logvar_utils.py",
           "mmd.mmd": "mmd_vae.py", "mmd.loss": "mmd_vae.py",
           "ae.__init__": "ae.py", "ae.encode": "ae.py", "ae.decode": "ae.py", "ae.reconstruction_loss": "ae.py"}
CVAE = "cvae/negative_elbo_bound"
ELBO = "cvae.negative_elbo_bound"            # the region of CVAE.negative_elbo_bound in cvae.py


def _bound(enc="m, v = self.enc(x, y)", kl="kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)",
           z="z = ut.sample_gaussian(m, v)", rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y))",
           nelbo="nelbo = kl + rec", means="nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()"):
    return "\n".join([enc, kl, z, rec, nelbo, means])


# ---------------------------------------------------------------------------------------
# Correct CVAEs in different styles (graded on cvae alone): full marks, training included.
# ---------------------------------------------------------------------------------------
CORRECT = {
    "networks_net": ("the provided networks' own self.net called on the concatenated inputs, as their forward does: "
                     "m, v = ut.gaussian_parameters(self.enc.net(torch.cat([x, y], -1))), self.dec.net(torch.cat([z, y], -1))",
                     _bound(enc="m, v = ut.gaussian_parameters(self.enc.net(torch.cat([x, y], dim=-1)), dim=-1)",
                            rec="rec = -ut.log_bernoulli_with_logits(x, self.dec.net(torch.cat([z, y], dim=-1)))"), {}),
    "distributions": ("torch.distributions throughout: Normal(m, v.sqrt()).rsample(), kl_divergence, Bernoulli",
                      """
                      D = torch.distributions
                      m, v = self.enc(x, y)
                      q = D.Normal(m, v.sqrt())
                      kl = D.kl_divergence(q, D.Normal(self.z_prior_m, self.z_prior_v.sqrt())).sum(-1).mean()
                      z = q.rsample()
                      rec = -D.Bernoulli(logits=self.dec(z, y)).log_prob(x).sum(-1).mean()
                      nelbo = kl + rec
                      """, {}),
    "keywords_bce": ("the networks called with keywords (self.enc(x=x, y=y), self.dec(z=z, y=y)); rec via "
                     "F.binary_cross_entropy_with_logits(reduction='none').sum(-1)",
                     """
                     m, v = self.enc(x=x, y=y)
                     z = ut.sample_gaussian(m, v)
                     logits = self.dec(z=z, y=y)
                     rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
                     kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                     nelbo = kl + rec
                     """, {"imports": ["import torch.nn.functional as F"]}),
    "decoder_sample_axis": ("z and y given a leading sample axis of one, as an importance-weighted bound's "
                            "(iw, batch, ...), and decoded so: self.dec(z[None], y[None]).squeeze(0)",
                            """
                            m, v = self.enc(x, y)
                            z = ut.sample_gaussian(m, v)
                            logits = self.dec(z[None], y[None]).squeeze(0)
                            rec = -ut.log_bernoulli_with_logits(x, logits).mean()
                            kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                            nelbo = kl + rec
                            """, {}),
    "sum_over_batch_size": ("batch means written as .sum() / batch_size, the label cast to x's dtype first",
                            """
                            batch_size = x.shape[0]
                            y = y.to(x.dtype)
                            m, v = self.enc(x, y)
                            z = ut.sample_gaussian(m, v)
                            kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).sum() / batch_size
                            rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y)).sum() / batch_size
                            nelbo = kl + rec
                            """, {}),
    "detached_terms": ("kl and rec returned detached, for logging (the docstring asks for scalar tensors); nelbo "
                       "keeps the whole gradient of the bound",
                       """
                       m, v = self.enc(x, y)
                       kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                       rec = -ut.log_bernoulli_with_logits(x, self.dec(ut.sample_gaussian(m, v), y)).mean()
                       nelbo = kl + rec
                       kl, rec = kl.detach(), rec.detach()
                       """, {}),
    "own_noise_logsigmoid": ("its own reparameterized noise m + sqrt(v) * randn_like(m) (never calls "
                             "ut.sample_gaussian: judged statistically), rec written with logsigmoid",
                             """
                             m, v = self.enc(x, y)
                             z = m + torch.sqrt(v) * torch.randn_like(m)
                             logits = self.dec(z, y)
                             log_px = (x * torch.nn.functional.logsigmoid(logits)
                                       + (1 - x) * torch.nn.functional.logsigmoid(-logits)).sum(dim=1)
                             kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                             rec = -log_px.mean()
                             nelbo = rec + kl
                             """, {}),
    "student_helper": ("the terms computed by a helper of the student's own, at the top of cvae.py; nelbo as "
                       "-(elbo).mean()",
                       """
                       kl_rows, rec_rows = per_image_terms(self, x, y)
                       elbo = -(kl_rows + rec_rows)
                       nelbo = -elbo.mean()
                       kl, rec = kl_rows.mean(), rec_rows.mean()
                       """, {"append": """


                       def per_image_terms(model, x, y):
                           \"\"\"KL and -log p(x|z,y) per image, one z each: my own helper.\"\"\"
                           m, v = model.enc(x, y)
                           kl = ut.kl_normal(m, v, model.z_prior_m, model.z_prior_v)
                           rec = -ut.log_bernoulli_with_logits(x, model.dec(ut.sample_gaussian(m, v), y))
                           return kl, rec
                       """}),
    "subfolder_zip": ("cvae.py in a folder of a zip (hw3.zip: hw3/cvae.py); addcmul sampling through the label's "
                      "one-hot cast with .float()",
                      """
                      y = y.float()
                      m, v = self.enc(x, y)
                      z = torch.addcmul(m, v.sqrt(), torch.randn_like(m))
                      kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                      rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y)).mean()
                      nelbo = kl + rec
                      """, {"subdir": "hw3", "zip": {"hw3.zip": ["hw3/"]}}),
}

# ---------------------------------------------------------------------------------------
# Buggy CVAEs (graded on cvae alone): one mistake each, points lost in cvae/negative_elbo_bound only.
# (fails: the exact checks that lose their points; else "less" and the hint the feedback must say)
# ---------------------------------------------------------------------------------------
BUGGY = {
    "label_zeros_to_decoder": ("the decoder gets a label of zeros: self.dec(z, zeros_like(y))",
                               _bound(rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z, torch.zeros_like(y)))"),
                               ["decoder got a label of zeros"], ["label_reaches_both"]),
    "label_zeros_to_encoder": ("the encoder gets a label of zeros: self.enc(x, zeros_like(y))",
                               _bound(enc="m, v = self.enc(x, torch.zeros_like(y))"),
                               ["encoder got a label of zeros"], ["label_reaches_both"]),
    "label_shuffled_to_decoder": ("the decoder gets the labels of other images (shuffled rows)",
                                  _bound(rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z, "
                                             "y[torch.randperm(len(y))]))"),
                                  ["labels of other images"], ["label_reaches_both"]),
    "label_of_first_image": ("both networks get the first image's label for every image",
                             _bound(enc="y = y[:1].expand_as(y)\nm, v = self.enc(x, y)"),
                             ["the same label for every image"], ["label_reaches_both"]),
    "decodes_mean": ("decodes the mean of q(z|x,y) instead of a sample", _bound(z="z = m"), ["mean of q(z|x,y)"], None),
    "sum_over_batch": ("sums over the batch instead of averaging",
                       _bound(means="nelbo, kl, rec = nelbo.sum(), kl.sum(), rec.sum()"), ["sum over the batch"],
                       None),
    "mse": ("squared error instead of the Bernoulli log-likelihood",
            _bound(rec="rec = ((x - torch.sigmoid(self.dec(z, y))) ** 2).sum(-1)"), ["MSE"], None),
    "probabilities_as_logits": ("rec from torch.sigmoid(self.dec(z, y)) passed to log_bernoulli_with_logits as if "
                                "it were logits (as a public XCS236 SSVAE on GitHub does with its conditional "
                                "decoder: x_logits = torch.sigmoid(self.dec(z, y)))",
                                _bound(rec="rec = -ut.log_bernoulli_with_logits(x, torch.sigmoid(self.dec(z, y)))"),
                                ["pixel probabilities", "self.dec(z, y)"], None),
    "mean_over_pixels": ("mean over pixels (BCE's default reduction)",
                         _bound(rec="rec = torch.nn.functional.binary_cross_entropy_with_logits(self.dec(z, y), x)"),
                         ["mean over pixels"], None),
    "kl_reversed_args": ("kl_normal(prior, q): the arguments swapped",
                         _bound(kl="kl = ut.kl_normal(self.z_prior_m, self.z_prior_v, m, v)"), ["swapped"], None),
    "missing_kl": ("nelbo = rec: the kl term left out of nelbo", _bound(nelbo="nelbo = rec"), ["kl + rec"],
                   ["three_scalars"]),
    "detached_z": ("z detached: no gradient through the sample to the encoder",
                   _bound(z="z = ut.sample_gaussian(m, v).detach()"), ["detached"], ["gradients"]),
    "std_to_sampler": ("passes the standard deviation sqrt(v) to sample_gaussian",
                       _bound(z="z = ut.sample_gaussian(m, torch.sqrt(v))"), ["sqrt(v)"], None),
    "z_from_prior": ("decodes z drawn from the prior N(0, I)", _bound(z="z = torch.randn_like(m)"), ["prior"], None),
    "monte_carlo_kl": ("kl as log q(z|x,y) - log p(z) at the z used for rec",
                       "\n".join(["m, v = self.enc(x, y)", "z = ut.sample_gaussian(m, v)",
                                  "kl = ut.log_normal(z, m, v) - ut.log_normal(z, self.z_prior_m.expand_as(z), "
                                  "self.z_prior_v.expand_as(z))",
                                  "rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y))", "nelbo = kl + rec",
                                  "nelbo, kl, rec = nelbo.mean(), kl.mean(), rec.mean()"]),
                       ["Monte Carlo"], ["kl_term"]),
    "kl_closed_form_once": (
        "kl in closed form the first time it gets 2,000 images, else a one-sample Monte Carlo estimate (which "
        "sometimes lands within float tolerance of the closed form on one call)",
        _bound(kl="seen = type(self).seen = getattr(type(self), 'seen', 0) + (len(x) == 2000)\nif len(x) == 2000 and seen == 1:\n"
                  "    kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)\nelse:\n"
                  "    z_kl = ut.sample_gaussian(m, v)\n"
                  "    kl = ut.log_normal(z_kl, m, v) - ut.log_normal(z_kl, self.z_prior_m.expand_as(m), "
                  "self.z_prior_v.expand_as(v))"),
        ["On another call", "Monte Carlo"], ["kl_term"]),
    "label_as_index": ("passes the digit as an index (y.argmax(-1)) instead of the one-hot label: the networks "
                       "cannot take it, so no check of the function can run",
                       _bound(enc="digit = y.argmax(-1, keepdim=True).to(x.dtype)\nm, v = self.enc(x, digit)"),
                       ["expects y of shape"], "all"),
}


def _spec(case, code_by_function, extra=None, main="cvae.py"):
    """The files entry of one case: the reference of each file with the student's regions (`main`: the
    file that takes the case's imports, appended code and further edits)."""
    extra = extra or {}
    zoo = _zoo()
    files = {}
    prefix = f"{extra['subdir']}/" if extra.get("subdir") else ""
    names = extra.get("files", (main,))
    for name in names:
        code = {function.split(".")[-1]: text for function, text in code_by_function.items()
                if FILE_OF[function] == name}
        entry = {"from": f"solution:{name}"}
        imports = extra.get("imports", ()) if name == main else ()
        edits = extra.get("edits", []) if name == main else []
        if code or imports or edits:
            entry["edits"] = zoo.student_edits((SOLUTION / name).read_text(), code, imports, f"{case}/{name}") + \
                [[cases.as_lines(old), cases.as_lines(new)] for old, new in edits]
        if name == main and extra.get("append"):
            entry["append"] = cases.as_lines("\n\n" + textwrap.dedent(extra["append"]).strip("\n") + "\n")
        files[prefix + name] = entry
    return files


def cases_of_the_variants():
    """{case folder name: case.json's data}."""
    out = {}
    for name, (why, code, extra) in CORRECT.items():
        meta = {"why": why, "problems": ["cvae"], "files": _spec(name, {ELBO: code}, extra),
                "scores": {CVAE: "full", "cvae/training": "full"}}
        if extra.get("zip"):
            meta["zip"] = extra["zip"]
        out[f"cvae_{name}_full"] = meta
    for name, (why, code, hint, fails) in BUGGY.items():
        meta = {"why": why, "problems": ["cvae"], "files": _spec(name, {ELBO: code})}
        if fails == "all":
            meta["scores"] = {CVAE: "none"}
        elif fails:
            meta["scores"], meta["fails"] = {}, {CVAE: fails}
        else:
            meta["scores"] = {CVAE: "less"}
        meta["hint"] = hint
        out[f"cvae_{name}_buggy"] = meta
    out["cvae_skeleton_zero"] = {
        "why": "the untouched handout of the CVAE alone: negative_elbo_bound raises NotImplementedError",
        "problems": ["cvae"], "files": {"cvae.py": {"from": "handout:cvae.py"}},
        "scores": {CVAE: "none", "cvae/training": "none"}}
    # ------------------------------------------------------------ both problems in one submission
    both = ("utils.py", "vae.py", "cvae.py")
    every = ["sample_gaussian", "kl_normal", "negative_elbo_bound", "training", CVAE, "cvae/training"]
    out["both_reference_full"] = {
        "why": "the CS236 VAE and the CVAE together: the reference's three files", "problems": ["vae", "cvae"],
        "files": _spec("both", {}, {"files": both}), "scores": dict.fromkeys(every, "full")}
    zoo = _zoo()
    out["both_sg_variance_as_std_buggy"] = {
        "why": "the CS236 VAE and the CVAE together, sample_gaussian scaling the noise by v: only the VAE's "
               "sample_gaussian checks lose points (the CVAE's bound is checked with the grader's sampler)",
        "problems": ["vae", "cvae"],
        "files": _spec("both_sg", {"sample_gaussian": zoo.BUGGY["sg_variance_as_std"][2]}, {"files": both}),
        "scores": {"kl_normal": "full", "negative_elbo_bound": "full", CVAE: "full"},
        "fails": {"sample_gaussian": ["mean_and_variance", "pathwise_gradient"]}, "hint": ["sqrt(v)"]}
    out["both_cvae_label_buggy"] = {
        "why": "the CS236 VAE and the CVAE together, the CVAE's decoder without the label: only the CVAE's "
               "label check loses points",
        "problems": ["vae", "cvae"],
        "files": _spec("both_label", {ELBO: BUGGY["label_zeros_to_decoder"][1]}, {"files": both}),
        "scores": {"sample_gaussian": "full", "kl_normal": "full", "negative_elbo_bound": "full"},
        "fails": {CVAE: ["label_reaches_both"]}, "hint": ["decoder got a label of zeros"]}
    out["both_skeleton_zero"] = {
        "why": "the untouched handout of both problems", "problems": ["vae", "cvae"],
        "files": {name: {"from": f"handout:{name}"} for name in both}, "scores": dict.fromkeys(every, "none")}
    out.update(beta_cases())
    out.update(logvar_cases())
    out.update(mmd_cases())
    out.update(ae_cases())
    out.update(conv_unit_cases())
    out.update(conv_bound_cases())
    return out


# ---------------------------------------------------------------------------------------
# The VAE with a KL weight (problem `beta`): BetaVAE.negative_elbo_bound(x, beta) in beta_vae.py.
# ---------------------------------------------------------------------------------------
BETA = "beta/negative_elbo_bound"
BETA_ELBO = "beta.negative_elbo_bound"       # the region of BetaVAE.negative_elbo_bound in beta_vae.py
BETA_DEF = "    def negative_elbo_bound(self, x, beta=1.0):"


def _weighted(kl="kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)", z="z = ut.sample_gaussian(m, v)",
              rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z))", loss="loss = rec + beta * kl",
              means="loss, kl, rec = loss.mean(), kl.mean(), rec.mean()"):
    return "\n".join(["m, v = self.enc(x)", kl, z, rec, loss, means])


BETA_CORRECT = {
    "distributions": ("torch.distributions throughout: Normal(m, v.sqrt()).rsample(), kl_divergence, Bernoulli; "
                      "the loss from the batch means",
                      """
                      D = torch.distributions
                      m, v = self.enc(x)
                      q = D.Normal(m, v.sqrt())
                      kl = D.kl_divergence(q, D.Normal(self.z_prior_m, self.z_prior_v.sqrt())).sum(-1).mean()
                      rec = -D.Bernoulli(logits=self.dec(q.rsample())).log_prob(x).sum(-1).mean()
                      loss = rec + beta * kl
                      """, {}),
    "decoder_net": ("the logits from the provided decoder's network itself, self.dec.net(z) (Decoder.forward "
                    "returns self.net(z): the same logits)",
                    _weighted(rec="rec = -ut.log_bernoulli_with_logits(x, self.dec.net(z))"), {}),
    "encoder_net": ("the encoder's output from the provided encoder's network and ut.gaussian_parameters, as "
                    "Encoder.forward computes it: m, v = ut.gaussian_parameters(self.enc.net(x), dim=-1)",
                    _weighted().replace("m, v = self.enc(x)", "m, v = ut.gaussian_parameters(self.enc.net(x), dim=-1)"),
                    {}),
    "torch_add_alpha": ("the weighted sum as torch.add(rec, kl, alpha=beta); rec via "
                        "F.binary_cross_entropy_with_logits(reduction='none').sum(-1)",
                        """
                        m, v = self.enc(x)
                        z = ut.sample_gaussian(m, v)
                        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1).mean()
                        kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                        loss = torch.add(rec, kl, alpha=beta)
                        """, {"imports": ["import torch.nn.functional as F"]}),
    "sum_over_batch_size": ("batch means written as .sum() / batch_size; beta made a tensor of x's dtype first",
                            """
                            batch_size = x.shape[0]
                            beta = torch.as_tensor(beta, dtype=x.dtype)
                            m, v = self.enc(x)
                            z = ut.sample_gaussian(m, v)
                            kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).sum() / batch_size
                            rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).sum() / batch_size
                            loss = beta * kl + rec
                            """, {}),
    "detached_terms": ("kl and rec returned detached, for logging (the docstring asks for scalar tensors); the loss "
                       "keeps the whole gradient of rec + beta * kl",
                       """
                       m, v = self.enc(x)
                       kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                       rec = -ut.log_bernoulli_with_logits(x, self.dec(ut.sample_gaussian(m, v))).mean()
                       loss = rec + beta * kl
                       kl, rec = kl.detach(), rec.detach()
                       """, {}),
    "kl_by_hand_loop": ("the closed-form KL written by hand, a loop over the latent dimensions; its own noise "
                        "m + sqrt(v) * randn_like(m) (judged statistically)",
                        """
                        m, v = self.enc(x)
                        kl = torch.zeros(len(x), dtype=x.dtype)
                        for j in range(self.z_dim):
                            kl = kl + 0.5 * (v[:, j] + m[:, j] ** 2 - 1 - torch.log(v[:, j]))
                        z = m + torch.sqrt(v) * torch.randn_like(m)
                        rec = -ut.log_bernoulli_with_logits(x, self.dec(z))
                        loss = (rec + beta * kl).mean()
                        kl, rec = kl.mean(), rec.mean()
                        """, {}),
    "student_helper": ("the terms by a helper of the student's own at the end of beta_vae.py; the loss as "
                       "-(weighted ELBO)",
                       """
                       kl_rows, rec_rows = per_image_terms(self, x)
                       weighted_elbo = -rec_rows - beta * kl_rows
                       loss = -weighted_elbo.mean()
                       kl, rec = kl_rows.mean(), rec_rows.mean()
                       """, {"append": """


                       def per_image_terms(model, x):
                           \"\"\"KL and -log p(x|z) per image, one z each: my own helper.\"\"\"
                           m, v = model.enc(x)
                           kl = ut.kl_normal(m, v, model.z_prior_m, model.z_prior_v)
                           rec = -ut.log_bernoulli_with_logits(x, model.dec(ut.sample_gaussian(m, v)))
                           return kl, rec
                       """}),
    "keyword_only_zip": ("beta_vae.py in a folder of a zip (hw2.zip: hw2/beta_vae.py); beta keyword-only "
                         "(def negative_elbo_bound(self, x, *, beta=1.0)), the grader's way of passing it",
                         _weighted(), {"subdir": "hw2", "zip": {"hw2.zip": ["hw2/"]},
                                       "edits": [[BETA_DEF, "    def negative_elbo_bound(self, x, *, beta=1.0):"]]}),
}

BETA_BUGGY = {
    "weight_on_rec": ("the weight on rec: loss = beta * rec + kl", _weighted(loss="loss = beta * rec + kl"),
                      ["the weight multiplies rec"], ["weighted_loss"], {}),
    "weight_on_total": ("the weight on the whole loss: loss = beta * (rec + kl)",
                        _weighted(loss="loss = beta * (rec + kl)"), ["multiplies the whole loss"], ["weighted_loss"], {}),
    "beta_squared": ("the KL weighted by beta ** 2", _weighted(loss="loss = rec + beta ** 2 * kl"), ["beta squared"],
                     ["weighted_loss"], {}),
    "beta_ignored": ("beta accepted but never used: loss = rec + kl", _weighted(loss="loss = rec + kl"),
                     ["beta is ignored"], ["weighted_loss"], {}),
    "one_minus_beta": ("the KL weighted by 1 - beta", _weighted(loss="loss = rec + (1 - beta) * kl"),
                       ["(1 - beta)"], ["three_scalars", "weighted_loss", "default_beta"], {}),
    "convex_combination": ("(1 - beta) * rec + beta * kl", _weighted(loss="loss = (1 - beta) * rec + beta * kl"),
                           ["rec keeps the weight 1"], ["three_scalars", "weighted_loss", "default_beta"], {}),
    "kl_only_at_beta_one": ("the kl term added to the loss only when beta == 1",
                            _weighted(loss="loss = rec + kl if beta == 1 else rec"), ["the kl term is missing"],
                            ["weighted_loss"], {}),
    "weighted_kl_returned": ("kl multiplied by beta before it is returned: loss = rec + kl of that",
                             _weighted(kl="kl = beta * ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)",
                                       loss="loss = rec + kl"),
                             ["times KL(q(z|x) || p(z))", "return the unweighted kl"], ["weight_on_kl_only"], {}),
    "beta_in_value_only": ("the weight in the value only: loss = rec + kl + (beta - 1) * kl.detach()",
                           _weighted(loss="loss = rec + kl + (beta - 1) * kl.detach()"),
                           ["as if beta were 1", "value only"], ["gradients"], {}),
    "detached_weighted_kl": ("beta * kl.detach(): no gradient of the kl term",
                             _weighted(loss="loss = rec + beta * kl.detach()"), ["rec alone"], ["gradients"], {}),
    "default_beta_zero": ("the default weight 0 (def negative_elbo_bound(self, x, beta=0.0))", _weighted(),
                          ["the default weight must be 1"], ["default_beta"],
                          {"edits": [[BETA_DEF, "    def negative_elbo_bound(self, x, beta=0.0):"]]}),
    "kl_sign": ("kl with the wrong sign: -KL, and loss = rec + beta * kl of that",
                _weighted(kl="kl = -ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)"), ["sign is reversed"],
                ["kl_term"], {}),
    "kl_closed_form_once": (
        "kl in closed form the first time it gets 2,000 images, else a one-sample Monte Carlo estimate",
        _weighted(kl="seen = type(self).seen = getattr(type(self), 'seen', 0) + (len(x) == 2000)\nif len(x) == 2000 and seen == 1:\n"
                     "    kl = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v)\nelse:\n"
                     "    z_kl = ut.sample_gaussian(m, v)\n"
                     "    kl = ut.log_normal(z_kl, m, v) - ut.log_normal(z_kl, self.z_prior_m.expand_as(m), "
                     "self.z_prior_v.expand_as(v))"),
        ["On another call", "Monte Carlo"], ["kl_term"], {}),
    "sum_over_batch": ("sums over the batch instead of averaging",
                       _weighted(means="loss, kl, rec = loss.sum(), kl.sum(), rec.sum()"), ["sum over the batch"],
                       ["batch_mean"], {}),
    "decodes_mean": ("decodes the mean of q(z|x) instead of a sample", _weighted(z="z = m"), ["mean of q(z|x)"],
                     ["rec_term"], {}),
    "z_from_prior": ("decodes z drawn from the prior N(0, I)", _weighted(z="z = torch.randn_like(m)"), ["prior"],
                     ["rec_term", "gradients"], {}),
}


def beta_cases():
    """{case: data} of the beta-VAE alone."""
    out = {}
    for name, (why, code, extra) in BETA_CORRECT.items():
        meta = {"why": why, "problems": ["beta"], "files": _spec(name, {BETA_ELBO: code}, extra, main="beta_vae.py"),
                "scores": {BETA: "full", "beta/training": "full"}}
        if extra.get("zip"):
            meta["zip"] = extra["zip"]
        out[f"beta_{name}_full"] = meta
    for name, (why, code, hint, fails, extra) in BETA_BUGGY.items():
        meta = {"why": why, "problems": ["beta"], "files": _spec(name, {BETA_ELBO: code}, extra, main="beta_vae.py")}
        if fails == "less":
            meta["scores"] = {BETA: "less"}
        else:
            meta["scores"], meta["fails"] = {}, {BETA: fails}
        meta["hint"] = hint
        out[f"beta_{name}_buggy"] = meta
    out["beta_skeleton_zero"] = {
        "why": "the untouched handout of the beta-VAE alone: negative_elbo_bound raises NotImplementedError",
        "problems": ["beta"], "files": {"beta_vae.py": {"from": "handout:beta_vae.py"}},
        "scores": {BETA: "none", "beta/training": "none"}}
    three = ("utils.py", "vae.py", "cvae.py", "beta_vae.py")
    every = ["sample_gaussian", "kl_normal", "negative_elbo_bound", "training", CVAE, "cvae/training", BETA,
             "beta/training"]
    out["three_reference_full"] = {
        "why": "the CS236 VAE, the CVAE and the beta-VAE together: the reference's four files",
        "problems": ["vae", "cvae", "beta"], "files": _spec("three", {}, {"files": three}),
        "scores": dict.fromkeys(every, "full")}
    out["three_beta_weight_on_rec_buggy"] = {
        "why": "the three problems together, the beta-VAE's weight on rec: only its weighted-loss check loses points",
        "problems": ["vae", "cvae", "beta"],
        "files": _spec("three_beta", {BETA_ELBO: BETA_BUGGY["weight_on_rec"][1]}, {"files": three}),
        "scores": {"sample_gaussian": "full", "kl_normal": "full", "negative_elbo_bound": "full", CVAE: "full"},
        "fails": {BETA: ["weighted_loss"]}, "hint": ["the weight multiplies rec"]}
    out["three_skeleton_zero"] = {
        "why": "the untouched handout of the three problems", "problems": ["vae", "cvae", "beta"],
        "files": {name: {"from": f"handout:{name}"} for name in three}, "scores": dict.fromkeys(every, "none")}
    return out


# ---------------------------------------------------------------------------------------
# The log-variance VAE (problem `logvar`): sample_gaussian_logvar and kl_normal_logvar in logvar_utils.py.
# ---------------------------------------------------------------------------------------
LV_SAMPLE, LV_KL = "logvar/sample_gaussian_logvar", "logvar/kl_normal_logvar"
LV_SG, LV_KLF = "logvar.sample_gaussian_logvar", "logvar.kl_normal_logvar"     # the two regions
LV_STABLE = "element_wise = 0.5 * (ps - qs + torch.exp(qs - ps) + (qm - pm).pow(2) * torch.exp(-ps) - 1)"

LOGVAR_CORRECT = {
    "distributions": ("torch.distributions: Normal(m, torch.exp(0.5 * s)).rsample(); kl_divergence of two such "
                      "Normals, summed over the last dimension",
                      {LV_SG: "z = torch.distributions.Normal(m, torch.exp(0.5 * s)).rsample()",
                       LV_KLF: """
                       D = torch.distributions
                       kl = D.kl_divergence(D.Normal(qm, torch.exp(0.5 * qs)), D.Normal(pm, torch.exp(0.5 * ps))).sum(-1)
                       """}, {}),
    "broadcast_shapes_log_space": ("noise by torch.randn(broadcast_shapes(...), dtype=, device=) and (s / 2).exp(); "
                                   "the KL in log space, the log-ratio d = qs - ps first",
                                   {LV_SG: """
                                    shape = torch.broadcast_shapes(m.shape, s.shape)
                                    eps = torch.randn(shape, dtype=m.dtype, device=m.device)
                                    z = m + (s / 2).exp() * eps
                                    """,
                                    LV_KLF: """
                                    d = qs - ps
                                    kl = 0.5 * (d.exp() - d - 1 + (qm - pm) ** 2 * (-ps).exp()).sum(dim=-1)
                                    """}, {}),
    "torch_normal_division": ("eps from torch.normal(zeros, ones) of the broadcast shape, scaled by torch.exp(s * 0.5) "
                              "(differentiable: the noise does not depend on m or s); the mean term divided by "
                              "exp(ps)",
                              {LV_SG: """
                               ones = torch.ones_like(m + s)
                               z = m + torch.exp(s * 0.5) * torch.normal(torch.zeros_like(ones), ones)
                               """,
                               LV_KLF: """
                               kl = 0.5 * torch.sum(ps - qs - 1 + torch.exp(qs - ps) + (qm - pm).pow(2) / torch.exp(ps),
                                                    dim=-1)
                               """}, {}),
    "std_ratios_addcmul": ("torch.addcmul(m, exp(0.5 s), eps); the KL from standard deviations, their ratio squared",
                           {LV_SG: "z = torch.addcmul(m, torch.exp(0.5 * s), torch.randn_like(m + s))",
                            LV_KLF: """
                            q_sd, p_sd = torch.exp(0.5 * qs), torch.exp(0.5 * ps)
                            ratio = (q_sd / p_sd) ** 2
                            kl = 0.5 * (ratio + ((qm - pm) / p_sd) ** 2 - 1 - torch.log(ratio)).sum(-1)
                            """}, {}),
    "helper_in_zip": ("logvar_utils.py in a folder of a zip (hw.zip: hw/logvar_utils.py); both functions call a "
                      "helper of the student's own at the end of the file (sigma = exp(s / 2)); the KL as a mean over "
                      "dimensions times their count",
                      {LV_SG: "z = m + _sigma(s) * torch.randn_like(m + s)",
                       LV_KLF: """
                       terms = (ps - qs) + torch.exp(qs - ps) + ((qm - pm) / _sigma(ps)) ** 2 - 1
                       kl = 0.5 * terms.mean(-1) * terms.shape[-1]
                       """},
                      {"subdir": "hw", "zip": {"hw.zip": ["hw/"]},
                       "append": """
                       def _sigma(s):
                           \"\"\"The standard deviation of a log-variance, without leaving float32's range.\"\"\"
                           return torch.exp(0.5 * s)
                       """}),
}

LOGVAR_BUGGY = {     # name: (why, {region: code}, hint, {tag: failing checks})
    "sg_sigma_exp_s": ("the noise scaled by exp(s): the variance comes out as exp(2 s)",
                       {LV_SG: "z = m + torch.exp(s) * torch.randn_like(m + s)"}, ["exp(2 s)"],
                       {LV_SAMPLE: ["mean_and_variance", "pathwise_gradient"]}),
    "sg_sigma_is_s": ("the noise scaled by s itself, as if s were the standard deviation",
                      {LV_SG: "z = m + s * torch.randn_like(m + s)"}, ["s^2"],
                      {LV_SAMPLE: ["mean_and_variance", "pathwise_gradient"]}),
    "sg_sqrt_exp": ("sqrt(exp(s)): right in float64 at ordinary s, inf or 0 at large |s| in float32",
                    {LV_SG: "z = m + torch.sqrt(torch.exp(s)) * torch.randn_like(m + s)"}, ["overflows float32"],
                    {LV_SAMPLE: ["large_log_variance"]}),
    "sg_shared_eps": ("one eps of shape (dim,) shared by every row of the batch",
                      {LV_SG: "z = m + torch.exp(0.5 * s) * torch.randn(m.shape[-1], dtype=m.dtype)"},
                      ["every row got the same noise"], {LV_SAMPLE: ["mean_and_variance", "independent_noise"]}),
    "sg_detached_s": ("s detached before scaling the noise: no gradient reaches s",
                      {LV_SG: "z = m + torch.exp(0.5 * s.detach()) * torch.randn_like(m + s)"}, ["No gradient reaches s"],
                      {LV_SAMPLE: ["pathwise_gradient"]}),
    "kl_sign": ("the KL with its sign flipped", {LV_KLF: "kl = -0.5 * (ps - qs + torch.exp(qs - ps) + (qm - pm).pow(2) "
                                                "* torch.exp(-ps) - 1).sum(-1)"},
                ["sign is flipped"], {LV_KL: ["closed_form", "edge_cases", "properties", "gradient"]}),
    "kl_missing_half": ("the factor 1/2 missing", {LV_KLF: "kl = (ps - qs + torch.exp(qs - ps) + (qm - pm).pow(2) "
                                                  "* torch.exp(-ps) - 1).sum(-1)"},
                        ["1/2 is missing"], {LV_KL: ["closed_form", "edge_cases", "gradient"]}),
    "kl_reversed": ("KL(p || q): the arguments of q and p swapped",
                    {LV_KLF: "kl = 0.5 * (qs - ps + torch.exp(ps - qs) + (pm - qm).pow(2) * torch.exp(-qs) - 1).sum(-1)"},
                    ["reversed arguments"], {LV_KL: ["closed_form", "edge_cases", "gradient"]}),
    "kl_not_summed": ("the elementwise KL returned, not summed over the last dimension",
                      {LV_KLF: f"kl = {LV_STABLE.split(' = ', 1)[1]}"}, ["sum them over the last dimension"],
                      {LV_KL: ["closed_form", "edge_cases", "properties"]}),
    "kl_summed_over_batch": ("summed over the batch as well: one number",
                             {LV_KLF: f"{LV_STABLE}\nkl = element_wise.sum()"}, ["one number"],
                             {LV_KL: ["closed_form", "edge_cases", "properties"]}),
    "kl_exp_ratio": ("the variance ratio as exp(qs) / exp(ps): inf / inf at large s in float32",
                     {LV_KLF: "kl = 0.5 * (ps - qs + torch.exp(qs) / torch.exp(ps) + (qm - pm).pow(2) * torch.exp(-ps) "
                              "- 1).sum(-1)"}, ["exp(qs - ps)"], {LV_KL: ["large_log_variance"]}),
    "kl_log_of_exp": ("the log-variance ratio as log(exp(ps) / exp(qs))",
                      {LV_KLF: "kl = 0.5 * (torch.log(torch.exp(ps) / torch.exp(qs)) + torch.exp(qs - ps) "
                               "+ (qm - pm).pow(2) * torch.exp(-ps) - 1).sum(-1)"}, ["log(exp(s))"],
                      {LV_KL: ["large_log_variance"]}),
    "kl_variance_as_logvar": ("qs and ps used as variances: log(ps / qs) + qs / ps + ...",
                              {LV_KLF: "kl = 0.5 * (torch.log(ps) - torch.log(qs) + qs / ps + (qm - pm).pow(2) / ps "
                                       "- 1).sum(-1)"}, ["treating s as a variance"],
                              {LV_KL: ["closed_form", "edge_cases", "properties", "gradient"]}),
    "kl_log_sigma": ("s read as log(sigma): exp(2 qs - 2 ps) and exp(-2 ps)",
                     {LV_KLF: "kl = (ps - qs + 0.5 * torch.exp(2 * (qs - ps)) + 0.5 * (qm - pm).pow(2) * torch.exp(-2 * ps) "
                              "- 0.5).sum(-1)"}, ["log(sigma)"], {LV_KL: ["closed_form", "edge_cases", "gradient"]}),
}


def logvar_cases():
    """{case: data} of the log-variance VAE alone (no training gate), and beside the CS236 VAE."""
    out = {}
    for name, (why, code, extra) in LOGVAR_CORRECT.items():
        meta = {"why": why, "problems": ["logvar"], "files": _spec(name, code, extra, main="logvar_utils.py"),
                "scores": {LV_SAMPLE: "full", LV_KL: "full"}}
        if extra.get("zip"):
            meta["zip"] = extra["zip"]
        out[f"logvar_{name}_full"] = meta
    for name, (why, code, hint, fails) in LOGVAR_BUGGY.items():
        owner = next(iter(fails))
        meta = {"why": why, "problems": ["logvar"], "files": _spec(name, code, main="logvar_utils.py"),
                "scores": {tag: "full" for tag in (LV_SAMPLE, LV_KL) if tag != owner}, "fails": fails, "hint": hint}
        out[f"logvar_{name}_buggy"] = meta
    out["logvar_skeleton_zero"] = {
        "why": "the untouched handout of the log-variance VAE alone: both functions raise NotImplementedError",
        "problems": ["logvar"], "files": {"logvar_utils.py": {"from": "handout:logvar_utils.py"}},
        "scores": {LV_SAMPLE: "none", LV_KL: "none"}}
    pair = ("utils.py", "vae.py", "logvar_utils.py")
    units = ["sample_gaussian", "kl_normal", "negative_elbo_bound"]
    out["logvar_beside_vae_sqrt_exp_buggy"] = {
        "why": "the CS236 VAE and the log-variance VAE together, sample_gaussian_logvar as sqrt(exp(s)): only 9.5 "
               "loses points (the CS236 VAE's sample_gaussian, with its variance, is right)",
        "problems": ["vae", "logvar"],
        "files": _spec("vae_logvar", {LV_SG: LOGVAR_BUGGY["sg_sqrt_exp"][1][LV_SG]}, {"files": pair},
                       main="logvar_utils.py"),
        "scores": {**dict.fromkeys(units, "full"), LV_KL: "full"}, "fails": {LV_SAMPLE: ["large_log_variance"]},
        "hint": ["sqrt(exp(s))"]}
    return out


# ---------------------------------------------------------------------------------------
# The MMD-VAE (problem `mmd`): mmd(x, y, biased=True) and MMDVAE.loss(x) in mmd_vae.py.
# ---------------------------------------------------------------------------------------
MMD = "mmd/mmd"
MMD_LOSS = "mmd/loss"
MMD_FN, LOSS_FN = "mmd.mmd", "mmd.loss"         # their regions in mmd_vae.py


def _mmd(kernel="k = lambda a, b: torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / dim)",
         xx="xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))",
         yy="yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))",
         biased="return kxx.mean() + kyy.mean() - 2 * kxy.mean()", unbiased="return xx + yy - 2 * kxy.mean()"):
    return "\n".join(["dim = x.shape[1]", "n, m = x.shape[0], y.shape[0]", kernel,
                      "kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)", "if biased:", "    " + biased, xx, yy, unbiased])


def _loss(z="z = self.encode(x)", prior="z_prior = self.sample_z(x.shape[0])", divergence="divergence = mmd(z, z_prior)",
          rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).mean()", loss="loss = rec + self.lam * divergence"):
    return "\n".join([z, prior, divergence, rec, loss])


MMD_CORRECT = {
    "cdist": ("torch.cdist for the distances; the unbiased form by masking the diagonals",
              {MMD_FN: """
                       dim = x.shape[1]
                       k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / dim)
                       kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
                       if biased:
                           return kxx.mean() + kyy.mean() - 2 * kxy.mean()
                       off_x = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
                       off_y = ~torch.eye(len(y), dtype=torch.bool, device=y.device)
                       return kxx[off_x].mean() + kyy[off_y].mean() - 2 * kxy.mean()
                       """}, {}),
    "expanded_clamp": ("squared distances expanded as |a|^2 - 2 a.b + |b|^2, clamped at 0; the loss with "
                       "torch.randn_like for the prior draws",
                       {MMD_FN: """
                                def sq(a, b):
                                    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
                                    return d.clamp_min(0)
                                dim = x.size(1)
                                kxx, kyy, kxy = (torch.exp(-sq(a, b) / dim) for a, b in ((x, x), (y, y), (x, y)))
                                n, m = len(x), len(y)
                                if not biased:
                                    kxx = kxx - torch.diag(torch.diagonal(kxx))
                                    kyy = kyy - torch.diag(torch.diagonal(kyy))
                                    return kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy.mean()
                                return kxx.mean() + kyy.mean() - 2 * kxy.mean()
                                """,
                        LOSS_FN: _loss(prior="z_prior = torch.randn_like(z)")}, {}),
    "einsum": ("a loop-free einsum for the squared distances; h^2 written out as dim / 2; the loss summed then "
               "divided by the batch size",
               {MMD_FN: """
                        h2 = x.shape[-1] / 2
                        def k(a, b):
                            diff = a.unsqueeze(1) - b.unsqueeze(0)
                            return torch.exp(-torch.einsum("ijd,ijd->ij", diff, diff) / (2 * h2))
                        n, m = x.shape[0], y.shape[0]
                        if biased:
                            wx, wy = 1 / (n * n), 1 / (m * m)
                            sx, sy = k(x, x).sum(), k(y, y).sum()
                        else:
                            wx, wy = 1 / (n * (n - 1)), 1 / (m * (m - 1))
                            sx, sy = k(x, x).sum() - n, k(y, y).sum() - m
                        return wx * sx + wy * sy - 2 * k(x, y).sum() / (n * m)
                        """,
                LOSS_FN: _loss(rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).sum() / x.shape[0]")}, {}),
    "stacked": ("one kernel matrix of the stacked samples, split into blocks; the loss through torch.distributions "
                "(Bernoulli) and self.enc directly",
                {MMD_FN: """
                         n = x.shape[0]
                         both = torch.cat([x, y])
                         K = torch.exp(-(both[:, None] - both[None]).pow(2).sum(-1) / both.shape[1])
                         kxx, kyy, kxy = K[:n, :n], K[n:, n:], K[:n, n:]
                         if biased:
                             return kxx.mean() + kyy.mean() - 2 * kxy.mean()
                         m = y.shape[0]
                         return ((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                                 - 2 * kxy.mean())
                         """,
                 LOSS_FN: """
                          z, _ = self.enc(x)
                          z_prior = torch.randn(x.shape[0], self.z_dim, dtype=z.dtype, device=z.device)
                          divergence = mmd(z, z_prior)
                          rec = -torch.distributions.Bernoulli(logits=self.dec(z)).log_prob(x).sum(-1).mean()
                          loss = rec + self.lam * divergence
                          """}, {}),
    "own_signature": ("mmd's parameters renamed (codes, prior_draws) and a parameter added with a default (the "
                      "kernel's scale), the loss calling it by those names: mmd(codes=z, prior_draws=z_prior, scale=1.0)",
                      {MMD_FN: """
                               dim = codes.shape[1]
                               k = lambda a, b: torch.exp(-scale * ((a[:, None] - b[None]) ** 2).sum(-1) / dim)
                               kxx, kyy, kxy = k(codes, codes), k(prior_draws, prior_draws), k(codes, prior_draws)
                               if biased:
                                   return kxx.mean() + kyy.mean() - 2 * kxy.mean()
                               n, m = len(codes), len(prior_draws)
                               return ((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1))
                                       - 2 * kxy.mean())
                               """,
                       LOSS_FN: """
                                z = self.encode(x)
                                divergence = mmd(codes=z, prior_draws=self.sample_z(x.shape[0]), scale=1.0)
                                rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).mean()
                                loss = rec + self.lam * divergence
                                """},
                      {"edits": [["def mmd(x, y, biased=True):", "def mmd(codes, prior_draws, biased=True, scale=1.0):"]]}),
    "helper_kernel": ("a kernel helper of the student's own at the end of mmd_vae.py; the unbiased form as the "
                      "biased one corrected by its diagonals",
                      {MMD_FN: """
                               kxx, kyy, kxy = gaussian_kernel(x, x), gaussian_kernel(y, y), gaussian_kernel(x, y)
                               value = kxx.mean() + kyy.mean() - 2 * kxy.mean()
                               if biased:
                                   return value
                               n, m = len(x), len(y)
                               return (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()
                               """},
                      {"append": """
                                 def gaussian_kernel(a, b):
                                     \"\"\"exp(-|a - b|^2 / dim) between the rows of a and b.\"\"\"
                                     return torch.exp(-torch.cdist(a, b).pow(2) / a.shape[1])
                                 """}),
}

# (Also named by the checks, left out of the zoo to keep its grading time small: h = 1/sqrt(2), the distance
# unsquared, prior draws from a fixed seed, the unbiased form in the loss.)
MMD_BUGGY = {
    # mmd's own bugs: graded in mmd/mmd only (the loss sandbox uses the grader's mmd)
    "bandwidth_dim": ("bandwidth h^2 = dim: k = exp(-|a - b|^2 / (2 dim))",
                      {MMD_FN: _mmd(kernel="k = lambda a, b: torch.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * dim))")},
                      ["bandwidth"], MMD, ["reference_values", "bandwidth"]),
    "exp_plus": ("the exponent's sign reversed: exp(+|a - b|^2 / dim)",
                 {MMD_FN: _mmd(kernel="k = lambda a, b: torch.exp(((a[:, None] - b[None]) ** 2).sum(-1) / dim)")},
                 ["sign is reversed"], MMD, "less"),
    "plus_cross_term": ("squared distances as |a|^2 + |b|^2 + 2 a.b",
                        {MMD_FN: _mmd(kernel="k = lambda a, b: torch.exp(-((a * a).sum(1)[:, None] + (b * b).sum(1)"
                                             "[None] + 2 * a @ b.T) / dim)")},
                        ["cross term"], MMD, "less"),
    "unbiased_keeps_diagonal": ("the unbiased form keeps the diagonals (divides by n (n - 1) all the same)",
                                {MMD_FN: _mmd(xx="xx = kxx.sum() / (n * (n - 1))", yy="yy = kyy.sum() / (m * (m - 1))")},
                                ["diagonals"], MMD, ["reference_values", "unbiased_expectation_zero"]),
    "biased_drops_diagonal": ("the biased form drops the diagonals (it is then the unbiased one)",
                              {MMD_FN: _mmd(biased="return xx_b + yy_b - 2 * kxy.mean()")
                               .replace("if biased:", "xx_b = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))\n"
                                        "yy_b = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))\nif biased:")},
                              ["other form"], MMD, ["reference_values", "biased_zero_on_identical"]),
    "cross_mean_wrong_axis": ("the cross term averaged over one axis only, then its first entry",
                              {MMD_FN: _mmd(biased="return kxx.mean() + kyy.mean() - 2 * kxy.mean(0)[0]",
                                            unbiased="return xx + yy - 2 * kxy.mean(0)[0]")},
                              ["symmetric"], MMD, "less"),
    # the loss's bugs: graded in mmd/loss only
    "lambda_on_rec": ("the weight on rec: loss = self.lam * rec + mmd", {LOSS_FN: _loss(loss="loss = self.lam * rec + divergence")},
                      ["weight belongs on the MMD"], MMD_LOSS, ["weighted_loss", "gradients"]),
    "codes_vs_zeros": ("codes compared with zeros instead of prior draws",
                       {LOSS_FN: _loss(prior="z_prior = torch.zeros_like(z)")}, ["not N(0, I) draws"], MMD_LOSS,
                       ["codes_and_prior"]),
    "codes_vs_themselves": ("codes compared with themselves", {LOSS_FN: _loss(prior="z_prior = z")},
                            ["both of its arguments"], MMD_LOSS, ["codes_and_prior"]),
    "detached_codes": ("the codes detached before the MMD: mmd(z.detach(), z_prior)",
                       {LOSS_FN: _loss(divergence="divergence = mmd(z.detach(), z_prior)")}, ["rec alone"], MMD_LOSS,
                       ["gradients"]),
    "sum_over_batch": ("rec summed over the batch", {LOSS_FN: _loss(rec="rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).sum()")},
                       ["sum over the batch"], MMD_LOSS, ["rec_term"]),
    "kl_instead_of_mmd": ("the KL of q(z|x) instead of the MMD",
                          {LOSS_FN: """
                                    m, v = self.enc(x)
                                    z = m
                                    divergence = ut.kl_normal(m, v, self.z_prior_m, self.z_prior_v).mean()
                                    rec = -ut.log_bernoulli_with_logits(x, self.dec(z)).mean()
                                    loss = rec + self.lam * divergence
                                    """}, ["called mmd 0 times"], MMD_LOSS, "less"),
    "sampled_codes": ("a sample of q(z|x) as the code instead of the encoder's mean",
                      {LOSS_FN: _loss(z="m, v = self.enc(x)\nz = ut.sample_gaussian(m, v)")}, ["codes"], MMD_LOSS, "less"),
}


def mmd_cases():
    """{case: data} of the MMD-VAE alone."""
    out = {}
    every = {MMD: "full", MMD_LOSS: "full", "mmd/training": "full"}
    for name, (why, code, extra) in MMD_CORRECT.items():
        out[f"mmd_{name}_full"] = {"why": why, "problems": ["mmd"],
                                   "files": _spec(name, code, extra, main="mmd_vae.py"), "scores": dict(every)}
    for name, (why, code, hint, family, fails) in MMD_BUGGY.items():
        other = MMD_LOSS if family == MMD else MMD
        meta = {"why": why, "problems": ["mmd"], "files": _spec(name, code, {}, main="mmd_vae.py")}
        if fails == "less":
            meta["scores"] = {family: "less", other: "full"}
        else:
            meta["scores"], meta["fails"] = {other: "full"}, {family: fails}
        meta["hint"] = hint
        out[f"mmd_{name}_buggy"] = meta
    out["mmd_skeleton_zero"] = {
        "why": "the untouched handout of the MMD-VAE alone: mmd and loss raise NotImplementedError",
        "problems": ["mmd"], "files": {"mmd_vae.py": {"from": "handout:mmd_vae.py"}},
        "scores": {MMD: "none", MMD_LOSS: "none", "mmd/training": "none"}}
    return out


# ---------------------------------------------------------------------------------------
# The linear autoencoder (problem `ae`): LinearAutoencoder.__init__, encode, decode and
# reconstruction_loss in ae.py. Each case gives the four regions (the reference's where not named).
# ---------------------------------------------------------------------------------------
AE_MODEL, AE_LOSS, AE_TRAINING = "ae/LinearAutoencoder", "ae/reconstruction_loss", "ae/training"
_INIT_PARAMETERS = """
    bound_e, bound_d = 1 / pixels ** 0.5, 1 / k ** 0.5           # as nn.Linear initialises
    self.w_enc = nn.Parameter(torch.empty(k, pixels).uniform_(-bound_e, bound_e))
    self.b_enc = nn.Parameter(torch.empty(k).uniform_(-bound_e, bound_e))
    self.w_dec = nn.Parameter(torch.empty(pixels, k).uniform_(-bound_d, bound_d))
    self.b_dec = nn.Parameter(torch.empty(pixels).uniform_(-bound_d, bound_d))
"""


def _ae(**regions):
    """The regions a case changes (the others stay the reference's)."""
    return {f"ae.{name}": textwrap.dedent(code).strip("\n") for name, code in regions.items()}


AE_CORRECT = {
    "mse_loss": ("nn.Linear twice, torch.nn.functional.mse_loss (reduction 'mean')",
                 _ae(reconstruction_loss="return torch.nn.functional.mse_loss(x_hat, x)"), {}),
    "explicit_parameters": ("explicit nn.Parameters initialised as nn.Linear does, x @ W.T + b, the loss as "
                            "torch.mean of the squares",
                            _ae(__init__=_INIT_PARAMETERS, encode="return x @ self.w_enc.T + self.b_enc",
                                decode="return z @ self.w_dec.T + self.b_dec",
                                reconstruction_loss="return torch.mean(torch.square(x - x_hat))"), {}),
    "einsum_transposed": ("weights stored (in, out) and applied with torch.einsum; the loss as an einsum of the "
                          "difference with itself over the number of elements",
                          _ae(__init__="""
                              bound_e, bound_d = 1 / pixels ** 0.5, 1 / k ** 0.5
                              self.enc_w = nn.Parameter((torch.rand(pixels, k) * 2 - 1) * bound_e)
                              self.enc_b = nn.Parameter((torch.rand(k) * 2 - 1) * bound_e)
                              self.dec_w = nn.Parameter((torch.rand(k, pixels) * 2 - 1) * bound_d)
                              self.dec_b = nn.Parameter((torch.rand(pixels) * 2 - 1) * bound_d)
                              """,
                              encode="return torch.einsum('bi,ik->bk', x, self.enc_w) + self.enc_b",
                              decode="return torch.einsum('bk,ki->bi', z, self.dec_w) + self.dec_b",
                              reconstruction_loss="""
                              d = x - x_hat
                              return torch.einsum('bi,bi->', d, d) / d.numel()
                              """), {}),
    "sequential_mse_module": ("each map an nn.Sequential holding one nn.Linear; nn.MSELoss()",
                              _ae(__init__="self.encoder = nn.Sequential(nn.Linear(pixels, k))\n"
                                           "self.decoder = nn.Sequential(nn.Linear(k, pixels))",
                                  reconstruction_loss="return nn.MSELoss()(x_hat, x)"), {}),
    "functional_linear_addmm": ("F.linear with explicit parameters in the encoder, torch.addmm in the decoder; "
                                "the loss summed per image, divided by 784, averaged",
                                _ae(__init__=_INIT_PARAMETERS,
                                    encode="return torch.nn.functional.linear(x, self.w_enc, self.b_enc)",
                                    decode="return torch.addmm(self.b_dec, z, self.w_dec.T)",
                                    reconstruction_loss="return (x - x_hat).pow(2).sum(1).mean() / 784"), {}),
    "helper_in_zip": ("a helper of the student's own (a class Affine) used twice, ae.py in a folder of a zip",
                      _ae(__init__="self.encoder = Affine(pixels, k)\nself.decoder = Affine(k, pixels)"),
                      {"append": """
                       class Affine(nn.Module):
                           def __init__(self, n_in, n_out):
                               super().__init__()
                               self.inner = nn.Linear(n_in, n_out)

                           def forward(self, v):
                               return self.inner(v)
                       """, "zip": {"hw.zip": ["hw/"]}, "subdir": "hw"}),
}

AE_BUGGY = {
    "no_bias": ("nn.Linear without biases: the model cannot subtract the mean image",
                _ae(__init__="self.encoder = nn.Linear(pixels, k, bias=False)\n"
                             "self.decoder = nn.Linear(k, pixels, bias=False)"),
                ["no trained parameter holds the encoder's bias"], {AE_MODEL: ["two_maps_with_biases"]}),
    "relu_between": ("a ReLU on the code", _ae(encode="return torch.relu(self.encoder(x))"),
                     ["not affine", "ReLU"], {AE_MODEL: ["affine_maps"]}),
    "sigmoid_output": ("a sigmoid on the reconstruction", _ae(decode="return torch.sigmoid(self.decoder(z))"),
                       ["not affine", "sigmoid"], {AE_MODEL: ["affine_maps"]}),
    "clamped_output": ("the reconstruction clamped to [0, 1]", _ae(decode="return self.decoder(z).clamp(0, 1)"),
                       ["not affine"], {AE_MODEL: ["affine_maps"]}),
    "tied_decoder": ("the decoder reuses the encoder's weight (transposed), its own weight never used",
                     _ae(decode="return torch.nn.functional.linear(z, self.encoder.weight.T, self.decoder.bias)"),
                     ["tied"], {AE_MODEL: ["two_maps_with_biases"]}),
    "encoder_bias_unused": ("the encoder's bias is a parameter but encode leaves it out",
                            _ae(encode="return x @ self.encoder.weight.T"),
                            ["encoder's bias"], {AE_MODEL: ["two_maps_with_biases"]}),
    "loss_sum_over_batch": ("the loss summed over the batch instead of averaged",
                            _ae(reconstruction_loss="return ((x - x_hat) ** 2).mean(dim=-1).sum()"),
                            ["sum over the batch"], {AE_LOSS: ["loss_value"]}),
    "loss_without_1_784": ("the loss summed over the pixels, without the 1/784",
                           _ae(reconstruction_loss="return ((x - x_hat) ** 2).sum(dim=-1).mean()"),
                           ["without the 1/784"], {AE_LOSS: ["loss_value"]}),
    "mean_absolute_error": ("the mean absolute error", _ae(reconstruction_loss="return (x - x_hat).abs().mean()"),
                            ["mean absolute error"], {AE_LOSS: ["loss_value", "loss_gradient"]}),
    "not_squared": ("(x - y) not squared", _ae(reconstruction_loss="return (x - x_hat).mean()"),
                    ["not squared"], {AE_LOSS: ["loss_value", "loss_gradient"]}),
    "root_mean_squared": ("the root of the mean squared error",
                          _ae(reconstruction_loss="return ((x - x_hat) ** 2).mean().sqrt()"),
                          ["root of the mean squared error"], {AE_LOSS: ["loss_value", "loss_gradient"]}),
    "detached_reconstruction": ("the loss computed on x_hat.detach(): no gradient reaches the model",
                                _ae(reconstruction_loss="return ((x - x_hat.detach()) ** 2).mean()"),
                                ["No gradient reached"], {AE_LOSS: ["loss_gradient"]}),
}


def ae_cases():
    """{case: data} of the linear autoencoder alone."""
    out = {}
    every = {AE_MODEL: "full", AE_LOSS: "full", AE_TRAINING: "full"}
    for name, (why, code, extra) in AE_CORRECT.items():
        meta = {"why": why, "problems": ["ae"], "files": _spec(name, code, extra, main="ae.py"), "scores": every}
        if extra.get("zip"):
            meta["zip"] = extra["zip"]
        out[f"ae_{name}_full"] = meta
    for name, (why, code, hint, fails) in AE_BUGGY.items():
        out[f"ae_{name}_buggy"] = {"why": why, "problems": ["ae"], "files": _spec(name, code, {}, main="ae.py"),
                                   "scores": {family: "full" for family in (AE_MODEL, AE_LOSS) if family not in fails},
                                   "fails": fails, "hint": hint}
    out["ae_skeleton_zero"] = {
        "why": "the untouched handout of the linear autoencoder: every region raises NotImplementedError",
        "problems": ["ae"], "files": {"ae.py": {"from": "handout:ae.py"}},
        "scores": {AE_MODEL: "none", AE_LOSS: "none", AE_TRAINING: "none"}}
    return out


# ---------------------------------------------------------------------------------------
# The convolutional VAE's unit functions (problem `conv`): log_normal_pdf and ConvDecoder (__init__,
# forward) in conv_vae.py. Correct styles get full marks in both families and in the bound's; each bug loses
# exactly the checks it names, in its own family, and nothing elsewhere (training left out).
# ---------------------------------------------------------------------------------------
CONV_PDF, CONV_DECODER = "conv/log_normal_pdf", "conv/ConvDecoder"
_CONV_INIT = """
self.fc = nn.Linear(z_dim, 32 * 7 * 7)
self.deconv1 = nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)
self.deconv2 = nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)
"""


def _pdf(expression="-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)"):
    return {"conv.log_normal_pdf": f"return {expression}"}


def _decoder(init=_CONV_INIT, fc="h = torch.relu(self.fc(z)).reshape(-1, 32, 7, 7)",
             deconv1="h = torch.relu(self.deconv1(h))", out="return self.deconv2(h)"):
    return {"conv.__init__": init, "conv.forward": "\n".join([fc, deconv1, out])}


CONV_UNIT_CORRECT = {
    "pdf_normal_relu_functional": (
        "log_normal_pdf through torch.distributions.Normal(mean, exp(logvar / 2)).log_prob(sample).sum(-1); the decoder "
        "with F.relu and .view(z.size(0), 32, 7, 7)",
        {**_pdf("torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(sample).sum(-1)"),
         **_decoder(fc="h = F.relu(self.fc(z)).view(z.size(0), 32, 7, 7)", deconv1="h = F.relu(self.deconv1(h))")},
        {"imports": ["import torch.nn.functional as F"]}),
    "unflatten_relu_modules": (
        "log_normal_pdf with torch.square, logvar.neg().exp() and a 2 pi constant of torch.pi; the decoder with an "
        "nn.Unflatten and nn.ReLU modules kept as attributes (no parameters of their own)",
        {**_pdf("-0.5 * torch.sum(torch.square(sample - mean) * logvar.neg().exp() + logvar "
                "+ torch.log(torch.tensor(2 * torch.pi)), dim=-1)"),
         **_decoder(init=_CONV_INIT + "self.unflatten = nn.Unflatten(1, (32, 7, 7))\nself.act = nn.ReLU()",
                    fc="h = self.unflatten(self.act(self.fc(z)))", deconv1="h = self.act(self.deconv1(h))")}, {}),
    "sequential_shared_layers": (
        "log_normal_pdf as three sums (the constant as d log(2 pi) / 2); the decoder's fc, deconv1 and deconv2 "
        "also held in an nn.Sequential that forward calls (the parameters keep their names)",
        {**_pdf("(-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar)).sum(-1) - 0.5 * logvar.expand_as(sample).sum(-1)"
                " - 0.5 * sample.shape[-1] * math.log(2 * math.pi))"),
         **_decoder(init=_CONV_INIT + "self.net = nn.Sequential(self.fc, nn.ReLU(), nn.Unflatten(1, (32, 7, 7)), "
                                      "self.deconv1, nn.ReLU(), self.deconv2)",
                    fc="return self.net(z)", deconv1="", out="")}, {}),
    "independent_functional": (
        "log_normal_pdf through torch.distributions.Independent(Normal(...), 1) (the sum over the event dimension); "
        "the transposed convolutions called through F.conv_transpose2d with the layers' weights, ReLU as clamp(min=0)",
        {**_pdf("torch.distributions.Independent(torch.distributions.Normal(mean, (0.5 * logvar).exp()), 1)"
                ".log_prob(sample)"),
         **_decoder(fc="h = self.fc(z).clamp(min=0).reshape(z.shape[0], 32, 7, 7)",
                    deconv1="h = F.conv_transpose2d(h, self.deconv1.weight, self.deconv1.bias, stride=2, "
                            "padding=1).clamp(min=0)",
                    out="return F.conv_transpose2d(h, self.deconv2.weight, self.deconv2.bias, stride=2, padding=1)")},
        {"imports": ["import torch.nn.functional as F"]}),
    "reciprocal_keywords": (
        "log_normal_pdf dividing by logvar.exp() (the variance) with a helper constant; the layers built with "
        "keyword arguments from the module's CHANNELS and IMAGE_SHAPE",
        {**_pdf("-0.5 * (((sample - mean) ** 2) / logvar.exp() + logvar + LOG_2PI).sum(dim=-1)"),
         **_decoder(init="""
              self.fc = nn.Linear(in_features=z_dim, out_features=CHANNELS[1] * 7 * 7)
              self.deconv1 = nn.ConvTranspose2d(in_channels=CHANNELS[1], out_channels=CHANNELS[0], kernel_size=4,
                                                stride=2, padding=1)
              self.deconv2 = nn.ConvTranspose2d(in_channels=CHANNELS[0], out_channels=IMAGE_SHAPE[0], kernel_size=4,
                                                stride=2, padding=1)
              """, fc="h = torch.relu(self.fc(z)).reshape(z.shape[0], *([CHANNELS[1], 7, 7]))")},
        {"append": "LOG_2PI = math.log(2 * math.pi)     # my own constant\n"}),
}

# (pdf mistakes: 15.1; shape mistakes: 15.2; detached inputs: 15.3; the decoder's: see each)
CONV_UNIT_BUGGY = {
    "pdf_logvar_as_variance": ("logvar used as the variance: (x - m)^2 / logvar + log(logvar)",
                               _pdf("-0.5 * ((sample - mean) ** 2 / logvar + torch.log(logvar) "
                                    "+ math.log(2 * math.pi)).sum(-1)"),
                               ["NaN"], {CONV_PDF: ["reference_values"]}),
    "pdf_logvar_as_std": ("logvar used as the standard deviation: (x - m)^2 / logvar^2 + log(logvar^2)",
                          _pdf("-0.5 * ((sample - mean) ** 2 / logvar ** 2 + torch.log(logvar ** 2) "
                               "+ math.log(2 * math.pi)).sum(-1)"),
                          ["as the standard deviation"], {CONV_PDF: ["reference_values"]}),
    "pdf_exp_plus": ("(x - m)^2 multiplied by exp(+logvar)",
                     _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(logvar) + logvar + math.log(2 * math.pi)).sum(-1)"),
                     ["exp(-logvar)"], {CONV_PDF: ["reference_values"]}),
    "pdf_no_half": ("the factor 1/2 left out",
                    _pdf("-((sample - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)"),
                    ["1/2 left out"], {CONV_PDF: ["reference_values"]}),
    "pdf_no_log_2pi": ("log(2 pi) left out", _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar).sum(-1)"),
                       ["log(2 pi) left out"], {CONV_PDF: ["reference_values"]}),
    "pdf_mean_over_dim": ("a mean over the last dimension instead of a sum",
                          _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar "
                               "+ math.log(2 * math.pi)).mean(-1)"),
                          ["mean over the last dimension"], {CONV_PDF: ["reference_values"]}),
    "pdf_sign": ("the sign reversed: +1/2 (...)",
                 _pdf("0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)"),
                 ["sign reversed"], {CONV_PDF: ["reference_values"]}),
    "pdf_keepdim": ("the summed dimension kept: .sum(-1, keepdim=True)",
                    _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar "
                         "+ math.log(2 * math.pi)).sum(-1, keepdim=True)"),
                    ["keepdim"], {CONV_PDF: ["shapes_and_broadcasting"]}),
    "pdf_sum_dim1": ("the sum over dim=1 rather than the last dimension (right for 2-d inputs only)",
                     _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar) + logvar "
                          "+ math.log(2 * math.pi)).sum(dim=1)"),
                     ["dim=1"], {CONV_PDF: ["shapes_and_broadcasting"]}),
    "pdf_logvar_detached": ("logvar detached: no gradient reaches it",
                            _pdf("-0.5 * ((sample - mean) ** 2 * torch.exp(-logvar.detach()) + logvar.detach() "
                                 "+ math.log(2 * math.pi)).sum(-1)"),
                            ["reached logvar"], {CONV_PDF: ["gradients"]}),
    "dec_sigmoid_output": ("a sigmoid on the logits", _decoder(out="return torch.sigmoid(self.deconv2(h))"),
                           ["a sigmoid on the output"], {CONV_DECODER: ["forward_values"]}),
    "dec_no_relu_after_fc": ("no ReLU after fc", _decoder(fc="h = self.fc(z).reshape(-1, 32, 7, 7)"),
                             ["no ReLU after fc"], {CONV_DECODER: ["forward_values"]}),
    "dec_no_relu_after_deconv1": ("no ReLU after deconv1", _decoder(deconv1="h = self.deconv1(h)"),
                                  ["no ReLU after deconv1"], {CONV_DECODER: ["forward_values"]}),
    "dec_channels_last_reshape": ("the fc's output reshaped to (batch, 7, 7, 32), then permuted to channels first",
                                  _decoder(fc="h = torch.relu(self.fc(z)).reshape(-1, 7, 7, 32).permute(0, 3, 1, 2)"),
                                  ["(batch, 7, 7, 32)"], {CONV_DECODER: ["forward_values"]}),
    "dec_flat_output": ("the logits returned flat, (batch, 784)",
                        _decoder(out="return self.deconv2(h).reshape(z.shape[0], -1)"),
                        ["reshape nothing after deconv2"], {CONV_DECODER: ["output_shape"]}),
    "dec_other_names": ("the layers under other attribute names (linear, up1, up2)",
                        _decoder(init="self.linear = nn.Linear(z_dim, 32 * 7 * 7)\n"
                                      "self.up1 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)\n"
                                      "self.up2 = nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1)",
                                 fc="h = torch.relu(self.linear(z)).reshape(-1, 32, 7, 7)",
                                 deconv1="h = torch.relu(self.up1(h))", out="return self.up2(h)"),
                        ["no parameter fc.weight", "cannot be judged"],
                        {CONV_DECODER: ["architecture", "forward_values", "gradients"]}),
    "dec_padding_zero": ("deconv1 without padding: 7 x 7 -> 16 x 16, the images 32 x 32",
                         _decoder(init=_CONV_INIT.replace("nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)",
                                                          "nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2)")),
                         ["(n - 1) s - 2p + k"], {CONV_DECODER: ["output_shape", "forward_values", "gradients"]}),
    "dec_fc_detached": ("the fc's output detached: no gradient reaches z or fc",
                        _decoder(fc="h = torch.relu(self.fc(z)).detach().reshape(-1, 32, 7, 7)"),
                        ["no gradient reaches z"], {CONV_DECODER: ["gradients"]}),
    "dec_conv2d_layers": ("nn.Conv2d where nn.ConvTranspose2d belongs (the weights (out, in, k, k), the images shrink)",
                          _decoder(init=_CONV_INIT.replace("ConvTranspose2d", "Conv2d")),
                          ["ConvTranspose2d"],
                          {CONV_DECODER: ["architecture", "output_shape", "forward_values", "gradients"]}),
}


def conv_unit_cases():
    """{case: data} of the convolutional VAE's log_normal_pdf and ConvDecoder."""
    out = {}
    # the bound's checks run with the grader's stand-ins: a bug here costs nothing there (no double penalty)
    every = {CONV_PDF: "full", CONV_DECODER: "full", "conv/negative_elbo_bound": "full"}
    for name, (why, code, extra) in CONV_UNIT_CORRECT.items():
        out[f"conv_{name}_full"] = {"why": why, "problems": ["conv"],
                                    "files": _spec(name, code, extra, main="conv_vae.py"), "scores": dict(every)}
    for name, (why, code, hint, fails) in CONV_UNIT_BUGGY.items():
        out[f"conv_{name}_buggy"] = {"why": why, "problems": ["conv"],
                                     "files": _spec(name, code, {}, main="conv_vae.py"),
                                     "scores": {family: "full" for family in every if family not in fails},
                                     "fails": fails, "hint": hint}
    return out


# ---------------------------------------------------------------------------------------
# The convolutional VAE's bound (problem `conv`): ConvVAE.negative_elbo_bound in conv_vae.py, and whole-file
# correct styles (log_normal_pdf, ConvDecoder.__init__ and forward, the bound, each written differently).
# ---------------------------------------------------------------------------------------
CONV_BOUND = "conv/negative_elbo_bound"
CONV_OTHERS = ("conv/log_normal_pdf", "conv/ConvDecoder")
FILE_OF.update({"conv.log_normal_pdf": "conv_vae.py", "conv.__init__": "conv_vae.py", "conv.forward": "conv_vae.py",
                "conv.negative_elbo_bound": "conv_vae.py"})
CONV_ELBO = "conv.negative_elbo_bound"          # its region in conv_vae.py (ConvDecoder's: conv.__init__, conv.forward)
_ZEROS = "torch.zeros_like(z)"


def _conv_bound(z="z = self.reparameterize(mean, logvar)", logits="logits = self.dec(z).reshape(x.shape[0], -1)",
                rec="rec = -ut.log_bernoulli_with_logits(x, logits).mean()",
                kl=f"kl = (log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, {_ZEROS}, {_ZEROS})).mean()",
                nelbo="nelbo = kl + rec"):
    return "\n".join(["mean, logvar = self.enc(x)", z, logits, rec, kl, nelbo])


CONV_CORRECT = {
    "distributions": (
        "torch.distributions throughout: Normal(...).log_prob for log_normal_pdf, rsample and Bernoulli in the bound; "
        "the decoder with F.relu and view",
        {"conv.log_normal_pdf": """
                                D = torch.distributions
                                return D.Normal(mean, torch.exp(0.5 * logvar), validate_args=False).log_prob(sample).sum(-1)
                                """,
         "conv.__init__": """
                          self.fc = nn.Linear(z_dim, 32 * 7 * 7)
                          self.deconv1 = nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)
                          self.deconv2 = nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)
                          """,
         "conv.forward": """
                         F = torch.nn.functional
                         h = F.relu(self.fc(z)).view(-1, 32, 7, 7)
                         return self.deconv2(F.relu(self.deconv1(h)))
                         """,
         CONV_ELBO: """
                    D = torch.distributions
                    mean, logvar = self.enc(x)
                    q = D.Normal(mean, torch.exp(0.5 * logvar))
                    z = q.rsample()
                    prior = D.Normal(torch.zeros_like(z), torch.ones_like(z))
                    kl = (q.log_prob(z).sum(-1) - prior.log_prob(z).sum(-1)).mean()
                    logits = self.dec(z).view(x.size(0), 784)
                    rec = -D.Bernoulli(logits=logits).log_prob(x).sum(-1).mean()
                    nelbo = kl + rec
                    """}, {}),
    "explicit": (
        "explicit formulas: log_normal_pdf term by term, the noise drawn by hand (z = mean + exp(logvar / 2) eps), "
        "the Bernoulli log-likelihood written out; the decoder with torch.relu and reshape, positional arguments",
        {"conv.log_normal_pdf": """
                                log2pi = math.log(2 * math.pi)
                                quadratic = (sample - mean).pow(2) * torch.exp(-logvar)
                                return torch.sum(-0.5 * (quadratic + logvar + log2pi), dim=-1)
                                """,
         "conv.__init__": """
                          self.fc = nn.Linear(z_dim, 1568)
                          self.deconv1 = nn.ConvTranspose2d(32, 16, 4, 2, 1)
                          self.deconv2 = nn.ConvTranspose2d(16, 1, 4, 2, 1)
                          """,
         "conv.forward": """
                         h = torch.relu(self.fc(z))
                         h = h.reshape(z.shape[0], 32, 7, 7)
                         h = torch.relu(self.deconv1(h))
                         return self.deconv2(h)
                         """,
         CONV_ELBO: """
                    mean, logvar = self.enc(x)
                    eps = torch.randn_like(mean)
                    z = mean + torch.exp(logvar / 2) * eps
                    logits = self.dec(z).reshape(len(x), -1)
                    log_px = (x * logits - torch.nn.functional.softplus(logits)).sum(dim=1)
                    log_q = log_normal_pdf(z, mean, logvar)
                    log_p = log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
                    kl = torch.mean(log_q - log_p)
                    rec = torch.mean(-log_px)
                    nelbo = kl + rec
                    """}, {}),
    "unflatten": (
        "an nn.Unflatten module between fc and deconv1, F.binary_cross_entropy_with_logits (reduction 'none') for "
        "rec, a prior of zeros made with torch.zeros(1)",
        {"conv.log_normal_pdf": """
                                inverse_variance = (-logvar).exp()
                                squared = (sample - mean) ** 2
                                return (-0.5 * squared * inverse_variance - 0.5 * logvar
                                        - 0.5 * math.log(2 * math.pi)).sum(-1)
                                """,
         "conv.__init__": """
                          self.fc = nn.Linear(in_features=z_dim, out_features=32 * 7 * 7)
                          self.unflatten = nn.Unflatten(1, (32, 7, 7))
                          self.deconv1 = nn.ConvTranspose2d(in_channels=32, out_channels=16, kernel_size=4, stride=2,
                                                            padding=1)
                          self.deconv2 = nn.ConvTranspose2d(in_channels=16, out_channels=1, kernel_size=4, stride=2,
                                                            padding=1)
                          """,
         "conv.forward": """
                         h = self.unflatten(torch.relu(self.fc(z)))
                         return self.deconv2(torch.relu(self.deconv1(h)))
                         """,
         CONV_ELBO: """
                    F = torch.nn.functional
                    mean, logvar = self.enc(x)
                    z = self.reparameterize(mean, logvar)
                    logits = self.dec(z).flatten(start_dim=1)
                    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
                    zero = torch.zeros(1, dtype=z.dtype, device=z.device)
                    kl = (log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, zero, zero)).mean()
                    nelbo = kl + rec
                    """}, {}),
    "per_image_rows": (
        "per-image rows first, then one mean (nelbo = mean(kl_rows + rec_rows)); the decoder with clamp(min=0) and "
        "Tensor.relu; log_normal_pdf through torch.square and a broadcast constant",
        {"conv.log_normal_pdf": """
                                constant = torch.full_like(logvar, math.log(2 * math.pi))
                                return -0.5 * (torch.square(sample - mean) * torch.exp(-logvar) + logvar
                                               + constant).sum(dim=-1)
                                """,
         "conv.__init__": """
                          hidden, channels = 32 * 7 * 7, (32, 16, 1)
                          self.fc = nn.Linear(z_dim, hidden)
                          self.deconv1 = nn.ConvTranspose2d(channels[0], channels[1], kernel_size=4, stride=2, padding=1)
                          self.deconv2 = nn.ConvTranspose2d(channels[1], channels[2], kernel_size=4, stride=2, padding=1)
                          """,
         "conv.forward": """
                         h = self.fc(z).clamp(min=0).view(z.size(0), 32, 7, 7)
                         return self.deconv2(self.deconv1(h).relu())
                         """,
         CONV_ELBO: """
                    mean, logvar = self.enc(x)
                    z = self.reparameterize(mean, logvar)
                    rec_rows = -ut.log_bernoulli_with_logits(x, self.dec(z).flatten(1))
                    kl_rows = log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, z * 0, z * 0)
                    nelbo = (kl_rows + rec_rows).mean()
                    kl, rec = kl_rows.mean(), rec_rows.sum() / x.shape[0]
                    """}, {}),
    "pytorch_example": (
        "the PyTorch VAE example's in-place reparameterization (std = logvar.mul(0.5).exp_(), eps.mul(std).add_(mean)); "
        "log_normal_pdf through Independent(Normal); the images compared as (batch, 1, 28, 28) flattened",
        {"conv.log_normal_pdf": """
                                D = torch.distributions
                                mean, logvar = torch.broadcast_tensors(mean, logvar)
                                normal = D.Independent(D.Normal(mean, logvar.mul(0.5).exp(), validate_args=False), 1)
                                return normal.log_prob(sample)
                                """,
         "conv.__init__": """
                          self.fc = nn.Linear(self.z_dim, 32 * 7 * 7)
                          deconv = lambda c_in, c_out: nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1)
                          self.deconv1, self.deconv2 = deconv(32, 16), deconv(16, 1)
                          """,
         "conv.forward": """
                         F = torch.nn.functional
                         h = F.relu(self.fc(z)).reshape(-1, *CHANNELS[1:], 7, 7)
                         return self.deconv2(F.relu(self.deconv1(h)))
                         """,
         CONV_ELBO: """
                    mean, logvar = self.enc(x)
                    std = logvar.mul(0.5).exp_()
                    eps = torch.randn_like(std)
                    z = eps.mul(std).add_(mean)
                    images = x.view(-1, 1, 28, 28)
                    logits = self.dec(z)
                    rec = -ut.log_bernoulli_with_logits(images.flatten(1), logits.flatten(1)).mean()
                    kl = torch.mean(log_normal_pdf(z, mean, logvar)
                                    - log_normal_pdf(z, torch.zeros_like(mean), torch.zeros_like(logvar)))
                    nelbo = rec + kl
                    """}, {}),
    "noise_from_sample_z": (
        "the noise drawn with the provided self.sample_z(batch) (N(0, I) draws of shape (batch, z), as eps must be): "
        "z = mean + exp(logvar / 2) * self.sample_z(len(x)); sample_z reads self.enc.fc.weight.device",
        {CONV_ELBO: _conv_bound(z="z = mean + torch.exp(0.5 * logvar) * self.sample_z(x.shape[0])")}, {}),
    "detached_terms": (
        "kl and rec returned detached, for logging (the docstring asks for scalar tensors); nelbo keeps the whole "
        "gradient of the estimator",
        {CONV_ELBO: _conv_bound(nelbo="nelbo = kl + rec\nkl, rec = kl.detach(), rec.detach()")}, {}),
    "decoder_twice": (
        "the same z decoded twice: first to check the logits' shape, then for rec (one draw, decoded twice: the "
        "gradient reaches the second decoding only)",
        {CONV_ELBO: _conv_bound(logits="assert self.dec(z).shape[1:] == (1, 28, 28)\n"
                                       "logits = self.dec(z).reshape(x.shape[0], -1)")}, {}),
}

# (bug, code of the bound, words the feedback says, the checks it fails)
CONV_BUGGY = {
    "closed_form_kl": ("the closed-form KL(q(z|x) || p(z)) instead of the Monte Carlo log q(z|x) - log p(z)",
                       _conv_bound(kl="kl = (0.5 * (torch.exp(logvar) + mean ** 2 - 1 - logvar).sum(-1)).mean()"),
                       ["closed-form KL"], ["monte_carlo_terms"]),
    # A closed-form kl equals the Monte Carlo one within 15.10's tolerance on about 1 call in 700 of 200
    # images (bench/chance_conv_kl.py): this bound is that lucky on every 200-image batch, so only a batch of
    # another size tells it apart.
    "closed_form_kl_except_200": (
        "the closed-form KL(q(z|x) || p(z)), except on batches of 200 images, where it returns the Monte Carlo "
        "log q(z|x) - log p(z): the lucky draws of a closed-form kl on 15.10's main batches, made certain",
        _conv_bound(kl=f"kl = (log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, {_ZEROS}, {_ZEROS})).mean() "
                       "if x.shape[0] == 200 else (0.5 * (torch.exp(logvar) + mean ** 2 - 1 - logvar).sum(-1)).mean()"),
        ["closed-form KL"], ["monte_carlo_terms"]),
    "noise_per_image": ("its own noise, one standard normal per image shared by its latent dimensions: "
                        "randn(batch, 1)",
                        _conv_bound(z="z = mean + torch.exp(0.5 * logvar) * torch.randn(len(x), 1, dtype=mean.dtype)"),
                        ["not one draw of q(z|x)"], ["one_draw_per_image"]),
    "noise_per_batch": ("its own noise, one row of standard normals shared by every image of the batch: "
                        "randn(z_dim)",
                        _conv_bound(z="z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape[-1], "
                                      "dtype=mean.dtype)"),
                        ["not one draw of q(z|x)"], ["one_draw_per_image", "unbiased"]),
    # Every marginal of that z is right: 15.9's mean and variance tests passed it 9 gradings in 10 (measured).
    # Here the per-image noise is evenly spread normal quantiles in a random order, so they pass it for certain.
    "noise_per_image_quantiles": (
        "one noise value per image shared by its latent dimensions, the values evenly spread normal quantiles in "
        "a random order (the lucky draw of randn(batch, 1) made certain)",
        _conv_bound(z="u = (torch.randperm(len(x), dtype=torch.float64) + 0.5) / len(x)\n"
                      "z = mean + torch.exp(0.5 * logvar) * torch.special.ndtri(u).to(mean.dtype)[:, None]"),
        ["neighbouring latent dimensions"], ["one_draw_per_image"]),
    "z_is_mean": ("the mean of q(z|x) decoded instead of a draw", _conv_bound(z="z = mean"),
                  ["mean of q(z|x) itself", "biased"], ["one_draw_per_image", "unbiased"]),
    "rec_sum_over_batch": ("rec summed over the batch",
                           _conv_bound(rec="rec = -ut.log_bernoulli_with_logits(x, logits).sum()"),
                           ["sum over the batch"], ["monte_carlo_terms", "unbiased"]),
    "rec_missing_minus": ("rec = log p(x|z) (the minus sign missing)",
                          _conv_bound(rec="rec = ut.log_bernoulli_with_logits(x, logits).mean()"),
                          ["sign is reversed"], ["monte_carlo_terms", "unbiased"]),
    "prior_logvar_one": ("log p(z) computed with log-variance 1",
                         _conv_bound(kl=f"kl = (log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, {_ZEROS}, "
                                        "torch.ones_like(z))).mean()"),
                         ["log-variance 1"], ["monte_carlo_terms", "unbiased"]),
    "kl_sign_swapped": ("kl = log p(z) - log q(z|x)",
                        _conv_bound(kl=f"kl = (log_normal_pdf(z, {_ZEROS}, {_ZEROS}) - log_normal_pdf(z, mean, "
                                       "logvar)).mean()"),
                        ["sign is reversed"], ["monte_carlo_terms", "unbiased"]),
    "kl_sum_over_batch": ("kl summed over the batch",
                          _conv_bound(kl=f"kl = (log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, {_ZEROS}, "
                                         f"{_ZEROS})).sum()"),
                          ["sum over the batch"], ["monte_carlo_terms", "unbiased"]),
    "std_exp_logvar": ("exp(logvar) used as the standard deviation: z = mean + exp(logvar) * eps",
                       _conv_bound(z="z = mean + torch.exp(logvar) * torch.randn_like(mean)"),
                       ["grows like exp(logvar)", "see 15.9"], ["one_draw_per_image", "unbiased", "gradients"]),
    "logits_not_flattened": ("the logits left as (batch, 1, 28, 28) and x reshaped to them: rec sums over one row "
                             "of 28 pixels",
                             _conv_bound(logits="logits = self.dec(z)",
                                         rec="rec = -ut.log_bernoulli_with_logits(x.reshape(logits.shape), "
                                             "logits).mean()"),
                             ["one row of 28 pixels"], ["monte_carlo_terms", "unbiased"]),
    "rec_mean_over_pixels": ("binary_cross_entropy_with_logits with its default reduction (a mean over pixels too)",
                             _conv_bound(rec="rec = torch.nn.functional.binary_cross_entropy_with_logits(logits, x)"),
                             ["mean over the pixels"], ["monte_carlo_terms", "unbiased"]),
    "nelbo_rec_minus_kl": ("nelbo = rec - kl", _conv_bound(nelbo="nelbo = rec - kl"), ["kl is added"],
                           ["monte_carlo_terms", "unbiased"]),
    "kl_at_second_draw": ("kl evaluated at a second draw of q(z|x), not at the decoded z",
                          _conv_bound(kl="z2 = self.reparameterize(mean, logvar)\nkl = (log_normal_pdf(z2, mean, logvar) "
                                         f"- log_normal_pdf(z2, {_ZEROS}, {_ZEROS})).mean()"),
                          ["at the z your code passed"], ["monte_carlo_terms"]),
    "z_detached": ("the draw detached from mean and logvar", _conv_bound(z="z = self.reparameterize(mean, logvar).detach()"),
                   ["pathwise"], ["gradients"]),
}


def conv_bound_cases():
    """{case: data} of the convolutional VAE's bound, and its correct whole files and handout."""
    out = {}
    every = {family: "full" for family in (*CONV_OTHERS, CONV_BOUND, "conv/training")}
    for name, (why, code, extra) in CONV_CORRECT.items():
        out[f"conv_{name}_full"] = {"why": why, "problems": ["conv"],
                                    "files": _spec(name, code, extra, main="conv_vae.py"), "scores": dict(every)}
    for name, (why, code, hint, fails) in CONV_BUGGY.items():
        out[f"conv_{name}_buggy"] = {"why": why, "problems": ["conv"],
                                     "files": _spec(name, {CONV_ELBO: code}, {}, main="conv_vae.py"),
                                     "scores": dict.fromkeys(CONV_OTHERS, "full"), "fails": {CONV_BOUND: fails},
                                     "hint": hint}
    out["conv_skeleton_zero"] = {
        "why": "the untouched handout of the convolutional VAE alone: log_normal_pdf, ConvDecoder and "
               "negative_elbo_bound raise NotImplementedError",
        "problems": ["conv"], "files": {"conv_vae.py": {"from": "handout:conv_vae.py"}},
        "scores": {family: "none" for family in every}}
    return out


def render():
    """{path relative to this folder: text} of every generated file (one case.json per case)."""
    return {f"{case}/case.json": cases.dumps(meta) for case, meta in cases_of_the_variants().items()}


def main():
    files = render()
    for folder in HERE.iterdir():
        if folder.is_dir() and (folder / "case.json").exists():
            shutil.rmtree(folder)
    for path, text in files.items():
        target = HERE / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(files)} cases under {HERE}")


if __name__ == "__main__":
    main()
