"""The problems a course can assign, and the set of them one handout and one grader serve.

A problem is a unit: the student files it grades and the functions in them (solution markers in
`solution/`), the provided modules its code runs with, its run script and its part of the handout
README, its checks (one module of autograder/checks per student function; points and numbers in
config.PROBLEM_CHECKS), its training gate with its calibration file. The CS236 VAE is the problem
`vae`, the default: graded alone, nothing differs from the grader before problems existed (the
same handout, zip, tags, points and messages).

Every file of every problem lives flat in `solution/` (the handout is one flat folder whose
modules import each other by name, as `import utils` does): a problem owns its files by name
(`cvae.py`, `run_cvae.py`, ...), several problems may share provided ones (`train.py`,
`data.py`), and no file is the student file of two problems. A problem whose code imports another
problem's student file (`needs`: cvae.py imports utils.py) gets that file as the student's when
both are chosen, and the reference's whole (solutions included, markers dropped) otherwise.

Tags: a check's family is its function, qualified by its problem for any problem but `vae`
("cvae/negative_elbo_bound"); results.json shows `problem/function` for every check when more than
one problem is graded, and the bare function when one is.

The Gradescope zip and the students' bundle record their problems in `autograder/PROBLEMS` (one
line, "vae,cvae"); without that file the grader serves the default.
"""
import importlib
from dataclasses import dataclass
from pathlib import Path

from . import config, paths

MARKER = Path(__file__).resolve().parent / "PROBLEMS"
DEFAULT = ("vae",)


@dataclass(frozen=True)
class Family:
    """One student function's sandbox: the files it cannot do without (those that are student files
    in the selection), the modules it imports in order, and the utils functions the grader answers
    in it (no double penalty; a broken utils.py then gives way to the handout's)."""
    files: tuple
    modules: tuple
    remote: tuple = ()


@dataclass(frozen=True)
class Problem:
    name: str
    title: str
    student_files: dict         # {file: (class or None, (function, ...))}: what the student implements where
    provided: tuple             # modules every sandbox gets as the reference's copies
    handout: tuple              # the other handout files: run script, pictures
    document: str               # solution/<document>: its part of the handout's README.md
    run_script: str
    families: dict              # {family: Family}, in grading order
    check_classes: tuple        # "module:Class" in autograder/checks, in grading order
    calibration: str            # its calibration file in autograder/
    tests: tuple = ()           # its instructor tests in solution/ (never in a handout; in its zip)
    needs: tuple = ()           # student files of other problems its code imports
    assets: tuple = ()          # data files of autograder/ its checks read (the zip and the bundle carry them)
    calibrated_as: str = None   # the problem whose reference runs its calibration file holds (default: itself)

    @property
    def checks(self):
        """{family: {name: config.Check}}."""
        return config.PROBLEM_CHECKS[self.name]

    @property
    def calibration_path(self):
        return paths.CALIBRATION.parent / self.calibration

    @property
    def calibration_problem(self):
        """The "problem" its calibration file records ("vae" where the file has none)."""
        return self.calibrated_as or self.name

    def classes(self):
        """The unbound check classes, in order."""
        found = []
        for entry in self.check_classes:
            module, name = entry.split(":")
            found.append(getattr(importlib.import_module(f"autograder.checks.{module}"), name))
        return tuple(found)


VAE = Problem(
    name="vae",
    title="the CS236 VAE",
    student_files={"utils.py": (None, ("sample_gaussian", "kl_normal")), "vae.py": ("VAE", ("negative_elbo_bound",))},
    provided=("nns.py", "train.py", "fast.py", "data.py", "runtime.py"),
    handout=("run_vae.py", "figures.py"),
    document="HANDOUT.md",
    run_script="run_vae.py",
    families={
        "sample_gaussian": Family(("utils.py",), ("utils",)),
        "kl_normal": Family(("utils.py",), ("utils",)),
        "negative_elbo_bound": Family(("vae.py",), ("utils", "vae"), ("sample_gaussian", "kl_normal")),
        "training": Family(("utils.py", "vae.py"), ("utils", "vae")),
    },
    check_classes=("sampling:SampleGaussianChecks", "kl:KlNormalChecks", "elbo:NegativeElboBoundChecks",
                   "training:TrainingChecks"),
    calibration="calibration.json",
    tests=("test_checks.py", "test_figures.py", "test_reference.py"),
)

