"""TRUSTED SIDE. The hidden evaluation set, and scoring trained weights on it.

The gate and the leaderboard use images no process running student code can read: the
10,000 MNIST test images minus the 100 positions of the public CS236 subset (9,901 images),
binarized here once with a fixed seed. The training child gets the training images only,
over the wire; in the container no MNIST file is readable by the student users. The CS236
subset figure is still computed, for comparison with the course's published numbers.

Scoring builds the reference model from the grader's own code and constants (prior N(0, I))
and loads only the encoder and decoder tensors that `validated_state` accepted. A problem whose
model is conditional (the CVAE) is scored on the same images, each with its label.
"""
import functools
import hashlib

import numpy as np
import torch

from . import config, oracle
from . import reference
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
def hidden_labels(data_dir=None):
    """The digits of the hidden set's images, in its order -> int64 (9901,)."""
    _, labels = ref_data.load_mnist("test", data_dir)
    return labels[hidden_indices()].astype(np.int64)


@functools.lru_cache(maxsize=2)
def hidden_set(data_dir=None):
    """The binarized hidden set (cached per data directory)."""
    images, _ = ref_data.load_mnist("test", data_dir)
    return binarize_hidden(images)


def forget_hidden_set():
    """Let the cached hidden set and its labels go (31 MB; rebuilt, the same, in under a second)."""
    hidden_set.cache_clear()
    hidden_labels.cache_clear()


def hidden_set_sha256(data_dir=None):
    """The sha256 of the binarized hidden set: a calibration applies only to the set it was measured on."""
    return hashlib.sha256(hidden_set(data_dir).tobytes()).hexdigest()


# problem -> the name of its model in messages
MODEL_NAMES = {"vae": "VAE", "cvae": "CVAE", "beta": "BetaVAE", "mmd": "MMDVAE", "conv": "ConvVAE"}
# The MMD-VAE's prior draws in its scoring: this seed, as many as codes (float64)
MMD_PRIOR_SEED = 14


def reference_model(problem="vae"):
    """A fresh reference model of `problem`, built from the grader's own code (prior N(0, I))."""
    if problem == "cvae":
        return reference.cvae.CVAE(z_dim=config.Z_DIM)
    if problem == "beta":                # the VAE's networks and prior: scored with the unweighted bound
        return reference.beta_vae.BetaVAE(z_dim=config.Z_DIM)
    if problem == "mmd":
        return reference.mmd_vae.MMDVAE(z_dim=config.Z_DIM)
    if problem == "conv":
        return reference.conv_vae.ConvVAE(z_dim=config.Z_DIM)
    return ref_vae.VAE(z_dim=config.Z_DIM)


def expected_state(problem="vae"):
    """{name: tensor} of the parameters the grader takes from a trained model: encoder and decoder."""
    return {key: value for key, value in reference_model(problem).state_dict().items()
            if key.startswith(TRAINED_PREFIXES)}


def validated_state(arrays, problem="vae"):
    """The encoder/decoder tensors of a training reply ({"w_<name>": array}) -> {name: float32 tensor}.

    Exactly the reference architecture's tensors are accepted: every name present, nothing else
    (the prior included: the grader uses its own N(0, I)), float32 of the reference shape, finite
    and no larger than MAX_WEIGHT_MAGNITUDE. Anything else raises WeightsRefused.
    """
    expected = expected_state(problem)
    model = MODEL_NAMES[problem]
    returned = {key[2:]: array for key, array in arrays.items() if key.startswith("w_")}
    extra = sorted(set(returned) - set(expected))
    if extra:
        raise WeightsRefused(f"The trained model returned tensors the provided {model} does not train: {extra}. Only "
                             "the encoder and decoder weights are scored (the prior is always N(0, I)); keep the "
                             "provided architecture and do not change its prior.")
    state = {}
    for key, wanted in expected.items():
        array = returned.get(key)
        if array is None:
            raise WeightsRefused(f"The trained model has no parameter {key}: keep the provided {model} architecture.")
        if array.dtype != np.float32 or array.shape != tuple(wanted.shape):
            raise WeightsRefused(f"Parameter {key} has shape {tuple(array.shape)} and dtype {array.dtype}; the "
                                 f"provided {model} has shape {tuple(wanted.shape)} and dtype float32 (do not change "
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


def model_from(state, problem="vae"):
    """The grader's reference model (its own prior) with the validated encoder/decoder tensors."""
    model = reference_model(problem)
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full)
    return model


def _finite_triple(values):
    values = tuple(float(v) for v in values)
    return values if all(np.isfinite(v) for v in values) else None


