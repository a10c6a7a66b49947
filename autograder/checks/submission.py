"""The submission under test, as the checks see it: sandboxes per student function.

The target folder comes from $VAE_GRADE_SUBMISSION (set by `grade`), else the reference
solution (so `pytest solution/` checks the reference). Each student function gets its own
sandbox, started on first use and kept for its checks, so a hang or crash in one function
costs only that function's checks. No submission code is ever imported here.

Time: each function's checks share a budget (config.BUDGETS), and so does the whole
grading; every request's timeout is cut to what is left of both. Once a function's
sandbox has stopped (timeout, crash, budget spent), its remaining checks fail at once,
saying which check it stopped in and why, instead of each repeating a wrong reason.
"""
import atexit
import os
import time
from pathlib import Path

from .. import config, paths
from ..reference import data as reference_data
from ..sandbox import Limits, Reply, Sandbox, Status
from ..text import clean


class SubmissionFault(AssertionError):
    """A check cannot run because of the submission (missing file, syntax error...)."""


def find_submission_files(folder):
    """{name: path} of the whitelisted files, wherever they sit under `folder` (shallowest wins)."""
    found = {}
    candidates = sorted(Path(folder).rglob("*.py"), key=lambda p: (len(p.parts), str(p)))
    for path in candidates:
        hidden = any(part.startswith((".", "__")) for part in path.relative_to(folder).parts)
        if path.name in config.SUBMISSION_FILES and path.name not in found and not hidden and path.is_file() \
                and not path.is_symlink():
            found[path.name] = path
    return found


# What each student function's sandbox gets: the student's own files where the function
# lives, the reference for what it calls (no double penalty), and nothing else.
# REFERENCE_HIDDEN files are deleted from the sandbox once imported, before any student code.
_UNIT = {"utils.py": "student"}
_ELBO_OWN_UTILS = "student" if config.PUBLIC else "reference"
FAMILY_FILES = {
    "sample_gaussian": _UNIT,
    "kl_normal": _UNIT,
    "negative_elbo_bound": {"utils.py": _ELBO_OWN_UTILS, "vae.py": "student", "nns.py": "reference"},
    "training": {"utils.py": "student", "vae.py": "student",
                 **{name: "reference" for name in config.PROVIDED_FILES}},
}
FAMILY_MODULES = {"sample_gaussian": ["utils"], "kl_normal": ["utils"],
                  "negative_elbo_bound": ["utils", "vae"], "training": ["utils", "vae"]}
REFERENCE_HIDDEN = ("utils.py",)


