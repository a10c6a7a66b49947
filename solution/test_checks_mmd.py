"""Every grading check of the MMD-VAE (problem `mmd`), run against this reference solution.

The very TestCases Gradescope runs on an MMD-VAE submission, bound here to this folder graded on the
MMD-VAE alone (utils.py is then the grader's); the training check trains config.MMD_ITERATIONS
iterations (or $VAE_GRADE_ITERATIONS, where no band applies) and must land inside the calibrated band
(autograder/calibration_mmd.json)."""
import os
from pathlib import Path

from autograder import checks, config
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent,
                        iterations=int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS),
                        device=os.environ.get("VAE_GRADE_DEVICE") or "cpu",
                        python=os.environ.get("VAE_GRADE_PYTHON") or None, problems=("mmd",))

# pytest collects these: the check classes bound to SUBMISSION.
MmdChecks, MmdLossChecks, MmdTrainingChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
