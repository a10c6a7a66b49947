"""Everything an instructor may want to change, in one place.

Each check is listed under the student function it exercises (which is also its Gradescope
tag) with its points and visibility. The test methods in checks/ look their entry up by
name, so points and visibility change here and nowhere else.
"""
from dataclasses import dataclass, replace
from pathlib import Path

# The students' public bundle (`python -m autograder build --public`) carries this marker: it
# has no reference solution, so the negative_elbo_bound checks use the student's own utils.
PUBLIC = (Path(__file__).resolve().parent / "PUBLIC").exists()

SUBMISSION_FILES = ("utils.py", "vae.py")
PROVIDED_FILES = ("nns.py", "train.py", "fast.py", "data.py", "runtime.py")     # always the reference copies
# What student code may import besides the standard library (installed by setup.sh from
# requirements.txt; tests/test_messy.py checks that each is pinned there and importable).
STUDENT_PACKAGES = ("torch", "numpy", "matplotlib", "tqdm")

DEFAULT_ITERATIONS = 20000
TRAINING_SEED = 0
Z_DIM = 10

# Used when autograder/calibration.json is missing: the official solution's 100-run spread.
PUBLISHED_BAND = {"nelbo": {"mean": 101.5, "sd": 0.55, "low": 99.5, "high": 103.5}}
# The conditional VAE has no course-published figure: without its calibration (the students' public
# bundle) its gate compares the CS236 subset's NELBO with this grader's 20 reference runs there
# (calibration_cvae.json's subset band, 95.97 +- 0.53), +-2 nats as for the VAE's published band.
CVAE_PUBLISHED_BAND = {"nelbo": {"mean": 95.97, "sd": 0.53, "low": 93.97, "high": 97.97}}
# The MMD-VAE likewise: calibration_mmd.json's subset band of the loss (20 runs of 5,000 iterations: 103.32
# +- 1.62 on the CS236 subset, whose 100 codes make the MMD term noisy), its prediction interval at 1e-3.
MMD_PUBLISHED_BAND = {"nelbo": {"mean": 103.32, "sd": 1.62, "low": 96.78, "high": 109.86}}
# The convolutional VAE's: calibration_conv.json's CS236-subset band (its 1e-3 prediction interval), the same way.
CONV_PUBLISHED_BAND = {"nelbo": {"mean": 107.34, "sd": 1.02, "low": 103.29, "high": 111.38}}
# The gated band is at least this wide either side of the calibrated mean (see calibrate.py).
MIN_BAND_HALF_WIDTH_NATS = 0.5
# Outside the band, the training score falls linearly to zero over this many nats.
PARTIAL_CREDIT_NATS = 6.0
# The hidden evaluation set (autograder/evaluation.py): the MNIST test images outside the
# CS236 subset, binarized by the grader with this seed; each image is scored with this many
# draws of z (19,802 rows: twice the subset's 100 x 100, about a second of CPU; one draw leaves
# an evaluation noise of about 0.05 nats, two about 0.035).
HIDDEN_SET_SEED = 236
HIDDEN_EVAL_REPEATS = 2

# Largest accepted submitted file. The reference utils.py and vae.py are about 5 kB each, and a
# generous solution with comments stays well under 20 kB; trained weights (about 1.4 MB as
# float32, 1.6 MB as base64) cannot be shipped inside a file this size.
MAX_SUBMISSION_FILE_BYTES = 100_000

# Plausibility of the training run, from the child's CPU time as this process reads it in /proc:
# at most this many times the reference's CPU time per step measured here just before, plus a
# fixed allowance (start-up, first calls, the data hash). A correct but slow bound fits; a run
# that trains many times longer than it reports does not.
TRAINING_CPU_SLOWDOWN_LIMIT = 5.0
TRAINING_CPU_FIXED_SECONDS = 3.0

# The grader's digit classifier (autograder/digits.py), which reads what a trained model generates:
# the sha256 of its shipped weights, autograder/digit_classifier.pt (`python -m autograder classifier`).
DIGIT_CLASSIFIER_SHA256 = "e14f2e12b100074160fbeaff75fa333e1b19113c5ad9a6dc4c5d235e1ca08c60"
# The sample-quality floors (autograder/sample_quality.py) where a problem's calibration file has none
# (the students' public bundle): the figures `calibrate-samples` derived from the 20 reference runs.
VAE_SAMPLE_FLOORS = {"digits_present": 8, "mean_top_probability": 0.8626}
CVAE_SAMPLE_FLOORS = {"min_fraction": 0.8842}


@dataclass(frozen=True)
class Check:
    number: str
    points: float
    visibility: str = "visible"       # visible | hidden | after_due_date | after_published


