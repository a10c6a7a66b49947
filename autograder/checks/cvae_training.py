"""The conditional VAE's training gate (problem `cvae`): the CS236 VAE's gate (checks/training.py)
with the CVAE, its loop train_cvae.py and the training labels: 20,000 iterations in the sandbox,
the returned encoder/decoder tensors scored here with the oracle's conditional bound on the hidden
set, each image with its label, against the band of autograder/calibration_cvae.json.

Then what the trained model generates (autograder/sample_quality.py): the grader's reference CVAE
with the accepted tensors draws 100 samples conditioned on each digit, and the grader's digit
classifier (autograder/digits.py) reads them; every digit must be recognized at least as often as the
calibrated floor. The model the gate scored is used: nothing is trained again."""
from .. import config, sample_quality
from .base import CheckCase, check
from .training import VAE_GATE, Gate, judge, trained_result

FAMILY = "cvae/training"
CVAE_GATE = Gate(FAMILY, "cvae", published=config.CVAE_PUBLISHED_BAND, leaderboard_prefix="CVAE ",
                 bound="the reference conditional bound", unit_checks="cvae/negative_elbo_bound")
GATES = (VAE_GATE, CVAE_GATE)


def judge_samples(case):
    """Check 6.2, run by `case`: the trained CVAE's samples of each digit are classified as that digit."""
    try:
        result = trained_result(case.submission, CVAE_GATE)
    except AssertionError as error:
        case.fail(f"No samples can be read: the training run did not count (see {config.CVAE_CHECKS[FAMILY]['trained_nelbo'].number}). "
                  f"{error}")
    report = sample_quality.cvae_report(result.state)
    limits, source = sample_quality.floors("cvae")
    shares = ", ".join(f"{d}: {share:.0%}" for d, share in enumerate(report["fractions"]))
    summary = (f"After {result.iterations} iterations, {sample_quality.CVAE_SAMPLES_PER_DIGIT} samples of your trained "
               f"model conditioned on each digit d, read by the grader's digit classifier, are classified as d: "
               f"{shares} (lowest {report['min_fraction']:.0%}, digit {report['worst_digit']}).")
    if result.iterations < config.DEFAULT_ITERATIONS:
        print(summary + " (shortened run: the floor applies to full runs only)")
        return
    problems = sample_quality.judge_cvae_samples(report, limits)
    if problems:
        case.fail(f"{summary} {' '.join(problems)} The label must reach the decoder in training with each image's "
                  f"own label (check 5.5), or the decoder learns to ignore it; a NELBO far from the band (check "
                  f"{config.CVAE_CHECKS[FAMILY]['trained_nelbo'].number}) also gives samples that are not digits.")
    print(summary + f" Every digit clears the {source} floor of {limits['min_fraction']:.1%}.")


class CvaeTrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """cvae/training: 20,000 iterations with your files reach the reference NELBO (scored by the reference conditional bound on hidden test images and their labels)"""
        judge(self, CVAE_GATE, set_score)

    @check(FAMILY, "trained_samples")
    def test_trained_samples(self):
        """cvae/training: samples of the trained model conditioned on digit d are classified as d (100 per digit, read by the grader's digit classifier)"""
        judge_samples(self)
