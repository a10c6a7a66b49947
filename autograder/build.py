"""The Gradescope zip: setup.sh and run_autograder at its root, the grader, the reference,
and verified MNIST, so that grading needs no network. Refuses to build unless the reference
solution gets full marks and the untouched skeleton gets zero (unless --no-verify)."""
import tempfile
import zipfile
from pathlib import Path

from . import paths
from .reference import data

VERIFY_ITERATIONS = 300
ROOT_FILES = ("setup.sh", "run_autograder", "requirements.txt")


def _members():
    """(path on disk, name in the zip) for everything the container needs."""
    yield from ((paths.PROJECT / name, name) for name in ROOT_FILES)
    for folder in ("autograder", "solution"):
        for path in sorted((paths.PROJECT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json"):
                yield path, str(path.relative_to(paths.PROJECT))
    mnist = data.ensure_mnist(fetch=False)
    for name in data.MNIST_SHA256:
        yield mnist / name, f"data/mnist/{name}"


def verify(log=print):
    from .grade import grade
    with tempfile.TemporaryDirectory() as scratch:
        for folder, want_full in ((paths.SOLUTION, True), (paths.ASSIGNMENT, False)):
            outcome = grade(folder, Path(scratch) / "results.json", iterations=VERIFY_ITERATIONS, log=lambda m: None)
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


def build_public(out, log=print):
    """The students' bundle: the checks and the provided modules, no solution, no calibration."""
    from .skeleton import render_handout
    out = Path(out)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((paths.PROJECT / "autograder").rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, str(path.relative_to(paths.PROJECT)))
        archive.writestr("autograder/PUBLIC", "students' bundle: no reference solution\n")
        for name, text in render_handout(paths.SOLUTION).items():
            archive.writestr(f"solution/{name}", text)
        archive.write(paths.PROJECT / "requirements.txt", "requirements.txt")
        archive.writestr("README.md", PUBLIC_README)
    log(f"wrote {out} ({out.stat().st_size / 2**10:.0f} KiB)")
    return 0


def build(out, verify_first=True, log=print):
    if verify_first and not verify(log):
        log("build refused: the solution must get full marks and the skeleton zero")
        return 1
    out = Path(out)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in _members():
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in ("setup.sh", "run_autograder"):
                info.external_attr = (0o755 | 0o100000) << 16
            archive.writestr(info, path.read_bytes())
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0
