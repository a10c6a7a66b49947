"""TRUSTED SIDE. The hidden evaluation set, and scoring trained weights on it.

The gate and the leaderboard use images no process running student code can read: the
10,000 MNIST test images minus the 100 positions of the public CS236 subset (9,901 images),
binarized here once with a fixed seed. The training child gets the training images only,
over the wire; in the container no MNIST file is readable by the student users. The CS236
subset figure is still computed, for comparison with the course's published numbers.

Scoring builds the reference model from the grader's own code and constants (prior N(0, I))
and loads only the encoder and decoder tensors that `validated_state` accepted.
"""
import functools
import hashlib

import numpy as np
import torch

from . import config, oracle
from .reference import data as ref_data
from .reference import train as ref_train
from .reference import vae as ref_vae

# Trained weights are finite and small: Adam moves a weight by at most about 3 x lr per step
# (1e-3 here), so 20,000 steps from an initialisation below 1 stay below about 60.
MAX_WEIGHT_MAGNITUDE = 1e3
TRAINED_PREFIXES = ("enc.", "dec.")
TEST_IMAGES = 10000


class WeightsRefused(AssertionError):
    """The returned weights are not the reference architecture's; the message is for the student."""


def hidden_indices():
    """Positions in t10k of the hidden set: every test image outside the CS236 subset, in order."""
    public = set(ref_data.TEST_SUBSET_INDICES)
    return np.array([i for i in range(TEST_IMAGES) if i not in public])


def binarize_hidden(test_images, rows_per_piece=1000):
    """The hidden set from the t10k images -> float32 (9901, 784) of 0/1, the same every time.
    Built a piece of rows at a time: the uniforms are drawn in the same order as one whole draw
    (so the set does not depend on the piece size), and no full-size temporary is made."""
    chosen = hidden_indices()
    generator = np.random.Generator(np.random.PCG64(config.HIDDEN_SET_SEED))
    binary = np.empty((len(chosen), test_images.shape[1]), dtype=np.float32)
    for start in range(0, len(chosen), rows_per_piece):
        grey = test_images[chosen[start:start + rows_per_piece]].astype(np.float32) / 255
        uniform = generator.random(grey.shape, dtype=np.float32)
        binary[start:start + len(grey)] = uniform < grey
    return binary


@functools.lru_cache(maxsize=2)
def hidden_set(data_dir=None):
    """The binarized hidden set (cached per data directory)."""
    images, _ = ref_data.load_mnist("test", data_dir)
    return binarize_hidden(images)


def hidden_set_sha256(data_dir=None):
    """The sha256 of the binarized hidden set: a calibration applies only to the set it was measured on."""
    return hashlib.sha256(hidden_set(data_dir).tobytes()).hexdigest()


def expected_state():
    """{name: tensor} of the parameters the grader takes from a trained model: encoder and decoder."""
    return {key: value for key, value in ref_vae.VAE(z_dim=config.Z_DIM).state_dict().items()
            if key.startswith(TRAINED_PREFIXES)}


def validated_state(arrays):
    """The encoder/decoder tensors of a training reply ({"w_<name>": array}) -> {name: float32 tensor}.

    Exactly the reference architecture's tensors are accepted: every name present, nothing else
    (the prior included: the grader uses its own N(0, I)), float32 of the reference shape, finite
    and no larger than MAX_WEIGHT_MAGNITUDE. Anything else raises WeightsRefused.
    """
    expected = expected_state()
    returned = {key[2:]: array for key, array in arrays.items() if key.startswith("w_")}
    extra = sorted(set(returned) - set(expected))
    if extra:
        raise WeightsRefused(f"The trained model returned tensors the provided VAE does not train: {extra}. Only "
                             "the encoder and decoder weights are scored (the prior is always N(0, I)); keep the "
                             "provided architecture and do not change its prior.")
    state = {}
    for key, reference in expected.items():
        array = returned.get(key)
        if array is None:
            raise WeightsRefused(f"The trained model has no parameter {key}: keep the provided VAE architecture.")
        if array.dtype != np.float32 or array.shape != tuple(reference.shape):
            raise WeightsRefused(f"Parameter {key} has shape {tuple(array.shape)} and dtype {array.dtype}; the "
                                 f"provided VAE has shape {tuple(reference.shape)} and dtype float32 (do not change "
                                 "the model's dtype or layers).")
        finite = np.isfinite(array)
        if not finite.all():
            raise WeightsRefused(f"Training produced {int((~finite).sum())} NaN or infinite values in {key}: check "
                                 "that your bound is finite (e.g. no log of 0, variances used as they are).")
        largest = float(np.abs(array).max()) if array.size else 0.0
        if largest > MAX_WEIGHT_MAGNITUDE:
            raise WeightsRefused(f"Parameter {key} holds a value of magnitude {largest:.3g}; Adam cannot move a "
                                 f"weight that far in training (limit {MAX_WEIGHT_MAGNITUDE:g}).")
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32))
    return state


def model_from(state):
    """The grader's reference VAE (its own prior) with the validated encoder/decoder tensors."""
    model = ref_vae.VAE(z_dim=config.Z_DIM)
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full)
    return model


def _finite_triple(values):
    values = tuple(float(v) for v in values)
    return values if all(np.isfinite(v) for v in values) else None


def score(state, data_dir=None):
    """The oracle bound on the hidden set and on the CS236 subset ->
    {"hidden": (nelbo, kl, rec) or None, "subset": (...) or None}; None where a value is not finite."""
    model = model_from(state)
    torch.manual_seed(0)
    hidden = torch.from_numpy(hidden_set(data_dir))
    on_hidden = ref_train.evaluate(model, hidden, repeats=config.HIDDEN_EVAL_REPEATS, bound=oracle.negative_elbo)
    torch.manual_seed(0)
    subset = torch.from_numpy(ref_data.load_test_subset(data_dir)[0])
    on_subset = ref_train.evaluate(model, subset, bound=oracle.negative_elbo)
    return {"hidden": _finite_triple(on_hidden), "subset": _finite_triple(on_subset)}
