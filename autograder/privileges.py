"""TRUSTED SIDE. Who student code runs as, what it may read, and how all of it is killed.

Standard library only (setup.sh runs it with the system python3):
    python3 -m autograder.privileges ensure-user      # setup.sh, as root: create the student users
    python3 -m autograder.privileges status           # what a sandbox would get here

On Gradescope the grader runs as root. Student code then runs as one of the unprivileged
"slot" users `vaestudent`, `vaestudent1`, ... (one per concurrently open sandbox, so a
sandbox's processes are exactly the processes of its uid: RLIMIT_NPROC counts them and
`kill_uid` kills all of them at once, however they detached). `run_autograder` calls, in
this order:
    1. `prepare(root, data_dir=..., python=...)` before any student code runs: ensures
       the users exist, kills leftovers, removes every other user's access to the source
       (hidden tests, solution, calibration), the results directory and the submission
       metadata, and keeps the MNIST data and the interpreter readable;
    2. grading (each `Sandbox.close()` kills its own processes);
    3. `finish()` just before results.json is written: kills every student process left
       and deletes the files they left in /tmp, /var/tmp and /dev/shm.
When the grader is not root, all of this is a no-op and the sandbox runs student code as
the current user (with every other limit).
"""
import errno
import fcntl
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

STUDENT_USER = "vaestudent"
SLOTS = 4                      # users created by ensure_student_user (more are added on demand)
MAX_SLOTS = 16
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


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


# ---------------------------------------------------------------- processes

class Proc(NamedTuple):
    ppid: int
    uids: tuple          # real, effective, saved, filesystem
    state: str           # R S D Z T X ...
    session: int
    memory: int          # bytes of RssAnon + RssShmem (kernel counters: cheap, no page walk)


def process_table():
    """{pid: Proc} of every process now (one read of /proc/PID/status each)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                text = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("PPid", "Uid", "State", "NSsid", "RssAnon", "RssShmem"):
                fields[key] = value.split()
        try:
            memory = sum(int(fields[k][0]) * 1024 for k in ("RssAnon", "RssShmem") if k in fields)
            table[int(entry)] = Proc(int(fields["PPid"][0]), tuple(int(u) for u in fields["Uid"]),
                                     fields["State"][0], int(fields.get("NSsid", ["-1"])[-1]), memory)
        except (KeyError, IndexError, ValueError):
            continue
    return table


def _uids_of(pid):
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    return tuple(int(u) for u in line.split()[1:])
    except OSError:
        pass
    return ()


def signal_process(pid, signum=signal.SIGKILL, check=None):
    """Send `signum` to `pid` if `check(pid)` still holds once the pid is pinned (pidfd, no reuse race)."""
    pidfd = None
    try:
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as error:
                if error.errno == errno.ESRCH:
                    return False
                pidfd = None                  # old kernel: fall back to kill()
        if check is not None and not check(pid):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    except OSError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def reap(pids):
    """Collect the exit status of those `pids` that are our zombie children (so they free their slot)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def _kill_everything_as(identity):
    """Fork, become `identity`, kill(-1, SIGKILL): atomically kills every process of that uid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.setgroups([])
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def kill_uid(identity, keep=(), rounds=100):
    """Kill every process running as `identity` (as root), except the pids in `keep`.

    Without `keep` this is one atomic kill(-1) as that uid (no fork bomb can outrun it),
    then a scan that repeats until nothing of that uid is left but zombies; with `keep`
    it is the scan alone. Returns the number of processes signalled. Zombies that are our
    children (orphans we inherited as subreaper) are reaped.
    """
    uid = identity.uid
    killed = 0
    if not keep and is_root():
        _kill_everything_as(identity)
    for _ in range(rounds):
        table = process_table()
        mine = [pid for pid, proc in table.items() if uid in proc.uids and pid not in keep]
        reap([pid for pid in mine if table[pid].ppid == os.getpid()])
        alive = [pid for pid in mine if table[pid].state not in "ZX"]
        if not alive:
            return killed
        for pid in alive:
            killed += signal_process(pid, check=lambda p: uid in _uids_of(p))
        time.sleep(0.005)
    return killed


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
            killed += kill_uid(identity)
        finally:
            slot and slot.release()
    return killed


def remove_files_owned_by(uid, directories=SCRATCH_DIRS):
    """Delete top-level entries of the scratch directories owned by `uid` (after its processes are dead)."""
    removed = []
    for directory in directories:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(directory, entry)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if info.st_uid != uid:
                continue
            try:
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(path)           # fd-based, does not follow symlinks
                else:
                    os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


# ---------------------------------------------------------------- slots

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
                kill_uid(identity)
                return slot
        if len(identities) < MAX_SLOTS:
            ensure_student_user(count=len(identities) + 1, base=base)
            continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"all {MAX_SLOTS} sandbox users are busy")
        time.sleep(0.1)


# ---------------------------------------------------------------- interpreter access

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


# ---------------------------------------------------------------- file access

def build_student_python(destination, python=None):
    """Development machines only: a venv on a system interpreter that other users can run,
    seeing the site-packages of `python` (default: ours) through a .pth file. For when our
    interpreter lives where students cannot enter (pyenv under /root). Needs a system
    python3.X of the same X; returns the new interpreter's path, or None."""
    import site
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = next((p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.path.exists(p)), None)
    if base is None or python not in (None, sys.executable):
        return None
    destination = Path(destination)
    if not (destination / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", "--without-pip", str(destination)], check=True, capture_output=True)
    packages = destination / "lib" / version / "site-packages"
    (packages / "vae-shared.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return str(destination / "bin" / "python")


def autograder_root():
    return Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def private_paths(root=None):
    """What students must not read or write: source (tests, solution, calibration), results, metadata."""
    root = Path(root) if root is not None else autograder_root()
    return [root / "source", root / "results", root / "submission_metadata.json"]


def _walk(path, skip=()):
    """path and everything under it, without following symlinks, pruning the paths in `skip`."""
    if path in skip:
        return
    yield path
    if path.is_dir() and not path.is_symlink():
        for directory, subdirs, files in os.walk(path):
            subdirs[:] = [name for name in subdirs if Path(directory) / name not in skip]
            for name in subdirs + files:
                yield Path(directory) / name


def _chmod(path, mode_of):
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode):
        return
    new = mode_of(stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode))
    if new != stat.S_IMODE(info.st_mode):
        os.chmod(path, new)


