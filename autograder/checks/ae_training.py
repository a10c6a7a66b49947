"""The linear autoencoder's training gate (problem `ae`): the student's LinearAutoencoder trained at
every k of config.AE_CODE_SIZES by the provided loop (train_ae.py) in the sandbox, on the 54,000
training images of the split that this process sends (never a validation image), then probed there
at points this process chose (ae_evaluation.probe_points, a fresh seed per grading). From the values
that came back the grader rebuilds each affine map and measures it here, in float64, against its own
PCA of the same training images: the validation reconstruction error (12.2, every k) and the largest
principal angle between the decoder's columns and the top-k principal subspace (12.3, the k whose
angle the loop brings close to zero: see calibration_ae.json and README "Calibration").

12.1 says whether the trained maps can be measured at all: affine (a non-linear map is named as
such) and made of the parameters the provided loop trained (a model whose encode or decode computes
something else, e.g. PCA of the images it saw, fails here). No number the child computed is used."""
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .. import ae_evaluation as measure
from .. import config, forked, wire
from ..problems import PROBLEMS
from ..reference import ae as ref_ae
from ..reference import train_ae as ref_train_ae
from .ae import maps_from_parameters, _nonlinearity
from .base import CheckCase, check, output
from .submission import release_memory
from .training import PROBE_ITERATIONS, _run_training, audit_problems, cpu_allowed, cpu_time_is_work, full_run_timeout

FAMILY = "ae/training"
CALIBRATION_EVALUATION = "ae-validation"
TIMING_IMAGES = 5000
TIMING_STEPS = 20


@dataclass
class AeOutcome:
    iterations: int
    measures: dict = field(default_factory=dict)      # k -> ae_evaluation.measures of the trained maps
    unusable: dict = field(default_factory=dict)      # k -> why its maps cannot be measured (12.1's message)
    reasons: dict = field(default_factory=dict)       # k -> the same in a few words (12.2 and 12.3 name it)
    cpu: Optional[tuple] = None
    error: Optional[str] = None


def iterations_for(submission):
    """The loop's own budget (train_ae.ITERATIONS) for a full grading; a shortened one (--iterations) as asked."""
    return ref_train_ae.ITERATIONS if submission.iterations >= config.DEFAULT_ITERATIONS else submission.iterations


def bands(data_dir=None):
    """-> ({name: high}, where they come from): the calibrated upper ends, e.g. "excess_2", "angle_5";
    without a calibration measured on this split and PCA (the students' public bundle), the published
    ones (config.AE_PUBLISHED_BOUNDS)."""
    try:
        calibration = json.loads(PROBLEMS["ae"].calibration_path.read_text())
        if calibration.get("evaluation") == CALIBRATION_EVALUATION and calibration.get("problem") == "ae" \
                and calibration.get("split_sha256") == config.AE_SPLIT_SHA256:
            return {name: band["high"] for name, band in calibration["bands"].items()}, "calibrated"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return dict(config.AE_PUBLISHED_BOUNDS), "published"


def angle_code_sizes(data_dir=None):
    """The k whose principal angle is gated: those the calibration file lists (see calibrate.py)."""
    limits, _ = bands(data_dir)
    return tuple(k for k in config.AE_CODE_SIZES if f"angle_{k}" in limits) or config.AE_ANGLE_CODE_SIZES


