"""The real grading paths end to end: `python -m autograder grade`, the simulated Gradescope
container (run_autograder with AUTOGRADER_ROOT over the unzipped build), and the reference
graded at the default 20,000 iterations."""
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


@pytest.mark.skipif(os.environ.get("VAE_SKIP_FULL_RUNS") == "1", reason="VAE_SKIP_FULL_RUNS=1")
def test_reference_graded_at_the_default_iterations_gets_full_marks(tmp_path):
    outcome = _grade(paths.SOLUTION, tmp_path)
    failed = [t for t in outcome["tests"] if t["score"] < t["max_score"]]
    assert not failed, json.dumps(failed, indent=1)
    assert [e["name"] for e in outcome["leaderboard"]] == ["NELBO", "KL", "Rec"]
    print(f"reference graded in {outcome['execution_time']} s: {outcome['leaderboard']}")
