"""The problems frame (autograder/problems.py): the CS236 VAE alone is the grader as it always was;
other problems add their files, checks, tags and zip members only where they are chosen. In
seconds: nothing here grades (tests/test_variants.py does)."""
import dataclasses
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from autograder import build, config, evaluation, paths, skeleton, submission_files
from autograder.checks import remote, training
from autograder.checks.cvae_training import CVAE_GATE
from autograder.checks.submission import Submission
from autograder.problems import DEFAULT, PROBLEMS, ProblemSet, UnknownProblem, parse
from autograder.reference import cvae as ref_cvae

# What the grader was before problems existed: its sandbox files, its handout and its zip's solution/.
SANDBOX_FILES = {"utils.py": "student", "vae.py": "student", "nns.py": "reference", "train.py": "reference",
                 "fast.py": "reference", "data.py": "reference", "runtime.py": "reference"}
HANDOUT = ["README.md", "data.py", "fast.py", "figures.py", "nns.py", "run_vae.py", "runtime.py", "train.py",
           "utils.py", "vae.py"]
ZIP_SOLUTION = ["data.py", "fast.py", "figures.py", "nns.py", "run_vae.py", "runtime.py", "test_checks.py",
                "test_figures.py", "test_reference.py", "train.py", "utils.py", "vae.py"]


def test_the_default_is_the_cs236_vae_as_it_was():
    default = ProblemSet()
    assert default.names == DEFAULT == ("vae",) and default.is_default
    assert default.sandbox_files == SANDBOX_FILES
    assert default.student_files == config.SUBMISSION_FILES
    assert default.student_functions == submission_files.STUDENT_FUNCTIONS
    assert default.checks == config.CHECKS
    assert {family: default.tag(family) for family in default.checks} == {f: f for f in config.CHECKS}
    assert PROBLEMS["vae"].provided == config.PROVIDED_FILES
    assert sorted(skeleton.render_handout(paths.SOLUTION)) == HANDOUT
    assert [name.split("/", 1)[1] for _, name in build._members() if name.startswith("solution/")] == ZIP_SOLUTION
    assert "autograder/digit_classifier.pt" not in [name for _, name in build._members()]     # the CVAE's asset
    assert default.grading_seconds == config.BUDGETS.grading_seconds


def test_every_solution_file_belongs_to_a_problem():
    owned = {name for problem in PROBLEMS.values()
             for name in (*problem.student_files, *problem.provided, *problem.handout, problem.document, *problem.tests)}
    present = {p.name for p in paths.SOLUTION.iterdir() if p.is_file() and p.suffix in (".py", ".md")}
    assert present == owned, (sorted(present - owned), sorted(owned - present))
    students = [name for problem in PROBLEMS.values() for name in problem.student_files]
    assert len(students) == len(set(students)), "a file is the student file of two problems"
    numbers = [spec.number for specs in config.ALL_CHECKS.values() for spec in specs.values()]
    assert len(numbers) == len(set(numbers)), "a check number is used twice"


def test_parse_orders_and_refuses():
    assert parse("cvae, vae") == ("vae", "cvae") and parse("cvae") == ("cvae",)
    assert parse("beta,cvae,vae") == ("vae", "cvae", "beta")
    for bad in ("", "vae,gan", "betavae"):
        with pytest.raises(UnknownProblem, match="choose from vae, cvae, beta"):
            parse(bad)


def test_tags_name_the_problem_when_several_are_graded():
    both, alone = ProblemSet("vae,cvae"), ProblemSet("cvae")
    assert [both.tag(f) for f in both.checks] == ["vae/sample_gaussian", "vae/kl_normal", "vae/negative_elbo_bound",
                                                  "vae/training", "cvae/negative_elbo_bound", "cvae/training"]
    assert [alone.tag(f) for f in alone.checks] == ["negative_elbo_bound", "training"]
    assert all(both.family(both.tag(f)) == f for f in both.checks)
    assert alone.family("negative_elbo_bound") == "cvae/negative_elbo_bound"
    assert both.grading_seconds == config.BUDGETS.grading_seconds + config.BUDGETS.extra_problem_seconds


