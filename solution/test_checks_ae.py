"""Every grading check of the linear autoencoder (problem `ae`), run against this reference solution.

The very TestCases Gradescope runs on an `ae` submission, bound here to this folder graded on the
autoencoder alone; the gate trains the loop's full budget at every k (or $VAE_GRADE_ITERATIONS below
20,000, where no bound applies) and must land within the calibrated bounds of calibration_ae.json."""
import os
from pathlib import Path

from autograder import checks, config
from autograder.checks.submission import Submission

SUBMISSION = Submission(Path(__file__).resolve().parent,
                        iterations=int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS),
                        device=os.environ.get("VAE_GRADE_DEVICE") or "cpu",
                        python=os.environ.get("VAE_GRADE_PYTHON") or None, problems=("ae",))

# pytest collects these: the check classes bound to SUBMISSION.
LinearAutoencoderChecks, ReconstructionLossChecks, AeTrainingChecks = checks.bind(SUBMISSION)


def teardown_module():
    """Close the last sandbox: no submission process may outlive this module."""
    SUBMISSION.close()