CVAE = Problem(
    name="cvae",
    title="the conditional VAE",
    student_files={"cvae.py": ("CVAE", ("negative_elbo_bound",))},
    provided=("cvae_nns.py", "train_cvae.py", "train.py", "fast.py", "data.py", "runtime.py"),
    handout=("run_cvae.py", "figures.py"),
    document="HANDOUT_cvae.md",
    run_script="run_cvae.py",
    families={
        "cvae/negative_elbo_bound": Family(("cvae.py",), ("utils", "cvae"), ("sample_gaussian", "kl_normal")),
        "cvae/training": Family(("utils.py", "cvae.py"), ("utils", "cvae")),
    },
    check_classes=("cvae:CvaeElboChecks", "cvae_training:CvaeTrainingChecks"),
    calibration="calibration_cvae.json",
    tests=("test_cvae.py", "test_checks_cvae.py"),
    needs=("utils.py",),
    assets=("digit_classifier.pt",),          # check 6.2 reads its samples with the grader's digit classifier
)

# The VAE with a KL weight: the CS236 VAE's networks, prior, loop and seed handling, so that at beta = 1
# its training is the VAE's, step for step (the reference BetaVAE and VAE trained with one seed give the
# same weights, bit for bit): its gate uses the VAE's calibration (README, "Calibration").
BETA = Problem(
    name="beta",
    title="the VAE with a KL weight",
    student_files={"beta_vae.py": ("BetaVAE", ("negative_elbo_bound",))},
    provided=("nns.py", "train.py", "fast.py", "data.py", "runtime.py"),
    handout=("run_beta_vae.py", "figures.py"),
    document="HANDOUT_beta.md",
    run_script="run_beta_vae.py",
    families={
        "beta/negative_elbo_bound": Family(("beta_vae.py",), ("utils", "beta_vae"), ("sample_gaussian", "kl_normal")),
        "beta/training": Family(("utils.py", "beta_vae.py"), ("utils", "beta_vae")),
    },
    check_classes=("beta:BetaElboChecks", "beta_training:BetaTrainingChecks"),
    calibration="calibration.json",
    tests=("test_beta.py", "test_checks_beta.py"),
    needs=("utils.py",),
    calibrated_as="vae",
    assets=("digit_classifier.pt",),          # check 8.2 reads its samples with the grader's digit classifier
)

# The VAE whose encoder outputs a log-variance: the student writes its two Gaussian helpers; the model, its
# bound and its run script are provided. No training gate (the issue asks for the functions' checks only):
# its handout's README quotes the VAE's calibration for comparison, nothing is gated on it.
LOGVAR = Problem(
    name="logvar",
    title="the log-variance VAE",
    student_files={"logvar_utils.py": (None, ("sample_gaussian_logvar", "kl_normal_logvar"))},
    provided=(),
    handout=("logvar_vae.py", "nns.py", "train.py", "fast.py", "data.py", "runtime.py", "run_logvar_vae.py",
             "figures.py"),
    document="HANDOUT_logvar.md",
    run_script="run_logvar_vae.py",
    families={
        "logvar/sample_gaussian_logvar": Family(("logvar_utils.py",), ("logvar_utils",)),
        "logvar/kl_normal_logvar": Family(("logvar_utils.py",), ("logvar_utils",)),
    },
    check_classes=("logvar:SampleGaussianLogvarChecks", "logvar:KlNormalLogvarChecks"),
    calibration="calibration.json",
    tests=("test_logvar.py", "test_checks_logvar.py"),
    needs=("utils.py",),
    calibrated_as="vae",
)

