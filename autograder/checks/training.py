"""The training gate: train with the student's own files in a sandbox, then score the returned
encoder/decoder weights in this trusted process with the oracle bound (torch.distributions)
on the hidden evaluation set (autograder/evaluation.py). No number the child computes is used:
the child only trains, on the training images this process sends, and says how the run went
(audit), which is checked here against what this process sent and measured.

Each problem with a trained model has its Gate (the CS236 VAE's: VAE_GATE, checked here; the
conditional VAE's in checks/cvae_training.py, the beta-VAE's in checks/beta_training.py): its family, the worker's loop, its calibration and
the names of its leaderboard entries; the run, the audit and the scoring are the same code."""
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import psutil
import torch

from .. import config, evaluation, forked
from ..calibrate import EVALUATION
from .. import reference
from ..problems import PROBLEMS, of
from ..reference import runtime as ref_runtime
from ..reference import train as ref_train
from ..reference import vae as ref_vae
from ..training_images import TrainingImages
from .base import CheckCase, ask, check
from .submission import release_memory

FAMILY = "training"
PROBE_ITERATIONS = 20
PROBE_TIMEOUT_SECONDS = config.LIMITS.wall_seconds + 30     # the short run first: start-up and 20 steps
REFERENCE_TIMING_STEPS = 40
TIMING_IMAGES = 5000


@dataclass(frozen=True)
class Gate:
    """One problem's training gate."""
    family: str                  # its tag: "training", "cvae/training", "beta/training"
    problem: str                 # "vae": what the worker trains and evaluation.py scores
    published: Optional[dict]    # the band used without a calibration (measured on the CS236 subset), or None
    leaderboard_prefix: str = ""  # "CVAE ": its leaderboard entries, beside another problem's
    bound: str = "the reference bound"
    unit_checks: str = "sample_gaussian, kl_normal and negative_elbo_bound"    # named when the NELBO is too high
    iterations: Optional[int] = None     # what its full run trains (None: the grading's, 20,000 by default)
    terms: Tuple[str, str, str] = ("NELBO", "KL", "Rec")     # the names of the three figures it scores
    low_hint: str = (" A NELBO below the band usually means a term is missing or scaled down (e.g. the 1/2 in the "
                     "KL, a mean instead of a sum over pixels).")

    @property
    def calibration(self):
        """Where its calibrated band lives (autograder/calibration.json for the CS236 VAE)."""
        return PROBLEMS[self.problem].calibration_path


VAE_GATE = Gate(FAMILY, "vae", config.PUBLISHED_BAND)


@dataclass
class TrainingOutcome:
    """One submission's training run as the gate scored it (kept in submission.outcomes)."""
    iterations: int
    hidden: Optional[Tuple[float, float, float]] = None     # (nelbo, kl, rec) on the hidden set, finite
    subset: Optional[Tuple[float, float, float]] = None     # the same on the CS236 subset, for comparison
    cpu: Optional[Tuple[float, float]] = None               # (CPU seconds used, allowed) where measured
    error: Optional[str] = None                             # why the run does not count
    state: Optional[dict] = None                            # the accepted encoder/decoder tensors, once scored
    samples: Optional[dict] = None                          # {leaderboard name: value} of its sample check, if run


def leaderboard(submission, gate=VAE_GATE):
    """Gradescope leaderboard entries of a run that counts ([] otherwise): only finite values."""
    outcome = submission.outcomes.get(gate.family)
    if outcome is None or outcome.error or outcome.hidden is None \
            or not all(math.isfinite(v) for v in outcome.hidden):
        return []
    entries = [{"name": gate.leaderboard_prefix + name, "value": round(value, 3), "order": "asc"}
               for name, value in zip(gate.terms, outcome.hidden)]
    entries += [{"name": gate.leaderboard_prefix + name, "value": round(value, 3), "order": "desc"}
                for name, value in (outcome.samples or {}).items() if math.isfinite(value)]
    return entries


def leaderboards(submission):
    """The leaderboard entries of every gate of the submission's problems, in their order."""
    from .cvae_training import GATES
    return [entry for gate in GATES if gate.family in of(submission).checks
            for entry in leaderboard(submission, gate)]


def pass_band(data_dir=None, gate=VAE_GATE):
    """-> (low, high, where the band comes from). A calibration counts only when it was measured
    on this hidden set (same evaluation, same images binarized the same way); without one, the
    gate's published band, or (None, None, "none") where it has none."""
    try:
        calibration = json.loads(gate.calibration.read_text())
        if calibration.get("evaluation") == EVALUATION and \
                calibration.get("problem", "vae") == PROBLEMS[gate.problem].calibration_problem and \
                calibration.get("hidden_set_sha256") == evaluation.hidden_set_sha256(data_dir):
            band = calibration["bands"]["nelbo"]
            return band["low"], band["high"], "calibrated"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if gate.published is None:
        return None, None, "none"
    band = gate.published["nelbo"]
    return band["low"], band["high"], "published"


