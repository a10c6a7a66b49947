"""Every grading check of the VAE with a KL weight (problem `beta`), run against this reference solution.

The very TestCases Gradescope runs on a beta-VAE submission, bound here to this folder graded on the
beta-VAE alone (utils.py is then the grader's); the training check trains the full 20,000 iterations at
beta = 1 (or $VAE_GRADE_ITERATIONS, where no band applies) and must land inside the calibrated band
(the VAE's: problems.BETA.calibrated_as)."""
import os
from pathlib import Path

from autograder import checks, config
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent,
                        iterations=int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS),
                        device=os.environ.get("VAE_GRADE_DEVICE") or "cpu",
                        python=os.environ.get("VAE_GRADE_PYTHON") or None, problems=("beta",))

# pytest collects these: the check classes bound to SUBMISSION.
BetaElboChecks, BetaTrainingChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
