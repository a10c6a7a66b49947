"""TRUSTED SIDE. Sample quality: what a trained model generates, read by the grader's digit classifier.

Pure functions of trained weights: the grader builds its own reference model (evaluation.model_from:
its code, its prior N(0, I)) with the encoder/decoder tensors it accepted, draws z from a generator
of its own with a fixed seed, decodes pixel probabilities (sigmoid of the logits) and classifies them
with autograder/digits.py. Nothing here runs student code or reads a figure a child computed.

- The unconditional VAE (`vae_report`): 1,000 samples; the share of each digit, how many digits make
  up at least 3% of them (a model that draws only a few kinds of digit, or blobs that read as one
  digit, has few), and the mean top-class probability (how clearly the samples read as some digit).
  `judge_vae_samples` holds them to the floors: at least 8 digits of 10 at >= 3% (required of every
  reference model; all 20 calibration runs have 10) and the mean top-class probability at least the
  calibrated floor. Ready for a problem whose trained model is an unconditional VAE; not graded in
  the CS236 VAE (problem `vae`), whose grading stays as it was.
- The conditional VAE (`cvae_report`): 100 samples conditioned on each digit d; the share classified
  as d, and its minimum over d. `judge_cvae_samples`: every digit at least the calibrated floor
  (check 6.2 of cvae/training).

The floors live in the problem's calibration file under "sample_quality" (`python -m autograder
calibrate-samples`, autograder/sample_calibration.py: 20 reference runs, the same Student-t prediction
interval as the NELBO band, its lower end); a file without them (the students' public bundle) gives way
to the figures recorded in config (VAE_SAMPLE_FLOORS, CVAE_SAMPLE_FLOORS).
"""
import json

import torch

from . import config, digits, evaluation

VAE_SAMPLES = 1000
CVAE_SAMPLES_PER_DIGIT = 100
SAMPLE_SEED = 2360                  # the z of every sample: one generator, the same for every model
PRESENT_SHARE = 0.03                # a digit "is there" when at least this share of the samples reads as it
KEY = "sample_quality"              # its section in a calibration file


def _z(count, z_dim=config.Z_DIM, seed=SAMPLE_SEED):
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed))


def vae_measures(decode, samples=VAE_SAMPLES, seed=SAMPLE_SEED, z_dim=config.Z_DIM, classifier=None):
    """`decode`: z (N, z_dim) -> logits (N, 784). -> {"fractions": share of each digit (10),
    "digits_present": how many make up >= PRESENT_SHARE, "mean_top_probability": mean over the samples
    of the classifier's largest class probability}."""
    with torch.no_grad():
        pixels = torch.sigmoid(decode(_z(samples, z_dim, seed)).float())
    probabilities = digits.probabilities(pixels, classifier)
    counts = torch.bincount(probabilities.argmax(1), minlength=digits.CLASSES)
    fractions = (counts.double() / samples).tolist()
    return {"fractions": fractions, "digits_present": sum(share >= PRESENT_SHARE for share in fractions),
            "mean_top_probability": float(probabilities.max(1).values.double().mean())}


def cvae_measures(decode, per_digit=CVAE_SAMPLES_PER_DIGIT, seed=SAMPLE_SEED, z_dim=config.Z_DIM, classifier=None):
    """`decode`: (z (N, z_dim), y one-hot (N, 10)) -> logits (N, 784). -> {"fractions": for each digit d,
    the share of its `per_digit` samples classified as d, "min_fraction": their minimum, "worst_digit"}."""
    labels = torch.arange(digits.CLASSES).repeat_interleave(per_digit)
    y = torch.nn.functional.one_hot(labels, digits.CLASSES).float()
    with torch.no_grad():
        pixels = torch.sigmoid(decode(_z(len(labels), z_dim, seed), y).float())
    predicted = digits.probabilities(pixels, classifier).argmax(1)
    fractions = [float((predicted[labels == d] == d).double().mean()) for d in range(digits.CLASSES)]
    worst = min(range(digits.CLASSES), key=lambda d: fractions[d])
    return {"fractions": fractions, "min_fraction": fractions[worst], "worst_digit": worst}


