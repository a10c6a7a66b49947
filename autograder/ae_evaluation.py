"""TRUSTED SIDE. The linear autoencoder's trained maps as the grader measures them (problem `ae`).

The split: a fixed permutation of MNIST's 60,000 training images (solution/train_ae.py's `split`,
seed 13): 54,000 train, 6,000 validate; the indices' sha256 is pinned in config.AE_SPLIT_SHA256 so
the split cannot drift. PCA: the grader's own, in float64, of the centred 54,000 training images
(the scatter matrix summed in pieces, then its SVD: it is symmetric positive semi-definite, so its
singular vectors are the principal directions). A trained model is known here only through what its
encode and decode returned at points the grader chose (`Probes`): the value at 0 gives the bias, at
each basis vector the weight's column; random points show whether the map is affine at all."""
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import config
from .reference import data as ref_data
from .training_images import TrainingImages

PIXELS = 784
FLOAT32_UNIT = 2.0 ** -24
PROBE_POINTS = 64            # random points per map, beyond 0 and the basis vectors
_PCA, _VALIDATION, _PCA_ERRORS = {}, {}, {}


def split_indices(count=60000):
    """-> (train, validation) int64 arrays, checked against config.AE_SPLIT_SHA256."""
    from .reference import train_ae
    train, validation = (part.numpy().astype(np.int64) for part in train_ae.split(count))
    digest = hashlib.sha256(np.concatenate([train, validation]).astype("<i8").tobytes()).hexdigest()
    if count == 60000 and digest != config.AE_SPLIT_SHA256:
        raise RuntimeError(f"the autoencoder's split changed (sha256 {digest}, config says {config.AE_SPLIT_SHA256})")
    return train, validation


def _memmap(data_dir):
    images = TrainingImages(data_dir)
    return np.memmap(images.path, np.uint8, "r", offset=16, shape=images.shape)


def training_rows(data_dir, pieces=5000):
    """The 54,000 training images in the split's order, as pieces of uint8 rows (never the validation ones)."""
    train, _ = split_indices()
    mapped = _memmap(data_dir)
    for start in range(0, len(train), pieces):
        yield np.array(mapped[np.sort(train[start:start + pieces])][np.argsort(np.argsort(train[start:start + pieces]))])


def forget():
    """Let this process's cached PCA, its errors and the validation images go (rebuilt, the same, if needed)."""
    for cache in (_PCA, _VALIDATION, _PCA_ERRORS):
        cache.clear()


def validation_images(data_dir):
    """(6000, 784) float64 in [0, 1] (read once per process: 38 MB)."""
    if str(data_dir) not in _VALIDATION:
        _, validation = split_indices()
        _VALIDATION[str(data_dir)] = np.asarray(_memmap(data_dir)[np.sort(validation)], np.float64) / 255.0
    return _VALIDATION[str(data_dir)]


@dataclass(frozen=True)
class Pca:
    mean: np.ndarray          # (784,)
    directions: np.ndarray    # (784, 784): columns by decreasing variance
    variances: np.ndarray     # (784,)


def pca(data_dir):
    """The principal directions of the centred training split (float64), computed once per process."""
    key = str(data_dir)
    if key not in _PCA:
        total, scatter, count = np.zeros(PIXELS), np.zeros((PIXELS, PIXELS)), 0
        for rows in training_rows(data_dir):
            x = rows.astype(np.float64) / 255.0
            total += x.sum(0)
            scatter += x.T @ x
            count += len(x)
        mean = total / count
        centred = scatter - count * np.outer(mean, mean)
        directions, singular, _ = np.linalg.svd(centred)
        _PCA[key] = Pca(mean, directions, singular / (count - 1))
    return _PCA[key]


def pca_validation_error(data_dir, k):
    """PCA's validation reconstruction error at k: mean over images of (1/784) sum of squares."""
    if (str(data_dir), k) in _PCA_ERRORS:
        return _PCA_ERRORS[str(data_dir), k]
    basis = pca(data_dir).directions[:, :k]
    centred = validation_images(data_dir) - pca(data_dir).mean
    residual = centred - (centred @ basis) @ basis.T
    _PCA_ERRORS[str(data_dir), k] = float(np.mean(residual ** 2))
    return _PCA_ERRORS[str(data_dir), k]