def reference_seconds_per_iteration(rows):
    """CPU seconds of one iteration at every k (one thread) of the reference here, now."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    images = torch.from_numpy(rows)
    total = 0.0
    try:
        for k in config.AE_CODE_SIZES:
            torch.manual_seed(0)
            model = ref_ae.LinearAutoencoder(k)
            ref_train_ae.train(model, images, 3, loss=ref_ae.reconstruction_loss)
            start = time.process_time()
            ref_train_ae.train(model, images, TIMING_STEPS, loss=ref_ae.reconstruction_loss, seed=1)
            total += (time.process_time() - start) / TIMING_STEPS
    finally:
        torch.set_num_threads(threads)
    return total


def trained(submission):
    outcome = submission.outcomes.get(FAMILY)
    if outcome is None:
        outcome = submission.outcomes[FAMILY] = AeOutcome(iterations_for(submission))
        try:
            _train_and_measure(submission, outcome)
        except AssertionError as error:
            outcome.error = str(error)
    if outcome.error:
        raise AssertionError(outcome.error)
    return outcome


def _train_and_measure(submission, outcome):
    iterations, data_dir = outcome.iterations, submission.data_dir
    submission.sandbox(FAMILY)      # the other families' sandboxes, cached replies and memory are let go
    digest = hashlib.sha256()
    count = 0
    for rows in measure.training_rows(data_dir):
        digest.update(rows.data)
        count += len(rows)
    digest = digest.hexdigest()
    seed = secrets.randbits(32)
    points = {}
    for k in config.AE_CODE_SIZES:
        points["enc_in"], points[f"dec_in{k}"] = measure.probe_points(k, seed)
    timing = next(measure.training_rows(data_dir, TIMING_IMAGES)) if cpu_time_is_work(submission.device) else None
    step_cpu = forked.number_in_child(reference_seconds_per_iteration, timing) if timing is not None else None
    params = {"problem": "ae", "ks": list(config.AE_CODE_SIZES), "seed": config.TRAINING_SEED, "device": submission.device}
    images = wire.Pieces((count, measure.PIXELS), np.uint8, lambda: measure.training_rows(data_dir))
    probe = dict(params, iterations=min(PROBE_ITERATIONS, iterations))
    started = time.monotonic()
    reply, probe_cpu = _run_training(submission, probe, {"images": images, **points},
                                     timeout=config.LIMITS.wall_seconds + 60, key="probe", family=FAMILY)
    probe_seconds = time.monotonic() - started
    release_memory()
    problems = _audits(reply, probe["iterations"], digest)
    if problems:
        raise AssertionError(" ".join(problems))
    reply, cpu = _run_training(submission, dict(params, iterations=iterations), points,
                               timeout=full_run_timeout(iterations, ref_train_ae.ITERATIONS, probe_seconds,
                                                        probe["iterations"]), family=FAMILY)
    submission.close()
    problems = _audits(reply, iterations, digest)
    if step_cpu is not None:
        step_cpu = max(step_cpu, forked.number_in_child(reference_seconds_per_iteration, timing))
        # The probe's CPU counts too (the worker lives on between the runs: training.py).
        cpu, allowed = cpu + probe_cpu, cpu_allowed(iterations + probe["iterations"], step_cpu, runs=2)
        outcome.cpu = (cpu, allowed)
        if cpu > allowed:
            problems.append(f"Training {iterations} iterations at each k (and the {probe['iterations']} of the short "
                            f"run before) used {cpu:.1f} s of CPU, more than "
                            f"{config.TRAINING_CPU_SLOWDOWN_LIMIT:g} times what the reference needs here "
                            f"({allowed:.1f} s allowed): the run did more work than the iterations it reports.")
    if problems:
        raise AssertionError(" ".join(problems))
    runs = reply.info.get("runs") if isinstance(reply.info.get("runs"), dict) else {}
    for k in config.AE_CODE_SIZES:
        enc_in, dec_in = points["enc_in"], points[f"dec_in{k}"]
        try:
            enc = measure.affine_fit(enc_in, output(reply, f"enc_{k}", f"encode at k = {k}", (len(enc_in), k)))
            dec = measure.affine_fit(dec_in, output(reply, f"dec_{k}", f"decode at k = {k}", (len(dec_in), 784)))
        except AssertionError as error:
            outcome.unusable[k], outcome.reasons[k] = str(error), "no usable encode or decode values"
            continue
        bad = [(what, fit) for what, fit in (("encode", enc), ("decode", dec)) if not fit.worst_ratio <= 1]
        if bad:
            what, fit = bad[0]
            values = reply.arrays[f"{what[:3]}_{k}"]
            outcome.unusable[k] = (f"after training, {what} is not affine (random points stray from it by up to "
                                   f"{fit.worst_error:.3g}, {fit.worst_ratio:.3g} times float32 rounding)."
                                   + _nonlinearity(values))
            outcome.reasons[k] = f"{what} is not affine"
            continue
        listed = runs.get(str(k), {}).get("parameters") if isinstance(runs.get(str(k)), dict) else None
        listed = listed if isinstance(listed, list) else []
        parameters = {}
        for i, entry in enumerate(listed[:16]):
            if f"p{i}_{k}" in reply.arrays:
                parameters[i] = (output(reply, f"p{i}_{k}", f"parameter {i}"),
                                 bool(entry[1]) if isinstance(entry, list) and len(entry) == 2 else False)
        problem = maps_from_parameters(enc, dec, parameters, k)
        if problem is not None:
            outcome.unusable[k] = (f"the trained encode and decode are not the maps of the trained parameters: "
                                   f"{problem}. The model must compute its codes and reconstructions from the "
                                   "weights the provided loop trains.")
            outcome.reasons[k] = "encode and decode are not the maps of the trained parameters"
            continue
        outcome.measures[k] = measure.measures(enc, dec, data_dir, k)


def _audits(reply, iterations, digest):
    runs = reply.info.get("runs")
    if not isinstance(runs, dict) or sorted(runs) != sorted(str(k) for k in config.AE_CODE_SIZES):
        return ["The training run did not report how it ran: the provided worker or training loop was replaced."]
    problems = []
    for k in config.AE_CODE_SIZES:
        run = runs[str(k)] if isinstance(runs[str(k)], dict) else {}
        for problem in audit_problems(run.get("audit"), iterations, digest):
            if problem not in problems:
                problems.append(problem)
    return problems


class AeTrainingChecks(CheckCase):

    @check(FAMILY, "trained_maps_affine")
    def test_trained_maps_affine(self):
        """ae/training: after training at k = 2, 5, 10, 50, 100, encode and decode are affine maps made of the trained parameters"""
        outcome = trained(self.submission)
        if outcome.unusable:
            self.fail(" ".join(f"At k = {k}: {message}" for k, message in sorted(outcome.unusable.items())))
        print(f"{outcome.iterations} iterations at each k; every trained map is affine and made of its parameters.")

    @check(FAMILY, "validation_error", partial=True)
    def test_validation_error(self, set_score=None):
        """ae/training: the validation reconstruction error is within the calibrated margin of PCA's at every k"""
        self.judge(set_score, "excess", config.AE_CODE_SIZES, "validation_error")

    @check(FAMILY, "principal_angles", partial=True)
    def test_principal_angles(self, set_score=None):
        """ae/training: the decoder's column space is within the calibrated angle of the top-k principal subspace (k = 2, 5, 10)"""
        self.judge(set_score, "angle", angle_code_sizes(self.submission.data_dir), "principal_angles")

    def judge(self, set_score, measure_name, code_sizes, check_name):
        points = config.ALL_CHECKS[FAMILY][check_name].points
        set_score(0)
        outcome = trained(self.submission)
        limits, source = bands(self.submission.data_dir)
        full = outcome.iterations >= ref_train_ae.ITERATIONS
        lines, passed = [], 0
        for k in code_sizes:
            if k in outcome.unusable:
                lines.append(f"k = {k}: not measured ({outcome.reasons[k]}: see check 12.1).")
                continue
            m = outcome.measures[k]
            shown = (f"k = {k}: validation error {m['error']:.6f}, PCA's {m['pca_error']:.6f} "
                     f"(excess {100 * m['excess']:+.3f}%)" if measure_name == "excess"
                     else f"k = {k}: largest principal angle {m['angle']:.3f} degrees")
            limit = limits.get(f"{measure_name}_{k}")
            if not full:
                passed += 1
                lines.append(shown + ".")
            elif limit is None:
                lines.append(shown + ": no calibrated bound (the instructor must run `python -m autograder "
                                     "calibrate --problem ae`).")
            elif m[measure_name] <= limit:
                passed += 1
                lines.append(shown + (f", within the calibrated {100 * limit:+.3f}%." if measure_name == "excess"
                                      else f", within the calibrated {limit:.3f} degrees."))
            else:
                hint = (" A larger error than PCA's: a missing bias, a non-linearity, a wrong loss or too few "
                        "effective steps (checks 11.x)." if measure_name == "excess" else
                        " The decoder spans another subspace than PCA's top k: see check 12.2 and the loss checks.")
                lines.append(shown + (f", above the calibrated {100 * limit:+.3f}%." if measure_name == "excess"
                                      else f", above the calibrated {limit:.3f} degrees.") + hint)
        score = round(points * passed / len(code_sizes), 2)
        set_score(score)
        text = (f"After {outcome.iterations} iterations at each k ({source} bounds): " if full else
                f"After {outcome.iterations} iterations at each k (a shortened run: the bounds apply to full runs "
                "only, every measured k counts): ") + " ".join(lines)
        if passed < len(code_sizes):
            self.fail(text + f" {score} of {points} points.")
        print(text)
