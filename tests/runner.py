"""Grading the cases of tests/hostile/ and tests/messy/ through the real paths, and what every such
grading must show (the fixture `gradings` of tests/conftest.py runs them; the format is tests/cases.py).

Modes:
- grade: `python -m autograder grade DIR --results R --iterations 20` from the project root.
- container-root: the Gradescope zip (autograder.build) unzipped into ROOT/source, the
  submission in ROOT/submission, `bash ROOT/source/run_autograder` with AUTOGRADER_ROOT=ROOT,
  AUTOGRADER_PYTHON=this interpreter, AUTOGRADER_ITERATIONS=20.
- container-student: the same with an interpreter the student users can run (a venv on the
  system python3 that sees our site-packages), so that, when the tests run as root, student
  code runs as an unprivileged slot user with the source and results locked away, as on
  Gradescope. Skipped when not root or when no such interpreter can be made.
  Where our own interpreter sits under /root (pyenv), the student users cannot run it: the
  grade command and container-root then run student code as root (the sandbox's fallback).
- container-sigterm (asked for by a test, never by a case): container-root, SIGTERMed once the
  training sandbox runs.

Every graded (case, mode) must (check()): end within BOUND_SECONDS with exit status 0; write a
schema-valid results.json with every check of its problems (config), each with its points and tag; a score
that is the sum of the tests' scores, and per tag the honest scores of case.json; failing checks
that say what case.json expects ("says"), a top-level output with its "output" phrases, no
traceback or internal error, each output capped; no forged value (the MARKERS hostile files write
never appear; a leaderboard, there whenever training scored, comes from the reference bound); no
content of the grader's files (the reference solution's regions, the calibration data, the hidden
checks) in results.json; for `watch_seconds` no change to results.json after grading; for `pids`
every detached process the submission started is dead; for `same_view` every sandbox saw the same.

The gradings of a test module run <SUITE>_JOBS at a time (default 2), the `background` cases
beside the pool from the start, each with the CPUs shared out (VAE_THREADS, unless set or the case sets it); <SUITE>_KEEP=1 (HOSTILE_KEEP, MESSY_KEEP) keeps every grading's
folder (submission, results.json, log) and prints where.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import build, config, paths, privileges, results, submission_files
from autograder.regrade import batch
from autograder.checks.base import INTERNAL_ERROR
from tests import cases
from tests.student_python import build_student_python

BOUND_SECONDS = 300          # the whole grading of one submission, hostile or not
SIGTERM_GRACE_SECONDS = 30
ROOT_USER = os.geteuid() == 0
MARKERS = ("FORGED", "PLANTED")            # what the hostile files write, print or raise
TRACEBACK = "Traceback (most recent call last)"
def checks_of(meta):
    """{number: (tag, points)} of every check the case is graded on (its problems'; tags as results.json
    shows them)."""
    graded = cases.problem_set(meta)
    return {spec.number: (graded.tag(family), spec.points) for family, specs in graded.checks.items()
            for spec in specs.values()}


def gates_of(meta):
    """[(number of the trained-NELBO check, leaderboard prefix, name of its first figure)] of the case's problems
    ("NELBO"; the MMD-VAE's "Loss")."""
    from autograder.checks.cvae_training import GATES
    graded = cases.problem_set(meta)
    return [(config.ALL_CHECKS[gate.family]["trained_nelbo"].number, gate.leaderboard_prefix, gate.terms[0])
            for gate in GATES if gate.family in graded.checks]


def params(suite):
    """pytest params (case, mode) of every case of `suite` in every mode it names; xfail where it says."""
    for case in cases.names(suite):
        data = cases.meta(suite, case)
        for mode in data.get("modes", ["grade"]):
            reason = data.get("xfail", {}).get(mode)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(case, mode, id=f"{case}-{mode}", marks=marks)


def secrets(source_root, submitted):
    """Strings of the grader's files that must never reach a student (minus what the student wrote too)."""
    found = ["BEGIN SOLUTION", "END SOLUTION", "def _statistics_draws"]
    for name in cases.STUDENT_FILES:
        if not (source_root / "solution" / name).is_file():
            continue                  # another problem's, not in this zip
        text = (source_root / "solution" / name).read_text()
        for region in re.findall(r"# BEGIN SOLUTION\n(.*?)# END SOLUTION", text, re.S):
            found += [line.strip() for line in region.splitlines() if len(line.strip()) > 12]
    calibration = source_root / "autograder" / "calibration.json"
    try:
        data = json.loads(calibration.read_text())
        found.append(data["model"].split("\n")[0][:40])
        found += [repr(run["nelbo"]) for run in data.get("runs", [])[:3] if len(repr(run["nelbo"])) > 10]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    # what the student wrote too, and the checks' names (shown to every student), are no secret
    classes = [case for problem in cases.PROBLEMS.values() for case in problem.classes()]
    names = [getattr(suite, name).__doc__ or "" for suite in classes for name in dir(suite)
             if name.startswith("test")]
    public = "\n".join([*submitted, *names])
    return sorted({s for s in found if s not in public})


def _submitted(folder):
    """What the student wrote: the texts of the submission files at the top of `folder` and of the
    files the grader selects (decoded as it decodes them, from a subfolder or a zip)."""
    texts = [(Path(folder) / name).read_text(errors="replace") for name in cases.STUDENT_FILES
             if (Path(folder) / name).is_file()]
    functions = {name: spec for problem in cases.PROBLEMS.values() for name, spec in problem.student_files.items()}
    return texts + list(submission_files.select(folder, functions).sources.values())


# ---------------------------------------------------------------- processes

def kill_tree(process):
    """Stop `process` (the grading we started) and kill everything under it, then it."""
    try:
        os.kill(process.pid, signal.SIGSTOP)   # a stopped grader starts no sandbox; orphans come back to it
    except ProcessLookupError:
        pass
    for _ in range(100):
        pids = batch.descendants(process.pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    process.kill()
    process.wait()


def alive(pid, start):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in (b"Z", b"X") and fields[19].decode() == start


def _sigterm_during_training(process, deadline, grace=SIGTERM_GRACE_SECONDS):
    """Once the training sandbox runs, SIGTERM the grader (what a platform does at its time limit);
    -> seconds until the grading ended, or None if it still ran `grace` seconds later."""
    while time.monotonic() < deadline:
        pids = batch.descendants(process.pid)
        if any(os.path.exists(f"/proc/{pid}/cwd/train.py") for pid in pids):
            break
        time.sleep(0.5)
    time.sleep(3)                                       # the training request is in flight
    for pid in batch.descendants(process.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                grader = b"autograder\0container" in handle.read()
        except OSError:
            continue
        if grader:
            os.kill(pid, signal.SIGTERM)
    sent = time.monotonic()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - sent


# ---------------------------------------------------------------- the gradings

def _student_python(scratch):
    """An interpreter the slot users can run, or None (not root, or none can be made)."""
    if not ROOT_USER:
        return None
    privileges.ensure_student_user()
    if privileges.python_problem(sys.executable) is None:
        return sys.executable
    directory = Path(scratch) / "student-python"
    directory.mkdir(mode=0o755)
    python = build_student_python(directory)
    if python is None or privileges.python_problem(python) is not None:
        return None
    return python


class Gradings:
    """Runs every wanted (case, mode) of `suite` once, JOBS at a time; result(case, mode) waits for one."""

    def __init__(self, suite, wanted):
        self.suite = suite
        variable = suite.upper()
        self.keep = bool(os.environ.get(f"{variable}_KEEP"))
        self.scratch = Path(tempfile.mkdtemp(prefix=f"vae-{suite}-", dir="/tmp"))
        os.chmod(self.scratch, 0o755)   # the container's ROOT lies below: student users must reach its data
        self._lock = threading.Lock()
        self._zips = {}
        self._student_python = _student_python(self.scratch) if any(m == "container-student" for _, m in wanted) \
            else None
        jobs = max(1, int(os.environ.get(f"{variable}_JOBS", "2")))
        # the CPUs shared out, as `regrade` does: two gradings of two torch threads each on two CPUs spin
        self._threads = batch.threads_per_grading(jobs, batch.available_cpus())
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix=suite)
        self._background = ThreadPoolExecutor(len(wanted) or 1, thread_name_prefix=f"{suite}-background")
        self._futures = {}
        # the longest first: background cases beside the pool, then containers, then the rest
        background = {case for case, _ in wanted if cases.meta(suite, case).get("background")}
        for case, mode in sorted(wanted, key=lambda job: (job[0] not in background, job[1] == "grade")):
            pool = self._background if case in background else self._pool
            self._futures[case, mode] = pool.submit(self._run, case, mode)

    def result(self, case, mode):
        return self._futures[case, mode].result()

    def checked(self, case, mode):
        """The grading of (case, mode), once check() found it sound -> results.json's data (or a skip)."""
        record = self.result(case, mode)
        if record.get("skip"):
            pytest.skip(record["skip"])
        print(f"{case} [{mode}]: graded in {record['seconds']:.1f} s")
        return check(self.suite, case, mode, record)

    def close(self):
        self._pool.shutdown(wait=True)
        self._background.shutdown(wait=True)
        if self.keep:
            print(f"\n{self.suite} gradings kept in {self.scratch}")
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _zip_path(self, problem_set):
        """The Gradescope zip of `problem_set`'s problems, built once."""
        with self._lock:
            if problem_set not in self._zips:
                suffix = "" if problem_set.is_default else "-" + "-".join(problem_set.names)
                path = self.scratch / f"autograder{suffix}.zip"
                assert build.build(path, verify_first=False, log=lambda m: None, problem_set=problem_set) == 0
                self._zips[problem_set] = path
            return self._zips[problem_set]

    def _run(self, case, mode):
        meta = cases.meta(self.suite, case)
        iterations = str(meta.get("iterations", cases.ITERATIONS))
        home = self.scratch / f"{case}-{mode}"
        home.mkdir()
        pid_dir, view_dir = home / "pids", home / "views"
        for folder in (pid_dir, view_dir):
            folder.mkdir()
            os.chmod(folder, 0o1777)
        record = {"case": case, "mode": mode}
        if mode == "grade":
            submission = cases.assemble(self.suite, case, home / "submission", str(pid_dir), str(view_dir))
            results_path = home / "results.json"
            command = [sys.executable, "-m", "autograder", "grade", str(submission),
                       "--results", str(results_path), "--iterations", iterations]
            if "problems" in meta:
                command += ["--problems", cases.problem_set(meta).label]
            env, source_root = dict(os.environ), paths.PROJECT
        else:
            python = self._student_python if mode == "container-student" else sys.executable
            if python is None:
                record["skip"] = "no interpreter the student users can run here (or not root)"
                return record
            root = home / "autograder"
            with zipfile.ZipFile(self._zip_path(cases.problem_set(meta))) as archive:
                archive.extractall(root / "source")
            submission = cases.assemble(self.suite, case, root / "submission", str(pid_dir), str(view_dir))
            results_path = root / "results" / "results.json"
            command = ["bash", str(root / "source" / "run_autograder")]
            env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=python,
                       AUTOGRADER_ITERATIONS=iterations)
            if mode != "container-student":   # simulate with an interpreter the student users cannot run
                env["VAE_ALLOW_ROOT_SANDBOX"] = "1"
            source_root = root / "source"
        # Every sandbox of these gradings shares this scratch folder (the pid folders in it): a
        # grading cleaning up a slot user would otherwise delete another grading's pid files.
        env["VAE_SANDBOX_SHARED"] = str(self.scratch)
        env.setdefault("VAE_THREADS", str(self._threads))
        env.update(meta.get("env", {}))
        record["secrets"] = secrets(source_root, _submitted(submission))
        log = open(home / "log.txt", "w+")
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=paths.PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if mode == "container-sigterm":
                record["after_sigterm"] = _sigterm_during_training(process, started + BOUND_SECONDS)
                if record["after_sigterm"] is None:
                    raise subprocess.TimeoutExpired(command, SIGTERM_GRACE_SECONDS)
            record["rc"] = process.wait(timeout=max(1, started + BOUND_SECONDS - time.monotonic()))
            record["timed_out"] = False
        except subprocess.TimeoutExpired:
            kill_tree(process)
            record["rc"], record["timed_out"] = process.returncode, True
        record["seconds"] = time.monotonic() - started
        log.seek(0)
        record["log"] = log.read()[-4000:]
        log.close()
        record["text"] = results_path.read_text(encoding="utf-8") if results_path.is_file() else None
        if meta.get("watch_seconds"):
            time.sleep(meta["watch_seconds"])
            record["later"] = results_path.read_text(encoding="utf-8") if results_path.is_file() else None
        record["views"] = [json.loads(path.read_text()) for path in sorted(view_dir.iterdir())]
        record["pids"] = []
        for path in pid_dir.iterdir():
            pid, start = path.read_text().split()
            record["pids"].append((int(pid), start))
        return record


# ---------------------------------------------------------------- what every grading must show

def show(outcome):
    return outcome.get("output", "") + "\n" + "\n".join(
        f"  {t['number']} {t['score']:g}/{t['max_score']:g} {t.get('output', '')[:300]!r}" for t in outcome["tests"])


def check(suite, case, mode, record):
    """Assert what every grading of a case must show (see the module's docstring) -> results.json's data."""
    meta = cases.meta(suite, case)
    where = f"{case} [{mode}], log:\n{record['log']}"

    # bounded time, a clean exit
    assert not record["timed_out"], f"grading did not finish within {BOUND_SECONDS} s: {where}"
    assert record["rc"] == 0, where

    # a valid results.json with every check, each with its points and tag
    assert record["text"] is not None, f"no results.json: {where}"
    outcome = results.validate(json.loads(record["text"]))
    assert 0 <= outcome["execution_time"] < BOUND_SECONDS, outcome["execution_time"]
    tests = {t["number"]: t for t in outcome["tests"]}
    graded = checks_of(meta)
    assert sorted(tests) == sorted(graded), show(outcome)
    for number, (family, points) in graded.items():
        test = tests[number]
        assert test["tags"] == [family] and test["max_score"] == points, test
        assert 0 <= test["score"] <= points, test
        assert len(test.get("output", "")) <= config.TEST_OUTPUT_CHARS, test["output"][:300]
        assert TRACEBACK not in test.get("output", "") and INTERNAL_ERROR not in test.get("output", ""), test

    # the honest score, and messages a student can act on
    assert outcome["score"] == pytest.approx(sum(t["score"] for t in outcome["tests"]))
    dishonest = cases.score_problems(meta, outcome["tests"])
    assert not dishonest, "\n".join(dishonest) + "\n" + show(outcome)
    for family, words in meta.get("says", {}).items():
        tag = cases.problem_set(meta).tag(family)
        failing = [t for t in outcome["tests"] if t["tags"] == [tag] and t["score"] < t["max_score"]]
        assert failing, f"no failing check in {family}\n{show(outcome)}"
        for test in failing:
            for word in words:
                assert word in test.get("output", ""), f"{word!r} missing from {test['number']}:\n{test.get('output')}"
    for word in meta.get("output", []):
        assert word in outcome["output"], f"{word!r} missing from the top-level output:\n{outcome['output']}"

    # no forged value, no leaked file content
    for marker in MARKERS:
        assert marker not in record["text"], f"{marker} in results.json:\n{record['text'][:3000]}"
    if mode in meta.get("secrets_safe_in", cases.MODES):
        assert record["secrets"], "nothing to look for: the grader's files hold no secret?"
        leaked = [s for s in record["secrets"] if s in record["text"]]
        assert not leaked, f"the grader's files leaked into results.json: {leaked}\n{show(outcome)}"
    board = {entry["name"]: entry["value"] for entry in outcome.get("leaderboard", [])}
    for number, prefix, first in gates_of(meta):
        trained = tests[number]
        if trained["score"] > 0:
            assert prefix + first in board, f"training scored {trained['score']:g} but no leaderboard was written"
        if prefix + first in board:
            reference = re.search(rf" on the hidden test set gives {first} (\S+),", trained.get("output", ""))
            assert reference, trained.get("output")
            # the leaderboard keeps 3 decimals, the message 2: the same value within rounding
            assert abs(board[prefix + first] - float(reference.group(1))) <= 0.0051, (board, trained.get("output"))

    # nothing changed or left running afterwards
    if "watch_seconds" in meta:
        assert record["later"] == record["text"], "results.json changed after grading ended"
    if meta.get("same_view"):
        assert len(record["views"]) >= 2, f"fewer than two sandboxes left what they saw: {record['views']}"
        assert all(view == record["views"][0] for view in record["views"]), record["views"]
    if meta.get("pids"):
        assert record["pids"], "the submission's detached processes did not start (nothing to check)"
        running = [pid for pid, start in record["pids"] if alive(pid, start)]
        assert not running, f"detached processes of the submission still run after grading: {running}"
    return outcome
