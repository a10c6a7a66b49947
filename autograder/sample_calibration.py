"""The sample-quality floors (autograder/sample_quality.py) from saved reference models:
`python -m autograder calibrate-samples --models DIR --problem vae|cvae`.

Each DIR/*.pt (a reference state dict trained for 20,000 iterations, loaded with weights_only=True;
the seed read from its name) is measured as the grader measures a submission. The floors use the
NELBO band's arithmetic (calibrate.band: the two-sided Student-t prediction interval of N runs with
P(a correct run falls outside) = calibrate.FAIL_PROBABILITY = 1e-3), its lower end: a correct run falls
below a floor with probability 5e-4. The count of digits present is not calibrated: at least 8 of 10
is the required figure, and every reference run must meet it (else the command refuses).

Only the calibration file's "sample_quality" key is written; the NELBO bands and every other key stay
as they are (`calibrate` keeps this key when it rewrites the file).
"""
import json
import math
from pathlib import Path

import torch

from . import calibrate, config, sample_quality
from .sample_quality import KEY

REQUIRED_DIGITS_PRESENT = 8


def _floor4(value):
    """Rounded down to 4 decimals (a floor is never raised by its rounding)."""
    return math.floor(value * 1e4) / 1e4


def _band(values):
    return calibrate.band(values, fail_probability=calibrate.FAIL_PROBABILITY)


def measure(folder, problem, log=print):
    """-> [run] for every folder/*.pt: {"model", "seed", measures...}."""
    files = sorted(Path(folder).glob("*.pt"))
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} .pt files; a floor needs at least 2")
    report = sample_quality.cvae_report if problem == "cvae" else sample_quality.vae_report
    runs = []
    for index, path in enumerate(files):
        state = torch.load(path, map_location="cpu", weights_only=True)
        run = {"model": path.name, "seed": calibrate._seed_of(path, index), **report(state)}
        runs.append(run)
        if problem == "cvae":
            log(f"{path.name}: min share {run['min_fraction']:.2f} (digit {run['worst_digit']}), "
                + " ".join(f"{share:.2f}" for share in run["fractions"]))
        else:
            log(f"{path.name}: {run['digits_present']} digits >= {sample_quality.PRESENT_SHARE:.0%}, mean top-class "
                f"probability {run['mean_top_probability']:.4f}")
    return runs


def section(runs, problem):
    """The calibration file's "sample_quality" section for these runs."""
    common = {"problem": problem, "classifier_sha256": config.DIGIT_CLASSIFIER_SHA256,
              "sample_seed": sample_quality.SAMPLE_SEED, "fail_probability": calibrate.FAIL_PROBABILITY,
              "models": [run["model"] for run in runs]}
    if problem == "cvae":
        band = _band([run["min_fraction"] for run in runs])
        return {**common, "samples_per_digit": sample_quality.CVAE_SAMPLES_PER_DIGIT, "runs": runs,
                "bands": {"min_fraction": band},
                "floors": {"min_fraction": _floor4(band["low"])}}
    fewest = min(run["digits_present"] for run in runs)
    if fewest < REQUIRED_DIGITS_PRESENT:
        raise ValueError(f"a reference run has only {fewest} digits at >= {sample_quality.PRESENT_SHARE:.0%} of its "
                         f"samples: the required {REQUIRED_DIGITS_PRESENT} would fail a correct submission")
    band = _band([run["mean_top_probability"] for run in runs])
    return {**common, "samples": sample_quality.VAE_SAMPLES, "present_share": sample_quality.PRESENT_SHARE,
            "runs": runs, "bands": {"mean_top_probability": band},
            "digits_present": {"min": fewest, "max": max(run["digits_present"] for run in runs)},
            "floors": {"digits_present": REQUIRED_DIGITS_PRESENT, "mean_top_probability": _floor4(band["low"])}}


def calibrate_samples(folder, problem, out, log=print):
    """Measure the models, write the section into `out` (every other key kept) -> the section."""
    runs = measure(folder, problem, log)
    found = section(runs, problem)
    out = Path(out)
    stored = json.loads(out.read_text()) if out.exists() else {}
    stored[KEY] = found
    out.write_text(json.dumps(stored, indent=1) + "\n")
    log(json.dumps({"bands": found["bands"], "floors": found["floors"]}, indent=1))
    return found
