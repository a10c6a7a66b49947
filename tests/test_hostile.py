"""Hostile and broken submissions (issue 4, items 4 and 5), graded through the real paths.

Every folder tests/hostile/<case>/ is one submission: the reference solution/utils.py and
solution/vae.py (solution markers dropped, as in a student's file), overlaid with the files
the case holds. Files named `*.planted` are copied without that suffix (so that neither
pytest nor Python ever picks up a planted conftest.py or torch.py in this repository), and
`@@PIDDIR@@` is replaced by a folder where detached processes leave their pids, `@@VIEWDIR@@`
by one where each sandbox may leave a JSON file of what it sees.
case.json says what the submission does and what an honest grader gives it:

    item, why          the issue item, and what the submission does
    scores             points per tag (sample_gaussian, kl_normal, negative_elbo_bound, training)
    says               {tag: [words]}: every failing check of that tag must show each of them
    modes              where it is graded (default ["grade"], see below)
    xfail              {mode: reason}: a known weakness of the grader (strict xfail)
    secrets_safe_in    modes where no content of the grader's files may reach results.json (default: all)
    pad                {file: bytes}: the file is padded to about that size with a base64 string
    iterations         training iterations for this case (default ITERATIONS)
    env                extra environment variables of the grading (e.g. VAE_THREADS)
    same_view          every sandbox that left a file in @@VIEWDIR@@ saw the same (at least two did)
    omit, background, pids, watch_seconds, line_of    (see the code)

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

Every graded (case, mode) asserts: grading ends within BOUND_SECONDS with exit status 0; a
schema-valid results.json with every check of config.CHECKS, each with its points and tag;
the score is the sum of the tests' scores, and the scores per tag are the honest ones of
case.json; failing checks say what case.json expects, with no traceback or internal error,
each output capped; no forged value (the fake results' and planted files' markers never
appear; a leaderboard comes from the reference bound); no content of the grader's files
(the reference solution's regions, the calibration data, the hidden checks) appears; for
`watch_seconds` the file does not change after grading; for `pids` every detached process
the submission started is dead.

The gradings run HOSTILE_JOBS at a time (default 2) in a pool started by the first test
of this module, each test waiting for its own; the `background` case (a hang that sleeps)
runs beside the pool from the start. HOSTILE_KEEP=1 keeps every grading's folder (submission,
results.json, log) and prints where.
"""
import base64
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

from autograder import build, checks, config, paths, privileges, results
from autograder.checks.base import INTERNAL_ERROR
from tests.student_python import build_student_python

HOSTILE = Path(__file__).resolve().parent / "hostile"
ITERATIONS = "20"
BOUND_SECONDS = 300          # the whole grading of one submission, hostile or not
JOBS = max(1, int(os.environ.get("HOSTILE_JOBS", "2")))
MODES = ("grade", "container-root", "container-student")
SIGTERM_GRACE_SECONDS = 30
ROOT_USER = os.geteuid() == 0
MARKERS = ("FORGED", "PLANTED")            # what the hostile files write, print or raise
TRACEBACK = "Traceback (most recent call last)"
SOLUTION_MARKER = re.compile(r"^\s*# (BEGIN|END) SOLUTION\s*\n", re.M)
CHECKS = {spec.number: (family, spec.points) for family, specs in config.CHECKS.items() for spec in specs.values()}


def _cases():
    return sorted(p.name for p in HOSTILE.iterdir() if (p / "case.json").is_file())


def _meta(case):
    return json.loads((HOSTILE / case / "case.json").read_text())


def _params():
    for case in _cases():
        meta = _meta(case)
        for mode in meta.get("modes", ["grade"]):
            assert mode in MODES, (case, mode)
            reason = meta.get("xfail", {}).get(mode)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(case, mode, id=f"{case}-{mode}", marks=marks)


# ---------------------------------------------------------------- assembling a submission

