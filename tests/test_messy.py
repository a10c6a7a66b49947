"""The messy-submission zoo (issue 16): correct or honestly buggy code in real students' packaging.

Every folder tests/messy/<case>/ is one submission in the format of tests/cases.py, mostly made of
"files" entries: the reference or the handout with edits, in other encodings, line ends, folders,
zips, with backups and stale copies beside them. case.json names the issue item (1: which copy,
3: near-miss names and zips, 4: messages, works: packaging that already worked and must keep
working), the honest scores and the phrases of the top-level output ("output") that say which files
were graded.

tests/runner.py grades each (case, mode) through the real command or the simulated container and
checks what every grading must show; here its top-level output must also start with "Files graded:".
MESSY_JOBS (default 2) gradings run at a time; MESSY_KEEP=1 keeps them.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import config, paths
from tests import cases, runner

SUITE = "messy"


@pytest.mark.parametrize("case, mode", list(runner.params(SUITE)))
def test_messy_submission(case, mode, gradings):
    outcome = gradings.checked(case, mode)
    assert outcome["output"].startswith("Files graded: "), outcome["output"]


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
    folders = [str(cases.assemble(SUITE, case, tmp_path / case)) for case in cases.names(SUITE)]
    verdicts = {}
    for interpreter in (sys.executable, python):
        outcome = subprocess.run([interpreter, "-I", "-c", _VERDICTS, str(paths.PROJECT), *folders],
                                 capture_output=True, text=True, timeout=120)
        assert outcome.returncode == 0, outcome.stderr
        verdicts[interpreter] = json.loads(outcome.stdout)
    assert verdicts[sys.executable] == verdicts[python]
    assert all(v["graded"] or v["problems"] for v in verdicts[python].values())