# The MMD-VAE (InfoVAE): the VAE's networks with the encoder's mean as code, the KL replaced by
# LAMBDA * MMD(codes, prior draws); trained by train.py's loop through mmd_vae.LossAsBound.
MMD = Problem(
    name="mmd",
    title="the MMD-VAE",
    student_files={"mmd_vae.py": (None, ("mmd", "MMDVAE.loss"))},
    provided=("nns.py", "train.py", "fast.py", "data.py", "runtime.py"),
    handout=("run_mmd_vae.py", "figures.py"),
    document="HANDOUT_mmd.md",
    run_script="run_mmd_vae.py",
    families={
        "mmd/mmd": Family(("mmd_vae.py",), ("utils", "mmd_vae")),
        "mmd/loss": Family(("mmd_vae.py",), ("utils", "mmd_vae")),
        "mmd/training": Family(("utils.py", "mmd_vae.py"), ("utils", "mmd_vae")),
    },
    check_classes=("mmd:MmdChecks", "mmd:MmdLossChecks", "mmd_training:MmdTrainingChecks"),
    calibration="calibration_mmd.json",
    tests=("test_mmd.py", "test_checks_mmd.py"),
    needs=("utils.py",),
)

# The linear autoencoder against PCA (a computer-vision course's ask): no VAE code at all; its gate
# trains every code size k with train_ae.py's loop and measures the maps against the grader's PCA.
AE = Problem(
    name="ae",
    title="the linear autoencoder against PCA",
    student_files={"ae.py": ("LinearAutoencoder", ("__init__", "encode", "decode"))},
    provided=("train_ae.py", "data.py", "runtime.py"),
    handout=("run_ae.py", "figures_ae.py"),
    document="HANDOUT_ae.md",
    run_script="run_ae.py",
    families={
        "ae/LinearAutoencoder": Family(("ae.py",), ("ae",)),
        "ae/reconstruction_loss": Family(("ae.py",), ("ae",)),
        "ae/training": Family(("ae.py",), ("ae",)),
    },
    check_classes=("ae:LinearAutoencoderChecks", "ae:ReconstructionLossChecks", "ae_training:AeTrainingChecks"),
    calibration="calibration_ae.json",
    tests=("test_ae.py", "test_checks_ae.py"),
)

# The convolutional VAE with a one-sample Monte Carlo bound (the TensorFlow tutorial's CVAE): a provided
# convolutional encoder, the student's transposed-convolution decoder, log_normal_pdf (log-variance) and
# the bound; trained by train.py's loop (images flat, (batch, 784), reshaped by the networks).
CONV = Problem(
    name="conv",
    title="the convolutional VAE",
    student_files={"conv_vae.py": (None, ("log_normal_pdf", "ConvDecoder.__init__", "ConvDecoder.forward",
                                          "ConvVAE.negative_elbo_bound"))},
    provided=("train.py", "fast.py", "data.py", "runtime.py"),
    handout=("run_conv_vae.py", "figures.py", "figures_conv.py"),
    document="HANDOUT_conv.md",
    run_script="run_conv_vae.py",
    families={
        "conv/log_normal_pdf": Family(("conv_vae.py",), ("utils", "conv_vae")),
        "conv/ConvDecoder": Family(("conv_vae.py",), ("utils", "conv_vae")),
        "conv/negative_elbo_bound": Family(("conv_vae.py",), ("utils", "conv_vae")),
        "conv/training": Family(("utils.py", "conv_vae.py"), ("utils", "conv_vae")),
    },
    check_classes=("conv:LogNormalPdfChecks", "conv:ConvDecoderChecks", "conv_elbo:ConvElboChecks",
                   "conv_training:ConvTrainingChecks"),
    calibration="calibration_conv.json",
    tests=("test_conv.py", "test_checks_conv.py"),
    needs=("utils.py",),
)

PROBLEMS = {problem.name: problem for problem in (VAE, CVAE, BETA, LOGVAR, MMD, AE, CONV)}


class UnknownProblem(ValueError):
    pass