class Submission:
    def __init__(self, folder, iterations=config.DEFAULT_ITERATIONS, device="cpu", python=None):
        self.folder = Path(folder)
        self.iterations = iterations
        self.device = device
        self.python = python
        self.files = find_submission_files(self.folder)
        self._sandboxes = {}
        self._faults = {}
        self._cache = {}
        self._started = time.monotonic()
        self._spending = {}          # family -> _Spending: its budget's start and its calls so far
        self._stopped = {}           # family -> why its remaining checks cannot run
        self.running_check = None    # "1.3 (title)", set by checks.base.check while a check runs

    def sandbox(self, family):
        """The started sandbox of `family`, or raise SubmissionFault with a message for the student."""
        if _stopping:
            raise SubmissionFault("Grading was stopped (time limit) before this check could run.")
        if family in self._faults:
            raise SubmissionFault(self._faults[family])
        if family not in self._sandboxes:
            # The checks run family by family: one sandbox at a time keeps the memory bounded.
            self.close()
            self._sandboxes[family] = self._start(family)
        return self._sandboxes[family]

    def _start(self, family):
        sources = FAMILY_FILES[family]
        missing = [name for name, source in sources.items() if source == "student" and name not in self.files]
        if missing:
            self._fail(family, f"{' and '.join(missing)} not found in your submission. Submit utils.py and vae.py "
                               "(at the top level or in one folder).")
        files = {name: self.files[name] if source == "student" else paths.SOLUTION / name
                 for name, source in sources.items()}
        hide = [name for name, source in sources.items() if source == "reference" and name in REFERENCE_HIDDEN]
        training = family == "training"
        limits = Limits(wall_seconds=config.LIMITS.training_seconds if training else config.LIMITS.unit_request_seconds,
                        cpu_seconds=config.LIMITS.training_cpu_seconds if training else config.LIMITS.unit_cpu_seconds,
                        memory_bytes=config.LIMITS.memory_bytes, output_bytes=config.LIMITS.output_bytes)
        box = Sandbox(files, limits, python=self.python)
        box.start()
        reply = self._timed(family, box, "import", {"modules": FAMILY_MODULES[family], "hide": hide}, None, None)
        if not reply.ok:
            box.close()
            self._fail(family, f"Importing {' and '.join(m + '.py' for m in FAMILY_MODULES[family] if sources.get(m + '.py') == 'student')} "
                               f"failed: " + explain(reply, box))
        return box

    def _fail(self, family, message):
        self._faults[family] = message
        raise SubmissionFault(message)

    def request(self, family, op, params=None, arrays=None, key=None, timeout=None):
        """Send one request; cache it under `key` so several checks can share one result.
        Raises SubmissionFault when the family's sandbox stopped earlier or its budget is spent."""
        key = None if key is None else (family, key)
        cached = self._cache.get(key) if key is not None else None
        if cached is not None and (cached.ok or family not in self._stopped):
            return cached              # results that came back before a stop still count
        if family in self._stopped:
            raise SubmissionFault(self._stopped[family])
        box = self.sandbox(family)
        reply = self._timed(family, box, op, params, arrays, timeout)
        if key is not None:
            self._cache[key] = reply
        return reply

    def _timed(self, family, box, op, params, arrays, timeout):
        """One request under what is left of the budgets; a dead sandbox stops the family."""
        spending = self._spending.setdefault(family, _Spending(time.monotonic()))
        limit = timeout or box.limits.wall_seconds
        left, budget = self._left(family, spending)
        if left <= 0:
            reply = Reply(Status.TIMEOUT, message=self._spent_message(family, budget, spending))
        else:
            began = time.monotonic()
            reply = box.request(op, params, arrays, timeout=min(limit, left))
            spending.add(time.monotonic() - began)
            if reply.status is Status.TIMEOUT and left < limit:
                reply = Reply(Status.TIMEOUT, message=self._spent_message(family, budget, spending))
        reply.output = clean(box.output_tail(), 2000)
        if reply.status in (Status.TIMEOUT, Status.CRASHED, Status.PROTOCOL):
            where = f"check {self.running_check}" if self.running_check else "an earlier check"
            self._stopped[family] = (f"This check could not run: the checks of {family} stopped in {where}, "
                                     f"where {explain(reply, box)}")
        return reply

    def _left(self, family, spending):
        """-> (seconds left, the budget that ends first: (its name, its seconds))."""
        now = time.monotonic()
        own = config.BUDGETS.training_seconds if family == "training" else config.BUDGETS.unit_function_seconds
        budgets = [(own - (now - spending.started), (f"for the checks of {family}", own)),
                   (config.BUDGETS.grading_seconds - (now - self._started),
                    ("for the whole grading", config.BUDGETS.grading_seconds))]
        return min(budgets, key=lambda pair: pair[0])

    @staticmethod
    def _spent_message(family, budget, spending):
        name, seconds = budget
        return (f"ran out of time: the time budget of {seconds:g} seconds {name} is spent "
                f"({spending.describe()}), so the grader stopped it")

    @property
    def data_dir(self):
        return str(reference_data.ensure_mnist(fetch=config.PUBLIC))

    def close(self):
        for box in self._sandboxes.values():
            box.close()
        self._sandboxes.clear()


class _Spending:
    """When a family's budget started, and the requests it paid for."""

    def __init__(self, started):
        self.started, self.calls, self.total, self.slowest = started, 0, 0.0, 0.0

    def add(self, seconds):
        self.calls, self.total, self.slowest = self.calls + 1, self.total + seconds, max(self.slowest, seconds)

    def describe(self):
        return (f"{self.calls} call{'s' if self.calls != 1 else ''} of your code took {self.total:.1f} s "
                f"in all, the slowest {self.slowest:.1f} s")


def explain(reply, box=None):
    """A student-facing sentence for a reply that is not OK. Every string in it that the
    child sent is cleaned (text.clean): it may hold anything, lone surrogates included."""
    if reply.status is Status.EXCEPTION:
        kind, message = clean(reply.kind, 100), clean(reply.message, 2000)
        where = f" at {clean(reply.where, 200)}" if reply.where else ""
        if kind == "NotImplementedError":
            return f"not implemented yet{where} ({message})"
        if kind == "ModuleNotFoundError":
            return f"{kind}{where}: {message}. Only torch, numpy and the standard library are available."
        return f"{kind}{where}: {message}"
    output = clean(box.output_tail(500), 500).strip() if box is not None else ""
    tail = f"\nLast output of your code:\n{output}" if output else ""
    return f"your code {clean(reply.message, 2000)}.{tail}"


_current = None
_stopping = False


def stop():
    """Called from a signal handler: kill the sandboxes; every later check fails at once."""
    global _stopping
    _stopping = True
    if _current is not None:
        _current.close()


def current():
    """The Submission the checks run against (created on first use)."""
    global _current
    if _current is None:
        folder = os.environ.get("VAE_GRADE_SUBMISSION") or str(paths.SOLUTION)
        iterations = int(os.environ.get("VAE_GRADE_ITERATIONS") or config.DEFAULT_ITERATIONS)
        device = os.environ.get("VAE_GRADE_DEVICE") or "cpu"
        _current = Submission(folder, iterations, device, os.environ.get("VAE_GRADE_PYTHON") or None)
        atexit.register(_current.close)
    return _current


def use(submission):
    """Point the checks at `submission` (closing the previous one)."""
    global _current
    if _current is not None:
        _current.close()
    _current = submission
