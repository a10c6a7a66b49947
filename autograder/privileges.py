"""TRUSTED SIDE. The two calls that bracket a grading as root (see autograder/sandbox/ for the rest):

    1. `prepare(root, data_dir=..., python=...)` before any student code runs: ensures the
       slot users exist, kills their leftovers, removes every other user's access to the
       source (hidden tests, solution, calibration), the results directory and the
       submission metadata, and keeps the MNIST data and the interpreter readable;
    2. grading (each `Sandbox.close()` kills its own processes and removes its user's files);
    3. `finish()` just before results.json is written: kills every student process left and
       removes every file a student user owns in any directory it can write.
When the grader is not root, both are no-ops and the sandbox runs student code as the
current user (with every other limit).
"""
import sys
from pathlib import Path

from .sandbox import lockdown, scratch, users
from .sandbox.users import acquire_slot, ensure_student_user, is_root, python_problem, try_slot  # noqa: F401


def prepare(root=None, data_dir=None, python=None, extra_private=(), extra_readable=()):
    """Call first thing in run_autograder (root only; a no-op report otherwise).

    Ensures the slot users exist, kills their leftovers, locks `lockdown.private_paths(root)` plus
    `extra_private`, keeps `data_dir`, the interpreter's directories and `extra_readable`
    readable, and checks the student users can run `python`. Returns a dict for the log:
    {"root": bool, "users": [...], "actions": [...], "problems": [...]}. A non-empty
    "problems" means student code will run as root (see sandbox.Sandbox, user="auto").
    """
    report = {"root": users.is_root(), "users": [], "actions": [], "problems": []}
    if not users.is_root():
        report["problems"].append("not running as root: student code runs as the current user")
        return report
    identities = users.ensure_student_user()
    report["users"] = [str(i) for i in identities]
    users.kill_student_processes()
    root = Path(root) if root is not None else lockdown.autograder_root()
    # the interpreter is made readable only where we locked it ourselves (a venv inside source/)
    inside = [p for p in lockdown.interpreter_paths(python) if Path(p).resolve().is_relative_to(root.resolve())]
    readable = [p for p in [data_dir, *inside, *extra_readable] if p]
    report["actions"] = lockdown.lock_down([*lockdown.private_paths(root), *extra_private], readable)
    problem = users.python_problem(python or sys.executable)
    if problem:
        report["problems"].append(f"student users cannot run {python or sys.executable}: {problem}")
    return report


def finish():
    """Call just before writing results.json: kill every student process, delete their files."""
    if not users.is_root():
        return {"killed": 0, "removed": []}
    killed = users.kill_student_processes()
    removed = []
    for identity in users.student_identities():
        slot = users.try_slot(identity)
        if slot is not None:
            removed += scratch.remove_owned(identity.uid, scratch.writable_directories())
            slot.release()
    return {"killed": killed, "removed": removed}
