"""The unprivileged "slot" users student code runs as (when the grader is root).

One user per concurrently open sandbox (`vaestudent`, `vaestudent1`, ...), claimed with an
flock shared by every grader process on the machine, so a sandbox's processes are exactly
the processes of its uid: RLIMIT_NPROC counts them and processes.kill_uid kills them all
at once, however they detached. Standard library only.
"""
import fcntl
import os
import pwd
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import processes

STUDENT_USER = "vaestudent"
SLOTS = 4                      # users created by ensure_student_user (more are added on demand)
MAX_SLOTS = 16


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int

    def __str__(self):
        return f"{self.name} (uid {self.uid})"


def is_root():
    return os.geteuid() == 0


def slot_name(index, base=STUDENT_USER):
    return base if index == 0 else f"{base}{index}"


def lookup(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Identity(name, entry.pw_uid, entry.pw_gid)


def student_identities(base=STUDENT_USER, limit=MAX_SLOTS):
    """The slot users that exist, in slot order (stops at the first missing one)."""
    found = []
    for index in range(limit):
        identity = lookup(slot_name(index, base))
        if identity is None:
            break
        found.append(identity)
    return found


def ensure_student_user(count=SLOTS, base=STUDENT_USER):
    """Create (as root) the unprivileged slot users `vaestudent`, `vaestudent1`, ...; idempotent.

    No home, no login shell, a private group each. Returns their Identity list. Called by
    setup.sh at image build time; the sandbox also calls it on demand when run as root.
    """
    if not is_root():
        raise PermissionError("ensure_student_user must run as root")
    shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(s)), "/bin/false")
    for index in range(count):
        name = slot_name(index, base)
        if lookup(name) is not None:
            continue
        for attempt in range(20):          # /etc/passwd may be locked by a concurrent useradd
            done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                   "--home-dir", "/nonexistent", "--shell", shell, name],
                                  capture_output=True, text=True)
            if done.returncode == 0 or lookup(name) is not None:
                break
            if done.returncode != 10 and "lock" not in done.stderr:   # 10: cannot lock /etc/passwd
                raise RuntimeError(f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}")
            time.sleep(0.05 * (attempt + 1))
        if lookup(name) is None:
            raise RuntimeError(f"could not create user {name}")
    return student_identities(base)[:max(count, 1)]


def kill_student_processes(base=STUDENT_USER, include_busy=False):
    """Kill every process of every slot user (root only). Returns how many were signalled.

    Slots held by a live sandbox (of any grader process on this machine: tests may run
    side by side) are skipped unless include_busy; that sandbox's close() kills them.
    """
    if not is_root():
        return 0
    killed = 0
    for identity in student_identities(base):
        slot = try_slot(identity)
        if slot is None and not include_busy:
            continue
        try:
            killed += processes.kill_uid(identity)
        finally:
            slot and slot.release()
    return killed


def _lock_dir():
    """A root-only directory for the slot lock files (never one a student could have planted)."""
    for parent in ("/run", tempfile.gettempdir()):
        path = os.path.join(parent, "vae-sandbox-slots")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022:
            return path
    raise RuntimeError("no safe directory for the sandbox slot locks")


class Slot:
    """An exclusive claim on one slot user, held (flock) across processes until release()."""

    def __init__(self, identity, handle):
        self.identity, self._handle = identity, handle

    def release(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def try_slot(identity):
    """Claim `identity`'s slot if no one holds it (-> Slot), else None."""
    handle = open(os.path.join(_lock_dir(), f"{identity.name}.lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return Slot(identity, handle)


def acquire_slot(base=STUDENT_USER, wait_seconds=60.0):
    """Claim a free slot user (creating more users, up to MAX_SLOTS, when all are busy).

    Kills any leftover process of the claimed uid first: it can only belong to a grader
    that died without cleaning up.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        identities = student_identities(base)
        if not identities:
            identities = ensure_student_user(base=base)
        for identity in identities:
            slot = try_slot(identity)
            if slot is not None:
                processes.kill_uid(identity)
                return slot
        if len(identities) < MAX_SLOTS:
            ensure_student_user(count=len(identities) + 1, base=base)
            continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"all {MAX_SLOTS} sandbox users are busy")
        time.sleep(0.1)


_PYTHON_PROBES = {}


def python_problem(python, slot=None):
    """None if the slot users can start `python -I`, import numpy and find torch; else why not.

    Probed once per interpreter (all slot users are "other users" to the files involved),
    as the user of `slot`, or of a slot claimed for the probe: a process of a slot user
    that no one holds may be killed by another grader at any moment.
    """
    key = os.path.abspath(python)               # the path matters: its directories' permissions
    if key in _PYTHON_PROBES:
        return _PYTHON_PROBES[key]
    own = slot is None
    slot = acquire_slot() if own else slot
    identity = slot.identity
    probe = ("import numpy, importlib.util as u; s = u.find_spec('torch'); "
             "s is None or open(s.origin, 'rb').close()")
    try:
        done = subprocess.run([python, "-I", "-c", probe], user=identity.uid, group=identity.gid, extra_groups=[],
                              capture_output=True, text=True, timeout=60, cwd="/",
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        problem = None if done.returncode == 0 else \
            (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as error:
        problem = f"{type(error).__name__}: {error}"
    finally:
        if own:
            slot.release()
    if problem is not None:
        blocked = _first_blocked_ancestor(os.path.realpath(python))
        if blocked:
            problem += f" ({blocked} is not searchable by other users)"
    _PYTHON_PROBES[key] = problem
    return problem


def _first_blocked_ancestor(path):
    path = Path(path).absolute()
    for candidate in [path, *path.parents][::-1]:
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            return str(candidate)
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return str(candidate)
    return None
