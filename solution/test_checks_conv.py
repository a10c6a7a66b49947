"""Every grading check of the convolutional VAE (problem `conv`), run against this reference solution.

The very TestCases Gradescope runs on a convolutional VAE submission, bound here to this folder graded on the
convolutional VAE alone (utils.py is then the grader's); the training check trains config.CONV_ITERATIONS
iterations (or $VAE_GRADE_ITERATIONS, where no band applies) and must land inside the calibrated band
(autograder/calibration_conv.json)."""
import os
from pathlib import Path

from autograder import checks, config
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent,
                        iterations=int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS),
                        device=os.environ.get("VAE_GRADE_DEVICE") or "cpu",
                        python=os.environ.get("VAE_GRADE_PYTHON") or None, problems=("conv",))

# pytest collects these: the check classes bound to SUBMISSION.
LogNormalPdfChecks, ConvDecoderChecks, ConvElboChecks, ConvTrainingChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
