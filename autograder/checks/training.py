"""The training gate: train with the student's own files, score the weights with the
oracle bound (torch.distributions) in this trusted process. The number the student's code reports is used
only to check that their bound agrees with the reference on the trained model."""
import ctypes
import ctypes.util
import gc
import json
import unittest

import numpy as np
import torch

from .. import config, oracle, paths
from ..reference import data as ref_data
from ..reference import train as ref_train
from ..reference import vae as ref_vae
from .base import ask, check
from .submission import current

FAMILY = "training"
RESULTS = {}   # filled by the gate; read by the leaderboard writer
PROBE_ITERATIONS = 20


def pass_band():
    """-> (low, high, where the band comes from)."""
    try:
        band = json.loads(paths.CALIBRATION.read_text())["bands"]["nelbo"]
        return band["low"], band["high"], "calibrated"
    except (OSError, ValueError, KeyError):
        band = config.PUBLISHED_BAND["nelbo"]
        return band["low"], band["high"], "published"


def _validated_state(arrays):
    """The returned weights as a reference state_dict, or AssertionError saying what is wrong."""
    expected = ref_vae.VAE(z_dim=config.Z_DIM).state_dict()
    state = {}
    for key, reference in expected.items():
        array = arrays.get(f"w_{key}")
        if array is None:
            raise AssertionError(f"The trained model has no parameter {key}: keep the provided VAE architecture.")
        if array.shape != tuple(reference.shape) or array.dtype.kind != "f":
            raise AssertionError(f"Parameter {key} has shape {array.shape} and dtype {array.dtype}; "
                                 f"expected {tuple(reference.shape)} floating point.")
        if not np.all(np.isfinite(array)):
            raise AssertionError(f"Training produced NaN or infinite weights in {key}: check that your bound is finite "
                                 "(e.g. no log of 0, variances from the encoder used as they are).")
        state[key] = torch.from_numpy(array.astype(np.float32))
    extra = sorted(k[2:] for k in arrays if k.startswith("w_") and k[2:] not in expected)
    if extra:
        raise AssertionError(f"The trained model has unexpected parameters {extra}: keep the provided VAE.")
    return state


def release_memory():
    """Return the heap the unit checks left behind (about 50 MB) to the system before the
    training child runs beside this process: glibc keeps freed memory for reuse otherwise."""
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):    # not glibc: nothing to trim
        pass


def trained_result():
    """Train once per submission (cached): -> dict with reference and own evaluations."""
    if "reference" in RESULTS:
        return RESULTS
    submission = current()
    params = {"iterations": submission.iterations, "seed": config.TRAINING_SEED, "z_dim": config.Z_DIM,
              "device": submission.device, "data_dir": submission.data_dir}
    # A short run first, under the unit-check time limit: a submission that hangs fails in
    # seconds instead of holding the grader for the whole training limit.
    probe = dict(params, iterations=min(PROBE_ITERATIONS, submission.iterations))
    release_memory()
    ask(FAMILY, "train", probe, key="probe", timeout=config.LIMITS.wall_seconds + 30)
    reply = ask(FAMILY, "train", params, key="train")
    submission.close()       # the trained child's memory is gone before the evaluation below runs
    state = _validated_state(reply.arrays)
    model = ref_vae.VAE(z_dim=config.Z_DIM)
    model.load_state_dict(state)
    torch.manual_seed(0)
    test_x = torch.from_numpy(ref_data.load_test_subset(submission.data_dir)[0])
    RESULTS["reference"] = ref_train.evaluate(model, test_x, bound=oracle.negative_elbo)
    own = reply.info.get("own_evaluation")
    RESULTS["own"] = tuple(float(v) for v in own) if isinstance(own, list) and len(own) == 3 else None
    RESULTS["iterations"] = submission.iterations
    return RESULTS


class TrainingChecks(unittest.TestCase):
    longMessage = False  # students read our message, not unittest's repr of the values

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """training: 20,000 iterations with your files reach the reference NELBO (scored by the reference bound)"""
        points = config.CHECKS[FAMILY]["trained_nelbo"].points
        set_score(0)
        result = trained_result()
        nelbo, kl, rec = result["reference"]
        summary = (f"After {result['iterations']} iterations, the reference bound on the test subset gives "
                   f"NELBO {nelbo:.2f}, KL {kl:.2f}, Rec {rec:.2f}.")
        if not np.isfinite(nelbo):
            self.fail(summary + " The NELBO is not finite.")
        if result["iterations"] < config.DEFAULT_ITERATIONS:
            set_score(points)   # shortened runs exist for the grader's own tests only: no band applies
            print(summary + " (shortened run: the pass band applies to full runs only)")
            return
        low, high, source = pass_band()
        if low <= nelbo <= high:
            set_score(points)
            print(summary + f" Inside the {source} pass band [{low:.2f}, {high:.2f}].")
            return
        distance = low - nelbo if nelbo < low else nelbo - high
        score = round(points * max(0.0, 1 - distance / config.PARTIAL_CREDIT_NATS), 2)
        set_score(score)
        direction = "below" if nelbo < low else "above"
        hint = (" A NELBO below the band usually means a term is missing or scaled down (e.g. the 1/2 in the "
                "KL, a mean instead of a sum over pixels)." if nelbo < low else
                " A NELBO above the band usually means the model learned worse: check the checks of "
                "sample_gaussian, kl_normal and negative_elbo_bound above.")
        self.fail(f"{summary} That is {distance:.2f} nats {direction} the {source} pass band "
                  f"[{low:.2f}, {high:.2f}]: {score} of {points} points.{hint}")

    @check(FAMILY, "bound_agrees")
    def test_bound_agrees(self):
        """training: your bound agrees with the reference bound on your trained model"""
        result = trained_result()
        own = result["own"]
        self.assertIsNotNone(own, "Your code did not report an evaluation of the trained model.")
        difference = abs(own[0] - result["reference"][0])
        self.assertLess(difference, config.BOUND_AGREEMENT_NATS,
                        f"On your trained model your negative_elbo_bound gives NELBO {own[0]:.2f} but the reference "
                        f"gives {result['reference'][0]:.2f} (difference {difference:.2f} nats).")