def test_the_cvae_alone_gets_utils_whole_and_nothing_of_the_vae():
    alone = ProblemSet("cvae")
    assert alone.sandbox_files["cvae.py"] == "student" and alone.sandbox_files["utils.py"] == "reference"
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert "vae.py" not in handout and "nns.py" not in handout and "run_vae.py" not in handout
    assert {"cvae.py", "cvae_nns.py", "train_cvae.py", "run_cvae.py", "utils.py", "README.md"} <= set(handout)
    assert "BEGIN SOLUTION" not in handout["utils.py"] and "NotImplementedError" not in handout["utils.py"]
    assert handout["utils.py"] == skeleton.drop_markers((paths.SOLUTION / "utils.py").read_text())
    assert handout["cvae.py"].count("raise NotImplementedError") == 1
    assert "rec = -ut.log_bernoulli_with_logits(x, self.dec(z, y))" not in handout["cvae.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the conditional VAE") and "{{" not in readme
    assert "`utils.py` is provided complete" in readme and "| 5.5 | `negative_elbo_bound` |" in readme


def test_both_problems_make_one_handout_with_a_part_each():
    both = ProblemSet("vae,cvae")
    handout = skeleton.render_handout(paths.SOLUTION, both)
    assert set(HANDOUT) < set(handout) and {"cvae.py", "run_cvae.py"} < set(handout)
    assert handout["utils.py"].count("raise NotImplementedError") == 2       # the VAE's functions are the student's
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the CS236 VAE and the conditional VAE\n")
    assert "\n## Homework: the variational autoencoder" in readme and "\n## Homework: the conditional VAE" in readme
    assert "\n### The model" in readme and "\n# " not in readme.split("\n", 1)[1].replace("```\n# ", "")
    assert "`utils.py` is yours" in readme and "Submit `utils.py`, `vae.py`, `cvae.py` together" in readme
    assert "| the conditional VAE (`cvae`) | `CVAE.negative_elbo_bound` in `cvae.py` | `cvae.py` | 15.5 |" in readme
    assert "| 1.1 | `vae/sample_gaussian` |" in readme and "| 6.1 | `cvae/training` |" in readme


def test_zip_and_bundle_hold_the_chosen_problems_only(tmp_path):
    alone = ProblemSet("cvae")
    names = [name for _, name in build._members(alone)]
    assert "solution/cvae.py" in names and "solution/vae.py" not in names and "solution/test_checks.py" not in names
    assert "autograder/calibration.json" not in names
    assert names.count("autograder/digit_classifier.pt") == 1           # check 6.2 reads samples with it
    out = tmp_path / "public.zip"
    assert build.build_public(out, log=lambda m: None, problem_set=alone) == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.read("autograder/PROBLEMS").decode() == "cvae\n"
        inside = archive.namelist()
        handout = archive.read("solution/cvae.py").decode()
    assert "solution/vae.py" not in inside and "BEGIN SOLUTION" not in handout
    assert "autograder/digit_classifier.pt" in inside
    default = tmp_path / "default.zip"
    assert build.build_public(default, log=lambda m: None) == 0
    with zipfile.ZipFile(default) as archive:
        assert "autograder/PROBLEMS" not in archive.namelist()
        assert sorted(n.split("/", 1)[1] for n in archive.namelist() if n.startswith("solution/")) == HANDOUT


