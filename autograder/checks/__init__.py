"""The checks, one module per student function. Each is a unittest.TestCase so that the
same code runs under pytest (instructors) and gradescope-utils' JSONTestRunner (Gradescope)."""
from .elbo import NegativeElboBoundChecks
from .kl import KlNormalChecks
from .sampling import SampleGaussianChecks
from .training import TrainingChecks

ALL = (SampleGaussianChecks, KlNormalChecks, NegativeElboBoundChecks, TrainingChecks)
__all__ = ["ALL", "SampleGaussianChecks", "KlNormalChecks", "NegativeElboBoundChecks", "TrainingChecks"]