def lock_down(private, readable=()):
    """Remove group/other access (and ownership by anyone but root) from `private` paths,
    recursively; then make `readable` paths readable by others (o+rX) and their ancestors
    searchable (o+x, which lets no one list them). Returns a list of what it did."""
    done = []
    readable = [Path(p).absolute() for p in readable]
    readable = [p for p in readable if not any(p != q and p.is_relative_to(q) for q in readable)]
    for top in map(Path, private):
        if not top.exists():
            continue
        for path in _walk(top.absolute(), skip=set(readable)):
            try:
                if os.lstat(path).st_uid != 0 and not path.is_symlink():
                    os.chown(path, 0, 0)
            except OSError:
                pass
            _chmod(path, lambda mode, is_dir: mode & ~0o077)
        done.append(f"go-rwx {top}")
    for top in map(Path, readable):
        if not top.exists():
            continue
        top = top.resolve()
        for ancestor in reversed(top.parents):
            _chmod(ancestor, lambda mode, is_dir: mode | 0o001)
        for path in _walk(top):
            _chmod(path, lambda mode, is_dir: mode | 0o004 | (0o001 if is_dir or mode & 0o100 else 0))
        done.append(f"o+rX {top}")
    return done


def interpreter_paths(python=None):
    """Directories an interpreter needs to read: its prefix, base prefix and site-packages."""
    python = python or sys.executable
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        import site
        paths = {sys.prefix, sys.base_prefix, *site.getsitepackages()}
    else:
        out = subprocess.run([python, "-I", "-c", "import sys, site; print('\\n'.join([sys.prefix, "
                              "sys.base_prefix, *site.getsitepackages()]))"], capture_output=True, text=True)
        paths = set(out.stdout.split("\n")) - {""}
    return sorted(paths)


def prepare(root=None, data_dir=None, python=None, extra_private=(), extra_readable=()):
    """Call first thing in run_autograder (root only; a no-op report otherwise).

    Ensures the slot users exist, kills their leftovers, locks `private_paths(root)` plus
    `extra_private`, keeps `data_dir`, the interpreter's directories and `extra_readable`
    readable, and checks the student users can run `python`. Returns a dict for the log:
    {"root": bool, "users": [...], "actions": [...], "problems": [...]}. A non-empty
    "problems" means student code will run as root (see sandbox.Sandbox, user="auto").
    """
    report = {"root": is_root(), "users": [], "actions": [], "problems": []}
    if not is_root():
        report["problems"].append("not running as root: student code runs as the current user")
        return report
    identities = ensure_student_user()
    report["users"] = [str(i) for i in identities]
    kill_student_processes()
    root = Path(root) if root is not None else autograder_root()
    # the interpreter is made readable only where we locked it ourselves (a venv inside source/)
    inside = [p for p in interpreter_paths(python) if Path(p).resolve().is_relative_to(root.resolve())]
    readable = [p for p in [data_dir, *inside, *extra_readable] if p]
    report["actions"] = lock_down([*private_paths(root), *extra_private], readable)
    problem = python_problem(python or sys.executable)
    if problem:
        report["problems"].append(f"student users cannot run {python or sys.executable}: {problem}")
    return report


def finish(base=STUDENT_USER):
    """Call just before writing results.json: kill every student process, delete their scratch files."""
    if not is_root():
        return {"killed": 0, "removed": []}
    killed = kill_student_processes(base)
    removed = []
    for identity in student_identities(base):
        slot = try_slot(identity)
        if slot is not None:
            removed += remove_files_owned_by(identity.uid)
            slot.release()
    return {"killed": killed, "removed": removed}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ensure-user"]:
        for identity in ensure_student_user():
            print(identity)
        return 0
    if argv[:1] == ["status"]:
        print("root:", is_root())
        for identity in student_identities():
            print(identity)
        if is_root():
            print("python:", python_problem(sys.executable) or "ok")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
