"""The submission under test, as the checks see it: sandboxes per student function.

The target folder comes from $VAE_GRADE_SUBMISSION (set by `grade`), else the reference
solution (so `pytest solution/` checks the reference). Each student function gets its own
sandbox, started on first use and kept for its checks, so a hang or crash in one function
costs only that function's checks. No submission code is ever imported here.
"""
import atexit
import os
from pathlib import Path

from .. import config, paths
from ..reference import data as reference_data
from ..sandbox import Limits, Sandbox, Status


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
        too_large = [f"{name} ({self.files[name].stat().st_size:,} bytes)" for name, source in sources.items()
                     if source == "student" and self.files[name].stat().st_size > config.MAX_SUBMISSION_FILE_BYTES]
        if too_large:
            self._fail(family, f"{' and '.join(too_large)} is larger than the {config.MAX_SUBMISSION_FILE_BYTES:,} "
                               "bytes a submitted file may have (a solution takes a few kB): submit your code only, "
                               "without embedded data.")
        files = {name: self.files[name] if source == "student" else paths.SOLUTION / name
                 for name, source in sources.items()}
        hide = [name for name, source in sources.items() if source == "reference" and name in REFERENCE_HIDDEN]
        # Every sandbox gets the same visible limits (RLIMIT_CPU included), so that student code
        # cannot tell the training sandbox from the others; the wall clock, which it cannot see,
        # is what bounds a unit request.
        training = family == "training"
        limits = Limits(wall_seconds=config.LIMITS.training_seconds if training else config.LIMITS.unit_request_seconds,
                        cpu_seconds=config.LIMITS.training_cpu_seconds,
                        memory_bytes=config.LIMITS.memory_bytes, output_bytes=config.LIMITS.output_bytes)
        box = Sandbox(files, limits, python=self.python)
        box.start()
        reply = box.request("import", {"modules": FAMILY_MODULES[family], "hide": hide})
        if not reply.ok:
            box.close()
            self._fail(family, f"Importing {' and '.join(m + '.py' for m in FAMILY_MODULES[family] if sources.get(m + '.py') == 'student')} "
                               f"failed: " + explain(reply, box))
        return box

    def _fail(self, family, message):
        self._faults[family] = message
        raise SubmissionFault(message)

    def request(self, family, op, params=None, arrays=None, key=None, timeout=None):
        """Send one request; cache it under `key` so several checks can share one result."""
        key = None if key is None else (family, key)
        if key is not None and key in self._cache:
            return self._cache[key]
        box = self.sandbox(family)
        reply = box.request(op, params, arrays, timeout=timeout)
        reply.output = box.output_tail()
        if key is not None:
            self._cache[key] = reply
        return reply

    @property
    def data_dir(self):
        return str(reference_data.ensure_mnist(fetch=config.PUBLIC))

    def close(self):
        for box in self._sandboxes.values():
            box.close()
        self._sandboxes.clear()


def explain(reply, box=None):
    """A student-facing sentence for a reply that is not OK."""
    if reply.status is Status.EXCEPTION:
        where = f" at {reply.where}" if reply.where else ""
        if reply.kind == "NotImplementedError":
            return f"not implemented yet{where} ({reply.message})"
        if reply.kind == "ModuleNotFoundError":
            return f"{reply.kind}{where}: {reply.message}. Only torch, numpy and the standard library are available."
        return f"{reply.kind}{where}: {reply.message}"
    output = box.output_tail(500).strip() if box is not None else ""
    tail = f"\nLast output of your code:\n{output}" if output else ""
    return f"your code {reply.message}.{tail}"


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
