"""Every grading check, run against this reference solution (`pytest solution/`).

These are the very TestCases Gradescope runs on a submission; here the submission is this
folder, and the training check trains the full 20,000 iterations and must land inside the
calibrated band."""
import os

os.environ.setdefault("VAE_GRADE_SUBMISSION", os.path.dirname(os.path.abspath(__file__)))

from autograder.checks import (  # noqa: E402,F401  (pytest collects the imported TestCases)
    KlNormalChecks,
    NegativeElboBoundChecks,
    SampleGaussianChecks,
    TrainingChecks,
)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    from autograder.checks import submission
    submission.current().close()
