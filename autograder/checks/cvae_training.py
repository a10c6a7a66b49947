"""The conditional VAE's training gate (problem `cvae`): the CS236 VAE's gate (checks/training.py)
with the CVAE, its loop train_cvae.py and the training labels: 20,000 iterations in the sandbox,
the returned encoder/decoder tensors scored here with the oracle's conditional bound on the hidden
set, each image with its label, against the band of autograder/calibration_cvae.json.

Then what the trained model generates (autograder/sample_quality.py): the grader's reference CVAE
with the accepted tensors draws 100 samples conditioned on each digit, and the grader's digit
classifier (autograder/digits.py) reads them; every digit must be recognized at least as often as the
calibrated floor (checks/samples.py). The model the gate scored is used: nothing is trained again."""
from .. import config
from .base import CheckCase, check
from .samples import judge_conditional
from .beta_training import BETA_GATE
from .conv_training import CONV_GATE
from .mmd_training import MMD_GATE
from .training import VAE_GATE, Gate, judge

FAMILY = "cvae/training"
CVAE_GATE = Gate(FAMILY, "cvae", published=config.CVAE_PUBLISHED_BAND, leaderboard_prefix="CVAE ",
                 bound="the reference conditional bound", unit_checks="cvae/negative_elbo_bound")
GATES = (VAE_GATE, CVAE_GATE, BETA_GATE, MMD_GATE, CONV_GATE)          # every problem's gate, in the problems' order


class CvaeTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """cvae/training: 20,000 iterations with your files reach the reference NELBO (scored by the reference conditional bound on hidden test images and their labels)"""
        judge(self, CVAE_GATE, set_score)

    @check(FAMILY, "trained_samples")
    def test_trained_samples(self):
        """cvae/training: samples of the trained model conditioned on digit d are classified as d (100 per digit, read by the grader's digit classifier)"""
        judge_conditional(self, CVAE_GATE)
