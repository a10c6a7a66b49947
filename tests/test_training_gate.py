"""The training gate's trusted side: what weights it accepts, the hidden evaluation set, the audit
of a training run, the leaderboard, the pass band's source, and calibration from saved models."""
import json
import unittest

import numpy as np
import pytest
import torch

from autograder import calibrate, checks, config, evaluation, grade, paths
from autograder.checks import training
from autograder.reference import data as ref_data
from autograder.reference import vae as ref_vae


def _reply_arrays(model=None):
    model = model or ref_vae.VAE(z_dim=config.Z_DIM)
    return {f"w_{key}": value.detach().numpy().copy() for key, value in model.state_dict().items()
            if key.startswith(("enc.", "dec."))}


# ---------------------------------------------------------------- accepted weights

def test_the_reference_architectures_tensors_are_accepted_as_they_are():
    arrays = _reply_arrays()
    state = evaluation.validated_state(arrays)
    assert sorted(state) == sorted(key[2:] for key in arrays)
    for key, tensor in state.items():
        assert tensor.dtype == torch.float32 and np.array_equal(tensor.numpy(), arrays[f"w_{key}"])


@pytest.mark.parametrize("prior", [{"w_z_prior_v": np.array([-1.0], np.float32)},
                                   {"w_z_prior_m": np.array([0.25], np.float32)},
                                   {"w_z_prior_m": np.zeros(1, np.float32), "w_z_prior_v": np.ones(1, np.float32)}])
def test_prior_tensors_are_refused_even_the_standard_one(prior):
    with pytest.raises(evaluation.WeightsRefused, match="the prior is always N\\(0, I\\)") as refused:
        evaluation.validated_state({**_reply_arrays(), **prior})
    assert all(name[2:] in str(refused.value) for name in prior)


def test_unknown_and_missing_tensors_are_refused():
    with pytest.raises(evaluation.WeightsRefused, match="extra.weight"):
        evaluation.validated_state({**_reply_arrays(), "w_extra.weight": np.zeros(3, np.float32)})
    arrays = _reply_arrays()
    del arrays["w_dec.net.4.bias"]
    with pytest.raises(evaluation.WeightsRefused, match="no parameter dec.net.4.bias"):
        evaluation.validated_state(arrays)


def test_a_wrong_shape_is_refused():
    arrays = _reply_arrays()
    arrays["w_enc.net.0.weight"] = arrays["w_enc.net.0.weight"][:, :100]
    with pytest.raises(evaluation.WeightsRefused, match=r"shape \(300, 100\)"):
        evaluation.validated_state(arrays)


def test_float64_with_a_value_that_overflows_float32_is_refused_for_its_dtype():
    arrays = {key: value.astype(np.float64) for key, value in _reply_arrays().items()}
    arrays["w_dec.net.4.bias"][0] = 1e300
    assert np.isfinite(arrays["w_dec.net.4.bias"]).all()         # finite as float64, inf as float32
    with pytest.raises(evaluation.WeightsRefused, match="dtype float64"):
        evaluation.validated_state(arrays)


@pytest.mark.parametrize("value, words", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                          (2e3, "magnitude 2e\\+03")])
def test_non_finite_or_huge_float32_values_are_refused(value, words):
    arrays = _reply_arrays()
    arrays["w_enc.net.2.weight"][3, 4] = value
    with pytest.raises(evaluation.WeightsRefused, match=words):
        evaluation.validated_state(arrays)


def test_the_graders_model_keeps_its_own_prior():
    model = evaluation.model_from(evaluation.validated_state(_reply_arrays()))
    assert model.z_prior_m.item() == 0.0 and model.z_prior_v.item() == 1.0


def test_accepted_weights_at_the_magnitude_limit_give_a_finite_bound():
    arrays = {key: np.full_like(value, evaluation.MAX_WEIGHT_MAGNITUDE) for key, value in _reply_arrays().items()}
    scores = evaluation.score(evaluation.validated_state(arrays))
    assert all(np.isfinite(scores["hidden"])) and all(np.isfinite(scores["subset"]))


def test_a_bound_that_overflows_gives_none_not_an_exception():
    state = {key: torch.full(value.shape, 1e30) for key, value in evaluation.expected_state().items()}
    scores = evaluation.score(state)
    assert scores["hidden"] is None and scores["subset"] is None


