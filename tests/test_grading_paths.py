"""The real grading paths end to end: `python -m autograder grade` and the simulated Gradescope
container (run_autograder with AUTOGRADER_ROOT over the unzipped build), both with shortened
training; and that without --iterations every entry point trains the full 20,000 iterations.
The full run itself is trained once in the default suite, by solution/test_checks.py (the
reference inside the calibrated band); `bench/run.py --only grading` grades the reference at
20,000 iterations through `python -m autograder grade`."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from autograder import build, config, paths, results

SHORT = "40"


def _grade(folder, tmp_path, *extra):
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder), "--results", str(out), *extra],
                         cwd=paths.PROJECT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    return results.validate(json.loads(out.read_text()))


def _by_tag(outcome):
    totals = {}
    for test in outcome["tests"]:
        (tag,) = test["tags"]
        got, most = totals.get(tag, (0.0, 0.0))
        totals[tag] = (got + test["score"], most + test["max_score"])
    return totals


def test_grade_command_on_a_submission_in_a_subfolder(tmp_path):
    submission = tmp_path / "submission" / "My HW2"
    submission.mkdir(parents=True)
    for name in ("utils.py", "vae.py"):
        shutil.copy(paths.SOLUTION / name, submission / name)
    (submission / "conftest.py").write_text("raise SystemExit('planted files are never copied')\n")
    outcome = _grade(tmp_path / "submission", tmp_path, "--iterations", SHORT)
    expected_points = sum(c.points for family in config.CHECKS.values() for c in family.values())
    assert outcome["score"] == expected_points, json.dumps(outcome, indent=1)
    assert {t["number"] for t in outcome["tests"]} == {c.number for f in config.CHECKS.values() for c in f.values()}
    assert [e["name"] for e in outcome["leaderboard"]] == ["NELBO", "KL", "Rec"]


def test_missing_files_give_a_valid_result_that_says_so(tmp_path):
    (tmp_path / "submission").mkdir()
    shutil.copy(paths.SOLUTION / "utils.py", tmp_path / "submission" / "utils.py")
    outcome = _grade(tmp_path / "submission", tmp_path, "--iterations", SHORT)
    totals = _by_tag(outcome)
    assert totals["sample_gaussian"][0] == totals["sample_gaussian"][1]
    assert totals["negative_elbo_bound"][0] == 0 and totals["training"][0] == 0
    assert "Missing from your submission: vae.py" in outcome["output"]
    assert all("vae.py not found in your submission" in t["output"] for t in outcome["tests"]
               if t["tags"] == ["negative_elbo_bound"])


def test_simulated_container_from_the_built_zip(tmp_path):
    zip_path = tmp_path / "autograder.zip"
    assert build.build(zip_path, verify_first=False, log=lambda m: None) == 0
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        archive.extractall(root / "source")
    assert "setup.sh" in names and "run_autograder" in names and "autograder/calibration.json" in names or \
        not paths.CALIBRATION.exists()
    (root / "submission").mkdir()
    for name in ("utils.py", "vae.py"):
        shutil.copy(paths.ASSIGNMENT / name, root / "submission" / name)
    (root / "results").mkdir()
    (root / "results" / "results.json").write_text('{"score": 100}')   # planted: must be replaced
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable, AUTOGRADER_ITERATIONS=SHORT,
               VAE_ALLOW_ROOT_SANDBOX="1")   # as root here, this interpreter may be unusable by the student users
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = results.validate(json.loads((root / "results" / "results.json").read_text()))
    assert outcome["score"] == 0 and len(outcome["tests"]) == sum(len(f) for f in config.CHECKS.values())
    assert all("not implemented yet" in t["output"] for t in outcome["tests"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root grader drops privileges")
def test_container_fails_closed_when_student_code_would_run_as_root(tmp_path):
    from autograder import privileges
    privileges.ensure_student_user()
    if not privileges.python_problem(sys.executable):
        pytest.skip("here the student users can run this interpreter: nothing to refuse")
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    for name in ("utils.py", "vae.py"):
        shutil.copy(paths.SOLUTION / name, root / "submission" / name)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable, AUTOGRADER_ITERATIONS=SHORT)
    env.pop("VAE_ALLOW_ROOT_SANDBOX", None)
    assert build.build(tmp_path / "autograder.zip", verify_first=False, log=lambda m: None) == 0
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        archive.extractall(root / "source")
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = results.validate(json.loads((root / "results" / "results.json").read_text()))
    assert outcome["score"] == 0 and "misconfigured: student code would run as root" in outcome["output"]


def test_without_iterations_every_entry_point_trains_the_full_run(tmp_path, monkeypatch):
    """`grade` and `container` without --iterations, and run_autograder without
    AUTOGRADER_ITERATIONS, train config.DEFAULT_ITERATIONS (20,000): the run the pass band
    applies to. (That run is trained once in the default suite: solution/test_checks.py.)"""
    from autograder import __main__ as cli
    from autograder import container, grade
    assert config.DEFAULT_ITERATIONS == 20000
    seen = {}
    monkeypatch.setattr(grade, "grade", lambda folder, results_path, iterations, *args, **kwargs:
                        seen.setdefault("grade", iterations))
    monkeypatch.setattr(container, "run", lambda root, iterations, device: seen.setdefault("container", iterations))
    assert cli.main(["grade", str(paths.SOLUTION), "--results", str(tmp_path / "results.json")]) == 0
    assert cli.main(["container", "--root", str(tmp_path)]) == 0
    assert seen == {"grade": config.DEFAULT_ITERATIONS, "container": config.DEFAULT_ITERATIONS}
    assert "ITERATIONS=${AUTOGRADER_ITERATIONS:-20000}" in (paths.PROJECT / "run_autograder").read_text()


@pytest.mark.parametrize("problems, source, full", [("vae,cvae", paths.SOLUTION, True), ("vae,cvae", None, False),
                                                    ("cvae", paths.SOLUTION, True),
                                                    ("vae,cvae,beta", paths.SOLUTION, True),
                                                    ("vae,cvae,beta", None, False), ("beta", paths.SOLUTION, True),
                                                    ("logvar", paths.SOLUTION, True)],
                         ids=["both-reference", "both-handout", "cvae-reference", "three-reference", "three-handout",
                              "beta-reference", "logvar-reference"])
def test_simulated_container_of_a_problem_set_zip(tmp_path, problems, source, full):
    """`build --problems ...`: the zip grades its problems (it says so in autograder/PROBLEMS) and holds
    their files only; the reference gets every point and the handout none; tags name the problem when
    there are several."""
    from autograder.problems import ProblemSet
    from autograder.skeleton import write_handout
    chosen = ProblemSet(problems)
    zip_path = tmp_path / "autograder.zip"
    assert build.build(zip_path, verify_first=False, log=lambda m: None, problem_set=chosen) == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.read("autograder/PROBLEMS").decode() == f"{problems}\n"
        assert ("solution/vae.py" in archive.namelist()) == ("vae" in chosen.names)
        assert ("solution/beta_vae.py" in archive.namelist()) == ("beta" in chosen.names)
        archive.extractall(root / "source")
    if source is None:
        source = tmp_path / "handout"
        write_handout(paths.SOLUTION, source, chosen)
    (root / "submission").mkdir()
    for name in chosen.student_files:
        shutil.copy(source / name, root / "submission" / name)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable, AUTOGRADER_ITERATIONS=SHORT,
               VAE_ALLOW_ROOT_SANDBOX="1")
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = results.validate(json.loads((root / "results" / "results.json").read_text()))
    totals = _by_tag(outcome)
    assert sorted(totals) == sorted(chosen.tag(family) for family in chosen.checks)
    wanted = sum(c.points for f in chosen.checks.values() for c in f.values()) if full else 0
    assert outcome["score"] == wanted, json.dumps(outcome, indent=1)[:3000]
    cvae = ["CVAE NELBO", "CVAE KL", "CVAE Rec", "CVAE samples: lowest digit read as itself (%)"]
    beta = ["BetaVAE NELBO", "BetaVAE KL", "BetaVAE Rec", "BetaVAE samples: mean top-class probability"]
    boards = {"vae,cvae": ["NELBO", "KL", "Rec", *cvae], "cvae": cvae, "vae,cvae,beta": ["NELBO", "KL", "Rec", *cvae, *beta],
              "beta": beta, "logvar": []}                 # the log-variance VAE trains nothing
    if full:
        assert [e["name"] for e in outcome.get("leaderboard", [])] == boards[problems]
        assert f"Files graded: {', '.join(chosen.student_files)}" in outcome["output"]
    else:
        assert all("not implemented yet" in t["output"] for t in outcome["tests"])
    if problems == "vae,cvae":
        assert sorted(totals) == ["cvae/negative_elbo_bound", "cvae/training", "vae/kl_normal",
                                  "vae/negative_elbo_bound", "vae/sample_gaussian", "vae/training"]
