"""TRUSTED SIDE. Runs submission code in a child process with limits; exchanges plain data.

One `Sandbox` is one child (`python -I -B -u _worker.py`) in a fresh directory that holds
only the files it is given. Requests go over a pipe; each has a wall-clock deadline, after
which everything the child started is killed and every later request answers TIMEOUT.

What a child gets (see `Sandbox.isolation` for what was actually applied here):
- user: as root, its own unprivileged slot user (privileges.acquire_slot), so its
  processes are exactly that uid's processes; otherwise the current user.
- limits (Limits): wall clock per request; RLIMIT_CPU per process; RLIMIT_DATA per
  process (heap and private mappings; RLIMIT_AS would break `import torch`) plus a
  monitor thread that kills the whole sandbox when the resident anonymous + shared memory
  (RssAnon + RssShmem) of all its processes together passes the same figure; RLIMIT_FSIZE on its log and any file it writes; RLIMIT_NPROC
  (only meaningful as a slot user); no core files.
- network: a fresh, empty network namespace where we may create one (root), and a
  seccomp filter where the kernel allows it (refuses socket() for every family but
  AF_UNIX, io_uring, ptrace, process_vm_readv/writev and kill(-1)).
- processes: the grader becomes a child subreaper, so processes that detach (double
  fork, setsid) are re-parented to it rather than to init. Processes still running when
  a request has been answered are killed (unless Limits.background_processes), and
  `close()` kills every one: as a slot user by an atomic kill(-1) as that uid, otherwise
  by walking the process tree, the session and an environment token.
"""
import atexit
import ctypes
import enum
import os
import platform
import queue
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from . import privileges, wire

HERE = Path(__file__).resolve().parent
WORKER_FILES = (HERE / "_worker.py", HERE / "wire.py")
TOKEN_VARIABLE = "VAE_SANDBOX_TOKEN"


class Status(enum.Enum):
    OK = "ok"
    EXCEPTION = "exception"      # the submission raised; message and where say what
    TIMEOUT = "timeout"          # past the deadline; the child was killed
    CRASHED = "crashed"          # the child died (os._exit, a signal, out of memory)
    PROTOCOL = "protocol"        # the child sent something that is not a valid reply


class SandboxError(RuntimeError):
    """The sandbox could not be set up as asked (not the submission's fault)."""


class CallbackError(Exception):
    """Raised by an on_callback handler to answer the child's callback with an error message
    (the child's grader_call raises RuntimeError(message)). Any other exception from a
    handler is a grader bug: it ends the request and propagates to the caller of request()."""


MAX_CALLBACKS = 100_000                  # per request; past it the reply is a PROTOCOL error


@dataclass
class Limits:
    wall_seconds: float = 60.0
    cpu_seconds: int = 600
    memory_bytes: int = 1536 * 2**20      # RLIMIT_DATA per process, and RSS of all processes together
    output_bytes: int = 1 * 2**20         # stdout + stderr of the child, and any file it writes
    processes: int = 128                  # RLIMIT_NPROC (threads count too), as a slot user only
    background_processes: bool = False    # False: processes left running after a reply are killed


@dataclass
class Reply:
    status: Status
    info: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    kind: str = ""                         # exception class name, for EXCEPTION
    message: str = ""
    where: str = ""                        # file:line in the submission, when known

    @property
    def ok(self):
        return self.status is Status.OK


# ---------------------------------------------------------------- kernel helpers (ctypes, no packages)

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 36, 38, 22, 2
CLONE_NEWNET = 0x40000000

