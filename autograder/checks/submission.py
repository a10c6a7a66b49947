"""The submission under test, as the checks see it: sandboxes per student function.

One Submission is made per grading (by `grade`, or by solution/test_checks.py for the
reference) and passed to the checks (checks.bind). Each student function gets its own
sandbox, started on first use and kept for its checks, so a hang or crash in one function
costs only that function's checks. No submission code is ever imported here.

Time: each function's checks share a budget (config.BUDGETS), and so does the whole
grading; every request's timeout is cut to what is left of both. Once a function's
sandbox has stopped (timeout, crash, budget spent), its remaining checks fail at once,
saying which check it stopped in and why, instead of each repeating a wrong reason.
"""
import linecache
import platform
import re
import shutil
import tempfile
import weakref
import time
from pathlib import Path

from .. import ae_evaluation, config, evaluation, heap, paths, submission_files
from ..problems import PROBLEMS, ProblemSet
from ..reference import data as reference_data
from ..sandbox import Reply, Sandbox, Status
from ..text import clean


def release_memory(problem_done=False, collect=True):
    """Let go of what the grader holds for no check to come: the hidden set an earlier gate scored with
    (31 MB), and once a problem's checks are done the autoencoder's PCA and validation images (43 MB) and
    the source lines tracebacks cached; then the heap the checks freed (glibc keeps it otherwise), after a
    garbage collection where `collect`. Run between families, so that the next sandbox (a training child
    above all) runs beside a lean grader."""
    evaluation.forget_hidden_set()
    if problem_done:
        ae_evaluation.forget()
        linecache.clearcache()
    heap.give_back_free_pages(collect)


class SubmissionFault(AssertionError):
    """A check cannot run because of the submission (missing file, syntax error...)."""


def find_submission_files(folder, problems=None):
    """{name: path} of the graded files as submitted (the rule is in autograder/submission_files.py).
    Files inside a submitted zip have no path of their own and are left out here."""
    selection = submission_files.select(folder, ProblemSet(problems).student_functions)
    return {name: Path(folder) / entry.shown for name, entry in selection.graded.items()
            if (Path(folder) / entry.shown).is_file()}


# Every sandbox gets the same files (ProblemSet.sandbox_files): the student's files (those present,
# e.g. utils.py and vae.py) and the provided modules; no reference copy of a student file goes into
# any sandbox. Each family's Family (autograder/problems.py) says which student files it cannot do
# without and which modules it imports: negative_elbo_bound needs vae.py only, since a missing or
# unusable utils.py gives way to the handout's there (Family.remote), so that it costs points only
# where it is graded. No double penalty: in those families the graded utils functions are stand-ins
# answered by the grader (checks/remote.py, oracle.py), everything else the student's utils defines is
# kept, and a utils.py that cannot be imported gives way to the handout's (provided helpers only).
STOPPED = "Grading was stopped (time limit) before this check could run."


def handout_utils():
    """The handout's utils.py: provided helpers, the graded functions raising NotImplementedError."""
    from ..skeleton import strip_solutions
    return strip_solutions((paths.SOLUTION / "utils.py").read_text(), "utils.py")


