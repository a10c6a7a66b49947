"""The grader's digit classifier (autograder/digits.py), the sample-quality measures and floors
(autograder/sample_quality.py, sample_calibration.py) and check 6.2 of cvae/training, in seconds:
no full training here (the classifier's own training is checked for determinism on 100 steps; a
trained CVAE is the decoder of reference run seed 1000, stored in float16 in tests/sample_quality/)."""
import json
import shutil
import unittest

import pytest
import torch

from autograder import __main__ as cli
from autograder import config, digit_training, digits, evaluation, reference, sample_calibration, sample_quality
from autograder.checks import beta_training, training
from autograder.checks import cvae_training
from autograder.checks.cvae_training import FAMILY
from autograder.problems import PROBLEMS

TRAINED_CVAE_DECODER = digits.WEIGHTS.parent.parent / "tests" / "sample_quality" / "cvae_seed1000_decoder_fp16.pt"


# ---------------------------------------------------------------- the classifier

def test_the_shipped_weights_are_the_recorded_ones_and_a_changed_file_is_refused(tmp_path):
    assert digits.sha256_of(digits.WEIGHTS) == config.DIGIT_CLASSIFIER_SHA256
    assert digits.WEIGHTS.stat().st_size < 500_000
    model = digits.load()
    assert sum(p.numel() for p in model.parameters()) == 46_730
    tampered = tmp_path / "digit_classifier.pt"
    shutil.copy(digits.WEIGHTS, tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(digits.ClassifierRefused, match="the file was changed"):
        digits.load(tampered)
    with pytest.raises(digits.ClassifierRefused, match="cannot be read"):
        digits.load(tmp_path / "missing.pt")


def test_the_shipped_classifier_reads_the_test_set():
    """At least 98.5% of the 10,000 MNIST test images, grey and binarized (inference only)."""
    torch.set_num_threads(1)
    scores = digit_training.accuracies(digits.shipped())
    assert scores["grey"] >= 0.985 and scores["binarized"] >= 0.985, scores
    probabilities = digits.probabilities(torch.rand(3, 784))
    assert probabilities.shape == (3, 10) and torch.allclose(probabilities.sum(1), torch.ones(3))


def test_training_is_deterministic():
    first = digit_training.train(steps=100, log=lambda m: None).state_dict()
    second = digit_training.train(steps=100, log=lambda m: None).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    third = digit_training.train(steps=100, seed=1, log=lambda m: None).state_dict()
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_the_classifier_command(tmp_path, capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["classifier"])                      # --out is required
    args = parser.parse_args(["classifier", "--out", str(tmp_path / "c.pt"), "--steps", "5", "--seed", "3"])
    assert (args.out, args.steps, args.seed) == (tmp_path / "c.pt", 5, 3)
    assert parser.parse_args(["classifier", "--out", "x.pt"]).steps is None
    with pytest.raises(SystemExit):
        cli.main(["classifier", "--out", str(tmp_path / "c.pt"), "--steps", "0"])
    assert cli.main(["classifier", "--out", str(tmp_path / "c.pt"), "--steps", "20"]) == 1   # too short to grade
    said = capsys.readouterr().out
    assert "test accuracy: grey" in said and "binarized" in said and "not fit to grade" in said
    assert digits.load(tmp_path / "c.pt", expected=digits.sha256_of(tmp_path / "c.pt")) is not None


# ---------------------------------------------------------------- the measures and their floors

def _trained_cvae_state():
    return {key: value.float() for key, value in torch.load(TRAINED_CVAE_DECODER, weights_only=True).items()}


def _label_columns(state, change):
    """The state with the label's columns of the decoder's first layer changed by `change`."""
    state = dict(state)
    weight = state["dec.net.0.weight"].clone()
    weight[:, config.Z_DIM:] = change(weight[:, config.Z_DIM:])
    state["dec.net.0.weight"] = weight
    return state


def test_the_calibrated_floors_are_stored_and_published():
    for problem, published in (("vae", config.VAE_SAMPLE_FLOORS), ("cvae", config.CVAE_SAMPLE_FLOORS)):
        limits, source = sample_quality.floors(problem)
        assert source == "calibrated" and limits == published
        stored = json.loads(PROBLEMS[problem].calibration_path.read_text())
        section = stored[sample_quality.KEY]
        assert section["classifier_sha256"] == config.DIGIT_CLASSIFIER_SHA256 and len(section["runs"]) == 20
        assert "bands" in stored and "runs" in stored and len(stored["runs"]) == 20      # the NELBO calibration
    vae = json.loads(PROBLEMS["vae"].calibration_path.read_text())[sample_quality.KEY]
    assert vae["digits_present"]["min"] >= sample_calibration.REQUIRED_DIGITS_PRESENT
    assert all(run["mean_top_probability"] >= vae["floors"]["mean_top_probability"] for run in vae["runs"])
    cvae = json.loads(PROBLEMS["cvae"].calibration_path.read_text())[sample_quality.KEY]
    assert all(run["min_fraction"] >= cvae["floors"]["min_fraction"] for run in cvae["runs"])
    assert 0.8 < cvae["floors"]["min_fraction"] < 0.95


def test_floors_of_another_classifier_give_way_to_the_published_ones(tmp_path, monkeypatch):
    path = tmp_path / "calibration_cvae.json"
    path.write_text(json.dumps({sample_quality.KEY: {"problem": "cvae", "classifier_sha256": "0" * 64,
                                                     "floors": {"min_fraction": 0.5}}}))
    assert sample_quality.floors("cvae", path) == (config.CVAE_SAMPLE_FLOORS, "published")
    monkeypatch.setattr(config, "DIGIT_CLASSIFIER_SHA256", "0" * 64)
    assert sample_quality.floors("cvae", path) == ({"min_fraction": 0.5}, "calibrated")


def test_the_floors_use_the_nelbo_bands_arithmetic(tmp_path):
    runs = [{"model": f"seed{i}.pt", "seed": i, "min_fraction": 0.9 + i / 1000, "fractions": [1.0] * 10,
             "worst_digit": 0} for i in range(20)]
    found = sample_calibration.section(runs, "cvae")
    from autograder import calibrate
    assert found["floors"]["min_fraction"] == pytest.approx(calibrate.band([r["min_fraction"] for r in runs])["low"],
                                                             abs=1e-4)
    assert found["floors"]["min_fraction"] <= calibrate.band([r["min_fraction"] for r in runs])["low"]
    few = [{"model": "a.pt", "seed": 1, "digits_present": 7, "mean_top_probability": 0.9, "fractions": []}] * 2
    with pytest.raises(ValueError, match="only 7 digits"):
        sample_calibration.section(few, "vae")


def test_calibrate_samples_adds_its_key_and_keeps_every_other(tmp_path):
    out = tmp_path / "calibration_cvae.json"
    before = {"problem": "cvae", "bands": {"nelbo": {"low": 1.0}}, "runs": [1, 2]}
    out.write_text(json.dumps(before))
    models = tmp_path / "models"
    models.mkdir()
    state = _trained_cvae_state()
    for seed in (5, 6):
        torch.save(state, models / f"seed{seed}.pt")
    found = sample_calibration.calibrate_samples(models, "cvae", out, log=lambda m: None)
    stored = json.loads(out.read_text())
    assert {k: v for k, v in stored.items() if k != sample_quality.KEY} == before
    assert [run["seed"] for run in found["runs"]] == [5, 6] and found["runs"][0]["min_fraction"] == 0.95


def test_a_trained_cvae_passes_and_a_label_it_does_not_use_fails():
    limits, _ = sample_quality.floors("cvae")
    state = _trained_cvae_state()
    report = sample_quality.cvae_report(state)
    assert report["min_fraction"] >= 0.93 and sample_quality.judge_cvae_samples(report, limits) == []
    permuted = sample_quality.cvae_report(_label_columns(state, lambda w: w[:, list(range(1, 10)) + [0]]))
    assert permuted["min_fraction"] < 0.05
    (said,) = sample_quality.judge_cvae_samples(permuted, limits)
    assert "digits 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in said and "at least 88.4%" in said
    ignored = sample_quality.cvae_report(_label_columns(state, torch.zeros_like))
    assert ignored["min_fraction"] < 0.2 and sample_quality.judge_cvae_samples(ignored, limits)
    assert sample_quality.cvae_report(state) == report                  # the same samples every time


def test_untrained_and_zeroed_models_fall_below_the_floors():
    torch.manual_seed(0)
    vae_limits, _ = sample_quality.floors("vae")
    untrained = evaluation.expected_state("vae")
    report = sample_quality.vae_report(untrained)
    assert len(sample_quality.judge_vae_samples(report, vae_limits)) == 2      # few digits, none clearly
    zeroed = {key: torch.zeros_like(value) if key.startswith("dec.") else value for key, value in untrained.items()}
    report = sample_quality.vae_report(zeroed)
    assert report["digits_present"] == 1 and report["mean_top_probability"] < 0.5
    assert "Only 1 of the 10 digits" in sample_quality.judge_vae_samples(report, vae_limits)[0]
    cvae = sample_quality.cvae_report(evaluation.expected_state("cvae"))
    assert sample_quality.judge_cvae_samples(cvae, sample_quality.floors("cvae")[0])


def test_a_briefly_trained_vae_falls_below_the_floor():
    """300 iterations of the reference loop: digits of every kind, but not clear enough."""
    from autograder.reference import data
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = reference.vae.VAE(z_dim=config.Z_DIM)
    reference.train.train(model, torch.from_numpy(data.load_mnist("train")[0][:20000]), 300, seed=0)
    report = sample_quality.vae_report(model.state_dict())
    assert report["mean_top_probability"] < sample_quality.floors("vae")[0]["mean_top_probability"] - 0.05
    assert sample_quality.judge_vae_samples(report, sample_quality.floors("vae")[0])


# ---------------------------------------------------------------- check 6.2

class _Trained:
    """A submission whose CVAE training run the gate already scored."""

    def __init__(self, state=None, error=None, iterations=config.DEFAULT_ITERATIONS):
        self.iterations = iterations
        self.data_dir = None
        self.running_check = None
        self.outcomes = {FAMILY: training.TrainingOutcome(iterations, hidden=(94.0, 16.6, 77.4), error=error,
                                                          state=state)}


def _check(submission):
    case = type("Bound", (cvae_training.CvaeTrainingChecks,), {"submission": submission})("test_trained_samples")
    result = unittest.TestResult()
    case.run(result)
    return result


def test_check_6_2_passes_a_trained_cvae_and_names_the_digits_of_one_that_ignores_its_label(capsys):
    assert config.CVAE_CHECKS[FAMILY]["trained_samples"].number == "6.2"
    state = _trained_cvae_state()
    submission = _Trained(state)
    assert _check(submission).wasSuccessful()
    assert "Every digit clears the calibrated floor of 88.4%" in capsys.readouterr().out
    board = training.leaderboard(submission, cvae_training.CVAE_GATE)           # its figure beside the NELBO's
    assert [e["name"] for e in board][-1] == "CVAE samples: lowest digit read as itself (%)"
    assert board[-1]["order"] == "desc" and 88.4 <= board[-1]["value"] <= 100
    swapped = _label_columns(state, lambda w: w[:, [0, 1, 2, 3, 4, 5, 6, 8, 7, 9]])      # 7 and 8 exchanged
    result = _check(_Trained(swapped))
    (failure,) = [text for _, text in result.failures]
    assert "digits 7, 8 are classified as that digit too rarely" in failure and "check 5.5" in failure


def test_check_6_2_gives_nothing_when_the_run_did_not_count_and_passes_a_shortened_run(capsys):
    result = _check(_Trained(error="Your cvae.py raised NotImplementedError: not implemented yet."))
    (failure,) = [text for _, text in result.failures]
    assert "the training run did not count" in failure and "not implemented yet" in failure
    untrained = evaluation.expected_state("cvae")
    assert _check(_Trained(untrained, iterations=20)).wasSuccessful()
    assert "shortened run" in capsys.readouterr().out


def _unconditional(state, iterations=config.DEFAULT_ITERATIONS, error=None, submission=None):
    """Check 8.2 of beta/training, bound to a submission whose run the beta gate already scored."""
    submission = submission or _Trained(iterations=iterations)
    submission.outcomes = {beta_training.FAMILY: training.TrainingOutcome(
        iterations, hidden=(99.5, 19.2, 80.3), error=error, state=state)}
    case = type("Bound", (beta_training.BetaTrainingChecks,), {"submission": submission})("test_trained_samples")
    result = unittest.TestResult()
    case.run(result)
    return result


def test_check_8_2_reads_the_beta_vaes_samples_against_the_vaes_floors(capsys):
    assert config.ALL_CHECKS[beta_training.FAMILY]["trained_samples"].number == "8.2"
    assert sample_quality.floors("beta") == sample_quality.floors("vae")      # the same training at beta = 1
    untrained = evaluation.expected_state("vae")
    submission = _Trained(iterations=config.DEFAULT_ITERATIONS)
    (failure,) = [text for _, text in _unconditional(untrained, submission=submission).failures]
    assert "make up at least 3%" in failure and "below the floor 0.863" in failure
    (entry,) = [e for e in training.leaderboard(submission, beta_training.BETA_GATE) if "samples" in e["name"]]
    assert entry["name"] == "BetaVAE samples: mean top-class probability" and entry["value"] < 0.863
    assert _unconditional(untrained, iterations=20).wasSuccessful()
    assert "shortened run: the floors apply to full runs only" in capsys.readouterr().out
    (failure,) = [text for _, text in _unconditional(None, error="Your beta_vae.py raised NameError.").failures]
    assert "the training run did not count" in failure and "NameError" in failure


def test_calibrate_keeps_the_sample_quality_key_when_it_rewrites_a_file(tmp_path):
    from autograder import calibrate
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps({"bands": {}, sample_quality.KEY: {"floors": {"min_fraction": 0.5}}}))
    runs = [{"seed": seed, **{term: 1.0 + seed for term in calibrate.TERMS},
             **{f"subset_{term}": 2.0 + seed for term in calibrate.TERMS}} for seed in (1, 2)]
    calibrate._write(runs, 20000, "cpu", out)
    stored = json.loads(out.read_text())
    assert stored[sample_quality.KEY] == {"floors": {"min_fraction": 0.5}} and len(stored["runs"]) == 2