def cpu_time_is_work(device):
    """Whether the child's CPU time measures the work it did: on the CPU with one thread (as in
    Gradescope's default half-CPU container). With several threads, torch's idle threads spin
    while they wait, and on a crowded host that inflates CPU time up to tenfold: a correct run
    could then look like extra work, so the CPU-time check is not made (README: what the gate proves)."""
    if device != "cpu":
        return False
    try:
        threads = int(os.environ.get("VAE_THREADS", "0"))
    except ValueError:
        threads = 0
    return (threads if threads >= 1 else ref_runtime.available_cpus()) == 1


def reference_step_cpu_seconds(train_u8, steps=REFERENCE_TIMING_STEPS, labels=None, gate=VAE_GATE):
    """CPU seconds per training step of the reference here, now, with one thread (after a few warm-up steps)."""
    torch.manual_seed(0)
    images = torch.from_numpy(train_u8)
    if gate.problem == "cvae":
        model, loop = reference.cvae.CVAE(z_dim=config.Z_DIM), reference.train_cvae
        run = lambda count, seed: loop.train(model, images, torch.from_numpy(labels), count, seed=seed)  # noqa: E731
    elif gate.problem == "mmd":                  # the VAE's networks, through the loop's loss adaptor
        model = reference.mmd_vae.LossAsBound(reference.mmd_vae.MMDVAE(z_dim=config.Z_DIM))
        run = lambda count, seed: ref_train.train(model, images, count, seed=seed)  # noqa: E731
    elif gate.problem == "conv":                 # the convolutional VAE with the VAE's loop
        model = reference.conv_vae.ConvVAE(z_dim=config.Z_DIM)
        run = lambda count, seed: ref_train.train(model, images, count, seed=seed)  # noqa: E731
    elif gate.problem == "beta":                 # the VAE's networks, through the loop's KL-weight adaptor
        model = reference.beta_vae.KLWeighted(reference.beta_vae.BetaVAE(z_dim=config.Z_DIM), 1.0)
        run = lambda count, seed: ref_train.train(model, images, count, seed=seed)  # noqa: E731
    else:
        model = ref_vae.VAE(z_dim=config.Z_DIM)
        run = lambda count, seed: ref_train.train(model, images, count, seed=seed)  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(5, 0)
        start = time.process_time()
        run(steps, 1)
    finally:
        torch.set_num_threads(threads)
    return (time.process_time() - start) / steps


def cpu_allowed(iterations, step_cpu, runs=1):
    """CPU seconds `runs` runs of `iterations` in all may use where the reference needs `step_cpu` per step:
    the fixed allowance (start-up, first calls, the data hash) once per run."""
    return runs * config.TRAINING_CPU_FIXED_SECONDS + config.TRAINING_CPU_SLOWDOWN_LIMIT * iterations * step_cpu


def sandbox_cpu_seconds(box):
    """CPU seconds used so far by the sandbox's worker (with its reaped children) and its other
    live processes, as the kernel counts them (psutil, read by this process)."""
    total = 0.0
    for pid in {box.process.pid, *box.members()}:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if pid == box.process.pid:
            total += times.children_user + times.children_system
    return total


def audit_problems(audit, iterations, digest, labels_digest=None):
    """Sentences saying why the child's account of its run cannot be right ([] when it can)."""
    if not isinstance(audit, dict):
        return ["The training run did not report how it ran: the provided worker or training loop was replaced."]
    problems = []
    replaced = audit.get("replaced")
    if not isinstance(replaced, list) or replaced:
        names = ", ".join(str(name) for name in replaced[:8]) if isinstance(replaced, list) else "unknown"
        problems.append(f"Your code replaced or changed functions the provided training loop uses ({names}). "
                        "Training must run the provided train.py, fast.py and torch as they are.")
    if audit.get("optimizer_steps") != [iterations] or audit.get("optimizers") != 1:
        problems.append(f"The optimizer of the provided loop took {audit.get('optimizer_steps')} steps for "
                        f"{iterations} iterations: your code must not step the optimizer itself.")
    if audit.get("batches") != [iterations]:
        problems.append(f"The provided loop drew {audit.get('batches')} batches for {iterations} iterations.")
    if not audit.get("same_images") or audit.get("images_sha256") != digest \
            or audit.get("images_sha256_before") != digest:
        problems.append("The training images the loop used are not the ones the grader sent (changed or replaced).")
    if labels_digest is not None and (audit.get("labels_sha256") != labels_digest
                                      or audit.get("labels_sha256_before") != labels_digest):
        problems.append("The training labels the loop used are not the ones the grader sent (changed or replaced).")
    return problems


