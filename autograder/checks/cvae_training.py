"""The conditional VAE's training gate (problem `cvae`): the CS236 VAE's gate (checks/training.py)
with the CVAE, its loop train_cvae.py and the training labels: 20,000 iterations in the sandbox,
the returned encoder/decoder tensors scored here with the oracle's conditional bound on the hidden
set, each image with its label, against the band of autograder/calibration_cvae.json."""
from .. import config
from .base import CheckCase, check
from .beta_training import BETA_GATE
from .training import VAE_GATE, Gate, judge

FAMILY = "cvae/training"
CVAE_GATE = Gate(FAMILY, "cvae", published=config.CVAE_PUBLISHED_BAND, leaderboard_prefix="CVAE ",
                 bound="the reference conditional bound", unit_checks="cvae/negative_elbo_bound")
GATES = (VAE_GATE, CVAE_GATE, BETA_GATE)          # every problem's gate, in the problems' order


class CvaeTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """cvae/training: 20,000 iterations with your files reach the reference NELBO (scored by the reference conditional bound on hidden test images and their labels)"""
        judge(self, CVAE_GATE, set_score)
