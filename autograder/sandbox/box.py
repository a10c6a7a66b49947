"""The Sandbox: one child process (`python -I -B -u _worker.py`) in a fresh directory that
holds only the files it is given, its limits and isolation, its requests and its end."""
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .. import config, paths
from . import exchange, kernel, launch, monitor, output, probe, reply, scratch, tracking, users
from .reply import Reply, SandboxError, Status

HERE = Path(__file__).resolve().parent.parent
WORKER_FILES = (HERE / "_worker.py", HERE / "wire.py")


class Sandbox:
    """Usage: with Sandbox({"utils.py": path, ...}) as box: reply = box.request("call", params, arrays)

    user: "auto" (default, or $VAE_SANDBOX_USER): a slot user when root and that user can
    run `python`, otherwise the current user (the reason is in isolation["user"]);
    "student": a slot user or SandboxError; "current": always the current user.
    One request at a time per sandbox. `output()` and `output_tail()` work before and after `close()`.
    """

    def __init__(self, files, limits=None, python=None, user=None):
        self.files = dict(files)
        self.limits = limits or config.LIMITS
        self.python = python or sys.executable
        self.user = user or os.environ.get("VAE_SANDBOX_USER", "auto")
        if self.user not in ("auto", "student", "current"):
            raise ValueError(f"user must be auto, student or current, not {self.user!r}")
        self.process = None
        self.dead = None                   # the Reply every request gets once the child is gone
        self.root = None
        self.identity = None               # users.Identity of the slot user, or None
        self.isolation = {}
        self.busy = False
        self.closed = False
        self.private_directories = []      # covered by a private tmpfs in the child's mount namespace
        self._slot = None
        self._token = secrets.token_hex(16)
        self._tracker = None
        self._output = None
        self._output_text = None
        self._kill_lock = threading.RLock()
        self._close_lock = threading.Lock()
        self._request_lock = threading.Lock()   # held while a request is in flight
        self._killed_for = None            # why the monitor killed the child
        self._grader_failure = None        # an exception a callback handler raised (a grader bug)
        self._answers = queue.Queue()      # where the request in flight expects its outcome

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
        monitor.LIVE.add(self)
        identity = self._choose_user()
        self.root = Path(tempfile.mkdtemp(prefix="vae-sandbox-", dir=_parent_directory()))
        workdir = self.root / "work"
        workdir.mkdir()
        for name, source in self.files.items():
            shutil.copyfile(source, workdir / name)
        for source in WORKER_FILES:
            shutil.copyfile(source, workdir / source.name)
        if identity is not None:
            os.chmod(self.root, 0o711)
            for path in [workdir, *workdir.iterdir()]:
                os.chown(path, identity.uid, identity.gid)
            os.chmod(workdir, 0o700)
        self.isolation["subreaper"] = kernel.become_subreaper()
        found = probe.mechanisms()
        namespaces, keep = 0, []
        if users.is_root():
            needed = [self.root, *launch.interpreter_directories(self.python), os.environ.get("VAE_DATA_DIR"),
                      paths.PROJECT / "data", *scratch.shared_directories()]
            namespaces, self.private_directories, keep = launch.namespaces(found, needed)
            (self.root / "hold").mkdir(mode=0o700)
            for index in range(len(keep)):
                (self.root / "hold" / str(index)).mkdir()
        self.isolation.update(launch.describe(found, namespaces, self.private_directories, identity))
        self._output = output.Output()
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        try:
            with monitor.SPAWN_LOCK:
                self.process = subprocess.Popen(
                    [self.python, "-I", "-B", "-u", "_worker.py", str(request_read), str(reply_write)],
                    cwd=workdir, stdin=subprocess.DEVNULL, stdout=self._output.write_fd, stderr=self._output.write_fd,
                    pass_fds=(request_read, reply_write), start_new_session=True,
                    preexec_fn=launch.preexec(self.limits, identity, namespaces, self.private_directories, keep,
                                              self.root / "hold", found["seccomp"]),
                    env=launch.environment(workdir, identity, self._token),
                )
                monitor.WORKERS.add(self.process.pid)
        finally:
            os.close(request_read)
            os.close(reply_write)
            self._requests = os.fdopen(request_write, "wb")
            self._replies = os.fdopen(reply_read, "rb")
        self._output.start()
        self._tracker = tracking.Tracker(self.process, identity, self._token)
        monitor.start()

    def _choose_user(self):
        me = f"uid {os.getuid()}"
        if self.user == "current" or not users.is_root():
            if self.user == "student":
                raise SandboxError("user='student' needs the grader to run as root")
            self.isolation["user"] = f"current user ({me}{', not root' if not users.is_root() else ''})"
            return None
        try:
            slot = users.acquire_slot()
        except (OSError, RuntimeError) as error:      # no useradd, all slots busy for a minute...
            if self.user == "student":
                raise SandboxError(f"no student user: {error}") from error
            self.isolation["user"] = f"current user ({me}) FALLBACK: no student user ({error})"
            return None
        problem = users.python_problem(self.python, slot)
        if problem:
            slot.release()
            reason = f"{slot.identity.name} cannot run {self.python}: {problem}"
            if self.user == "student":
                raise SandboxError(reason)
            self.isolation["user"] = f"current user ({me}) FALLBACK: {reason}"
            return None
        self._slot, self.identity = slot, slot.identity
        self.isolation["user"] = str(slot.identity)
        scratch.remove_owned(slot.identity.uid, scratch.writable_directories())   # a crashed grading's leftovers
        return slot.identity

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
            answers = self._answers = queue.Queue()
            seconds = timeout or self.limits.wall_seconds
            self.busy = True
            try:
                outcome = exchange.run(self._requests, self._replies, {"op": op, "params": params or {}}, arrays,
                                       seconds, on_callback, answers)
            except exchange.Timeout:
                return self._die(Status.TIMEOUT, seconds=seconds)
            except BaseException as error:
                self._grader_failure = error
                self.kill()
                raise
            finally:
                self.busy = False
        if isinstance(outcome, EOFError):
            return self._die(Status.CRASHED)
        if isinstance(outcome, Exception):
            return self._die(Status.PROTOCOL, str(outcome))
        header, arrays = outcome
        if header.get("status") == "ok":
            return Reply(Status.OK, info=header.get("info") if isinstance(header.get("info"), dict) else {},
                         arrays=arrays)
        kind = str(header.get("kind", ""))[:100]
        message = reply.explain_exception(kind, str(header.get("message", ""))[:2000], self.limits)
        return Reply(Status.EXCEPTION, kind=kind, message=message, where=str(header.get("where") or "")[:200])

    def _die(self, status, detail="", seconds=None):
        if status is Status.CRASHED:
            try:                                  # EOF comes a moment before the exit status
                self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        alive = self.process.poll() is None
        self.kill()
        if self._killed_for:
            status, message = Status.CRASHED, self._killed_for
        elif status is Status.TIMEOUT:
            message = f"did not finish within {seconds:g} seconds (stopped)"
        elif status is Status.CRASHED and alive:
            message = "closed its connection to the grader (the process was still running and was stopped)"
        elif status is Status.CRASHED:
            message = reply.describe_exit(self.process.returncode)
        else:
            message = f"sent a malformed reply ({detail})"
        self.dead = Reply(status, message=message)
        return self.dead

    # ------------------------------------------------------------ processes, memory and files

    def members(self, table=None):
        """pids of every live process that belongs to this sandbox."""
        return self._tracker.members(table) if self._tracker is not None else set()

    def kill(self):
        """Kill every process this sandbox started, however it detached; reap what we inherited."""
        if self._tracker is None:
            return
        with self._kill_lock:
            self._tracker.kill_all()

    def file_usage(self):
        """-> (bytes, files) the child holds in files: its work directory, the files its processes hold open
        unlinked, its private tmpfs, and (as a slot user) what it owns in the directories every sandbox shares."""
        total, count = scratch.tree_bytes(str(self.root / "work"))
        root = f"/proc/{self.process.pid}/root"
        total += scratch.unlinked_open_bytes(self.members(), scratch.devices(root, self.private_directories))
        total += scratch.used_bytes(root, self.private_directories)
        if self.identity is not None:
            shared = [d for d in scratch.writable_directories() if d not in self.private_directories]
            owned, owned_count = scratch.bytes_owned(self.identity.uid, shared, scratch.MAX_ENTRIES - count)
            total, count = total + owned, count + owned_count
        return total, count

    def check(self, table):
        """One look by the monitor: the worker's death, memory and files, strays between requests."""
        if self.process is None or self.closed or self.dead is not None:
            return
        if self.process.poll() is not None:
            # The worker is gone, but a process it left may still hold the reply pipe open:
            # answer the request in flight now rather than at its deadline.
            self._answers.put(EOFError("the worker exited"))
            return
        members = self.members(table)
        file_bytes, files = self.file_usage()
        used = sum(table[pid].memory for pid in members if pid in table) + file_bytes
        if used > self.limits.memory_bytes or files >= scratch.MAX_ENTRIES:
            self._killed_for = reply.over_memory(self.limits) if files < scratch.MAX_ENTRIES else \
                f"created more than {scratch.MAX_ENTRIES} files (or folders nested too deep to count) and was stopped"
            self.kill()
            self._answers.put(EOFError("killed for memory"))
            return
        if not self.limits.background_processes and members - {self.process.pid} \
                and self._request_lock.acquire(blocking=False):
            try:
                if self.dead is None:
                    self._tracker.kill_strays()
            finally:
                self._request_lock.release()

    # ------------------------------------------------------------ output and close

    def output(self):
        """What the child printed (stdout and stderr): the first and last output.KEEP_BYTES,
        with a note saying how much was dropped between them."""
        if self._output_text is not None:
            return self._output_text
        return self._output.text() if self._output is not None else ""

    def output_tail(self, limit=2000):
        """The last `limit` characters of output()."""
        return self.output()[-limit:]

    def close(self):
        """Stop the child and everything it started; remove its files. Safe to call twice."""
        with self._close_lock:          # the grading-stop thread may close beside the main thread
            if self.closed:
                return
            self.closed = True
        self.kill()                              # no graceful exit: nothing of the child's is needed
        for stream in (getattr(self, "_requests", None), getattr(self, "_replies", None)):
            try:
                stream and stream.close()
            except OSError:
                pass
        if self._output is not None:
            self._output.close()
            self._output_text = self._output.text()
        if self.root is not None:
            scratch.remove_tree(str(self.root))
        if self.identity is not None:
            scratch.remove_owned(self.identity.uid, scratch.writable_directories())
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        monitor.LIVE.discard(self)
        if self.process is not None:
            with monitor.SPAWN_LOCK:
                monitor.WORKERS.discard(self.process.pid)


def _parent_directory():
    """As root, a root-owned directory outside every world-writable one (so that those can be
    covered by a private tmpfs without hiding the sandbox's own files); else the temp dir."""
    if users.is_root():
        for parent in ("/run", "/var/lib"):
            path = os.path.join(parent, "vae-sandboxes")
            try:
                os.mkdir(path, 0o711)
            except FileExistsError:
                pass
            except OSError:
                continue
            info = os.lstat(path)
            if os.path.isdir(path) and not os.path.islink(path) and info.st_uid == 0 and not info.st_mode & 0o022:
                return path
    return tempfile.gettempdir()
