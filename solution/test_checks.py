"""Every grading check, run against this reference solution (`pytest solution/`).

These are the very TestCases Gradescope runs on a submission, bound here to this folder as the
submission; the training check trains the full 20,000 iterations (or $VAE_GRADE_ITERATIONS,
where no band applies) and must land inside the calibrated band."""
import os
from pathlib import Path

from autograder import checks, config
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent,
                        iterations=int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS),
                        device=os.environ.get("VAE_GRADE_DEVICE") or "cpu",
                        python=os.environ.get("VAE_GRADE_PYTHON") or None)

# pytest collects these: the check classes bound to SUBMISSION.
SampleGaussianChecks, KlNormalChecks, NegativeElboBoundChecks, TrainingChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
