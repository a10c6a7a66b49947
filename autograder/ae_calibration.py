"""Calibration of the linear autoencoder's gate (problem `ae`): `python -m autograder calibrate --problem ae`.

Each run trains the reference LinearAutoencoder at every k of config.AE_CODE_SIZES with train_ae.py's
loop, as the gate trains a submission (seed s for the weights and the batches), and measures its maps
exactly as the gate does (probes at points of seed s, ae_evaluation.measures): the validation error's
relative excess over PCA's and the largest principal angle, per k.

Bands: calibrate.band's Student-t prediction interval, its upper end. A grading compares len(AE_CODE_SIZES)
excesses and the angles of the converged k: each comparison is given a share of FAIL_PROBABILITY
(two-sided a = 2 * FAIL_PROBABILITY / comparisons, so one-sided a / 2 each), and by the union bound a correct
submission loses any point with probability at most FAIL_PROBABILITY. The angle is gated only at the k
where every reference run ends below CONVERGED_DEGREES: there the loop has found the subspace; elsewhere
(small eigen-gaps among the last directions) the angle measures how far training got, not whether it is
right, while the error already equals PCA's. The bound is never tighter than the margins of config
(another machine's rounding: a different trajectory, as a different seed gives)."""
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import ae_evaluation as measure
from . import config
from .calibrate import FAIL_PROBABILITY, band
from .reference import ae as ref_ae
from .reference import runtime
from .reference import train_ae as ref_train_ae

EVALUATION = "ae-validation"
CONVERGED_DEGREES = 5.0


def train_u8(data_dir):
    return torch.from_numpy(np.concatenate(list(measure.training_rows(data_dir))))


def train_reference(seed, iterations, images, k):
    torch.manual_seed(seed)
    model = ref_ae.LinearAutoencoder(k)
    ref_train_ae.train(model, images, iterations, loss=ref_ae.reconstruction_loss, seed=seed)
    return model


def measure_run(models, seed, data_dir):
    run = {"seed": seed}
    for k, model in models.items():
        m = measure.reference_measures(model, data_dir, k, seed)
        run.update({f"excess_{k}": m["excess"], f"angle_{k}": m["angle"], f"error_{k}": m["error"]})
    return run


def _one_run(args):
    seed, iterations, data_dir, save_dir = args
    import os
    os.environ["VAE_THREADS"] = "1"
    runtime.configure_threads()
    images = train_u8(data_dir)
    start = time.perf_counter()
    models = {k: train_reference(seed, iterations, images, k) for k in config.AE_CODE_SIZES}
    seconds = round(time.perf_counter() - start, 1)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        torch.save({str(k): model.state_dict() for k, model in models.items()}, Path(save_dir) / f"seed{seed}.pt")
    return dict(measure_run(models, seed, data_dir), seconds=seconds)


def summary(runs, iterations, data_dir):
    converged = [k for k in config.AE_CODE_SIZES if max(r[f"angle_{k}"] for r in runs) < CONVERGED_DEGREES]
    comparisons = len(config.AE_CODE_SIZES) + len(converged)
    two_sided = 2 * FAIL_PROBABILITY / comparisons
    bands = {}
    for k in config.AE_CODE_SIZES:
        bands[f"excess_{k}"] = band([r[f"excess_{k}"] for r in runs], two_sided, config.AE_MIN_EXCESS_MARGIN)
    for k in converged:
        bands[f"angle_{k}"] = band([r[f"angle_{k}"] for r in runs], two_sided, config.AE_MIN_ANGLE_MARGIN_DEGREES)
    return {
        "model": __doc__.strip(),
        "problem": "ae",
        "evaluation": EVALUATION,
        "split_sha256": config.AE_SPLIT_SHA256,
        "iterations": iterations,
        "torch": torch.__version__,
        "fail_probability": FAIL_PROBABILITY,
        "comparisons": comparisons,
        "converged_code_sizes": converged,
        "converged_degrees": CONVERGED_DEGREES,
        "pca_errors": {str(k): measure.pca_validation_error(data_dir, k) for k in config.AE_CODE_SIZES},
        "runs": runs,
        "bands": bands,
    }


def _log(run, log):
    log(f"seed {run['seed']}: " + ", ".join(f"k={k} excess {100 * run[f'excess_{k}']:+.3f}% angle "
                                             f"{run[f'angle_{k}']:.2f}" for k in config.AE_CODE_SIZES)
        + (f" ({run['seconds']} s)" if "seconds" in run else ""))


def _write(runs, iterations, data_dir, out):
    result = summary(sorted(runs, key=lambda r: r["seed"]), iterations, data_dir)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def calibrate(runs, out, iterations=None, first_seed=1000, jobs=1, save_models=None, data_dir=None, log=print):
    import multiprocessing
    iterations = iterations or ref_train_ae.ITERATIONS
    data_dir = data_dir or measure.data_dir_default()
    measure.pca(data_dir)
    tasks = [(seed, iterations, data_dir, save_models) for seed in range(first_seed, first_seed + runs)]
    results = []
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        for run in pool.imap_unordered(_one_run, tasks):
            results.append(run)
            _log(run, log)
            if len(results) >= 2:
                _write(results, iterations, data_dir, out)
    result = _write(results, iterations, data_dir, out)
    log(json.dumps(result["bands"], indent=1))
    return result


def calibrate_from_models(folder, out, iterations=None, data_dir=None, log=print):
    """Measure saved reference runs (folder/seed<N>.pt: {str(k): state dict}) instead of training."""
    iterations = iterations or ref_train_ae.ITERATIONS
    data_dir = data_dir or measure.data_dir_default()
    results = []
    for path in sorted(Path(folder).glob("seed*.pt")):
        states = torch.load(path, map_location="cpu", weights_only=True)
        models = {}
        for k in config.AE_CODE_SIZES:
            models[k] = ref_ae.LinearAutoencoder(k)
            models[k].load_state_dict(states[str(k)])
        run = measure_run(models, int("".join(c for c in path.stem if c.isdigit())), data_dir)
        results.append(run)
        _log(run, log)
    if len(results) < 2:
        raise ValueError(f"{folder} holds {len(results)} runs; a band needs at least 2")
    result = _write(results, iterations, data_dir, out)
    log(json.dumps(result["bands"], indent=1))
    return result