CHECKS = {
    "sample_gaussian": {
        "shape_dtype_device": Check("1.1", 1),
        "mean_and_variance": Check("1.2", 2),
        "independent_noise": Check("1.3", 1),
        "pathwise_gradient": Check("1.4", 1.5),
        "inputs_unchanged": Check("1.5", 0.5),
    },
    "kl_normal": {
        "closed_form": Check("2.1", 2),
        "edge_cases": Check("2.2", 1),
        "properties": Check("2.3", 1),
        "gradient": Check("2.4", 1),
    },
    "negative_elbo_bound": {
        "three_scalars": Check("3.1", 1),
        "kl_term": Check("3.2", 1.5),
        "rec_term": Check("3.3", 2),
        "batch_mean": Check("3.4", 1),
        "gradients": Check("3.5", 1.5),
    },
    "training": {
        "trained_nelbo": Check("4.1", 5),
    },
}

# The other problems a course may assign (autograder/problems.py), numbered after the CS236 VAE's.
# Their functions' tags are "problem/function"; a check's number is the same in every selection.
CVAE_CHECKS = {
    "cvae/negative_elbo_bound": {
        "three_scalars": Check("5.1", 1),
        "kl_term": Check("5.2", 1.5),
        "rec_term": Check("5.3", 2),
        "batch_mean": Check("5.4", 1),
        "label_reaches_both": Check("5.5", 1.5),
        "gradients": Check("5.6", 1.5),
    },
    "cvae/training": {
        "trained_nelbo": Check("6.1", 5),
        "trained_samples": Check("6.2", 2),
    },
}
BETA_CHECKS = {
    "beta/negative_elbo_bound": {
        "three_scalars": Check("7.1", 1),
        "kl_term": Check("7.2", 1),
        "rec_term": Check("7.3", 1.5),
        "batch_mean": Check("7.4", 1),
        "weighted_loss": Check("7.5", 1.5),
        "weight_on_kl_only": Check("7.6", 1.5),
        "gradients": Check("7.7", 1.5),
        "default_beta": Check("7.8", 0.5),
    },
    "beta/training": {
        "trained_nelbo": Check("8.1", 5),
        "trained_samples": Check("8.2", 2),
    },
}
# The log-variance VAE (problem `logvar`): its two functions only, no training gate.
LOGVAR_CHECKS = {
    "logvar/sample_gaussian_logvar": {
        "shape_dtype": Check("9.1", 0.5),
        "mean_and_variance": Check("9.2", 1.5),
        "independent_noise": Check("9.3", 1),
        "pathwise_gradient": Check("9.4", 1),
        "large_log_variance": Check("9.5", 1),
    },
    "logvar/kl_normal_logvar": {
        "closed_form": Check("10.1", 1.5),
        "edge_cases": Check("10.2", 0.5),
        "properties": Check("10.3", 1),
        "gradient": Check("10.4", 1),
        "large_log_variance": Check("10.5", 1),
    },
}
MMD_CHECKS = {
    "mmd/mmd": {
        "reference_values": Check("13.1", 1.5),
        "bandwidth": Check("13.2", 1),
        "symmetric": Check("13.3", 0.5),
        "biased_zero_on_identical": Check("13.4", 1),
        "unbiased_expectation_zero": Check("13.5", 1),
        "gradients": Check("13.6", 1),
    },
    "mmd/loss": {
        "three_scalars": Check("13.7", 1),
        "codes_and_prior": Check("13.8", 1.5),
        "rec_term": Check("13.9", 1),
        "weighted_loss": Check("13.10", 1),
        "gradients": Check("13.11", 1),
    },
    "mmd/training": {
        "trained_nelbo": Check("14.1", 5),     # the MMD-VAE objective (the name the gates share)
    },
}
# The MMD-VAE's gate trains this many iterations (its loss converges early; 20 calibration runs and a
# grading at half a CPU stay affordable: README, "The MMD-VAE").
MMD_ITERATIONS = 5000
# The linear autoencoder against PCA (problems.AE): 11.x its unit checks, 12.x its trained maps.
AE_CHECKS = {
    "ae/LinearAutoencoder": {
        "shapes": Check("11.1", 1),
        "affine_maps": Check("11.2", 1.5),
        "two_maps_with_biases": Check("11.3", 1.5),
    },
    "ae/reconstruction_loss": {
        "loss_value": Check("11.4", 2),
        "loss_gradient": Check("11.5", 1),
    },
    "ae/training": {
        "trained_maps_affine": Check("12.1", 1),
        "validation_error": Check("12.2", 3),
        "principal_angles": Check("12.3", 2),
    },
}
# The autoencoder's split of MNIST's 60,000 training images (solution/train_ae.py `split`): the sha256
# of its indices (train then validation, int64 little-endian), so that it cannot drift.
AE_SPLIT_SHA256 = "d931717929c20421ee21d79b6ea631bc3f293ad0e27b53d71e03d69f6182b3a7"
AE_CODE_SIZES = (2, 5, 10, 50, 100)
# The k whose largest principal angle is gated where the calibration file lists none (see calibration_ae.json):
# below k = 10 the eigen-gaps are wide and the loop's angle ends under a degree; at 50 and 100 the last
# directions' gaps are tiny and the angle stays tens of degrees while the error equals PCA's.
AE_ANGLE_CODE_SIZES = (2, 5, 10)
# The calibrated upper bounds are never tighter than these above the reference runs' mean (ae_calibration.py).
# Without calibration_ae.json (the students' public bundle: the split is public, the PCA is computed there
# too) the gate uses these upper bounds: calibration_ae.json's, as measured on 2026-11-29 (20 runs; a test
# fails if they drift from the file).
AE_PUBLISHED_BOUNDS = {"excess_2": 0.00104, "excess_5": 0.00106, "excess_10": 0.00108, "excess_50": 0.0017,
                       "excess_100": 0.00245, "angle_2": 0.61, "angle_5": 0.754, "angle_10": 0.912}