def parse(text):
    """"vae,cvae" -> ("vae", "cvae") in the registry's order, each once; raises UnknownProblem."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in PROBLEMS]
    if unknown or not names:
        raise UnknownProblem(f"unknown problem {', '.join(unknown) or repr(text)}: choose from {', '.join(PROBLEMS)}")
    return tuple(name for name in PROBLEMS if name in names)


def served():
    """The problems this copy of the grader serves: autograder/PROBLEMS where it exists, else the default."""
    try:
        return parse(MARKER.read_text())
    except OSError:
        return DEFAULT


def of(submission):
    """The ProblemSet a submission is graded on (a stand-in without one: the grader's problems)."""
    return getattr(submission, "problem_set", None) or ProblemSet()


class ProblemSet:
    """The chosen problems, as the handout, the sandboxes, the checks and results.json see them."""

    def __init__(self, names=None):
        names = served() if names is None else parse(",".join(names) if not isinstance(names, str) else names)
        self.names = names
        self.problems = tuple(PROBLEMS[name] for name in names)

    def __repr__(self):
        return f"ProblemSet({','.join(self.names)})"

    def __eq__(self, other):
        return isinstance(other, ProblemSet) and other.names == self.names

    def __hash__(self):
        return hash(self.names)

    @property
    def is_default(self):
        return self.names == DEFAULT

    @property
    def label(self):
        """"vae" or "vae,cvae": what autograder/PROBLEMS holds."""
        return ",".join(self.names)

    # ------------------------------------------------------------ files

    @property
    def student_functions(self):
        """{file: (class or None, (function, ...))} of every student file, in order."""
        return {name: spec for problem in self.problems for name, spec in problem.student_files.items()}

    @property
    def student_files(self):
        return tuple(self.student_functions)

    @property
    def sandbox_files(self):
        """{file: "student" | "reference"}: what every sandbox of a grading gets, in order (the student's
        files where submitted; another problem's student file that is not chosen, and the provided
        modules, as the reference's copies)."""
        files = dict.fromkeys(self.student_files, "student")
        for problem in self.problems:
            for name in (*problem.needs, *problem.provided):
                files.setdefault(name, "reference")
        return files

    @property
    def handout_sources(self):
        """The solution/ files the handout is made of, in order (the README's documents aside)."""
        names = dict.fromkeys(self.sandbox_files)
        for problem in self.problems:
            names.update(dict.fromkeys(problem.handout))
        return tuple(names)

    @property
    def assets(self):
        """The data files of autograder/ the chosen problems' checks read, in order."""
        return tuple(dict.fromkeys(name for problem in self.problems for name in problem.assets))

    @property
    def documents(self):
        return tuple(problem.document for problem in self.problems)

    def owner(self, filename):
        """The chosen problem whose student file this is, else None."""
        return next((p for p in self.problems if filename in p.student_files), None)

    # ------------------------------------------------------------ checks

    @property
    def checks(self):
        """{family: {name: config.Check}} of every chosen problem, in grading order."""
        return {family: specs for problem in self.problems for family, specs in problem.checks.items()}

    @property
    def families(self):
        """{family: Family}, in grading order."""
        return {family: spec for problem in self.problems for family, spec in problem.families.items()}

    def problem_of(self, family):
        return next(p for p in PROBLEMS.values() if family in p.checks)

    def classes(self):
        return tuple(case for problem in self.problems for case in problem.classes())

    def tag(self, family):
        """What results.json shows for `family`: `problem/function` when several problems are graded."""
        function = family.rsplit("/", 1)[-1]
        return f"{self.problem_of(family).name}/{function}" if len(self.problems) > 1 else function

    def family(self, tag):
        """The family a results.json tag stands for in this selection (tag() inverted)."""
        for family in self.checks:
            if self.tag(family) == tag:
                return family
        raise KeyError(tag)

    @property
    def grading_seconds(self):
        budgets = config.BUDGETS
        return min(budgets.grading_seconds + (len(self.problems) - 1) * budgets.extra_problem_seconds,
                   budgets.most_grading_seconds)