def assemble(case, target, pid_dir="", view_dir=""):
    """The submission of `case` in `target` -> {name: text} of the files a sandbox may get."""
    meta = _meta(case)
    target.mkdir(parents=True, exist_ok=True)
    for name in config.SUBMISSION_FILES:
        if name not in meta.get("omit", []):
            (target / name).write_text(SOLUTION_MARKER.sub("", (paths.SOLUTION / name).read_text()))
    for path in sorted((HOSTILE / case).rglob("*")):
        if not path.is_file() or path.name == "case.json" or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(HOSTILE / case)
        relative = relative.with_name(relative.name.removesuffix(".planted"))
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(path.read_text().replace("@@PIDDIR@@", pid_dir).replace("@@VIEWDIR@@", view_dir))
    for name, size in meta.get("pad", {}).items():      # a blob like shipped weights, made here, not committed
        text = (target / name).read_text()
        blob = base64.b64encode(bytes(range(256)) * (size // 256 + 1)).decode()
        (target / name).write_text(text + f'\nSHIPPED_WEIGHTS = "{blob[:max(0, size - len(text) - 22)]}"\n')
    return {name: (target / name).read_text() for name in config.SUBMISSION_FILES if (target / name).exists()}


def secrets(source_root, submitted):
    """Strings of the grader's files that must never reach a student (minus what the student wrote too)."""
    found = ["BEGIN SOLUTION", "END SOLUTION", "def _statistics_draws"]
    for name in config.SUBMISSION_FILES:
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
    names = [getattr(suite, name).__doc__ or "" for suite in checks.ALL for name in dir(suite)
             if name.startswith("test")]
    public = "\n".join([*submitted.values(), *names])
    return sorted({s for s in found if s not in public})


# ---------------------------------------------------------------- processes

def _children_table():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid):
    children, found, todo = _children_table(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process):
    """Stop `process` (the grading we started) and kill everything under it, then it."""
    try:
        os.kill(process.pid, signal.SIGSTOP)   # a stopped grader starts no sandbox; orphans come back to it
    except ProcessLookupError:
        pass
    for _ in range(100):
        pids = _descendants(process.pid)
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


def _alive(pid, start):
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
        pids = _descendants(process.pid)
        if any(os.path.exists(f"/proc/{pid}/cwd/train.py") for pid in pids):
            break
        time.sleep(0.5)
    time.sleep(3)                                       # the training request is in flight
    for pid in _descendants(process.pid):
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
    """Runs every selected (case, mode) once, JOBS at a time; result(case, mode) waits for one."""

    def __init__(self, wanted):
        self.scratch = Path(tempfile.mkdtemp(prefix="vae-hostile-", dir="/tmp"))
        os.chmod(self.scratch, 0o755)   # the container's ROOT lies below: student users must reach its data
        self._lock = threading.Lock()
        self._zip = None
        self._student_python = _student_python(self.scratch) if any(m == "container-student" for _, m in wanted) \
            else None
        self._pool = ThreadPoolExecutor(JOBS, thread_name_prefix="hostile")
        self._background = ThreadPoolExecutor(len(wanted) or 1, thread_name_prefix="hostile-background")
        self._futures = {}
        # the longest first: background cases beside the pool, then containers, then the rest
        order = sorted(wanted, key=lambda job: (not _meta(job[0]).get("background"), job[1] == "grade"))
        for case, mode in order:
            pool = self._background if _meta(case).get("background") else self._pool
            self._futures[case, mode] = pool.submit(self._run, case, mode)

    def result(self, case, mode):
        return self._futures[case, mode].result()

    def close(self):
        self._pool.shutdown(wait=True)
        self._background.shutdown(wait=True)
        if os.environ.get("HOSTILE_KEEP"):
            print(f"\nhostile gradings kept in {self.scratch}")
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _zip_path(self):
        with self._lock:
            if self._zip is None:
                path = self.scratch / "autograder.zip"
                assert build.build(path, verify_first=False, log=lambda m: None) == 0
                self._zip = path
            return self._zip

    def _run(self, case, mode):
        meta = _meta(case)
        home = self.scratch / f"{case}-{mode}"
        home.mkdir()
        pid_dir, view_dir = home / "pids", home / "views"
        for folder in (pid_dir, view_dir):
            folder.mkdir()
            os.chmod(folder, 0o1777)
        record = {"case": case, "mode": mode, "pid_dir": pid_dir}
        if mode == "grade":
            submitted = assemble(case, home / "submission", str(pid_dir), str(view_dir))
            results_path = home / "results.json"
            command = [sys.executable, "-m", "autograder", "grade", str(home / "submission"),
                       "--results", str(results_path), "--iterations", str(meta.get("iterations", ITERATIONS))]
            env, source_root = dict(os.environ), paths.PROJECT
        else:
            python = self._student_python if mode == "container-student" else sys.executable
            if python is None:
                record["skip"] = "no interpreter the student users can run here (or not root)"
                return record
            root = home / "autograder"
            with zipfile.ZipFile(self._zip_path()) as archive:
                archive.extractall(root / "source")
            submitted = assemble(case, root / "submission", str(pid_dir), str(view_dir))
            results_path = root / "results" / "results.json"
            command = ["bash", str(root / "source" / "run_autograder")]
            env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=python,
                       AUTOGRADER_ITERATIONS=str(meta.get("iterations", ITERATIONS)))
            if mode != "container-student":   # simulate with an interpreter the student users cannot run
                env["VAE_ALLOW_ROOT_SANDBOX"] = "1"
            source_root = root / "source"
        # Every sandbox of these gradings shares this test's scratch folder (the pid folders in it):
        # a grading cleaning up a slot user would otherwise delete another grading's pid files.
        env["VAE_SANDBOX_SHARED"] = str(self.scratch)
        env.update(meta.get("env", {}))
        record["secrets"] = secrets(source_root, submitted)
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
        record["text"] = results_path.read_text() if results_path.is_file() else None
        if meta.get("watch_seconds"):
            time.sleep(meta["watch_seconds"])
            record["later"] = results_path.read_text() if results_path.is_file() else None
        record["views"] = [json.loads(path.read_text()) for path in sorted(view_dir.iterdir())]
        record["pids"] = []
        for path in pid_dir.iterdir():
            pid, start = path.read_text().split()
            record["pids"].append((int(pid), start))
        return record


