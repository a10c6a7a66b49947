"""The convolutional VAE's training gate (problem `conv`): config.CONV_ITERATIONS iterations of the
provided loop (train.py, as it is: the ConvVAE has negative_elbo_bound) with the student's conv_vae.py,
the returned encoder/decoder tensors scored here with the grader's float64 bound on the hidden set
(evaluation.conv_bound: the closed-form KL from the encoder's means and log-variances, plus -log p(x|z)
averaged over draws z ~ q(z|x): the expectation of the student's one-sample estimate, with less
variance) against the band calibration_conv.json derives from 20 reference runs. Nothing the child
computed is used: the run, the audit and the scoring are checks/training.py's."""
from .. import config
from .base import CheckCase, check
from .training import Gate, judge

FAMILY = "conv/training"
CONV_GATE = Gate(FAMILY, "conv", published=config.CONV_PUBLISHED_BAND, leaderboard_prefix="ConvVAE ",
                 bound="the reference convolutional VAE's bound (float64, closed-form KL)",
                 unit_checks="conv/log_normal_pdf, conv/ConvDecoder and conv/negative_elbo_bound",
                 iterations=config.CONV_ITERATIONS,
                 low_hint=" A NELBO below the band usually means a term is missing or scaled down (e.g. the 1/2 "
                          "in log_normal_pdf, a mean instead of a sum over pixels or over the code's dimensions).")


class ConvTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """conv/training: 6,000 iterations with your files reach the reference NELBO (scored by the grader's bound, closed-form KL, on hidden test images)"""
        judge(self, CONV_GATE, set_score)
