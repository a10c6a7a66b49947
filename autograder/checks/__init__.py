"""The checks, one module per student function. Each is a unittest.TestCase so that the
same code runs under pytest (instructors) and gradescope-utils' JSONTestRunner (Gradescope);
`bind(submission)` gives the classes that run against one submission: those of the problems it
is graded on (autograder/problems.py; ALL: the CS236 VAE's)."""
from .elbo import NegativeElboBoundChecks
from .kl import KlNormalChecks
from .sampling import SampleGaussianChecks
from .training import TrainingChecks

ALL = (SampleGaussianChecks, KlNormalChecks, NegativeElboBoundChecks, TrainingChecks)
__all__ = ["ALL", "bind", "SampleGaussianChecks", "KlNormalChecks", "NegativeElboBoundChecks", "TrainingChecks"]


def bind(submission):
    """-> the check classes of the submission's problems, in order, as subclasses that run against `submission`."""
    classes = submission.problem_set.classes() if getattr(submission, "problem_set", None) is not None else ALL
    return tuple(type(case.__name__, (case,), {"submission": submission, "__module__": case.__module__,
                                               "__qualname__": case.__qualname__})
                 for case in classes)
