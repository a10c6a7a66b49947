"""The messy-submission zoo (issue 16): correct or honestly buggy code in real students' packaging.

Every folder tests/messy/<case>/ is one submission, described by its case.json:

    item, why      the issue item (1: which copy, 3: near-miss names and zips, 4: messages,
                   works: packaging that already worked and must keep working) and the packaging
    files          {path in the submission: spec}; a spec is one of
                     {"from": "solution:utils.py" | "handout:vae.py", "edits": [[old, new], ...]}
                       the reference (solution markers dropped) or the handout, with text edits
                     {"text": "..."}            literal text
                     {"latin1": "..."}          literal bytes (each character one byte)
                   and optionally "encoding" (default utf-8; "utf-16" writes a byte-order mark,
                   "utf-16-le" none), "newline": "crlf", "tabs": true (leading 4-space groups
                   become tabs), "age": seconds (mtime that much older than the rest)
    zip            {name.zip: [path prefixes]}: those files move into that zip at the top level
    scores         honest points per tag (sample_gaussian, kl_normal, negative_elbo_bound, training)
    output         words the top-level output of results.json must show (which files, notes)
    says           {tag: [words]}: every failing check of that tag must show each of them
    modes          where it is graded (default ["grade"]; the container modes of tests/test_hostile.py)

Each (case, mode) is graded once, MESSY_JOBS at a time (default 2), through the real command
(`python -m autograder grade DIR --results R --iterations 20`) or the simulated container, and
must: exit 0 with a schema-valid results.json holding every check; give the scores of case.json;
start its top-level output with "Files graded:"; show the words of case.json; never show a
traceback. MESSY_KEEP=1 keeps the gradings' folders.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import test_hostile
from autograder import build, config, paths, results, submission_files
from autograder.checks.base import INTERNAL_ERROR

MESSY = Path(__file__).resolve().parent / "messy"
ITERATIONS = "20"
BOUND_SECONDS = 300
JOBS = max(1, int(os.environ.get("MESSY_JOBS", "2")))
MODES = ("grade", "container-root", "container-student")
ITEMS = ("1", "3", "4", "works")
TRACEBACK = "Traceback (most recent call last)"
BASES = {"solution": paths.SOLUTION, "handout": paths.ASSIGNMENT}
CHECKS = {spec.number: (family, spec.points) for family, specs in config.CHECKS.items() for spec in specs.values()}


def _cases():
    return sorted(p.name for p in MESSY.iterdir() if (p / "case.json").is_file())


def _meta(case):
    return json.loads((MESSY / case / "case.json").read_text(encoding="utf-8"))


def _params():
    for case in _cases():
        for mode in _meta(case).get("modes", ["grade"]):
            assert mode in MODES, (case, mode)
            yield pytest.param(case, mode, id=f"{case}-{mode}")


# ---------------------------------------------------------------- assembling a submission

def _content(spec):
    """The bytes one file spec describes."""
    if "latin1" in spec:
        return spec["latin1"].encode("latin-1")
    if "text" in spec:
        text = spec["text"]
    else:
        base, name = spec["from"].split(":")
        text = (BASES[base] / name).read_text(encoding="utf-8")
        for old, new in spec.get("edits", []):
            assert old in text, f"edit does not apply to {spec['from']}: {old!r}"
            text = text.replace(old, new)
        text = test_hostile.SOLUTION_MARKER.sub("", text)
    if spec.get("tabs"):
        lines = []
        for line in text.split("\n"):
            stripped = line.lstrip(" ")
            indent = len(line) - len(stripped)
            lines.append("\t" * (indent // 4) + " " * (indent % 4) + stripped)
        text = "\n".join(lines)
    if spec.get("newline") == "crlf":
        text = text.replace("\n", "\r\n")
    return text.encode(spec.get("encoding", "utf-8"))


def assemble(case, target):
    """The submission of `case` in `target` (files, ages, zips)."""
    meta = _meta(case)
    target.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for relative, spec in meta["files"].items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_content(spec))
        stamp = now - spec.get("age", 0)
        os.utime(path, (stamp, stamp))
    for source in sorted((MESSY / case).rglob("*")):
        if source.is_file() and source.name != "case.json":
            destination = target / source.relative_to(MESSY / case)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    for archive_name, prefixes in meta.get("zip", {}).items():
        members = [relative for relative in meta["files"] if relative.startswith(tuple(prefixes))]
        assert members, (case, archive_name)
        with zipfile.ZipFile(target / archive_name, "w", zipfile.ZIP_DEFLATED) as archive:
            for relative in members:
                archive.write(target / relative, relative)
        for relative in members:
            (target / relative).unlink()
        for prefix in prefixes:
            if (target / prefix).is_dir():
                shutil.rmtree(target / prefix)
    return target


# ---------------------------------------------------------------- the gradings

class Gradings:
    """Runs every selected (case, mode) once, JOBS at a time; result(case, mode) waits for one."""

    def __init__(self, wanted):
        self.scratch = Path(tempfile.mkdtemp(prefix="vae-messy-", dir="/tmp"))
        os.chmod(self.scratch, 0o755)      # the container's ROOT lies below: student users must reach its data
        self._lock = threading.Lock()
        self._zip = None
        self._student_python = test_hostile._student_python(self.scratch) \
            if any(mode == "container-student" for _, mode in wanted) else None
        self._pool = ThreadPoolExecutor(JOBS, thread_name_prefix="messy")
        order = sorted(wanted, key=lambda job: job[1] == "grade")      # the containers first: the longest
        self._futures = {job: self._pool.submit(self._run, *job) for job in order}

    def result(self, case, mode):
        return self._futures[case, mode].result()

    def close(self):
        self._pool.shutdown(wait=True)
        if os.environ.get("MESSY_KEEP"):
            print(f"\nmessy gradings kept in {self.scratch}")
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
        home = self.scratch / f"{case}-{mode}"
        home.mkdir()
        record = {}
        if mode == "grade":
            submission = assemble(case, home / "submission")
            results_path = home / "results.json"
            command = [sys.executable, "-m", "autograder", "grade", str(submission), "--results", str(results_path),
                       "--iterations", ITERATIONS]
            env = dict(os.environ)
        else:
            python = self._student_python if mode == "container-student" else sys.executable
            if python is None:
                return {"skip": "no interpreter the student users can run here (or not root)"}
            root = home / "autograder"
            with zipfile.ZipFile(self._zip_path()) as archive:
                archive.extractall(root / "source")
            assemble(case, root / "submission")
            results_path = root / "results" / "results.json"
            command = ["bash", str(root / "source" / "run_autograder")]
            env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=python, AUTOGRADER_ITERATIONS=ITERATIONS)
            if mode != "container-student":
                env["VAE_ALLOW_ROOT_SANDBOX"] = "1"
        with open(home / "log.txt", "w+") as log:
            process = subprocess.Popen(command, cwd=paths.PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                record["rc"], record["timed_out"] = process.wait(timeout=BOUND_SECONDS), False
            except subprocess.TimeoutExpired:
                test_hostile.kill_tree(process)
                record["rc"], record["timed_out"] = process.returncode, True
            log.seek(0)
            record["log"] = log.read()[-4000:]
        record["text"] = results_path.read_text(encoding="utf-8") if results_path.is_file() else None
        return record


@pytest.fixture(scope="module")
def gradings(request):
    me = sys.modules[__name__]
    wanted = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is me and "case" in params and "mode" in params:
            wanted.append((params["case"], params["mode"]))
    runner = Gradings(list(dict.fromkeys(wanted)))
    yield runner
    runner.close()


# ---------------------------------------------------------------- the tests

def _show(outcome):
    return outcome.get("output", "") + "\n" + "\n".join(
        f"  {t['number']} {t['score']:g}/{t['max_score']:g} {t.get('output', '')[:300]!r}" for t in outcome["tests"])


@pytest.mark.parametrize("case, mode", list(_params()))
def test_messy_submission(case, mode, gradings):
    meta = _meta(case)
    record = gradings.result(case, mode)
    if record.get("skip"):
        pytest.skip(record["skip"])
    where = f"{case} [{mode}], log:\n{record['log']}"
    assert not record["timed_out"] and record["rc"] == 0, where
    assert record["text"] is not None, f"no results.json: {where}"
    outcome = results.validate(json.loads(record["text"]))
    tests = {t["number"]: t for t in outcome["tests"]}
    assert sorted(tests) == sorted(CHECKS), _show(outcome)

    totals = {family: 0.0 for family in config.CHECKS}
    for test in outcome["tests"]:
        totals[test["tags"][0]] += test["score"]
        assert TRACEBACK not in test.get("output", "") and INTERNAL_ERROR not in test.get("output", ""), test
    assert totals == pytest.approx(meta["scores"]), _show(outcome)

    assert outcome["output"].startswith("Files graded: "), outcome["output"]
    for word in meta.get("output", []):
        assert word in outcome["output"], f"{word!r} missing from the top-level output:\n{outcome['output']}"
    for family, words in meta.get("says", {}).items():
        failing = [t for t in outcome["tests"] if t["tags"] == [family] and t["score"] < t["max_score"]]
        assert failing, f"no failing check in {family}\n{_show(outcome)}"
        for test in failing:
            for word in words:
                assert word in test.get("output", ""), f"{word!r} missing from {test['number']}:\n{test.get('output')}"


def test_every_case_is_described():
    """Each case says what it covers, with honest points per tag; every item of the issue is covered."""
    cases = _cases()
    assert len(cases) >= 20
    for case in cases:
        meta = _meta(case)
        assert meta.get("item") in ITEMS and meta.get("why"), case
        assert set(meta["scores"]) == set(config.CHECKS), case
        assert set(meta.get("says", {})) <= set(config.CHECKS), case
        full = all(meta["scores"][f] == sum(c.points for c in config.CHECKS[f].values()) for f in config.CHECKS)
        assert full or meta.get("says"), f"{case}: a case that loses points must say which words explain it"
        for relative, spec in meta["files"].items():
            assert {"from", "text", "latin1"} & set(spec), (case, spec)
            if full and "from" in spec:     # a full-marks case must hold code that parses once decoded
                ast.parse(submission_files.decode_source(_content(spec), relative)[0])
    for item in ITEMS:
        assert sum(_meta(case)["item"] == item for case in cases) >= 3, item


def test_modules_named_as_available_are_installed():
    """The list the missing-module message gives is true: each package is installed by setup.sh."""
    required = (paths.PROJECT / "requirements.txt").read_text() + (paths.PROJECT / "setup.sh").read_text()
    for package in config.STUDENT_PACKAGES:
        assert package in required, package
        subprocess.run([sys.executable, "-c", f"import {package}"], check=True)


def _python310():
    """A Python 3.10 interpreter that really runs (pyenv's shims may name one that is not active)."""
    candidates = sorted(Path("/root/.pyenv/versions").glob("3.10*/bin/python3.10")) if os.access("/root", os.X_OK) \
        else []
    for python in [*map(str, candidates), shutil.which("python3.10")]:
        if python and subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 10))"],
                                     capture_output=True).returncode == 0:
            return python
    return None


