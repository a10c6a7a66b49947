"""Nothing newer than Python 3.10 (Gradescope's) in the code Gradescope runs or hands out.

Run by the Python 3.10 venv (.ci/py310): `python .ci/py310_features.py [FOLDER ...]`
(default: solution assignment autograder). Three checks, each file by each:
  1. syntax: this 3.10 interpreter compiles the file (except*, PEP 695 generics, PEP 701
     f-strings and the like are syntax errors here);
  2. the standard library: vermin (pinned in .ci/py310) finds no module, member, argument or
     construct that needs Python > 3.10 (tomllib, typing.Self, datetime.UTC, enum.StrEnum,
     ...), with annotations evaluated, as 3.10 evaluates them;
  3. autograder's modules import under 3.10 (what runs at import time, for real).
Exits 1 and names every finding; 0 when all is 3.10-clean.
"""
import importlib
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TARGET = (3, 10)
VERMIN = ["-c", "import sys; from vermin import main; sys.exit(main())", f"--target={TARGET[0]}.{TARGET[1]}-", "--violations", "--eval-annotations",
          "--no-tips", "--no-make-paths-absolute", "-q"]


def python_files(folders):
    for folder in folders:
        for path in sorted((PROJECT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def syntax_errors(files):
    for path in files:
        try:
            compile(path.read_bytes(), str(path.relative_to(PROJECT)), "exec", dont_inherit=True)
        except SyntaxError as error:
            yield f"{path.relative_to(PROJECT)}:{error.lineno}: syntax error under Python 3.10: {error.msg}"


def library_violations(files):
    outcome = subprocess.run([sys.executable, *VERMIN, *(str(p.relative_to(PROJECT)) for p in files)],
                             cwd=PROJECT, capture_output=True, text=True)
    if outcome.returncode not in (0, 1):
        return [f"vermin failed ({outcome.returncode}): {outcome.stderr.strip()}"]
    found = [line for line in outcome.stdout.splitlines() if line.strip()]
    if outcome.returncode == 1 and not found:
        found = ["vermin: target not met (no detail printed)"]
    return found


def import_failures():
    sys.path.insert(0, str(PROJECT))
    for path in python_files(["autograder"]):
        parts = path.relative_to(PROJECT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001  every failure is a finding
            yield f"import {name} under Python 3.10: {type(error).__name__}: {error}"


def main(folders):
    if sys.version_info[:2] != TARGET:
        print(f"py310_features: run me with Python 3.10, not {sys.version.split()[0]}", file=sys.stderr)
        return 2
    files = list(python_files(folders))
    if not files:
        print(f"py310_features: no Python files under {folders}", file=sys.stderr)
        return 2
    findings = [*syntax_errors(files), *library_violations(files)]
    if "autograder" in folders:
        findings += import_failures()
    for finding in findings:
        print(finding)
    verdict = "FAILED" if findings else "clean"
    print(f"py310_features: {len(files)} files under {', '.join(folders)}: {verdict} for Python 3.10")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["solution", "assignment", "autograder"]))