def _wanted(items, module):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is module and "case" in params and "mode" in params:
            yield params["case"], params["mode"]


@pytest.fixture(scope="module")
def gradings(request):
    me = sys.modules[__name__]
    wanted = list(dict.fromkeys(_wanted(request.session.items, me)))
    runner = Gradings(wanted)
    yield runner
    runner.close()


# ---------------------------------------------------------------- the test

def _by_tag(outcome):
    totals = {family: 0.0 for family in config.CHECKS}
    for test in outcome["tests"]:
        totals[test["tags"][0]] += test["score"]
    return totals


def _show(outcome):
    return "\n".join(f"  {t['number']} {t['score']:g}/{t['max_score']:g} {t.get('output', '')[:300]!r}"
                     for t in outcome["tests"])


@pytest.mark.parametrize("case, mode", list(_params()))
def test_hostile_submission(case, mode, gradings):
    meta = _meta(case)
    record = gradings.result(case, mode)
    if record.get("skip"):
        pytest.skip(record["skip"])
    print(f"{case} [{mode}]: graded in {record['seconds']:.1f} s")
    where = f"{case} [{mode}], log:\n{record['log']}"

    # bounded time, a clean exit, nothing left running
    assert not record["timed_out"], f"grading did not finish within {BOUND_SECONDS} s: {where}"
    assert record["rc"] == 0, where

    # a valid results.json with every check, each with its points and tag
    assert record["text"] is not None, f"no results.json: {where}"
    outcome = results.validate(json.loads(record["text"]))
    assert outcome.get("execution_time", 0) < BOUND_SECONDS
    tests = {t["number"]: t for t in outcome["tests"]}
    assert sorted(tests) == sorted(CHECKS), _show(outcome)
    for number, (family, points) in CHECKS.items():
        test = tests[number]
        assert test["tags"] == [family] and test["max_score"] == points, test
        assert 0 <= test["score"] <= points, test
        assert len(test.get("output", "")) <= config.TEST_OUTPUT_CHARS, test["output"][:300]

    # the honest score, and messages a student can act on
    assert outcome["score"] == pytest.approx(sum(t["score"] for t in outcome["tests"]))
    assert _by_tag(outcome) == pytest.approx(meta["scores"]), _show(outcome)
    for family, words in meta.get("says", {}).items():
        failing = [t for t in outcome["tests"] if t["tags"] == [family] and t["score"] < t["max_score"]]
        assert failing, f"no failing check in {family}"
        for test in failing:
            for word in words:
                assert word in test.get("output", ""), f"{word!r} missing from {test['number']}:\n{test.get('output')}"
    for test in outcome["tests"]:
        assert TRACEBACK not in test.get("output", "") and INTERNAL_ERROR not in test.get("output", ""), test

    # no forged value, no leaked file content
    for marker in MARKERS:
        assert marker not in record["text"], f"{marker} in results.json:\n{record['text'][:3000]}"
    if mode in meta.get("secrets_safe_in", MODES):
        leaked = [s for s in record["secrets"] if s in record["text"]]
        assert not leaked, f"the grader's files leaked into results.json: {leaked}\n{_show(outcome)}"
    if outcome.get("leaderboard"):
        (message,) = [t.get("output", "") for t in outcome["tests"] if t["number"] == CHECKS_NUMBER_TRAINED]
        reference = re.search(r"reference bound on the hidden test set gives NELBO (\S+),", message)
        assert reference, message
        board = {entry["name"]: entry["value"] for entry in outcome["leaderboard"]}
        # the leaderboard keeps 3 decimals, the message 2: the same value within rounding
        assert abs(board["NELBO"] - float(reference.group(1))) <= 0.0051, (board, message)
    if "watch_seconds" in meta:
        assert record["later"] == record["text"], "results.json changed after grading ended"
    if meta.get("same_view"):
        assert len(record["views"]) >= 2, f"fewer than two sandboxes left what they saw: {record['views']}"
        assert all(view == record["views"][0] for view in record["views"]), record["views"]
    if meta.get("pids"):
        assert record["pids"], "the submission's detached processes did not start (nothing to check)"
        alive = [pid for pid, start in record["pids"] if _alive(pid, start)]
        assert not alive, f"detached processes of the submission still run after grading: {alive}"