# (audit arch, x32 bit, syscall numbers) per machine
_ARCHES = {
    "x86_64": (0xC000003E, 0x40000000, dict(socket=41, kill=62, ptrace=101, process_vm_readv=310,
                                             process_vm_writev=311, io_uring_setup=425)),
    "aarch64": (0xC00000B7, None, dict(socket=198, kill=129, ptrace=117, process_vm_readv=270,
                                        process_vm_writev=271, io_uring_setup=425)),
}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp_program():
    """A classic-BPF seccomp filter: EACCES for socket(family != AF_UNIX), EPERM for io_uring,
    ptrace, process_vm_* and kill(-1); everything else allowed. None on unknown machines."""
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        return None
    audit_arch, x32_bit, nr = arch
    LD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    code = [("ld", 4), (JEQ, audit_arch, None, "deny"), ("ld", 0)]
    if x32_bit:
        code.append((JGE, x32_bit, "deny", None))
    code += [(JEQ, nr["socket"], "socket", None), (JEQ, nr["kill"], "kill", None)]
    code += [(JEQ, nr[name], "deny", None) for name in ("io_uring_setup", "ptrace", "process_vm_readv",
                                                        "process_vm_writev")]
    code += [("ret", ALLOW),
             "socket", ("ld", 16), (JEQ, socket.AF_UNIX, "allow", None), ("ret", ERRNO | 13),
             "kill", ("ld", 16), (JEQ, 0xFFFFFFFF, "deny", "allow"),
             "allow", ("ret", ALLOW),
             "deny", ("ret", ERRNO | 1)]
    labels, position = {}, 0
    for item in code:
        if isinstance(item, str):
            labels[item] = position
        else:
            position += 1
    raw, position = b"", 0
    for item in code:
        if isinstance(item, str):
            continue
        if item[0] == "ld":
            raw += struct.pack("=HBBI", LD, 0, 0, item[1])
        elif item[0] == "ret":
            raw += struct.pack("=HBBI", RET, 0, 0, item[1])
        else:
            op, k, true, false = item
            jump = [0 if target is None else labels[target] - position - 1 for target in (true, false)]
            raw += struct.pack("=HBBI", op, jump[0], jump[1], k)
        position += 1
    buffer = ctypes.create_string_buffer(raw, len(raw))
    program = _SockFprog(len(raw) // 8, ctypes.addressof(buffer))
    return program, buffer


_SECCOMP = _seccomp_program()


def _install_seccomp():
    if _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(_SECCOMP[0]), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


_MECHANISMS = None
_MECHANISMS_LOCK = threading.Lock()


def network_mechanisms():
    """Which network blocks work here, probed once in a forked child: {'netns': bool, 'seccomp': bool}."""
    global _MECHANISMS
    with _MECHANISMS_LOCK:
        if _MECHANISMS is None:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                bits = 0
                try:
                    if os.geteuid() == 0 and _unshare(CLONE_NEWNET) == 0:
                        bits |= 1
                    if _SECCOMP is not None:
                        _install_seccomp()
                        try:
                            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                        except PermissionError:
                            bits |= 2
                finally:
                    os._exit(bits)
            _, status = os.waitpid(pid, 0)
            bits = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 0
            _MECHANISMS = {"netns": bool(bits & 1), "seccomp": bool(bits & 2)}
        return dict(_MECHANISMS)


_SUBREAPER = None


def _become_subreaper():
    """Orphans of sandboxed processes are re-parented to us, not init: we can find and reap them."""
    global _SUBREAPER
    if _SUBREAPER is None:
        _SUBREAPER = _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _SUBREAPER


def _starttime(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _has_token(pid, token):
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{TOKEN_VARIABLE}={token}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


POLL_SECONDS = 0.2                       # while a request is in flight
IDLE_POLL_SECONDS = 0.5                  # while every sandbox waits for the grader
_MONITOR = None
_MONITOR_LOCK = threading.Lock()


def _start_monitor():
    """One daemon thread for all sandboxes: one /proc scan per tick, however many are open."""
    global _MONITOR
    with _MONITOR_LOCK:
        if _MONITOR is None or not _MONITOR.is_alive():
            _MONITOR = threading.Thread(target=_monitor_loop, daemon=True, name="sandbox-monitor")
            _MONITOR.start()


def _monitor_loop():
    busy = False
    while True:
        time.sleep(POLL_SECONDS if busy else IDLE_POLL_SECONDS)
        boxes = [box for box in list(_LIVE) if box.process is not None and not box._closed]
        busy = any(box._busy for box in boxes)
        if not boxes:
            continue
        try:
            table, _ = _snapshot()
        except OSError:
            continue
        for box in boxes:
            try:
                box._check(table)
            except Exception:  # noqa: BLE001 - the monitor must never die of a race with /proc
                pass


_LIVE = weakref.WeakSet()
# Held while a worker is spawned and recorded, and while a /proc snapshot is taken: a
# worker half-way through Popen must never look like an orphan to another sandbox.
_SPAWN_LOCK = threading.RLock()
_WORKERS = set()


def _snapshot():
    """(process table, pids of our live workers), consistent with each other."""
    with _SPAWN_LOCK:
        return privileges.process_table(), set(_WORKERS)


def close_all():
    """Close every open sandbox (registered with atexit too)."""
    for box in list(_LIVE):
        box.close()


atexit.register(close_all)


class Sandbox:
    """Usage: with Sandbox({"utils.py": path, ...}) as box: reply = box.request("call", params, arrays)

    user: "auto" (default, or $VAE_SANDBOX_USER): a slot user when root and that user can
    run `python`, otherwise the current user (the reason is in isolation["user"]);
    "student": a slot user or SandboxError; "current": always the current user.
    One request at a time per sandbox. Read `output_tail()` before or after `close()`.
    """

    def __init__(self, files, limits=None, python=None, user=None):
        self.files = dict(files)
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.user = user or os.environ.get("VAE_SANDBOX_USER", "auto")
        if self.user not in ("auto", "student", "current"):
            raise ValueError(f"user must be auto, student or current, not {self.user!r}")
        self.process = None
        self.dead = None                   # the Reply every request gets once the child is gone
        self.root = None
        self.identity = None               # privileges.Identity of the slot user, or None
        self.isolation = {}
        self._slot = None
        self._token = secrets.token_hex(16)
        self._kill_lock = threading.RLock()
        self._busy = False
        self._request_lock = threading.Lock()   # held while a request is in flight
        self._killed_for = None            # why the monitor killed the child
        self._tracked = {}                 # tree mode: pid -> starttime of every process seen
        self._answers = queue.Queue()      # where the request in flight expects its outcome
        self._tail = None
        self._closed = False
        self._grader_failure = None        # an exception a callback handler raised (a grader bug)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ start

    def start(self):
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        _LIVE.add(self)
        self.root = Path(tempfile.mkdtemp(prefix="vae-sandbox-"))
        workdir = self.root / "work"
        workdir.mkdir()
        for name, source in self.files.items():
            shutil.copyfile(source, workdir / name)
        for source in WORKER_FILES:
            shutil.copyfile(source, workdir / source.name)
        identity = self._choose_user()
        if identity is not None:
            os.chmod(self.root, 0o711)
            for path in [workdir, *workdir.iterdir()]:
                os.chown(path, identity.uid, identity.gid)
            os.chmod(workdir, 0o700)
        self.isolation["subreaper"] = _become_subreaper()
        mechanisms = network_mechanisms()
        unshare_net = mechanisms["netns"] and os.geteuid() == 0
        network = [name for name, used in (("network namespace", unshare_net), ("seccomp", mechanisms["seccomp"]))
                   if used]
        self.isolation["network"] = " + ".join(network) or "none (no network namespace or seccomp here)"
        self.isolation["kill"] = "uid" if identity else "process tree"
        self.isolation["memory"] = "RLIMIT_DATA + RSS monitor"
        self.log_path = self.root / "output.log"
        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with _SPAWN_LOCK:
                self.process = subprocess.Popen(
                    [self.python, "-I", "-B", "-u", "_worker.py", str(request_read), str(reply_write)],
                    cwd=workdir, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                    pass_fds=(request_read, reply_write), start_new_session=True,
                    preexec_fn=self._preexec(identity, unshare_net, mechanisms["seccomp"]),
                    env=self._environment(identity),
                )
                _WORKERS.add(self.process.pid)
        finally:
            os.close(fd)
            os.close(request_read)
            os.close(reply_write)
        self._worker_start = _starttime(self.process.pid) or 0
        self._requests = os.fdopen(self._request_write, "wb")
        self._replies = os.fdopen(self._reply_read, "rb")
        _start_monitor()

    def _choose_user(self):
        me = f"uid {os.getuid()}"
        if self.user == "current" or not privileges.is_root():
            if self.user == "student":
                raise SandboxError("user='student' needs the grader to run as root")
            self.isolation["user"] = f"current user ({me}{', not root' if not privileges.is_root() else ''})"
            return None
        try:
            slot = privileges.acquire_slot()
        except (OSError, RuntimeError) as error:      # no useradd, all slots busy for a minute...
            if self.user == "student":
                raise SandboxError(f"no student user: {error}") from error
            self.isolation["user"] = f"current user ({me}) FALLBACK: no student user ({error})"
            return None
        problem = privileges.python_problem(self.python, slot)
        if problem:
            slot.release()
            reason = f"{slot.identity.name} cannot run {self.python}: {problem}"
            if self.user == "student":
                raise SandboxError(reason)
            self.isolation["user"] = f"current user ({me}) FALLBACK: {reason}"
            return None
        self._slot, self.identity = slot, slot.identity
        self.isolation["user"] = str(slot.identity)
        return slot.identity

    def _environment(self, identity):
        keep = ("PATH", "LANG", "LC_ALL", "VAE_DATA_DIR", "VAE_THREADS", "CUDA_VISIBLE_DEVICES")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        work = str(self.root / "work")
        env.update(HOME=work, TMPDIR=work, MPLBACKEND="Agg", MPLCONFIGDIR=work, **{TOKEN_VARIABLE: self._token})
        if identity is not None:
            env.update(USER=identity.name, LOGNAME=identity.name)
        return env

    def _preexec(self, identity, unshare_net, seccomp):
        """Runs in the forked child before exec: limits, network namespace, drop to the slot user, seccomp."""
        limits = self.limits
        rlimits = [(resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_DATA, limits.memory_bytes),
                   (resource.RLIMIT_FSIZE, limits.output_bytes), (resource.RLIMIT_CORE, 0)]
        if identity is not None:
            rlimits.append((resource.RLIMIT_NPROC, limits.processes))
        ids = (identity.uid, identity.gid) if identity is not None else None

        def child():
            for which, value in rlimits:
                # CPU: SIGXCPU at the soft limit (reported as such), SIGKILL 2 s later
                resource.setrlimit(which, (value, value + 2 if which == resource.RLIMIT_CPU else value))
            if unshare_net and _unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            if ids is not None:
                os.setgroups([])
                os.setresgid(ids[1], ids[1], ids[1])
                os.setresuid(ids[0], ids[0], ids[0])
                if os.getuid() != ids[0] or os.geteuid() != ids[0]:
                    os._exit(126)
            os.umask(0o077)
            if seccomp:
                _install_seccomp()
        return child

    # ------------------------------------------------------------ requests

    def request(self, op, params=None, arrays=None, timeout=None, on_callback=None):
        """Send one request; -> Reply. While it is in flight the child may call back
        (`_worker.grader_call`): `on_callback(name, params, arrays) -> (info, arrays)` answers
        in this thread, within the same deadline (see CallbackError)."""
        if self._grader_failure is not None:
            raise SandboxError(f"this sandbox was ended by a grader error in a callback: {self._grader_failure!r}")
        if self.dead is not None:
            return self.dead
        if self.process is None:
            raise SandboxError("the sandbox is not started")
        with self._request_lock:
            return self._request(op, params, arrays, timeout, on_callback)

    def _request(self, op, params, arrays, timeout, on_callback):
        answers = self._answers = queue.Queue()
        callback_answers = queue.Queue()
        seconds = timeout or self.limits.wall_seconds
        deadline = time.monotonic() + seconds
        self._busy = True
        exchange = threading.Thread(target=self._exchange,
                                    args=({"op": op, "params": params or {}}, arrays, answers, callback_answers),
                                    daemon=True, name="sandbox-exchange")
        exchange.start()
        try:
            while True:
                try:
                    outcome = answers.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    return self._die(Status.TIMEOUT, seconds=seconds)
                if not isinstance(outcome, _Callback):
                    break
                callback_answers.put(self._answer_callback(outcome, on_callback))
        except BaseException as error:
            self._grader_failure = error
            self.kill()
            raise
        finally:
            self._busy = False
            callback_answers.put(None)           # the exchange thread may wait for an answer: end it
        if isinstance(outcome, EOFError):
            return self._die(Status.CRASHED)
        if isinstance(outcome, Exception):
            return self._die(Status.PROTOCOL, str(outcome))
        header, arrays = outcome
        if header.get("status") == "ok":
            return Reply(Status.OK, info=header.get("info") if isinstance(header.get("info"), dict) else {},
                         arrays=arrays)
        kind = str(header.get("kind", ""))[:100]
        return Reply(Status.EXCEPTION, kind=kind, message=self._explain(kind, str(header.get("message", ""))[:2000]),
                     where=str(header.get("where") or "")[:200])

    @staticmethod
    def _answer_callback(callback, on_callback):
        """-> (header, arrays) to send back. Exceptions other than CallbackError propagate."""
        if on_callback is None:
            return {"status": "error", "message": "no callbacks are served for this request"}, None
        try:
            info, arrays = on_callback(callback.name, callback.params, callback.arrays)
        except CallbackError as error:
            return {"status": "error", "message": str(error)}, None
        return {"status": "ok", "info": info or {}}, arrays or {}

    def _exchange(self, header, arrays, answers, callback_answers):
        try:
            wire.write_message(self._requests, header, arrays)
        except OSError:
            answers.put(EOFError("the child closed its request channel"))
            return
        try:
            for served in range(MAX_CALLBACKS + 1):
                header, arrays = wire.read_message(self._replies)
                if "callback" not in header:
                    answers.put((header, arrays))
                    return
                if served == MAX_CALLBACKS:
                    break
                name, params = header["callback"], header.get("params", {})
                if not isinstance(name, str) or not isinstance(params, dict):
                    raise wire.WireError("a callback needs a string name and a params object")
                answers.put(_Callback(name, params, arrays))
                answer = callback_answers.get()
                if answer is None:               # the request ended meanwhile
                    return
                wire.write_message(self._requests, *answer)
            answers.put(wire.WireError(f"more than {MAX_CALLBACKS} callbacks in one request"))
        except OSError:
            answers.put(EOFError("the child closed a channel"))
        except Exception as error:  # EOFError, WireError: all end the child
            answers.put(error)

    def _explain(self, kind, message):
        if kind == "MemoryError" or "can't allocate memory" in message or "Cannot allocate memory" in message:
            return f"{message} (out of memory: the limit is {self.limits.memory_bytes / 2**20:.0f} MB)"
        if "File too large" in message:
            return (f"{message} (output limit: the process may print or write at most "
                    f"{self.limits.output_bytes} bytes)")
        return message

    def _die(self, status, detail="", seconds=None):
        if status is Status.CRASHED:
            try:                                  # EOF comes a moment before the exit status
                self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        alive = self.process.poll() is None
        self.kill()
        code = self.process.returncode
        if self._killed_for:
            status, message = Status.CRASHED, self._killed_for
        elif status is Status.TIMEOUT:
            message = f"did not finish within {seconds:g} seconds (stopped)"
        elif status is Status.CRASHED and alive:
            message = "closed its connection to the grader (the process was still running and was stopped)"
        elif status is Status.CRASHED:
            message = _describe_exit(code)
        else:
            message = f"sent a malformed reply ({detail})"
        self.dead = Reply(status, message=message)
        return self.dead

    # ------------------------------------------------------------ processes

    def members(self, table=None):
        """pids of every live process that belongs to this sandbox."""
        if self.process is None:
            return set()
        table = _snapshot()[0] if table is None else table
        if self.identity is not None:
            return {pid for pid, proc in table.items() if self.identity.uid in proc.uids and proc.state not in "ZX"}
        # The worker, its session, every process seen before (pid and start time), and the
        # orphans re-parented to us (subreaper: ppid is us, but not in our session as our
        # own children are) since the worker started, then all their descendants.
        me, worker, my_session = os.getpid(), self.process.pid, os.getsid(0)
        with _SPAWN_LOCK:
            workers = set(_WORKERS)
        roots = {worker} if worker in table else set()
        for pid, proc in table.items():
            if pid == me or proc.state in "ZX":
                continue
            if proc.session == worker:
                roots.add(pid)
            elif pid in self._tracked and _starttime(pid) == self._tracked[pid]:
                roots.add(pid)
            elif proc.ppid == me and pid not in workers and proc.session != my_session \
                    and (_has_token(pid, self._token)
                         or (proc.session != pid and (_starttime(pid) or 0) >= self._worker_start)):
                # Without our token, only a process that is not a session leader: the grader's
                # own children started in a session of their own (another grading launched by a
                # test runner, say) look like orphans too, and must never be killed.
                roots.add(pid)
        children = {}
        for pid, proc in table.items():
            children.setdefault(proc.ppid, []).append(pid)
        found, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid in found or pid == me or pid not in table or table[pid].state in "ZX":
                continue
            found.add(pid)
            todo += children.get(pid, [])
        for pid in found:
            if pid not in self._tracked:
                self._tracked[pid] = _starttime(pid)
        return found

    def _signal(self, pids):
        def still_ours(pid):
            if self.identity is not None:
                return self.identity.uid in privileges._uids_of(pid)
            return _starttime(pid) == self._tracked.get(pid, _starttime(pid))
        for pid in pids:
            privileges.signal_process(pid, signal.SIGKILL, check=still_ours)

    def _kill_strays(self):
        """Kill every process of the sandbox but the worker (nothing may outlive a request)."""
        worker = self.process.pid
        for _ in range(50):
            table = _snapshot()[0]
            strays = self.members(table) - {worker}
            self._reap(table)
            if not strays:
                return
            self._signal(strays)
            time.sleep(0.005)

    def _reap(self, table):
        me, worker = os.getpid(), self.process.pid if self.process else None
        ours = self.identity.uid if self.identity is not None else None
        privileges.reap([pid for pid, proc in table.items()
                         if proc.ppid == me and proc.state == "Z" and pid != worker
                         and (ours in proc.uids if ours is not None else pid in self._tracked)])

    def kill(self):
        """Kill every process this sandbox started, however it detached; reap what we inherited."""
        if self.process is None:
            return
        with self._kill_lock:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            if self.identity is not None:
                privileges.kill_uid(self.identity)
                return
            for _ in range(100):
                table = _snapshot()[0]
                alive = self.members(table)
                self._reap(table)
                if not alive:
                    return
                self._signal(alive)
                time.sleep(0.005)

    def _check(self, table):
        """One look by the monitor: the worker's death, memory of all processes, strays between requests."""
        if self.process is None or self._closed or self.dead is not None:
            return
        if self.process.poll() is not None:
            # The worker is gone, but a process it left may still hold the reply pipe open:
            # answer the request in flight now rather than at its deadline.
            self._answers.put(EOFError("the worker exited"))
            return
        members = self.members(table)
        used = sum(table[pid].memory for pid in members if pid in table)
        if used > self.limits.memory_bytes:
            self._killed_for = (f"used more than {self.limits.memory_bytes / 2**20:.0f} MB of memory "
                                f"(all its processes together) and was stopped")
            self.kill()
            self._answers.put(EOFError("killed for memory"))
            return
        if not self.limits.background_processes and members - {self.process.pid} \
                and self._request_lock.acquire(blocking=False):
            try:
                if self.dead is None:
                    self._kill_strays()
            finally:
                self._request_lock.release()

    # ------------------------------------------------------------ output and close

    def output_tail(self, limit=2000):
        """The last `limit` bytes the child printed (stdout and stderr), decoded leniently."""
        if self._tail is not None:
            return self._tail[-limit:]
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except (OSError, AttributeError):
            return ""

    def close(self):
        """Stop the child and everything it started; remove its files. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.kill()                              # no graceful exit: nothing of the child's is needed
        for stream in (getattr(self, "_requests", None), getattr(self, "_replies", None)):
            try:
                stream and stream.close()
            except OSError:
                pass
        if self.process is not None:
            self._tail = self.output_tail(64 * 1024)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        if self.identity is not None:
            privileges.remove_files_owned_by(self.identity.uid)
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        _LIVE.discard(self)
        if self.process is not None:
            with _SPAWN_LOCK:
                _WORKERS.discard(self.process.pid)


@dataclass
class _Callback:
    name: str
    params: dict
    arrays: dict


def _describe_exit(code):
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hints = {"SIGKILL": " (killed: most often memory or the time limit)", "SIGXCPU": " (CPU time limit)",
                 "SIGXFSZ": " (output size limit)", "SIGSEGV": " (segmentation fault)"}
        return f"was killed by {name}{hints.get(name, '')}"
    return f"exited with code {code} before answering (sys.exit in a thread, os._exit or a crash in native code?)"