class Submission:
    def __init__(self, folder, iterations=config.DEFAULT_ITERATIONS, device="cpu", python=None, problems=None):
        self.folder = Path(folder)
        self.iterations = iterations
        self.device = device
        self.python = python
        self.problem_set = problems if isinstance(problems, ProblemSet) else ProblemSet(problems)
        # The sandboxes get normalised UTF-8 copies of the chosen files, never the files themselves.
        self.selection = submission_files.select(self.folder, self.problem_set.student_functions)
        self._copies = tempfile.mkdtemp(prefix="vae-submission-")
        weakref.finalize(self, shutil.rmtree, self._copies, ignore_errors=True)
        self.files = self.selection.write(self._copies)
        self._sandboxes = {}
        self._faults = {}
        self._cache = {}
        self._problem = None         # the problem of the family that started last
        self._started = time.monotonic()
        self._spending = {}          # family -> _Spending: its budget's start and its calls so far
        self._stopped = {}           # family -> why its remaining checks cannot run
        self.running_check = None    # "1.3 (title)", set by checks.base.check while a check runs
        self.outcomes = {}           # family -> what its checks share beyond replies (the training run)
        self._stopping = False

    def sandbox(self, family):
        """The started sandbox of `family`, or raise SubmissionFault with a message for the student."""
        if self._stopping:
            raise SubmissionFault(STOPPED)
        if family in self._faults:
            raise SubmissionFault(self._faults[family])
        if family not in self._sandboxes:
            # The checks run family by family: one sandbox at a time, and only this family's cached
            # replies (an earlier family's, e.g. every array the ELBO checks recorded, are done with),
            # keep the memory bounded.
            self.close()
            self._cache = {key: reply for key, reply in self._cache.items() if key[0] == family}
            problem = self.problem_set.problem_of(family)
            release_memory(problem_done=self._problem not in (None, problem), collect=_is_training(family))
            self._problem = problem
            self._sandboxes[family] = self._start(family)
            if self._stopping:          # stopped (another thread) while this one started
                self.close()
                raise SubmissionFault(STOPPED)
        return self._sandboxes[family]

    def _start(self, family):
        spec = self.problem_set.families[family]
        student = self.problem_set.student_files
        needed = [name for name in spec.files if name in student]     # another problem's file may be provided
        missing = [name for name in needed if name not in self.files]
        if missing:
            self._fail(family, " ".join(self.selection.problems.get(name, f"{name} not found in your submission.")
                                        for name in missing))
        too_large = [f"{name} ({self.files[name].stat().st_size:,} bytes)" for name in needed
                     if self.files[name].stat().st_size > config.MAX_SUBMISSION_FILE_BYTES]
        if too_large:
            self._fail(family, f"{' and '.join(too_large)} is larger than the {config.MAX_SUBMISSION_FILE_BYTES:,} "
                               "bytes a submitted file may have (a solution takes a few kB): submit your code only, "
                               "without embedded data.")
        files = {name: self.files[name] if source == "student" else paths.SOLUTION / name
                 for name, source in self.problem_set.sandbox_files.items() if source == "reference" or name in self.files}
        # Every sandbox gets the same visible limits (RLIMIT_CPU included), so that student code
        # cannot tell the training sandbox from the others; the wall clock, which it cannot see,
        # is what bounds a unit request.
        box = Sandbox(files, config.TRAINING_LIMITS if _is_training(family) else config.LIMITS, python=self.python)
        box.start()
        self._sandboxes[family] = box       # from here a stop kills it: the import below may hang
        if self._stopping:
            self.close()
            raise SubmissionFault(STOPPED)
        remote = spec.remote
        fallback = bool(remote) and "utils.py" in student     # the student's utils.py, which may fail to import
        # An import gets a unit request's limit in every sandbox (the training one's 900 s are for
        # training): a module that hangs while it loads costs 30 s, not the training limit.
        reply = self._timed(family, box, "import", {"modules": list(spec.modules), "remote": list(remote),
                                                    "fallback_utils": handout_utils() if fallback else None},
                            None, config.LIMITS.wall_seconds)
        if not reply.ok:
            self._sandboxes.pop(family, None)
            box.close()
            if self._stopping:
                raise SubmissionFault(STOPPED)
            self._fail(family, f"Importing {' and '.join(m + '.py' for m in spec.modules)} "
                               f"failed: " + explain(reply, box, self.selection.other_files, student))
        return box

    def _fail(self, family, message):
        self._faults[family] = message
        raise SubmissionFault(message)

    def request(self, family, op, params=None, arrays=None, key=None, timeout=None, on_callback=None):
        """Send one request; cache it under `key` so several checks can share one result.
        on_callback answers the child's grader_call while the request is in flight (Sandbox.request).
        Raises SubmissionFault when the family's sandbox stopped earlier or its budget is spent."""
        key = None if key is None else (family, key)
        cached = self._cache.get(key) if key is not None else None
        if cached is not None and (cached.ok or family not in self._stopped):
            return cached              # results that came back before a stop still count
        if family in self._stopped:
            raise SubmissionFault(self._stopped[family])
        box = self.sandbox(family)
        reply = self._timed(family, box, op, params, arrays, timeout, on_callback)
        if key is not None:
            self._cache[key] = reply
        return reply

    def _timed(self, family, box, op, params, arrays, timeout, on_callback=None):
        """One request under what is left of the budgets; a dead sandbox stops the family."""
        spending = self._spending.setdefault(family, _Spending(time.monotonic()))
        limit = timeout or box.limits.wall_seconds
        left, budget = self._left(family, spending)
        if left <= 0:
            reply = Reply(Status.TIMEOUT, message=self._spent_message(family, budget, spending))
        else:
            began = time.monotonic()
            reply = box.request(op, params, arrays, timeout=min(limit, left), on_callback=on_callback)
            spending.add(time.monotonic() - began)
            if reply.status is Status.TIMEOUT and left < limit:
                reply = Reply(Status.TIMEOUT, message=self._spent_message(family, budget, spending))
        reply.output = clean(box.output_tail(), 2000)
        if reply.status in (Status.TIMEOUT, Status.CRASHED, Status.PROTOCOL):
            where = f"check {self.running_check}" if self.running_check else "an earlier check"
            self._stopped[family] = (f"This check could not run: the checks of {family} stopped in {where}, "
                                     f"where {explain(reply, box, graded=self.problem_set.student_files)}")
        return reply

    def _left(self, family, spending):
        """-> (seconds left, the budget that ends first: (its name, its seconds))."""
        now = time.monotonic()
        own = config.BUDGETS.training_seconds if _is_training(family) else config.BUDGETS.unit_function_seconds
        whole = self.problem_set.grading_seconds
        budgets = [(own - (now - spending.started), (f"for the checks of {family}", own)),
                   (whole - (now - self._started), ("for the whole grading", whole))]
        return min(budgets, key=lambda pair: pair[0])

    @staticmethod
    def _spent_message(family, budget, spending):
        name, seconds = budget
        return (f"ran out of time: the time budget of {seconds:g} seconds {name} is spent "
                f"({spending.describe()}), so the grader stopped it")

    @property
    def data_dir(self):
        return str(reference_data.ensure_mnist(fetch=config.PUBLIC))

    def stop(self):
        """Safe from a signal handler: kill the sandboxes; every later check fails at once."""
        self._stopping = True
        self.close()

    def close(self):
        for box in list(self._sandboxes.values()):
            box.close()
        self._sandboxes.clear()     # a box started meanwhile is closed by sandbox() (it sees _stopping)


