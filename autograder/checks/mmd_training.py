"""The MMD-VAE's training gate (problem `mmd`): config.MMD_ITERATIONS iterations of the provided loop
(train.py, through the worker's own LossAsBound adaptor) with the student's mmd_vae.py, the returned
encoder/decoder scored here with the grader's float64 objective on the hidden set
(evaluation.mmd_loss: rec at the encoder's means, the biased MMD of all the codes against as many
prior draws of a fixed seed, loss = rec + LAMBDA * mmd) against the band calibration_mmd.json derives
from 20 reference runs (its "nelbo" band is the loss's, "kl" the MMD's). Nothing the child computed is
used: the run, the audit and the scoring are checks/training.py's."""
from .. import config
from .base import CheckCase, check
from .training import Gate, judge

FAMILY = "mmd/training"
MMD_GATE = Gate(FAMILY, "mmd", published=config.MMD_PUBLISHED_BAND, leaderboard_prefix="MMDVAE ",
                bound="the reference MMD-VAE objective (float64)", unit_checks="mmd/mmd and mmd/loss",
                iterations=config.MMD_ITERATIONS, terms=("Loss", "MMD", "Rec"),
                low_hint=" A loss below the band usually means a term is scaled down (e.g. the MMD's weight, a "
                         "mean instead of a sum over pixels in rec).")


class MmdTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """mmd/training: 5,000 iterations with your files reach the reference MMD-VAE loss (rec + 1000 * mmd, scored by the grader on hidden test images)"""
        judge(self, MMD_GATE, set_score)