CHECKS_NUMBER_TRAINED = config.CHECKS["training"]["trained_nelbo"].number


@pytest.mark.parametrize("case, mode", [("os_exit_in_kl_normal", "grade")])
def test_crash_messages_read_as_sentences(case, mode, gradings):
    record = gradings.result(case, mode)
    outputs = [t.get("output", "") for t in json.loads(record["text"])["tests"]]
    crashed = [o for o in outputs if "exited with code 0" in o]
    assert crashed, outputs
    print(f"{case} [{mode}]: {crashed[0].splitlines()[0]}")
    assert not [o for o in crashed if "your code the process" in o], crashed[0]


@pytest.mark.parametrize("case, mode", [("hang_everywhere", "container-sigterm")])
def test_sigterm_while_training_hangs_ends_grading_with_a_result(case, mode, gradings):
    """The simulated container, SIGTERMed while the training sandbox hangs: it must stop within
    SIGTERM_GRACE_SECONDS, with a valid results.json, and leave nothing running."""
    record = gradings.result(case, mode)
    print(f"{case} [{mode}]: ended {record['after_sigterm']} s after SIGTERM (None: still running after "
          f"{SIGTERM_GRACE_SECONDS} s, then killed)")
    assert record["after_sigterm"] is not None, f"still grading {SIGTERM_GRACE_SECONDS} s after SIGTERM"
    assert not record["timed_out"] and record["rc"] == 0, record["log"]
    results.validate(json.loads(record["text"]))


def test_every_case_is_described():
    """Each case says what it covers and the honest score per tag; planted files never sit here as .py."""
    for case in _cases():
        meta = _meta(case)
        assert meta.get("item") and meta.get("why"), case
        assert set(meta["scores"]) == set(config.CHECKS), case
        assert set(meta.get("says", {})) <= set(config.CHECKS), case
        assert set(meta.get("xfail", {})) <= set(meta.get("modes", ["grade"])), case
        for path in (HOSTILE / case).rglob("*.py"):
            assert path.name in config.SUBMISSION_FILES and path.parent == HOSTILE / case, path