def _run_training(submission, params, images, timeout=None, key="train", family=FAMILY):
    """One training request -> (reply, CPU seconds the sandbox used for it)."""
    box = submission.sandbox(family)
    before = sandbox_cpu_seconds(box)
    reply = ask(submission, family, "train", params, arrays=images, key=key, timeout=timeout)
    return reply, sandbox_cpu_seconds(box) - before


def full_run_timeout(iterations, full_iterations, probe_seconds=0.0, probe_iterations=PROBE_ITERATIONS):
    """Wall seconds for a training request of `iterations` where TRAINING_LIMITS is sized for
    `full_iterations`: the probe's allowance for start-up plus the larger of the run's share of
    that limit and 10 times what the probe's pace (on this host, now) implies. A run shortened
    for testing (--iterations) that hangs then fails in about a minute, not fifteen, while a
    slow or crowded host stretches the limit with it."""
    share = config.TRAINING_LIMITS.wall_seconds * iterations / max(full_iterations, 1)
    paced = 10 * probe_seconds * iterations / max(probe_iterations, 1)
    return min(config.TRAINING_LIMITS.wall_seconds, PROBE_TIMEOUT_SECONDS + max(share, paced))


def gate_iterations(submission, gate=VAE_GATE):
    """The iterations this gate trains for the grading (its own full count at most)."""
    return submission.iterations if gate.iterations is None else min(submission.iterations, gate.iterations)


def trained_result(submission, gate=VAE_GATE):
    """Train once per submission (kept in submission.outcomes) -> TrainingOutcome whose `hidden`
    is set, or AssertionError saying why the run does not count."""
    outcome = submission.outcomes.get(gate.family)
    if outcome is None:
        outcome = submission.outcomes[gate.family] = TrainingOutcome(gate_iterations(submission, gate))
        try:
            _train_and_score(submission, outcome, gate)
        except AssertionError as error:
            outcome.error = str(error)
    if outcome.error:
        raise AssertionError(outcome.error)
    return outcome


def _train_and_score(submission, outcome, gate=VAE_GATE):
    iterations, family = gate_iterations(submission, gate), gate.family
    submission.sandbox(family)   # started first: the other families' sandboxes, cached replies and memory are let go
    images = TrainingImages(submission.data_dir)     # read in pieces: never whole in this process
    digest = images.sha256()
    labels = labels_digest = None
    if gate.problem == "cvae":                       # the labels: 60 kB, sent whole
        labels = images.labels()
        labels_digest = hashlib.sha256(labels.data).hexdigest()
    # The reference's CPU cost per step, timed here before and after the child runs (the larger
    # counts: the host may get busier meanwhile), on a few thousand images (binarizing is per batch),
    # each time in a forked child of this process (what the reference's optimizer imports dies with it).
    timing_images = images.rows(0, TIMING_IMAGES) if cpu_time_is_work(submission.device) else None
    timing_labels = labels[:TIMING_IMAGES] if labels is not None else None
    step_cpu = forked.number_in_child(reference_step_cpu_seconds, timing_images, labels=timing_labels, gate=gate) \
        if timing_images is not None else None
    params = {"iterations": iterations, "seed": config.TRAINING_SEED, "z_dim": config.Z_DIM,
              "device": submission.device, "parameters": sorted(evaluation.expected_state(gate.problem))}
    if gate.problem != "vae":
        params["problem"] = gate.problem
    # A short run first, under the unit-check time limit: a submission that hangs fails in
    # seconds instead of holding the grader for the whole training limit. It carries the images;
    # the full run trains on the child's copy of them (whose hash the audit checks).
    probe = dict(params, iterations=min(PROBE_ITERATIONS, iterations))
    sent = {"images": images.for_wire(), **({"labels": labels} if labels is not None else {})}
    started = time.monotonic()
    reply, probe_cpu = _run_training(submission, probe, sent, timeout=PROBE_TIMEOUT_SECONDS, key="probe", family=family)
    probe_seconds = time.monotonic() - started
    release_memory()        # the probe's buffers, before the long run
    problems = audit_problems(reply.info.get("audit"), probe["iterations"], digest, labels_digest)
    if problems:
        raise AssertionError(" ".join(problems))
    full = gate.iterations if gate.iterations is not None else config.DEFAULT_ITERATIONS
    reply, cpu = _run_training(submission, params, None, timeout=full_run_timeout(iterations, full, probe_seconds, probe["iterations"]),
                               family=family)
    submission.close()       # the trained child's memory is gone before the evaluation below runs
    problems = audit_problems(reply.info.get("audit"), iterations, digest, labels_digest)
    if step_cpu is not None:
        step_cpu = max(step_cpu, forked.number_in_child(reference_step_cpu_seconds, timing_images,
                                                        labels=timing_labels, gate=gate))
        # The probe's CPU counts too: the worker lives on between the runs, so weights trained
        # longer during the probe can be swapped into the full run (hostile extra_training_in_probe).
        cpu, allowed = cpu + probe_cpu, cpu_allowed(iterations + probe["iterations"], step_cpu, runs=2)
        outcome.cpu = (cpu, allowed)
        if cpu > allowed:
            problems.append(f"Training {iterations} iterations (and the {probe['iterations']} of the short run "
                            f"before) used {cpu:.1f} s of CPU, more than "
                            f"{config.TRAINING_CPU_SLOWDOWN_LIMIT:g} times what the reference needs here "
                            f"({allowed:.1f} s allowed): the run did more work than the iterations it reports "
                            "(extra training steps?).")
    if problems:
        raise AssertionError(" ".join(problems))
    state = evaluation.validated_state(reply.arrays, gate.problem)
    scores = evaluation.score(state, submission.data_dir, gate.problem)
    outcome.subset = scores["subset"]
    if scores["hidden"] is None:
        raise AssertionError(f"After {iterations} iterations {gate.bound} on your trained model is NaN or "
                             "infinite on the evaluation images: the weights are finite but extreme.")
    outcome.hidden = scores["hidden"]
    outcome.state = state           # what a check of the trained model's samples reads (no retraining)


