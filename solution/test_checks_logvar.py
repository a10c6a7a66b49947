"""Every grading check of the log-variance VAE (problem `logvar`), run against this reference solution.

The very TestCases Gradescope runs on a logvar submission, bound here to this folder graded on the
log-variance VAE alone. There is no training check: the problem grades its two functions only."""
import os
from pathlib import Path

from autograder import checks
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent, python=os.environ.get("VAE_GRADE_PYTHON") or None,
                        problems=("logvar",))

# pytest collects these: the check classes bound to SUBMISSION.
SampleGaussianLogvarChecks, KlNormalLogvarChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