@pytest.mark.parametrize("problems", ["vae,cvae", "vae,cvae,beta", "vae,logvar"])
def test_assign_writes_the_chosen_handout_and_refuses_unknown_problems(tmp_path, problems):
    run = subprocess.run([sys.executable, "-m", "autograder", "assign", "--problems", problems, "--out",
                          str(tmp_path / "h")], cwd=paths.PROJECT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == sorted(
        skeleton.render_handout(paths.SOLUTION, ProblemSet(problems)))
    bad = subprocess.run([sys.executable, "-m", "autograder", "build", "--problems", "gan"], cwd=paths.PROJECT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown problem gan" in bad.stderr


def test_three_files_are_selected_together(tmp_path):
    functions = ProblemSet("vae,cvae").student_functions
    for name in ("utils.py", "vae.py", "cvae.py"):
        (tmp_path / "hw" / "old").mkdir(parents=True, exist_ok=True)
        (tmp_path / "hw" / name).write_text((paths.SOLUTION / name).read_text())
    (tmp_path / "hw" / "old" / "cvae.py").write_text((paths.SOLUTION / "cvae.py").read_text())
    chosen = submission_files.select(tmp_path, functions)
    assert {name: entry.shown for name, entry in chosen.graded.items()} == \
        {"utils.py": "hw/utils.py", "vae.py": "hw/vae.py", "cvae.py": "hw/cvae.py"}
    (tmp_path / "hw" / "cvae.py").unlink()
    chosen = submission_files.select(tmp_path, functions)
    assert chosen.graded["cvae.py"].shown == "hw/old/cvae.py"
    assert any("no folder holds all of utils.py, vae.py and cvae.py" in note for note in chosen.notes)
    assert "Files graded: hw/utils.py, hw/vae.py, hw/old/cvae.py" in chosen.report()
    alone = submission_files.select(tmp_path / "hw", ProblemSet("cvae").student_functions)
    assert list(alone.graded) == ["cvae.py"] and "Files graded: old/cvae.py" in alone.report()


def test_a_submission_on_the_cvae_alone_sandboxes_utils_from_the_reference(tmp_path):
    (tmp_path / "cvae.py").write_text("x = 1\n")
    (tmp_path / "utils.py").write_text("planted = True\n")          # not graded: the grader's utils.py is used
    submission = Submission(tmp_path, problems=("cvae",))
    assert list(submission.files) == ["cvae.py"]
    assert "utils.py" in submission.selection.report() or "Files graded: cvae.py" in submission.selection.report()
    assert submission.problem_set.sandbox_files["utils.py"] == "reference"


# ---------------------------------------------------------------- the CVAE's trusted side

def test_the_conditional_stand_ins_depend_on_the_label():
    model = remote.ConditionalTrustedModel(config.Z_DIM)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 784, generator=g, dtype=torch.float64) < 0.3).double()
    y = torch.eye(10, dtype=torch.float64)[torch.randint(0, 10, (200,), generator=g)]
    other = y.roll(1, dims=1)
    (m, v), (m2, v2) = model.encode(x, y), model.encode(x, other)
    assert (m - m2).abs().mean() > 0.5 and (v.log() - v2.log()).abs().mean() > 0.3
    assert v.min() >= remote.V_LOW and v.max() <= remote.V_HIGH
    z = torch.randn(200, config.Z_DIM, generator=g, dtype=torch.float64)
    assert (model.decode(z, y) - model.decode(z, other)).abs().mean() > 0.5
    with pytest.raises(remote.CallbackError, match=r"expects y of shape \(200, 10\)"):
        model.validate("enc", [x, y[:, :3]])
    with pytest.raises(remote.CallbackError, match=r"self.dec\(z, y\) expects y"):
        model.validate("dec", [z, y[:100]])


def test_cvae_weights_are_accepted_as_the_cvaes_and_scored_with_labels():
    state = {f"w_{k}": v.detach().numpy().copy() for k, v in ref_cvae.CVAE(z_dim=config.Z_DIM).state_dict().items()
             if k.startswith(("enc.", "dec."))}
    accepted = evaluation.validated_state(state, "cvae")
    assert sorted(accepted) == sorted(k[2:] for k in state)
    with pytest.raises(evaluation.WeightsRefused, match="provided VAE has shape"):
        evaluation.validated_state(state)                    # the VAE's first layers take no label
    assert evaluation.hidden_labels().shape == (9901,) and set(np.unique(evaluation.hidden_labels())) == set(range(10))


def test_the_cvae_gate_uses_its_own_calibration_only(tmp_path, monkeypatch):
    assert training.pass_band(gate=CVAE_GATE)[2] == "calibrated"              # the shipped calibration_cvae.json
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")
    published = config.CVAE_PUBLISHED_BAND["nelbo"]
    assert training.pass_band(gate=CVAE_GATE) == (published["low"], published["high"], "published")
    assert training.pass_band(gate=dataclasses.replace(CVAE_GATE, published=None)) == (None, None, "none")
    band = {"evaluation": "hidden", "hidden_set_sha256": evaluation.hidden_set_sha256(),
            "bands": {"nelbo": {"low": 1.0, "high": 2.0}}}
    (tmp_path / "calibration_cvae.json").write_text(json.dumps(band))          # no "problem": the VAE's
    assert training.pass_band(gate=CVAE_GATE)[2] == "published"
    (tmp_path / "calibration_cvae.json").write_text(json.dumps({**band, "problem": "cvae"}))
    assert training.pass_band(gate=CVAE_GATE) == (1.0, 2.0, "calibrated")
    paths.CALIBRATION.write_text(json.dumps({**band, "problem": "cvae"}))      # a CVAE band is no VAE band
    assert training.pass_band()[2] == "published"