def judge(case, gate, set_score):
    """The gate's check, run by `case` (a CheckCase): train, score, and set the points from the band."""
    points = config.ALL_CHECKS[gate.family]["trained_nelbo"].points
    set_score(0)
    result = trained_result(case.submission, gate)
    nelbo, kl, rec = result.hidden
    subset = result.subset
    first, second, third = gate.terms
    summary = (f"After {result.iterations} iterations, {gate.bound} on the hidden test set gives "
               f"{first} {nelbo:.2f}, {second} {kl:.4g}, {third} {rec:.2f}"
               + (f" (on the CS236 test subset: {first} {subset[0]:.2f})." if subset else "."))
    if result.iterations < (gate.iterations or config.DEFAULT_ITERATIONS):
        set_score(points)   # shortened runs exist for the grader's own tests only: no band applies
        print(summary + " (shortened run: the pass band applies to full runs only)")
        return
    low, high, source = pass_band(case.submission.data_dir, gate)
    if source == "none":
        case.fail(f"{summary} This grader has no calibrated pass band for {gate.family} (the instructor must run "
                  f"`python -m autograder calibrate --problem {gate.problem}`): no points can be given.")
    if source == "published":
        # Without a calibration of this grader (e.g. the students' public bundle), the band is the
        # course's published one, measured on the CS236 subset: compare the subset's figure with it.
        if subset is None:
            case.fail(f"{summary} The published pass band applies to the CS236 test subset, whose NELBO "
                      "is not finite here.")
        nelbo, source = subset[0], "published (CS236 test subset)"
    if low <= nelbo <= high:
        set_score(points)
        print(summary + f" Inside the {source} pass band [{low:.2f}, {high:.2f}].")
        return
    distance = low - nelbo if nelbo < low else nelbo - high
    score = round(points * max(0.0, 1 - distance / config.PARTIAL_CREDIT_NATS), 2)
    set_score(score)
    direction = "below" if nelbo < low else "above"
    hint = (gate.low_hint if nelbo < low else
            f" A {first} above the band usually means the model learned worse: check the checks of "
            f"{gate.unit_checks} above.")
    case.fail(f"{summary} That is {distance:.2f} nats {direction} the {source} pass band "
              f"[{low:.2f}, {high:.2f}]: {score} of {points} points.{hint}")


class TrainingChecks(CheckCase):

    @check(FAMILY, "trained_nelbo", partial=True)
    def test_trained_nelbo(self, set_score=None):
        """training: 20,000 iterations with your files reach the reference NELBO (scored by the reference bound on hidden test images)"""
        judge(self, VAE_GATE, set_score)
