"""Calibration: train the reference N times and derive the training gate's pass band.

Evaluation: the oracle bound on the hidden set (autograder/evaluation.py: the MNIST test
images outside the CS236 subset, binarized by the grader), the set the gate uses; the CS236
subset's figures are stored beside them ("subset_bands"), for comparison only.

Model: the final hidden-set NELBO of a correct submission is normal with unknown mean and
sd (on the CS236 subset, 100 published runs: 101.5 +- 0.55, symmetric). From N calibration runs with mean m and
sample sd s, a new correct run falls outside the two-sided prediction interval
    m +- t_{1 - a/2, N-1} * s * sqrt(1 + 1/N)
with probability exactly a (Student-t prediction interval). With a = 1e-3, a correct
submission fails the gate with probability 1e-3. The same is done for KL and Rec, which
are reported but not gated. On the hidden set the spread between seeds is smaller (sd 0.22
nats over the 20 stored runs, against 0.55 on the 100-image subset); the gated band is never
narrower than config.MIN_BAND_HALF_WIDTH_NATS either side: a margin for what the runs of one
machine cannot show (another CPU's kernels, another thread count).

Each problem with a training gate (autograder/problems.py) has its own calibration file, made the
same way from its own reference (`--problem cvae`: the CVAE, its loop, the hidden set with labels).
"""
import json
import math
import statistics
import time
from pathlib import Path

import torch

from . import config, evaluation, paths, reference
from .reference import data, runtime, train, vae

FAIL_PROBABILITY = 1e-3
TERMS = ("nelbo", "kl", "rec")
# What "bands" were measured on; the training gate uses a calibration only if it says this.
EVALUATION = "hidden"


def student_t_quantile(p, dof):
    """Quantile of Student's t by bisection on its CDF (no scipy on the grader)."""
    def cdf(t):
        x = dof / (dof + t * t)
        # regularized incomplete beta via continued fraction (Numerical Recipes betacf)
        a, b = dof / 2, 0.5
        front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
        c, d, h = 1.0, 1 - (a + b) * x / (a + 1), 0.0
        d = 1 / d if abs(d) > 1e-300 else 1e300
        h = d
        for m in range(1, 300):
            m2 = 2 * m
            for aa in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
                d = 1 + aa * d
                d = 1 / d if abs(d) > 1e-300 else 1e300
                c = 1 + aa / c if abs(1 + aa / c) > 1e-300 else 1e-300
                h *= d * c
        tail = front * h / a / 2  # P(T > |t|)
        return 1 - tail if t > 0 else tail
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def band(values, fail_probability=FAIL_PROBABILITY, min_half_width=0.0):
    """The prediction interval, widened to `min_half_width` either side where it is narrower."""
    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    interval = student_t_quantile(1 - fail_probability / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    half = max(interval, min_half_width)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "half_width": half,
            "interval_half_width": interval}


def train_reference_once(seed, iterations, device, train_u8, problem="vae", train_labels=None):
    """A reference model trained as the grader trains a submission -> the model."""
    torch.manual_seed(seed)
    if problem == "cvae":
        model = reference.cvae.CVAE(z_dim=10).to(device)
        reference.train_cvae.train(model, train_u8, train_labels, iterations, seed=seed)
        return model
    if problem == "beta":              # at beta = 1, as the gate trains it (the VAE's run, step for step)
        model = reference.beta_vae.BetaVAE(z_dim=10).to(device)
        train.train(reference.beta_vae.KLWeighted(model, 1.0), train_u8, iterations, seed=seed)
        return model
    if problem == "mmd":               # through the loop's adaptor, as the gate trains it
        model = reference.mmd_vae.MMDVAE(z_dim=10).to(device)
        train.train(reference.mmd_vae.LossAsBound(model), train_u8, iterations, seed=seed)
        return model
    if problem == "conv":              # the convolutional VAE with the VAE's loop
        model = reference.conv_vae.ConvVAE(z_dim=10).to(device)
        train.train(model, train_u8, iterations, seed=seed)
        return model
    model = vae.VAE(z_dim=10).to(device)
    train.train(model, train_u8, iterations, seed=seed)
    return model