def test_discovery_and_decoding_agree_under_python_310():
    """Gradescope runs Python 3.10: the discovery and normalisation tests pass under a bare 3.10 too."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    outcome = subprocess.run([python, "-I", "tests/test_submission_files.py"], cwd=paths.PROJECT,
                             capture_output=True, text=True, timeout=300)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "Ran " in outcome.stderr and "OK" in outcome.stderr, outcome.stderr


_VERDICTS = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from autograder import submission_files
out = {}
for folder in sys.argv[2:]:
    s = submission_files.select(folder)
    out[folder] = {"graded": {n: e.shown for n, e in s.graded.items()}, "problems": s.problems,
                   "sources": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in s.sources.items()},
                   "report": s.report()}
print(json.dumps(out))
"""


def test_every_case_gets_the_same_files_and_messages_under_python_310(tmp_path):
    """The trusted side's verdict on each messy case (files, UTF-8 copies, messages) is the same
    under Gradescope's Python 3.10 as under the interpreter running the tests."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    folders = [str(assemble(case, tmp_path / case)) for case in _cases()]
    verdicts = {}
    for interpreter in (sys.executable, python):
        outcome = subprocess.run([interpreter, "-I", "-c", _VERDICTS, str(paths.PROJECT), *folders],
                                 capture_output=True, text=True, timeout=120)
        assert outcome.returncode == 0, outcome.stderr
        verdicts[interpreter] = json.loads(outcome.stdout)
    assert verdicts[sys.executable] == verdicts[python]
    assert all(v["graded"] or v["problems"] for v in verdicts[python].values())