def probe_points(k, seed):
    """-> (encoder inputs (1 + 784 + P, 784), decoder inputs (1 + k + P, k)) float32: 0, the basis
    vectors, then random points: grey images in [0, 1], standard normal ones, and large ones."""
    generator = np.random.default_rng(seed)

    def points(width):
        third = PROBE_POINTS // 3
        extra = np.concatenate([generator.uniform(0, 1, (third, width)), generator.standard_normal((third, width)),
                                10 * generator.standard_normal((PROBE_POINTS - 2 * third, width))])
        return np.concatenate([np.zeros((1, width)), np.eye(width), extra]).astype(np.float32)

    return points(PIXELS), points(k)


@dataclass
class AffineFit:
    weight: np.ndarray        # (out, in) float64
    bias: np.ndarray          # (out,)
    worst_ratio: float        # max |observed - affine prediction| / its float32 rounding bound at the random points
    worst_error: float        # that largest deviation


def affine_fit(inputs, outputs):
    """The affine map that the value at 0 and at the basis vectors define, and how far the random
    points stray from it. Rounding bound of each predicted element (float32 products and sums of n
    terms, Higham's gamma_n with u = 2^-24, taken four times over for the basis probes' own
    rounding): 4 gamma_(n+2) (sum_i |x_i| (|W_ji| + |b_j|) + |b_j|)."""
    inputs, outputs = np.asarray(inputs, np.float64), np.asarray(outputs, np.float64)
    width = inputs.shape[1]
    bias = outputs[0]
    weight = (outputs[1:1 + width] - bias).T
    extra_in, extra_out = inputs[1 + width:], outputs[1 + width:]
    predicted = extra_in @ weight.T + bias
    n = width + 2
    gamma = n * FLOAT32_UNIT / (1 - n * FLOAT32_UNIT)
    scale = np.abs(extra_in) @ np.abs(weight).T + np.abs(extra_in).sum(1, keepdims=True) * np.abs(bias) + np.abs(bias)
    bound = 4 * gamma * scale + np.finfo(np.float32).tiny
    deviation = np.abs(extra_out - predicted)
    return AffineFit(weight, bias, float(np.max(deviation / bound)), float(np.max(deviation)))


def largest_principal_angle_degrees(columns, reference):
    """The largest principal angle between span(columns) and span(reference) (both (784, k)), in degrees."""
    q_columns, _ = np.linalg.qr(columns)
    q_reference, _ = np.linalg.qr(reference)
    cosines = np.linalg.svd(q_reference.T @ q_columns, compute_uv=False)
    if len(cosines) < reference.shape[1] or columns.shape[1] < reference.shape[1]:
        return 90.0
    return math.degrees(math.acos(min(1.0, float(np.min(cosines)))))


def measures(encoder, decoder, data_dir, k):
    """-> {"error", "pca_error", "excess", "angle"} of the affine maps (AffineFit) at k: the validation
    error of x -> decode(encode(x)) in float64, PCA's, their relative excess, the decoder's angle."""
    validation = validation_images(data_dir)
    reconstructed = (validation @ encoder.weight.T + encoder.bias) @ decoder.weight.T + decoder.bias
    error = float(np.mean((validation - reconstructed) ** 2))
    reference = pca_validation_error(data_dir, k)
    rank = np.linalg.matrix_rank(decoder.weight)
    angle = 90.0 if rank < k else largest_principal_angle_degrees(decoder.weight, pca(data_dir).directions[:, :k])
    return {"error": error, "pca_error": reference, "excess": error / reference - 1, "angle": angle}


def reference_measures(model, data_dir, k, seed=0):
    """The same measures for a model of this process (the reference, for calibration), through the same probes."""
    enc_in, dec_in = probe_points(k, seed)
    with torch.no_grad():
        enc_out = model.encode(torch.from_numpy(enc_in)).double().numpy()
        dec_out = model.decode(torch.from_numpy(dec_in)).double().numpy()
    return measures(affine_fit(enc_in, enc_out), affine_fit(dec_in, dec_out), data_dir, k)


def data_dir_default():
    return str(ref_data.ensure_mnist(fetch=config.PUBLIC))
