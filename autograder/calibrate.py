"""Calibration: train the reference N times and derive the training gate's pass band.

Model: the final test-subset NELBO of a correct submission is normal with unknown mean and
sd (100 published runs: 101.5 +- 0.55, symmetric). From N calibration runs with mean m and
sample sd s, a new correct run falls outside the two-sided prediction interval
    m +- t_{1 - a/2, N-1} * s * sqrt(1 + 1/N)
with probability exactly a (Student-t prediction interval). With a = 1e-3, a correct
submission fails the gate with probability 1e-3. The same is done for KL and Rec, which
are reported but not gated.
"""
import json
import math
import statistics
import time

import torch

from . import paths
from .reference import data, runtime, train, vae

FAIL_PROBABILITY = 1e-3


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


def band(values, fail_probability=FAIL_PROBABILITY):
    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = student_t_quantile(1 - fail_probability / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "half_width": half}


def train_reference_once(seed, iterations, device, train_u8, test_x):
    torch.manual_seed(seed)
    model = vae.VAE(z_dim=10).to(device)
    train.train(model, train_u8, iterations, seed=seed)
    return train.evaluate(model, test_x)


def _train_seed(args):
    """One calibration run in a worker process (one thread: the runs themselves are parallel)."""
    seed, iterations, device = args
    import os
    os.environ["VAE_THREADS"] = os.environ.get("VAE_THREADS", "1")
    runtime.configure_threads()
    device = runtime.pick_device(device)
    images, _ = data.load_mnist("train")
    train_u8 = torch.from_numpy(images).to(device)
    test_x = torch.from_numpy(data.load_test_subset()[0]).to(device)
    start = time.perf_counter()
    nelbo, kl, rec = train_reference_once(seed, iterations, device, train_u8, test_x)
    return {"seed": seed, "nelbo": nelbo, "kl": kl, "rec": rec, "seconds": round(time.perf_counter() - start, 1)}


def calibrate(runs, iterations=20000, first_seed=1000, device="cpu", out=paths.CALIBRATION, jobs=1, log=print):
    """Train `runs` seeds (`jobs` at a time, in separate processes) and store the bands in `out`."""
    import multiprocessing
    seeds = [(seed, iterations, device) for seed in range(first_seed, first_seed + runs)]
    results = []
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        for result in pool.imap_unordered(_train_seed, seeds):
            results.append(result)
            log(f"seed {result['seed']}: NELBO {result['nelbo']:.3f} KL {result['kl']:.3f} "
                f"Rec {result['rec']:.3f} ({result['seconds']} s)")
            if len(results) >= 2:  # saved after every run, so an interrupted calibration keeps its runs
                summary = _summary(sorted(results, key=lambda r: r["seed"]), iterations, device)
                out.write_text(json.dumps(summary, indent=1) + "\n")
    log(json.dumps(summary["bands"], indent=1))
    return summary


def _summary(results, iterations, device):
    return {
        "model": __doc__.strip(),
        "iterations": iterations,
        "device": str(device),
        "torch": torch.__version__,
        "fail_probability": FAIL_PROBABILITY,
        "runs": results,
        "bands": {key: band([r[key] for r in results]) for key in ("nelbo", "kl", "rec")},
    }