def _is_training(family):
    return family.rsplit("/", 1)[-1] == "training"


class _Spending:
    """When a family's budget started, and the requests it paid for."""

    def __init__(self, started):
        self.started, self.calls, self.total, self.slowest = started, 0, 0.0, 0.0

    def add(self, seconds):
        self.calls, self.total, self.slowest = self.calls + 1, self.total + seconds, max(self.slowest, seconds)

    def describe(self):
        return (f"{self.calls} call{'s' if self.calls != 1 else ''} of your code took {self.total:.1f} s "
                f"in all, the slowest {self.slowest:.1f} s")


_MISSING_MODULE = re.compile(r"No module named '([^'.]+)")
# The run scripts and the pictures' modules of every handout: no sandbox gets them (a student's own copy worked).
_HANDOUT_ONLY = frozenset(name for problem in PROBLEMS.values() for name in problem.handout) - frozenset(
    name for problem in PROBLEMS.values() for name in (*problem.provided, *problem.student_files, *problem.needs))
_MISSING_ATTRIBUTE = re.compile(r"module '(\w+)' has no attribute '(\w+)'")
# The packages the files of the public CS236 starter code (codebase/) and of XCS236's (submission/, solution/)
# import each other from; this handout's files are top-level modules.
_OTHER_COURSE_PACKAGES = frozenset({"codebase", "submission", "solution"})
# Names of the public CS236 codebase's API that this handout does not have, and what to write instead.
_OLDER_API = {"encode": "call the encoder directly: m, v = self.enc(x)",
              "decode": "call the decoder directly: logits = self.dec(z)",
              "z_prior": "the prior is self.z_prior_m, self.z_prior_v",
              "sample_x_given": "torch.bernoulli(self.compute_sigmoid_given(z)) draws the images"}
