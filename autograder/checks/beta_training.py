"""The beta-VAE's training gate (problem `beta`): the CS236 VAE's gate (checks/training.py) with the
student's BetaVAE, trained at beta = 1 by the provided loop of train.py (the worker hands it the model
through a KL-weight adaptor bound before student code runs, as run_beta_vae.py hands it
beta_vae.KLWeighted): 20,000 iterations in the sandbox, the returned encoder/decoder tensors scored
here with the oracle's (unweighted) bound on the hidden set. At beta = 1 the networks, the loop and
its seeds are the VAE's, so the VAE's calibrated band applies (problems.BETA.calibrated_as).

Then what the trained model generates (the fully connected variant's "samples clearly capture most of
the 10 digit classes"): 8.2 reads 1,000 samples of the model the gate scored with the grader's digit
classifier (checks/samples.py, autograder/sample_quality.py) against the VAE's calibrated floors, which
apply for the same reason as its band. Nothing is trained again."""
from .. import config
from .base import CheckCase, check
from .samples import judge_unconditional
from .training import Gate, judge

FAMILY = "beta/training"
BETA_GATE = Gate(FAMILY, "beta", published=config.PUBLISHED_BAND, leaderboard_prefix="BetaVAE ",
                 unit_checks="beta/negative_elbo_bound")


class BetaTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """beta/training: 20,000 iterations at beta = 1 with your files reach the reference NELBO (scored by the reference bound on hidden test images)"""
        judge(self, BETA_GATE, set_score)

    @check(FAMILY, "trained_samples")
    def test_trained_samples(self):
        """beta/training: 1,000 samples of the trained model cover the digits and read clearly (the grader's digit classifier)"""
        judge_unconditional(self, BETA_GATE)