AE_MIN_EXCESS_MARGIN = 0.001              # relative validation error over PCA's: 0.1%
AE_MIN_ANGLE_MARGIN_DEGREES = 0.25
# The convolutional VAE with a Monte Carlo bound (problems.CONV): 15.x its unit checks, 16.x its gate.
CONV_CHECKS = {
    "conv/log_normal_pdf": {
        "reference_values": Check("15.1", 2),
        "shapes_and_broadcasting": Check("15.2", 1),
        "gradients": Check("15.3", 1),
    },
    "conv/ConvDecoder": {
        "architecture": Check("15.4", 1),
        "output_shape": Check("15.5", 1),
        "forward_values": Check("15.6", 1.5),
        "gradients": Check("15.7", 0.5),
    },
    "conv/negative_elbo_bound": {
        "three_scalars": Check("15.8", 0.5),
        "one_draw_per_image": Check("15.9", 1),
        "monte_carlo_terms": Check("15.10", 1.5),
        "unbiased": Check("15.11", 1),
        "gradients": Check("15.12", 1),
    },
    "conv/training": {
        "trained_nelbo": Check("16.1", 5),
    },
}
# The convolutional VAE's gate trains this many iterations: 10 epochs of 600 batches of 100 (a conv step
# costs about 3 of the MLP VAE's; README, "The convolutional VAE").
CONV_ITERATIONS = 6000
# problem -> its checks (CHECKS above is the CS236 VAE's, the default grading)
PROBLEM_CHECKS = {"vae": CHECKS, "cvae": CVAE_CHECKS, "beta": BETA_CHECKS, "logvar": LOGVAR_CHECKS, "mmd": MMD_CHECKS,
                  "ae": AE_CHECKS, "conv": CONV_CHECKS}
ALL_CHECKS = {family: specs for checks in PROBLEM_CHECKS.values() for family, specs in checks.items()}


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use (one sandbox per student function; see autograder/sandbox/)."""
    wall_seconds: float = 30.0             # per request, callbacks included
    cpu_seconds: int = 3600                # RLIMIT_CPU, per process: the same in every sandbox (no tell)
    memory_bytes: int = 1536 * 2**20       # RLIMIT_DATA per process, and resident memory of all its
                                           # processes plus the bytes of every file it holds, together
    file_bytes: int = 1 * 2**20            # RLIMIT_FSIZE: one file it writes (printing is not limited)
    scratch_bytes: int = 256 * 2**20       # size of each private tmpfs (/tmp, /dev/shm, ... where mounted)
    processes: int = 128                   # RLIMIT_NPROC (threads count too), as a slot user only
    open_files: int = 1024                 # RLIMIT_NOFILE: bounds what descriptors can hold unseen (socket buffers)
    background_processes: bool = False     # False: processes left running after a reply are killed
    processes_allowed: bool = False        # False: seccomp refuses fork, vfork and clone without CLONE_THREAD


LIMITS = Limits()                                                     # each unit-check sandbox
TRAINING_LIMITS = replace(LIMITS, wall_seconds=900.0)   # 20,000 iterations: ~5 min at half a CPU




@dataclass(frozen=True)
class Budgets:
    """Wall-clock seconds that whole groups of checks may take (a request limit alone lets a
    submission that is slow on purpose multiply it by the number of requests). Each request's
    timeout is cut to what is left of its function's budget and of the grading's; once a budget
    is spent, the remaining checks fail at once and say so."""
    unit_function_seconds: float = 90.0      # every check of one unit function, its sandbox's start included
    training_seconds: float = TRAINING_LIMITS.wall_seconds + 60.0   # the short probe run, then the training request
    # The whole grading: unit budgets (3 x 90 s) and training together stay inside it; set Gradescope's
    # timeout to 20 minutes, which leaves 3 minutes for start-up and writing the results.
    grading_seconds: float = 17 * 60.0
    # Each further problem graded in the same submission adds this much to the whole grading's
    # bound (its unit budget and its training, at half a CPU); Gradescope's timeout grows with it.
    extra_problem_seconds: float = 12 * 60.0
    # ... up to this: Gradescope's timeout can be raised to 40 minutes and no further (a grading killed at
    # the timeout scores 0 with no results), so the grader keeps 3 minutes of it for start-up and results:
    # with three or more problems the budgets then decide which checks run out (each says so).
    most_grading_seconds: float = 37 * 60.0


BUDGETS = Budgets()
TEST_OUTPUT_CHARS = 4000                     # cap on what one test shows the student