# ---------------------------------------------------------------- the hidden set

def test_the_hidden_set_is_the_test_images_outside_the_cs236_subset():
    indices = evaluation.hidden_indices()
    assert len(indices) == 10000 - len(set(ref_data.TEST_SUBSET_INDICES))
    assert not set(indices.tolist()) & set(ref_data.TEST_SUBSET_INDICES)
    assert len(set(indices.tolist())) == len(indices) and indices.min() >= 0 and indices.max() < 10000


def test_the_hidden_set_is_binarized_deterministically_by_the_grey_level():
    images, _ = ref_data.load_mnist("test")
    first, second = evaluation.binarize_hidden(images), evaluation.binarize_hidden(images.copy())
    assert first.dtype == np.float32 and first.shape == (len(evaluation.hidden_indices()), 784)
    assert np.array_equal(first, second)
    assert set(np.unique(first).tolist()) <= {0.0, 1.0}
    grey = images[evaluation.hidden_indices()].astype(np.float64) / 255
    assert np.all(first[grey == 0] == 0) and np.all(first[grey == 1] == 1)
    middle = (grey > 0.3) & (grey < 0.7)                                # about half of these are on
    assert abs(first[middle].mean() - grey[middle].mean()) < 0.01


# ---------------------------------------------------------------- the audit of a run

def _honest_audit(iterations=20, digest="abc"):
    return {"replaced": [], "optimizer_steps": [iterations], "optimizers": 1, "batches": [iterations],
            "same_images": True, "images_sha256": digest, "images_sha256_before": digest}


def test_an_honest_audit_has_no_problems():
    assert training.audit_problems(_honest_audit(), 20, "abc") == []


@pytest.mark.parametrize("change, words", [
    ({"replaced": ["train._eager_step"]}, "train._eager_step"),
    ({"optimizer_steps": [200]}, "took [200] steps for 20 iterations"),
    ({"batches": [19]}, "drew [19] batches"),
    ({"images_sha256": "def"}, "not the ones the grader sent"),
    ({"same_images": False}, "not the ones the grader sent"),
])
def test_each_sign_of_a_changed_run_is_named(change, words):
    problems = training.audit_problems({**_honest_audit(), **change}, 20, "abc")
    assert len(problems) == 1 and words in problems[0]


def test_a_missing_audit_is_a_problem():
    assert "did not report how it ran" in training.audit_problems(None, 20, "abc")[0]


def test_the_reference_step_time_is_positive_and_small():
    images, _ = ref_data.load_mnist("train")
    seconds = training.reference_step_cpu_seconds(images[:2000].copy(), steps=5)
    assert 0 < seconds < 5


# ---------------------------------------------------------------- leaderboard and band

class _Submission:
    files = {"utils.py": None, "vae.py": None}

    def __init__(self, outcome=None):
        self.outcomes = {} if outcome is None else {"training": outcome}

    class selection:                 # what submission_files.select() reports, reduced to what _finish reads
        @staticmethod
        def report():
            return "Files graded: utils.py, vae.py"


def _finish_with(hidden, error=None):
    outcome = training.TrainingOutcome(iterations=20, hidden=hidden, error=error)
    data = {"tests": [{"name": "t", "score": 1.0, "max_score": 1.0, "number": "4.1", "tags": ["training"]}]}
    grade._finish(data, 0.0, _Submission(outcome))
    return data


def test_the_leaderboard_carries_finite_hidden_set_figures_only():
    assert [e["value"] for e in _finish_with((100.1234, 20.0, 80.1234))["leaderboard"]] == [100.123, 20.0, 80.123]
    for bad in [(float("inf"), 1.0, 1.0), (1.0, float("nan"), 1.0), None]:
        data = _finish_with(bad)
        assert "leaderboard" not in data
        json.dumps(data, allow_nan=False)
    assert "leaderboard" not in _finish_with((100.0, 20.0, 80.0), error="the audit failed")
    data = {"tests": [{"name": "t", "score": 0.0, "max_score": 1.0, "number": "4.1", "tags": ["training"]}]}
    grade._finish(data, 0.0, _Submission())          # no training run at all
    assert "leaderboard" not in data