def evaluate_state(state, seed, seconds=None, problem="vae"):
    """One calibration run's figures: the hidden set (gated) and the CS236 subset (reported)."""
    trained = {key: value for key, value in state.items() if key.startswith(evaluation.TRAINED_PREFIXES)}
    arrays = {f"w_{k}": v.detach().cpu().numpy() for k, v in trained.items()}
    scores = evaluation.score(evaluation.validated_state(arrays, problem), problem=problem)
    if scores["hidden"] is None or scores["subset"] is None:
        raise ValueError(f"seed {seed}: the trained reference gives a NaN or infinite bound")
    run = {"seed": seed, **dict(zip(TERMS, scores["hidden"])),
           **{f"subset_{term}": value for term, value in zip(TERMS, scores["subset"])}}
    if seconds is not None:
        run["seconds"] = seconds
    return run


def _train_seed(args):
    """One calibration run in a worker process (one thread: the runs themselves are parallel)."""
    seed, iterations, device, save_dir, problem = args
    import os
    os.environ["VAE_THREADS"] = os.environ.get("VAE_THREADS", "1")
    runtime.configure_threads()
    device = runtime.pick_device(device)
    images, labels = data.load_mnist("train")
    train_u8 = torch.from_numpy(images).to(device)
    train_labels = torch.from_numpy(labels.astype("int64")).to(device)
    start = time.perf_counter()
    model = train_reference_once(seed, iterations, device, train_u8, problem, train_labels)
    seconds = round(time.perf_counter() - start, 1)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    if save_dir is not None:
        _save(state, Path(save_dir) / f"seed{seed}.pt")
    return evaluate_state(state, seed, seconds, problem)


def _save(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".pt.tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def _seed_of(path, fallback):
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else fallback


def _log_run(run, log):
    took = f" ({run['seconds']} s)" if "seconds" in run else ""
    log(f"seed {run['seed']}: hidden NELBO {run['nelbo']:.3f} KL {run['kl']:.3f} Rec {run['rec']:.3f}; "
        f"CS236 subset NELBO {run['subset_nelbo']:.3f}{took}")


def calibrate(runs, iterations=20000, first_seed=1000, device="cpu", out=paths.CALIBRATION, jobs=1, log=print,
              save_models=None, problem="vae"):
    """Train `runs` seeds of `problem`'s reference (`jobs` at a time, in separate processes) and store the
    bands in `out`; `save_models`: a folder where each run's state dict is kept as seed<N>.pt."""
    import multiprocessing
    seeds = [(seed, iterations, device, save_models, problem) for seed in range(first_seed, first_seed + runs)]
    results = []
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        for result in pool.imap_unordered(_train_seed, seeds):
            results.append(result)
            _log_run(result, log)
            if len(results) >= 2:  # saved after every run, so an interrupted calibration keeps its runs
                _write(results, iterations, device, out, problem)
    summary = _write(results, iterations, device, out, problem)
    log(json.dumps(summary["bands"], indent=1))
    return summary


def calibrate_from_models(folder, iterations=20000, out=paths.CALIBRATION, log=print, problem="vae"):
    """Evaluate saved reference state dicts (folder/*.pt, trained for `iterations`) instead of training."""
    files = sorted(Path(folder).glob("*.pt"))
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} .pt files; a band needs at least 2")
    results = []
    for index, path in enumerate(files):
        state = torch.load(path, map_location="cpu", weights_only=True)
        run = evaluate_state(state, _seed_of(path, index), problem=problem)
        run["model"] = path.name
        results.append(run)
        _log_run(run, log)
    summary = _write(results, iterations, "cpu", out, problem)
    log(json.dumps(summary["bands"], indent=1))
    return summary


def _write(results, iterations, device, out, problem="vae"):
    summary = _summary(sorted(results, key=lambda r: r["seed"]), iterations, device)
    if problem != "vae":
        summary = {"problem": problem, **summary}
    if out is not None and Path(out).exists():      # the sample-quality floors (sample_calibration.py) stay
        try:
            kept = json.loads(Path(out).read_text()).get("sample_quality")
        except (OSError, ValueError, AttributeError):
            kept = None
        if kept is not None:
            summary["sample_quality"] = kept
    if out is not None:
        Path(out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _summary(results, iterations, device):
    return {
        "model": __doc__.strip(),
        "evaluation": EVALUATION,
        "hidden_set_sha256": evaluation.hidden_set_sha256(),
        "iterations": iterations,
        "device": str(device),
        "torch": torch.__version__,
        "fail_probability": FAIL_PROBABILITY,
        "runs": results,
        "bands": {term: band([r[term] for r in results], min_half_width=config.MIN_BAND_HALF_WIDTH_NATS
                             if term == "nelbo" else 0.0) for term in TERMS},
        "subset_bands": {term: band([r[f"subset_{term}"] for r in results]) for term in TERMS},
    }
