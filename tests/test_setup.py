"""setup.sh's choices (PYTHON, VENV, TORCH_SOURCE) and CI's score assertion (.ci/expect_score.py):
the refusals happen before anything is installed, so these run in a second."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SETUP = PROJECT / "setup.sh"


def _setup(tmp_path, **env):
    outcome = subprocess.run(["bash", str(SETUP)], env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    return outcome.returncode, outcome.stdout + outcome.stderr


def _fake_python(path, version):
    """An 'interpreter' that says it is `version` and passes setup.sh's >= 3.10 test only if it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    major, minor = map(int, version.split("."))
    path.write_text(f"#!/bin/sh\ncase \"$2\" in *print*) echo {version}; exit 0;; esac\n"
                    f"exit {int((major, minor) < (3, 10))}\n")
    path.chmod(0o755)
    return path


def test_a_python_asked_for_must_run(tmp_path):
    code, said = _setup(tmp_path, PYTHON=str(tmp_path / "no-such-python"), VENV=str(tmp_path / "venv"))
    assert code == 1 and "does not run or is older than 3.10" in said, said
    assert not (tmp_path / "venv").exists()


def test_a_python_asked_for_must_be_3_10_or_newer(tmp_path):
    old = _fake_python(tmp_path / "python3.9", "3.9")
    code, said = _setup(tmp_path, PYTHON=str(old), VENV=str(tmp_path / "venv"))
    assert code == 1 and "does not run or is older than 3.10" in said, said
    assert not (tmp_path / "venv").exists()


def test_a_venv_of_another_python_is_refused_not_replaced(tmp_path):
    venv = tmp_path / "venv"
    other = _fake_python(venv / "bin" / "python", "3.9")
    code, said = _setup(tmp_path, PYTHON=sys.executable, VENV=str(venv))
    want = "%d.%d" % sys.version_info[:2]
    assert code == 1 and f"holds Python 3.9, PYTHON={sys.executable} is {want}" in said, said
    assert other.read_text().startswith("#!/bin/sh")


def test_torch_source_is_cpu_or_pypi(tmp_path):
    code, said = _setup(tmp_path, TORCH_SOURCE="cuda", VENV=str(tmp_path / "venv"))
    assert code == 1 and "TORCH_SOURCE is cpu (default) or pypi" in said, said
    assert not (tmp_path / "venv").exists()


def test_gradescope_gets_the_cpu_build_by_name():
    """Gradescope sets none of the variables: torch comes from a CPU wheel on disk or PyTorch's CPU
    index, asked for as +cpu (an unreachable index fails instead of PyPI's CUDA build coming), and
    a CUDA build in the venv stops setup.sh unless TORCH_SOURCE=pypi asked for it."""
    text = SETUP.read_text()
    assert "TORCH_SOURCE=${TORCH_SOURCE:-cpu}" in text
    assert '"torch==$TORCH_VERSION$build"' in text and 'build="+cpu"' in text
    assert "torch.version.cuda is not None" in text


def _results(tmp_path, scores):
    path = tmp_path / "results.json"
    tests = [{"name": f"t{i}", "score": got, "max_score": most, "output": "why"} for i, (got, most) in enumerate(scores)]
    path.write_text(json.dumps({"score": sum(got for got, _ in scores), "tests": tests}))
    return path


@pytest.mark.parametrize("scores, want, code", [
    ([(1, 1), (2.5, 2.5)], "full", 0),
    ([(1, 1), (2, 2.5)], "full", 1),
    ([(0, 1), (0, 2.5)], "zero", 0),
    ([(0, 1), (0.5, 2.5)], "zero", 1),
    ([], "full", 1),
    ([], "zero", 1),
])
def test_expect_score(tmp_path, scores, want, code):
    outcome = subprocess.run([sys.executable, str(PROJECT / ".ci" / "expect_score.py"), str(_results(tmp_path, scores)),
                              want], capture_output=True, text=True, timeout=60)
    assert outcome.returncode == code, outcome.stdout + outcome.stderr
    assert ("ok" if code == 0 else "WRONG") in outcome.stdout