_MISSING_OBJECT_ATTRIBUTE = re.compile(r"object has no attribute '(\w+)'")
# What torch says when code asks for a GPU the grader does not have (.cuda(), device='cuda').
_CUDA_ONLY = re.compile(r"not compiled with CUDA|no NVIDIA driver|CUDA driver|torch\.cuda\.is_available\(\) is False")


def explain(reply, box=None, other_files=(), graded=config.SUBMISSION_FILES):
    """A student-facing sentence for a reply that is not OK. `other_files`: names of the submission's
    other .py files (never copied to the sandbox), to say so when one of them is imported."""
    if reply.status is Status.EXCEPTION:
        reply = Reply(reply.status, kind=clean(reply.kind, 100), message=clean(reply.message, 2000),
                      where=clean(reply.where, 200))
        where = f" at {reply.where}" if reply.where else ""
        if reply.kind == "NotImplementedError":
            return f"not implemented yet{where} ({reply.message})"
        if reply.kind == "ModuleNotFoundError":
            module = _MISSING_MODULE.search(reply.message)
            if module and f"{module.group(1)}.py" in other_files:
                return (f"{reply.kind}{where}: {reply.message}. {module.group(1)}.py is in your submission, but only "
                        f"{submission_files.listed(graded)} are graded: move what they need from it into them.")
            if module and f"{module.group(1)}.py" in _HANDOUT_ONLY:
                return (f"{reply.kind}{where}: {reply.message}. {module.group(1)}.py is a file of the handout that the "
                        "grader does not copy: your files are run with the provided modules (such as nns) only, not "
                        "with the run scripts or the pictures' modules. Import it under if __name__ == '__main__': (for your own "
                        "runs) or move what you need into your file.")
            if module and module.group(1) in _OTHER_COURSE_PACKAGES:
                return (f"{reply.kind}{where}: {reply.message}. That is the package layout of another version of the "
                        "starter code: here your files and the provided ones are top-level modules, imported as the "
                        "handout does (import utils as ut, import nns).")
            available = ", ".join(config.STUDENT_PACKAGES)
            return (f"{reply.kind}{where}: {reply.message}. Available to your code: {available} and the Python "
                    f"standard library.")
        attribute = _MISSING_ATTRIBUTE.search(reply.message) if reply.kind == "AttributeError" else None
        if attribute and f"{attribute.group(1)}.py" in graded:
            module, name = attribute.groups()
            return (f"{reply.kind}{where}: {reply.message}. Your {module}.py does not define {name} at its top level: "
                    f"check the spelling and capitalisation, and that it is the file you meant to submit.")
        older = _MISSING_OBJECT_ATTRIBUTE.search(reply.message) if reply.kind == "AttributeError" else None
        if older and older.group(1) in _OLDER_API:
            return (f"{reply.kind}{where}: {reply.message}. That is the API of the public CS236 codebase, not of "
                    f"this handout: {_OLDER_API[older.group(1)]}.")
        if _CUDA_ONLY.search(reply.message):
            return (f"{reply.kind}{where}: {reply.message}. The grader has no GPU: create tensors on the inputs' "
                    "device (torch.randn_like(m), torch.zeros(shape, device=m.device), tensor.to(m.device)) "
                    "instead of .cuda() or device='cuda'.")
        if reply.kind in ("SyntaxError", "IndentationError", "TabError"):
            return (f"{reply.kind}{where}: {reply.message}. The grader runs Python {platform.python_version()}: "
                    "a file must be valid there (syntax of a newer Python, such as an f-string that nests the "
                    "same quotes, from 3.12, is an error).")
        return f"{reply.kind}{where}: {reply.message}"
    output = clean(box.output_tail(500), 500).strip() if box is not None else ""
    tail = f"\nLast output of your code:\n{output}" if output else ""
    return f"your code {clean(reply.message, 2000)}.{tail}"