def test_results_name_and_tag_each_check_by_problem_when_several_are_graded():
    """grade._finish: the tags (and the titles that start with them) of a grading on several problems."""
    from autograder import grade

    class Graded:
        outcomes = {}

        def __init__(self, problems):
            self.problem_set = ProblemSet(problems)

        class selection:
            @staticmethod
            def report():
                return "Files graded: ..."

    def finish(problems):
        data = {"tests": [
            {"name": "training: 20,000 iterations", "score": 5.0, "max_score": 5.0, "number": "4.1", "tags": ["training"]},
            {"name": "cvae/negative_elbo_bound: the label reaches both networks", "score": 0.0, "max_score": 1.5,
             "number": "5.5", "tags": ["cvae/negative_elbo_bound"]}]}
        grade._finish(data, 0.0, Graded(problems))
        return [(t["tags"], t["name"].split(":")[0]) for t in data["tests"]], data["output"].split("\n\n")[1]

    tests, summary = finish("vae,cvae")
    assert tests == [(["vae/training"], "vae/training"), (["cvae/negative_elbo_bound"], "cvae/negative_elbo_bound")]
    assert "vae/training: 5 / 5" in summary and "cvae/negative_elbo_bound: 0 / 1.5" in summary
    tests, _ = finish("cvae")
    assert tests[1] == (["negative_elbo_bound"], "negative_elbo_bound")
    tests, summary = finish("vae")
    assert tests[0] == (["training"], "training") and summary.startswith("sample_gaussian: 0 / 0")


# ---------------------------------------------------------------- the beta-VAE (problem `beta`)

def test_the_beta_vae_alone_gets_its_file_the_vaes_networks_and_utils_whole():
    alone = ProblemSet("beta")
    assert alone.sandbox_files == {"beta_vae.py": "student", "utils.py": "reference", "nns.py": "reference",
                                   "train.py": "reference", "fast.py": "reference", "data.py": "reference",
                                   "runtime.py": "reference"}
    assert [alone.tag(f) for f in alone.checks] == ["negative_elbo_bound", "training"]
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert sorted(handout) == ["README.md", "beta_vae.py", "data.py", "fast.py", "figures.py", "nns.py",
                               "run_beta_vae.py", "runtime.py", "train.py", "utils.py"]
    assert handout["utils.py"] == skeleton.drop_markers((paths.SOLUTION / "utils.py").read_text())
    assert handout["beta_vae.py"].count("raise NotImplementedError") == 1
    assert "loss = rec + beta * kl" not in handout["beta_vae.py"] and "class KLWeighted" in handout["beta_vae.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the VAE with a KL weight") and "{{" not in readme
    assert "| 7.6 | `negative_elbo_bound` |" in readme and "| 8.1 | `training` |" in readme
    assert "(not calibrated yet)" not in readme                  # the VAE's calibration applies


def test_three_problems_make_one_handout_zip_and_tags():
    every = ProblemSet("vae,cvae,beta")
    assert [every.tag(f) for f in every.checks][-2:] == ["beta/negative_elbo_bound", "beta/training"]
    assert every.grading_seconds == min(config.BUDGETS.grading_seconds + 2 * config.BUDGETS.extra_problem_seconds,
                                        config.BUDGETS.most_grading_seconds)
    all_six = ProblemSet(",".join(PROBLEMS))
    assert all_six.grading_seconds == config.BUDGETS.most_grading_seconds < 40 * 60     # Gradescope's largest timeout
    handout = skeleton.render_handout(paths.SOLUTION, every)
    assert set(HANDOUT) < set(handout) and {"cvae.py", "beta_vae.py", "run_beta_vae.py"} < set(handout)
    assert handout["utils.py"].count("raise NotImplementedError") == 2       # the VAE's functions are the student's
    readme = handout["README.md"]
    assert "| the VAE with a KL weight (`beta`) | `BetaVAE.negative_elbo_bound` in `beta_vae.py` | `beta_vae.py` | " \
        "16.5 |" in readme
    assert "Submit `utils.py`, `vae.py`, `cvae.py`, `beta_vae.py` together" in readme
    assert "| 7.5 | `beta/negative_elbo_bound` |" in readme and "`utils.py` is yours" in readme
    names = [name for _, name in build._members(every)]
    assert {"solution/beta_vae.py", "solution/run_beta_vae.py", "solution/test_checks_beta.py",
            "autograder/calibration.json", "autograder/calibration_cvae.json"} <= set(names)
    alone = [name for _, name in build._members(ProblemSet("beta"))]
    assert "autograder/calibration.json" in alone and "autograder/calibration_cvae.json" not in alone
    assert "solution/vae.py" not in alone and "solution/nns.py" in alone