def score(state, data_dir=None, problem="vae"):
    """The oracle bound on the hidden set and on the CS236 subset ->
    {"hidden": (nelbo, kl, rec) or None, "subset": (...) or None}; None where a value is not finite."""
    if problem == "cvae":
        return _score_conditional(model_from(state, problem), data_dir)
    if problem == "mmd":
        model = model_from(state, problem)
        return {"hidden": mmd_loss(model, hidden_set(data_dir)),
                "subset": mmd_loss(model, ref_data.load_test_subset(data_dir)[0])}
    if problem == "conv":
        model = model_from(state, problem)
        return {"hidden": conv_bound(model, hidden_set(data_dir), config.HIDDEN_EVAL_REPEATS),
                "subset": conv_bound(model, ref_data.load_test_subset(data_dir)[0], CONV_SUBSET_DRAWS)}
    model = model_from(state, problem)
    torch.manual_seed(0)
    hidden = torch.from_numpy(hidden_set(data_dir))
    on_hidden = ref_train.evaluate(model, hidden, repeats=config.HIDDEN_EVAL_REPEATS, bound=oracle.negative_elbo)
    torch.manual_seed(0)
    subset = torch.from_numpy(ref_data.load_test_subset(data_dir)[0])
    on_subset = ref_train.evaluate(model, subset, bound=oracle.negative_elbo)
    return {"hidden": _finite_triple(on_hidden), "subset": _finite_triple(on_subset)}


def _score_conditional(model, data_dir):
    """score() of a conditional model: each image with its label, one-hot."""
    loop = reference.train_cvae
    one_hot = loop.one_hot
    torch.manual_seed(0)
    hidden = torch.from_numpy(hidden_set(data_dir))
    on_hidden = loop.evaluate(model, hidden, one_hot(torch.from_numpy(hidden_labels(data_dir))),
                              repeats=config.HIDDEN_EVAL_REPEATS, bound=oracle.negative_elbo_conditional)
    torch.manual_seed(0)
    images, labels = ref_data.load_test_subset(data_dir)
    on_subset = loop.evaluate(model, torch.from_numpy(images), one_hot(torch.from_numpy(labels)),
                              bound=oracle.negative_elbo_conditional)
    return {"hidden": _finite_triple(on_hidden), "subset": _finite_triple(on_subset)}


def mmd_loss(model, images, rows=1000):
    """The MMD-VAE's objective on `images`, float64, from the grader's own code -> (loss, mmd, rec) or None:
    rec the batch mean of -log p(x|z) at the codes z (the encoder's means), mmd the biased MMD between all
    codes and as many prior draws (seed MMD_PRIOR_SEED), loss = rec + LAMBDA * mmd (LAMBDA of the reference)."""
    model = model.double()
    codes, rec = [], torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(images), rows):
            x = torch.from_numpy(np.asarray(images[start:start + rows], dtype=np.float64))
            z, _ = model.enc(x)
            codes.append(z)
            rec = rec + oracle.reconstruction(x, model.dec(z)).sum()
        codes = torch.cat(codes)
        prior = torch.randn(codes.shape, generator=torch.Generator().manual_seed(MMD_PRIOR_SEED), dtype=torch.float64)
        divergence = float(oracle.mmd(codes, prior))
    rec = float(rec) / len(images)
    return _finite_triple((rec + reference.mmd_vae.LAMBDA * divergence, divergence, rec))


# The convolutional VAE's scoring: the rec's draws come from a generator of this seed; the CS236
# subset (100 images) takes this many draws per image, the hidden set config.HIDDEN_EVAL_REPEATS.
CONV_DRAWS_SEED = 16
CONV_SUBSET_DRAWS = 100


def conv_bound(model, images, draws, rows=1000):
    """The convolutional VAE's negative ELBO on `images`, float64, from the grader's own code ->
    (nelbo, kl, rec) or None: kl the closed-form KL(q(z|x) || N(0, I)) from the encoder's means and
    log-variances, 0.5 * sum(exp(s) + m^2 - 1 - s) (oracle.kl_normal_logvar), rec -log p(x|z) averaged
    over `draws` draws z ~ q(z|x) per image (seed CONV_DRAWS_SEED). The student's bound is the one-sample
    estimate log q(z|x) - log p(z) - log p(x|z) at one z; its expectation over z is this same
    KL + E[-log p(x|z)], so the figure is the one a run's bound estimates, with a smaller variance:
    the KL's Monte Carlo noise is gone, the rec's divided by `draws`."""
    model = model.double()
    generator = torch.Generator().manual_seed(CONV_DRAWS_SEED)
    kl = rec = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(images), rows):
            x = torch.from_numpy(np.asarray(images[start:start + rows], dtype=np.float64))
            mean, logvar = model.enc(x)
            kl = kl + oracle.kl_normal_logvar(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar)).sum()
            for _ in range(draws):
                z = oracle.pathwise_sample_logvar(mean, logvar, torch.randn(mean.shape, generator=generator,
                                                                             dtype=torch.float64))
                rec = rec + oracle.reconstruction(x, model.dec(z).reshape(len(x), -1)).sum() / draws
    kl, rec = float(kl) / len(images), float(rec) / len(images)
    return _finite_triple((kl + rec, kl, rec))