def test_a_band_not_measured_on_the_hidden_set_is_not_used(tmp_path, monkeypatch):
    calibration = {"bands": {"nelbo": {"low": 1.0, "high": 2.0}}}
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "calibration.json")
    paths.CALIBRATION.write_text(json.dumps(calibration))
    assert training.pass_band()[2] == "published"
    paths.CALIBRATION.write_text(json.dumps({**calibration, "evaluation": calibrate.EVALUATION}))
    assert training.pass_band()[2] == "published"           # no digest of the set it was measured on
    digest = evaluation.hidden_set_sha256()
    paths.CALIBRATION.write_text(json.dumps({**calibration, "evaluation": calibrate.EVALUATION,
                                             "hidden_set_sha256": digest[::-1]}))
    assert training.pass_band()[2] == "published"           # measured on other images
    paths.CALIBRATION.write_text(json.dumps({**calibration, "evaluation": calibrate.EVALUATION,
                                             "hidden_set_sha256": digest}))
    assert training.pass_band() == (1.0, 2.0, "calibrated")


def test_the_shipped_calibration_applies_to_this_hidden_set():
    """calibration.json was measured on the set the gate scores on (same images, same binarization)."""
    assert training.pass_band()[2] == "calibrated"


def test_the_hidden_set_does_not_depend_on_how_it_is_built_in_pieces():
    images, _ = ref_data.load_mnist("test")
    whole = evaluation.binarize_hidden(images, rows_per_piece=len(images))
    assert whole.shape == (9901, 784) and set(np.unique(whole)) == {0.0, 1.0}
    for rows in (1000, 333):
        assert np.array_equal(evaluation.binarize_hidden(images, rows_per_piece=rows), whole)


# ---------------------------------------------------------------- calibration from saved models

def test_calibration_from_saved_models_stores_hidden_bands_and_subset_figures(tmp_path):
    from autograder.reference import train as ref_train
    images, _ = ref_data.load_mnist("train")
    folder = tmp_path / "models"
    folder.mkdir()
    for seed in (7, 8, 9):
        torch.manual_seed(seed)
        model = ref_vae.VAE(z_dim=config.Z_DIM)
        ref_train.train(model, torch.from_numpy(images[:3000].copy()), 3, seed=seed)
        torch.save(model.state_dict(), folder / f"seed{seed}.pt")
    out = tmp_path / "calibration.json"
    summary = calibrate.calibrate_from_models(folder, iterations=3, out=out, log=lambda *a: None)
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert summary["evaluation"] == calibrate.EVALUATION and summary["iterations"] == 3
    assert [run["seed"] for run in summary["runs"]] == [7, 8, 9]
    for run in summary["runs"]:
        state = torch.load(folder / run["model"], weights_only=True)
        scores = evaluation.score(evaluation.validated_state(
            {f"w_{k}": v.numpy() for k, v in state.items() if k.startswith(("enc.", "dec."))}))
        assert (run["nelbo"], run["kl"], run["rec"]) == pytest.approx(scores["hidden"])
        assert run["subset_nelbo"] == pytest.approx(scores["subset"][0])
    nelbos = [run["nelbo"] for run in summary["runs"]]
    assert summary["bands"]["nelbo"]["mean"] == pytest.approx(np.mean(nelbos))
    assert set(summary["subset_bands"]) == {"nelbo", "kl", "rec"}


def test_the_gated_band_is_never_narrower_than_the_floor():
    tight = calibrate.band([99.50, 99.51, 99.52, 99.50, 99.51], min_half_width=0.5)
    assert tight["interval_half_width"] < 0.5 and tight["half_width"] == 0.5
    assert (tight["low"], tight["high"]) == pytest.approx((tight["mean"] - 0.5, tight["mean"] + 0.5))
    wide = calibrate.band([99.0, 100.0, 101.0, 99.5, 100.5], min_half_width=0.5)
    assert wide["half_width"] == wide["interval_half_width"] > 0.5


# ---------------------------------------------------------------- the worker's own view of a run

_WORKER_SCRIPT = """
import json, sys, os
sys.path.insert(0, os.getcwd())
import _worker
_worker.bind_provided()
import torch, fast
seen = {}
model = torch.nn.Linear(3, 2)
model(torch.ones(1, 3)).sum().backward()
torch.optim.Adam(model.parameters()).step()      # torch itself wraps Adam.step and, via dynamo, manual_seed
seen["after torch's own changes"] = _worker.replaced_originals()
fast._eager_step = lambda *args: None
torch.Tensor.backward = lambda *args, **kwargs: None
seen["after replacing"] = _worker.replaced_originals()
print(json.dumps(seen))
"""