def _trained(state):
    """Only the encoder/decoder tensors of a state dict (a calibration run's also holds the prior)."""
    return {key: value for key, value in state.items() if key.startswith(evaluation.TRAINED_PREFIXES)}


def vae_report(state, classifier=None, problem="vae"):
    """vae_measures of the problem's reference model (reference.vae.VAE, or the BetaVAE where a zip holds
    no vae.py; the grader's prior) with `state`'s encoder and decoder tensors ({name: tensor}, as
    evaluation.validated_state gives them)."""
    model = evaluation.model_from(_trained(state), problem).eval()
    return vae_measures(model.dec, classifier=classifier)


def cvae_report(state, classifier=None):
    """cvae_measures of the reference CVAE (reference.cvae.CVAE) with `state`'s encoder/decoder tensors."""
    model = evaluation.model_from(_trained(state), "cvae").eval()
    return cvae_measures(model.dec, classifier=classifier)


# ---------------------------------------------------------------- floors and judgements

def floors(problem, path=None):
    """-> (floors dict, "calibrated" | "published"): the problem's calibration file's when it was measured
    with the shipped classifier, else config's figures (VAE_SAMPLE_FLOORS for "vae", CVAE_SAMPLE_FLOORS)."""
    from .problems import PROBLEMS
    path = path or PROBLEMS[problem].calibration_path
    runs_of = PROBLEMS[problem].calibration_problem     # beta: the VAE's runs (the same training)
    try:
        section = json.loads(path.read_text())[KEY]
        if section.get("classifier_sha256") == config.DIGIT_CLASSIFIER_SHA256 and section.get("problem") == runs_of:
            return dict(section["floors"]), "calibrated"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return dict(config.CVAE_SAMPLE_FLOORS if runs_of == "cvae" else config.VAE_SAMPLE_FLOORS), "published"


def judge_vae_samples(report, limits):
    """-> the sentences saying where `report` (vae_measures) falls short of `limits` (floors("vae")[0]:
    "digits_present", "mean_top_probability"); [] when it passes."""
    problems = []
    if report["digits_present"] < limits["digits_present"]:
        shown = ", ".join(f"{d}: {share:.1%}" for d, share in enumerate(report["fractions"]))
        problems.append(f"Only {report['digits_present']} of the 10 digits make up at least {PRESENT_SHARE:.0%} of "
                        f"{VAE_SAMPLES:,} samples (at least {limits['digits_present']} must; shares {shown}).")
    if report["mean_top_probability"] < limits["mean_top_probability"]:
        problems.append(f"The samples read as digits with a mean top-class probability of "
                        f"{report['mean_top_probability']:.3f}, below the floor {limits['mean_top_probability']:.3f} "
                        "that the reference's runs clear: they are blurry or not digit-like.")
    return problems


def short_digits(report, limits):
    """-> [(digit, share)] of the digits whose samples (cvae_measures) are classified as that digit less
    often than limits["min_fraction"]."""
    return [(d, share) for d, share in enumerate(report["fractions"]) if share < limits["min_fraction"]]


def judge_cvae_samples(report, limits):
    """-> the sentences saying which digits fall short ([] when every digit clears the floor)."""
    short = short_digits(report, limits)
    if not short:
        return []
    shown = ", ".join(f"{d}: {share:.0%}" for d, share in short)
    return [f"Samples conditioned on {'digit' if len(short) == 1 else 'digits'} "
            f"{', '.join(str(d) for d, _ in short)} are classified as that digit too rarely ({shown} of "
            f"{CVAE_SAMPLES_PER_DIGIT} each; at least {limits['min_fraction']:.1%} must be)."]
