"""What Gradescope runs per submission (through run_autograder), and the one-time preparation
that setup.sh triggers.

run_autograder -> `python -m autograder container`: lock the grader's files away from the
student user, grade /autograder/submission, and write /autograder/results/results.json
from this trusted process only after every process the submission started is dead. Any
results.json planted by the submission is replaced.
"""
import os
import signal
import sys
from pathlib import Path

from . import config, results
from .stopper import Stopper
from .reference import data


def prepare(log=print):
    """setup.sh's last step: real MNIST, verified; the sandbox user where we are root."""
    data.ensure_mnist(log=log)
    from .privileges import ensure_student_user, is_root
    if is_root():
        ensure_student_user()


def run(root, iterations=config.DEFAULT_ITERATIONS, device="auto"):
    # Gradescope's timeout sends SIGTERM: before grading it is remembered (nothing is graded),
    # during grading it stops the sandboxes and the results so far are written.
    stopper = Stopper()
    signal.signal(signal.SIGTERM, stopper)
    root = Path(root)
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = data.ensure_mnist(fetch=False)
        os.environ["VAE_DATA_DIR"] = str(data_dir)
        from . import privileges
        # MNIST is not listed as readable: the training images reach the training child over the
        # wire, and the test images hold the hidden evaluation set (autograder/evaluation.py).
        report = privileges.prepare(root, python=sys.executable)
        print(f"[autograder] sandbox preparation: {report}", file=sys.stderr)
        if report["root"] and report["problems"] and os.environ.get("VAE_ALLOW_ROOT_SANDBOX") != "1":
            # Fail closed: student code must never run as root next to the grader's files.
            message = ("The autograder is misconfigured: student code would run as root ("
                       + "; ".join(report["problems"]) + "). Nothing was graded; your instructor must fix the setup.")
            results.write(results.failure(message), results_path)
            return results_path
        if device == "auto":
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        from .grade import grade
        if stopper.requested:
            results.write(results.failure("Grading was stopped (time limit) before it began: nothing was graded. "
                                          "Your instructor can see the log."), results_path)
            return results_path
        grade(root / "submission", results_path, iterations, device, stopper=stopper)
    except BaseException as error:  # the student must always get a valid results.json
        print(f"[autograder] container run failed: {error!r}", file=sys.stderr)
        if not results.written_here(results_path):    # valid results already written are never replaced
            results.write(results.failure("The autograder failed to run (not your fault): your instructor can see "
                                          "the log."), results_path)
        if not isinstance(error, Exception):
            raise
    return results_path
