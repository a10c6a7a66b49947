"""What Gradescope runs per submission (through run_autograder), and the one-time preparation
that setup.sh triggers.

run_autograder -> `python -m autograder container`: lock the grader's files away from the
student user, grade /autograder/submission, and write /autograder/results/results.json
from this trusted process only after every process the submission started is dead. Any
results.json planted by the submission is replaced.
"""
import os
import sys
from pathlib import Path

from . import config, paths, results
from .reference import data


def prepare(log=print):
    """setup.sh's last step: real MNIST, verified; the sandbox user where we are root."""
    data.ensure_mnist(log=log)
    from .privileges import ensure_student_user, is_root
    if is_root():
        ensure_student_user()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")   # unwinds through grade(): sandboxes closed, results written


def run(root, iterations=config.DEFAULT_ITERATIONS, device="auto"):
    import signal
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    root = Path(root)
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = data.ensure_mnist(fetch=False)
        os.environ["VAE_DATA_DIR"] = str(data_dir)
        from . import privileges
        report = privileges.prepare(root, data_dir=str(data_dir), python=sys.executable)
        print(f"[autograder] sandbox preparation: {report}", file=sys.stderr)
        if device == "auto":
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        from .grade import grade
        grade(root / "submission", results_path, iterations, device)
    except BaseException as error:  # the student must always get a valid results.json
        print(f"[autograder] container run failed: {error!r}", file=sys.stderr)
        results.write(results.failure("The autograder failed to run (not your fault): your instructor can see "
                                      "the log."), results_path)
        if not isinstance(error, Exception):
            raise
    return results_path
