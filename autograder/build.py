"""The Gradescope zip: setup.sh and run_autograder at its root, the grader, the reference,
and verified MNIST, so that grading needs no network. Refuses to build unless the reference
solution gets full marks and the untouched skeleton gets zero (unless --no-verify).

With chosen problems (autograder/problems.py), the zip and the students' bundle hold only their
files of solution/ and their calibrations, and record them in autograder/PROBLEMS (not written
for the CS236 VAE alone, whose zip is as it always was)."""
import tempfile
import zipfile
from pathlib import Path

from . import paths
from .problems import MARKER, PROBLEMS, ProblemSet
from .reference import data

VERIFY_ITERATIONS = 300
ROOT_FILES = ("setup.sh", "run_autograder", "requirements.txt")


def _members(problem_set=None):
    """(path on disk, name in the zip) for everything the container needs."""
    problem_set = problem_set or ProblemSet()
    solution = {*problem_set.handout_sources, *(name for problem in problem_set.problems for name in problem.tests)}
    others = {problem.calibration for problem in PROBLEMS.values()} - {p.calibration for p in problem_set.problems}
    yield from ((paths.PROJECT / name, name) for name in ROOT_FILES)
    for folder in ("autograder", "solution"):
        for path in sorted((paths.PROJECT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json"):
                if folder == "solution" and path.name not in solution:
                    continue            # another problem's files
                if folder == "autograder" and path.parent == paths.CALIBRATION.parent and path.name in others:
                    continue            # another problem's calibration
                yield path, str(path.relative_to(paths.PROJECT))
    for name in problem_set.assets:
        yield paths.CALIBRATION.parent / name, f"autograder/{name}"
    mnist = data.ensure_mnist(fetch=False)
    for name in data.MNIST_SHA256:
        yield mnist / name, f"data/mnist/{name}"


def verify(log=print, problem_set=None):
    """Grade the reference (must be full) and the untouched handout (must be 0) on the chosen problems."""
    from .grade import grade
    from .skeleton import write_handout
    problem_set = problem_set or ProblemSet()
    with tempfile.TemporaryDirectory() as scratch:
        handout = paths.ASSIGNMENT
        if not problem_set.is_default:
            handout = Path(scratch) / "assignment"
            write_handout(paths.SOLUTION, handout, problem_set)
        for folder, want_full in ((paths.SOLUTION, True), (handout, False)):
            outcome = grade(folder, Path(scratch) / "results.json", iterations=VERIFY_ITERATIONS, log=lambda m: None,
                            problems=problem_set)
            total = sum(t["max_score"] for t in outcome["tests"])
            ok = outcome["score"] == total if want_full else outcome["score"] == 0
            log(f"verify: {folder.name} scored {outcome['score']} / {total}" + ("" if ok else "  <-- wrong"))
            if not ok:
                return False
    return True


PUBLIC_README = """# Public checks for the VAE homework

The same checks the autograder runs, for your own utils.py and vae.py, on your machine.
You need the homework's packages plus hypothesis and gradescope-utils:

    pip install -r requirements.txt          # torch: keep the one you already use
    python -m autograder grade PATH/TO/YOUR/FOLDER --results results.json --iterations 2000

Each check prints its points and, when it fails, what was expected, what was observed and
the likely mistake. --iterations 2000 keeps the training check short (the pass band of the
real grader applies to the full 20,000 iterations: run `python run_vae.py` for those).
"""


def _marker(problem_set):
    """autograder/PROBLEMS's text, or None for the CS236 VAE alone (the grader's default)."""
    return None if problem_set.is_default else problem_set.label + "\n"


def build_public(out, log=print, problem_set=None):
    """The students' bundle: the checks and the provided modules (and the chosen problems' assets), no
    solution, no calibration."""
    from .skeleton import render_handout
    from .submission_files import listed
    problem_set = problem_set or ProblemSet()
    out = Path(out)
    readme = PUBLIC_README
    if not problem_set.is_default:
        readme = readme.replace("for your own utils.py and vae.py", f"for your own {listed(problem_set.student_files)}")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((paths.PROJECT / "autograder").rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, str(path.relative_to(paths.PROJECT)))
        for name in problem_set.assets:           # e.g. the digit classifier's weights
            archive.write(paths.CALIBRATION.parent / name, f"autograder/{name}")
        archive.writestr("autograder/PUBLIC", "students' bundle: no reference solution\n")
        if _marker(problem_set):
            archive.writestr(f"autograder/{MARKER.name}", _marker(problem_set))
        for name, text in render_handout(paths.SOLUTION, problem_set).items():
            archive.writestr(f"solution/{name}", text)
        archive.write(paths.PROJECT / "requirements.txt", "requirements.txt")
        archive.writestr("README.md", readme)
    log(f"wrote {out} ({out.stat().st_size / 2**10:.0f} KiB)")
    return 0


def build(out, verify_first=True, log=print, problem_set=None):
    problem_set = problem_set or ProblemSet()
    if verify_first and not verify(log, problem_set):
        log("build refused: the solution must get full marks and the skeleton zero")
        return 1
    out = Path(out)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if _marker(problem_set):
            archive.writestr(f"autograder/{MARKER.name}", _marker(problem_set))
        for path, name in _members(problem_set):
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in ("setup.sh", "run_autograder"):
                info.external_attr = (0o755 | 0o100000) << 16
            archive.writestr(info, path.read_bytes())
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0