def test_build_and_assign_take_three_problems(tmp_path):
    run = subprocess.run([sys.executable, "-m", "autograder", "build", "--public", "--problems", "beta,vae,cvae",
                          "--out", str(tmp_path / "public.zip")], cwd=paths.PROJECT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(tmp_path / "public.zip") as archive:
        assert archive.read("autograder/PROBLEMS").decode() == "vae,cvae,beta\n"
        assert "solution/beta_vae.py" in archive.namelist()
        assert "BEGIN SOLUTION" not in archive.read("solution/beta_vae.py").decode()


def test_the_beta_gate_uses_the_vaes_calibration(tmp_path, monkeypatch):
    from autograder.checks.beta_training import BETA_GATE
    assert PROBLEMS["beta"].calibration_path == paths.CALIBRATION and PROBLEMS["beta"].calibration_problem == "vae"
    assert training.pass_band(gate=BETA_GATE) == training.pass_band()[:2] + ("calibrated",)
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")
    published = config.PUBLISHED_BAND["nelbo"]
    assert training.pass_band(gate=BETA_GATE) == (published["low"], published["high"], "published")
    band = {"evaluation": "hidden", "hidden_set_sha256": evaluation.hidden_set_sha256(),
            "bands": {"nelbo": {"low": 1.0, "high": 2.0}}}
    paths.CALIBRATION.write_text(json.dumps({**band, "problem": "cvae"}))     # a CVAE band is no beta band
    assert training.pass_band(gate=BETA_GATE)[2] == "published"
    paths.CALIBRATION.write_text(json.dumps(band))
    assert training.pass_band(gate=BETA_GATE) == (1.0, 2.0, "calibrated")
    refused = subprocess.run([sys.executable, "-m", "autograder", "calibrate", "--problem", "beta", "--runs", "2"],
                             cwd=paths.PROJECT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "uses the calibration of vae" in refused.stderr


def test_beta_vae_weights_are_scored_as_the_vaes():
    from autograder.reference import beta_vae as ref_beta
    state = {f"w_{k}": v.detach().numpy().copy() for k, v in ref_beta.BetaVAE(z_dim=config.Z_DIM).state_dict().items()
             if k.startswith(("enc.", "dec."))}
    accepted = evaluation.validated_state(state, "beta")
    assert sorted(accepted) == sorted(evaluation.validated_state(state))      # the VAE's tensors, exactly
    assert evaluation.score(accepted, problem="beta") == evaluation.score(accepted)


# ---------------------------------------------------------------- the log-variance VAE (problem `logvar`)

def test_the_logvar_vae_alone_gets_its_file_utils_whole_and_no_training():
    alone = ProblemSet("logvar")
    assert alone.sandbox_files == {"logvar_utils.py": "student", "utils.py": "reference"}
    assert [alone.tag(f) for f in alone.checks] == ["sample_gaussian_logvar", "kl_normal_logvar"]
    assert sum(spec.points for specs in alone.checks.values() for spec in specs.values()) == 10
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert sorted(handout) == ["README.md", "data.py", "fast.py", "figures.py", "logvar_utils.py", "logvar_vae.py",
                               "nns.py", "run_logvar_vae.py", "runtime.py", "train.py", "utils.py"]
    assert handout["utils.py"] == skeleton.drop_markers((paths.SOLUTION / "utils.py").read_text())
    assert handout["logvar_utils.py"].count("raise NotImplementedError") == 2
    assert "torch.exp(0.5 * s)" not in handout["logvar_utils.py"] and "exp(qs - ps)" in handout["logvar_utils.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the log-variance VAE") and "{{" not in readme
    assert "| 9.5 | `sample_gaussian_logvar` |" in readme and "| 10.5 | `kl_normal_logvar` |" in readme
    names = [name for _, name in build._members(alone)]
    assert {"solution/logvar_utils.py", "solution/logvar_vae.py", "solution/test_checks_logvar.py"} <= set(names)
    assert "solution/vae.py" not in names and "autograder/digit_classifier.pt" not in names
    refused = subprocess.run([sys.executable, "-m", "autograder", "calibrate", "--problem", "logvar", "--out",
                              "/nonexistent/c.json"], cwd=paths.PROJECT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "logvar has no training gate" in refused.stderr


def test_the_logvar_vae_beside_the_cs236_vae_keeps_both_utils_files_the_students():
    both = ProblemSet("vae,logvar")
    assert both.sandbox_files["utils.py"] == both.sandbox_files["logvar_utils.py"] == "student"
    assert [both.tag(f) for f in both.checks][-2:] == ["logvar/sample_gaussian_logvar", "logvar/kl_normal_logvar"]
    handout = skeleton.render_handout(paths.SOLUTION, both)
    assert handout["utils.py"].count("raise NotImplementedError") == 2
    assert handout["logvar_utils.py"].count("raise NotImplementedError") == 2
    assert "Submit `utils.py`, `vae.py`, `logvar_utils.py` together" in handout["README.md"]
# ---------------------------------------------------------------- the MMD-VAE (problem `mmd`)

def test_the_mmd_vae_alone_gets_its_file_two_functions_and_utils_whole():
    alone = ProblemSet("mmd")
    assert alone.sandbox_files == {"mmd_vae.py": "student", "utils.py": "reference", "nns.py": "reference",
                                   "train.py": "reference", "fast.py": "reference", "data.py": "reference",
                                   "runtime.py": "reference"}
    assert [alone.tag(f) for f in alone.checks] == ["mmd", "loss", "training"]
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert sorted(handout) == ["README.md", "data.py", "fast.py", "figures.py", "mmd_vae.py", "nns.py",
                               "run_mmd_vae.py", "runtime.py", "train.py", "utils.py"]
    assert handout["mmd_vae.py"].count("raise NotImplementedError") == 2
    assert "class LossAsBound" in handout["mmd_vae.py"] and "loss = rec + self.lam * divergence" not in handout["mmd_vae.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the MMD-VAE") and "{{" not in readme
    assert "| 13.5 | `mmd` |" in readme and "| 14.1 | `training` |" in readme


def test_a_module_function_and_a_method_count_as_implemented():
    from autograder import submission_files
    functions = ProblemSet("mmd").student_functions
    handout = skeleton.render_handout(paths.SOLUTION, ProblemSet("mmd"))["mmd_vae.py"]
    solution = (paths.SOLUTION / "mmd_vae.py").read_text()
    assert submission_files.implemented_functions("mmd_vae.py", handout, functions) == 0
    assert submission_files.implemented_functions("mmd_vae.py", solution, functions) == 2
    only_mmd = solution.replace("        z = self.encode(x)  ", "        raise NotImplementedError  # ")
    assert submission_files.implemented_functions("mmd_vae.py", only_mmd, functions) == 1


def test_the_mmd_gate_scores_with_the_graders_float64_objective():
    from autograder import oracle
    from autograder.checks.mmd_training import MMD_GATE
    from autograder.reference import mmd_vae as ref_mmd
    assert PROBLEMS["mmd"].calibration_path.name == "calibration_mmd.json" and MMD_GATE.iterations == 5000
    torch.manual_seed(0)
    state = {f"w_{k}": v.detach().numpy().copy() for k, v in ref_mmd.MMDVAE(z_dim=config.Z_DIM).state_dict().items()
             if k.startswith(("enc.", "dec."))}
    accepted = evaluation.validated_state(state, "mmd")
    images = evaluation.hidden_set()[:300]
    loss, divergence, rec = evaluation.mmd_loss(evaluation.model_from(accepted, "mmd"), images)
    model = evaluation.model_from(accepted, "mmd").double()
    x = torch.from_numpy(images.astype("float64"))
    codes = model.enc(x)[0]
    assert abs(rec - float(oracle.reconstruction(x, model.dec(codes)).mean())) < 1e-9
    prior = torch.randn(codes.shape, generator=torch.Generator().manual_seed(evaluation.MMD_PRIOR_SEED),
                        dtype=torch.float64)
    assert abs(divergence - float(oracle.mmd(codes, prior))) < 1e-12 and abs(loss - rec - 1000 * divergence) < 1e-9
    # the oracle's blocks change nothing, and its two forms differ by the diagonals alone
    assert abs(float(oracle.mmd(codes, prior)) - float(oracle.gaussian_kernel_sums(codes, codes, rows=7) / 300 ** 2
               + oracle.gaussian_kernel_sums(prior, prior, rows=300) / 300 ** 2
               - 2 * oracle.gaussian_kernel_sums(codes, prior) / 300 ** 2)) < 1e-12
# ---------------------------------------------------------------- the linear autoencoder (problem `ae`)

def test_the_autoencoder_alone_gets_its_file_its_loop_and_no_vae_code():
    alone = ProblemSet("ae")
    assert alone.sandbox_files == {"ae.py": "student", "train_ae.py": "reference", "data.py": "reference",
                                   "runtime.py": "reference"}
    assert [alone.tag(f) for f in alone.checks] == ["LinearAutoencoder", "reconstruction_loss", "training"]
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert sorted(handout) == ["README.md", "ae.py", "data.py", "figures_ae.py", "run_ae.py", "runtime.py",
                               "train_ae.py"]
    assert handout["ae.py"].count("raise NotImplementedError") == 4
    assert "nn.Linear(pixels, k)" not in handout["ae.py"] and "class NonlinearAutoencoder" in handout["ae.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the linear autoencoder") and "{{" not in readme
    assert "| 11.3 | `LinearAutoencoder` |" in readme and "| 12.3 | `training` |" in readme


def test_the_autoencoder_bounds_come_from_its_own_calibration_only(tmp_path, monkeypatch):
    from autograder.checks import ae_training
    calibration = tmp_path / "calibration_ae.json"
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")
    assert PROBLEMS["ae"].calibration_path == calibration
    published = (config.AE_PUBLISHED_BOUNDS, "published")                         # no file: the public bundle
    assert ae_training.bands() == published
    stored = {"problem": "ae", "evaluation": "ae-validation", "split_sha256": config.AE_SPLIT_SHA256,
              "bands": {"excess_2": {"high": 0.01}, "angle_2": {"high": 1.5}}}
    calibration.write_text(json.dumps({**stored, "split_sha256": "0" * 64}))      # another split: not these
    assert ae_training.bands() == published
    calibration.write_text(json.dumps(stored))
    assert ae_training.bands() == ({"excess_2": 0.01, "angle_2": 1.5}, "calibrated")
    assert ae_training.angle_code_sizes() == (2,)


# ---------------------------------------------------------------- published bounds (the students' public bundle)

def test_the_published_bounds_of_the_mmd_and_ae_gates_are_their_calibrations_figures(tmp_path, monkeypatch):
    """Without a calibration file (the public bundle) the MMD-VAE's gate compares the CS236 subset's loss with
    the subset band of calibration_mmd.json, and the autoencoder's with the upper bounds of calibration_ae.json:
    the figures config copies must be the files' (rounded outward by less than 1%), and be used."""
    from autograder.checks import ae_training
    from autograder.checks.mmd_training import MMD_GATE
    mmd_file = json.loads(PROBLEMS["mmd"].calibration_path.read_text())["subset_bands"]["nelbo"]
    published = config.MMD_PUBLISHED_BAND["nelbo"]
    assert published["low"] <= mmd_file["low"] < published["low"] + 0.01 * abs(mmd_file["low"])
    assert published["high"] >= mmd_file["high"] > published["high"] - 0.01 * abs(mmd_file["high"])
    ae_file = json.loads(PROBLEMS["ae"].calibration_path.read_text())["bands"]
    assert set(config.AE_PUBLISHED_BOUNDS) == set(ae_file)
    for name, bound in config.AE_PUBLISHED_BOUNDS.items():
        assert ae_file[name]["high"] <= bound < ae_file[name]["high"] * 1.01, name
    assert training.pass_band(gate=MMD_GATE)[2] == "calibrated"
    assert ae_training.bands()[1] == "calibrated"
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")     # no calibration file at all
    assert training.pass_band(gate=MMD_GATE) == (published["low"], published["high"], "published")
    assert ae_training.bands() == (config.AE_PUBLISHED_BOUNDS, "published")


# ---------------------------------------------------------------- the convolutional VAE (problem `conv`)

def test_the_conv_vae_alone_gets_its_file_four_functions_and_its_pictures():
    alone = ProblemSet("conv")
    assert [alone.tag(f) for f in alone.checks] == ["log_normal_pdf", "ConvDecoder", "negative_elbo_bound", "training"]
    handout = skeleton.render_handout(paths.SOLUTION, alone)
    assert sorted(handout) == ["README.md", "conv_vae.py", "data.py", "fast.py", "figures.py", "figures_conv.py",
                               "run_conv_vae.py", "runtime.py", "train.py", "utils.py"]
    assert handout["conv_vae.py"].count("raise NotImplementedError") == 4
    assert "class ConvEncoder" in handout["conv_vae.py"] and "nn.ConvTranspose2d(CHANNELS" not in handout["conv_vae.py"]
    readme = handout["README.md"]
    assert readme.startswith("# Homework: the convolutional VAE") and "{{" not in readme
    assert "not calibrated yet" not in readme and "| 16.1 | `training` |" in readme


def test_the_conv_gate_scores_with_the_graders_float64_bound_closed_form_kl():
    """evaluation.conv_bound: the closed-form KL from the encoder's means and log-variances, rec over draws of
    its own generator; its expectation is that of the reference's one-sample bound (the student's)."""
    from torch.distributions import Normal, kl_divergence
    from autograder import oracle
    from autograder.checks.cvae_training import GATES
    from autograder.checks.conv_training import CONV_GATE
    from autograder.reference import conv_vae as ref_conv
    assert PROBLEMS["conv"].calibration_path.name == "calibration_conv.json"
    assert CONV_GATE in GATES and CONV_GATE.iterations == config.CONV_ITERATIONS == 6000    # calibrate's default
    torch.manual_seed(0)
    state = {f"w_{k}": v.detach().numpy().copy() for k, v in ref_conv.ConvVAE(z_dim=config.Z_DIM).state_dict().items()
             if k.startswith(("enc.", "dec."))}
    accepted = evaluation.validated_state(state, "conv")
    images = evaluation.hidden_set()[:150]
    nelbo, kl, rec = evaluation.conv_bound(evaluation.model_from(accepted, "conv"), images, draws=3, rows=64)
    model = evaluation.model_from(accepted, "conv").double()
    x = torch.from_numpy(images.astype("float64"))
    with torch.no_grad():
        mean, logvar = model.enc(x)
        sd = torch.exp(0.5 * logvar)
        assert abs(kl - float(kl_divergence(Normal(mean, sd), Normal(0.0, 1.0)).sum(-1).mean())) < 1e-9
        assert abs(kl - float((0.5 * (logvar.exp() + mean ** 2 - 1 - logvar)).sum(-1).mean())) < 1e-9
        generator = torch.Generator().manual_seed(evaluation.CONV_DRAWS_SEED)
        total = torch.zeros(len(x), dtype=torch.float64)
        for start in range(0, len(x), 64):           # the draws in conv_bound's order: per piece, draw after draw
            piece = slice(start, start + 64)
            for _ in range(3):
                z = mean[piece] + sd[piece] * torch.randn(mean[piece].shape, generator=generator, dtype=torch.float64)
                total[piece] += oracle.reconstruction(x[piece], model.dec(z).reshape(len(z), -1)) / 3
        assert abs(rec - float(total.mean())) < 1e-9 and abs(nelbo - kl - rec) < 1e-9
        # the same expectation as the one-sample bound the student writes: its mean over 400 draws agrees
        torch.manual_seed(1)
        draws = torch.stack([model.negative_elbo_bound(x[:20])[0] for _ in range(400)])
        exact = evaluation.conv_bound(model, images[:20], draws=400)[0]
    assert abs(float(draws.mean()) - exact) < 5 * float(draws.std()) / 20 + 1e-6


def test_the_published_band_of_the_conv_gate_is_its_calibrations_subset_band(tmp_path, monkeypatch):
    from autograder.checks.conv_training import CONV_GATE
    stored = json.loads(PROBLEMS["conv"].calibration_path.read_text())
    assert stored["problem"] == "conv" and stored["iterations"] == config.CONV_ITERATIONS and len(stored["runs"]) == 20
    subset = stored["subset_bands"]["nelbo"]
    published = config.CONV_PUBLISHED_BAND["nelbo"]
    assert published["low"] <= subset["low"] < published["low"] + 0.01 * abs(subset["low"])
    assert published["high"] >= subset["high"] > published["high"] - 0.01 * abs(subset["high"])
    assert abs(published["mean"] - subset["mean"]) < 0.01 and abs(published["sd"] - subset["sd"]) < 0.01
    assert training.pass_band(gate=CONV_GATE)[2] == "calibrated"
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")     # no calibration file at all
    assert training.pass_band(gate=CONV_GATE) == (published["low"], published["high"], "published")


def test_the_conv_gates_cpu_allowance_is_timed_on_the_reference_conv_vae(monkeypatch):
    """The CPU-time allowance of 16.1 is relative to the reference ConvVAE's step, not the MLP VAE's."""
    from autograder import reference
    from autograder.checks.conv_training import CONV_GATE
    built = []

    class Recorded(reference.conv_vae.ConvVAE):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(reference.conv_vae, "ConvVAE", Recorded)
    images = evaluation.hidden_set()[:500].astype("uint8") * 255
    seconds = training.reference_step_cpu_seconds(images, steps=3, gate=CONV_GATE)
    assert len(built) == 1 and 0 < seconds < 5