def test_the_worker_tells_torchs_own_changes_from_replacements(tmp_path):
    import shutil
    import subprocess
    import sys
    for name in config.PROVIDED_FILES:
        shutil.copy(paths.SOLUTION / name, tmp_path / name)
    shutil.copy(paths.PROJECT / "autograder" / "_worker.py", tmp_path / "_worker.py")
    done = subprocess.run([sys.executable, "-I", "-c", _WORKER_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after torch's own changes"] == []
    assert sorted(seen["after replacing"]) == ["fast._eager_step", "torch.Tensor.backward"]


class _Trained:
    """A submission whose training run is already scored: the gate's verdict alone is tested."""

    def __init__(self, hidden, subset):
        self.iterations = config.DEFAULT_ITERATIONS
        self.data_dir = None
        self.running_check = None
        self.outcomes = {"training": training.TrainingOutcome(self.iterations, hidden=hidden, subset=subset)}


def _gate(submission):
    (case,) = [c for c in checks.bind(submission) if c.__name__ == "TrainingChecks"]
    result = unittest.TestResult()
    case("test_trained_nelbo").run(result)
    return result


def test_the_published_band_is_compared_with_the_subset_figure_it_was_measured_on(tmp_path, monkeypatch):
    """Without a calibration (the students' public bundle), the band is the course's, measured on the
    CS236 subset: the subset's NELBO decides, not the hidden set's (which runs about 2 nats lower)."""
    monkeypatch.setattr(paths, "CALIBRATION", tmp_path / "missing.json")
    low = config.PUBLISHED_BAND["nelbo"]["low"]
    assert _gate(_Trained(hidden=(low - 1.9, 19.0, 80.0), subset=(low + 1.8, 19.0, 82.0))).wasSuccessful()
    failed = _gate(_Trained(hidden=(low + 1.0, 19.0, 80.0), subset=(low - 3.0, 19.0, 82.0)))
    assert not failed.wasSuccessful() and "below the published (CS236 test subset) pass band" in failed.failures[0][1]


def test_the_calibrated_band_is_compared_with_the_hidden_set_figure():
    low, high, source = training.pass_band()
    assert source == "calibrated"
    inside = (low + high) / 2
    assert _gate(_Trained(hidden=(inside, 19.0, 80.0), subset=(inside + 10, 19.0, 82.0))).wasSuccessful()
    assert not _gate(_Trained(hidden=(high + 1, 19.0, 80.0), subset=(inside, 19.0, 82.0))).wasSuccessful()


def test_a_shortened_run_gets_its_share_of_the_training_limit():
    """A hang in a run shortened for testing fails in about a minute; a full run keeps the whole limit."""
    from autograder.checks.training import PROBE_TIMEOUT_SECONDS, full_run_timeout
    whole = config.TRAINING_LIMITS.wall_seconds
    assert full_run_timeout(config.DEFAULT_ITERATIONS, config.DEFAULT_ITERATIONS) == whole
    assert full_run_timeout(config.CONV_ITERATIONS, config.CONV_ITERATIONS) == whole
    assert full_run_timeout(20, config.DEFAULT_ITERATIONS) == pytest.approx(PROBE_TIMEOUT_SECONDS + whole / 1000)
    assert full_run_timeout(2000, config.DEFAULT_ITERATIONS) == pytest.approx(PROBE_TIMEOUT_SECONDS + whole / 10)
    assert full_run_timeout(40000, config.DEFAULT_ITERATIONS) == whole
    # a slow or crowded host (the probe's 20 steps took 10 s) stretches a shortened run's limit with it
    assert full_run_timeout(300, config.DEFAULT_ITERATIONS, 10.0, 20) == whole
    assert full_run_timeout(300, config.DEFAULT_ITERATIONS, 2.0, 20) == pytest.approx(PROBE_TIMEOUT_SECONDS + 300)
    assert full_run_timeout(300, config.DEFAULT_ITERATIONS, 0.05, 20) == pytest.approx(PROBE_TIMEOUT_SECONDS + 13.5)
