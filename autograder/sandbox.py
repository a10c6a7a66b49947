"""TRUSTED SIDE. Runs submission code in a child process with limits; exchanges plain data.

One `Sandbox` is one child (`python -I _worker.py`) in a fresh directory that holds only
the files it is given. Requests go over a pipe; each has a wall-clock deadline, after
which the whole process group is killed and every later request answers TIMEOUT at once.
"""
import enum
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import wire

HERE = Path(__file__).resolve().parent
WORKER_FILES = (HERE / "_worker.py", HERE / "wire.py")


class Status(enum.Enum):
    OK = "ok"
    EXCEPTION = "exception"      # the submission raised; message and where say what
    TIMEOUT = "timeout"          # past the deadline; the child was killed
    CRASHED = "crashed"          # the child died (os._exit, a signal, out of memory)
    PROTOCOL = "protocol"        # the child sent something that is not a valid reply


@dataclass
class Limits:
    wall_seconds: float = 60.0
    cpu_seconds: int = 600
    memory_bytes: int = 1536 * 2**20      # RLIMIT_DATA: heap; RLIMIT_AS would break `import torch`
    output_bytes: int = 1 * 2**20         # stdout + stderr of the child, and any file it writes
    processes: int = 64                   # RLIMIT_NPROC, effective when the child runs as its own user


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


class Sandbox:
    """Usage: with Sandbox({"utils.py": path, ...}) as box: reply = box.request("call", params, arrays)"""

    def __init__(self, files, limits=None, python=None):
        self.files = dict(files)
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.process = None
        self.dead = None                   # the Reply every request gets once the child is gone
        self.root = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        self.root = Path(tempfile.mkdtemp(prefix="vae-sandbox-"))
        workdir = self.root / "work"
        workdir.mkdir()
        for name, source in self.files.items():
            shutil.copyfile(source, workdir / name)
        for source in WORKER_FILES:
            shutil.copyfile(source, workdir / source.name)
        self.log_path = self.root / "output.log"
        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.python, "-I", "_worker.py", str(request_read), str(reply_write)],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(request_read, reply_write), start_new_session=True,
                preexec_fn=self._apply_limits, env=self._environment(),
            )
        os.close(request_read)
        os.close(reply_write)
        self._requests = os.fdopen(self._request_write, "wb")
        self._replies = os.fdopen(self._reply_read, "rb")

    def _environment(self):
        keep = ("PATH", "LANG", "LC_ALL", "VAE_DATA_DIR", "VAE_THREADS", "CUDA_VISIBLE_DEVICES")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", MPLBACKEND="Agg",
                   HOME=str(self.root / "work"), TMPDIR=str(self.root / "work"))
        return env

    def _apply_limits(self):
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def request(self, op, params=None, arrays=None, timeout=None):
        if self.dead is not None:
            return self.dead
        try:
            wire.write_message(self._requests, {"op": op, "params": params or {}}, arrays)
        except (BrokenPipeError, OSError):
            return self._die(Status.CRASHED)
        answers = queue.Queue()
        reader = threading.Thread(target=self._read_reply, args=(answers,), daemon=True)
        reader.start()
        try:
            outcome = answers.get(timeout=timeout or self.limits.wall_seconds)
        except queue.Empty:
            return self._die(Status.TIMEOUT)
        if isinstance(outcome, EOFError):
            return self._die(Status.CRASHED)
        if isinstance(outcome, Exception):
            return self._die(Status.PROTOCOL, str(outcome))
        header, arrays = outcome
        if header.get("status") == "ok":
            return Reply(Status.OK, info=header.get("info") or {}, arrays=arrays)
        return Reply(Status.EXCEPTION, kind=str(header.get("kind", ""))[:100],
                     message=str(header.get("message", ""))[:2000], where=str(header.get("where") or "")[:200])

    def _read_reply(self, answers):
        try:
            answers.put(wire.read_message(self._replies))
        except Exception as error:  # EOFError, WireError, OSError: all end the child
            answers.put(error)

    def _die(self, status, detail=""):
        self.kill()
        code = self.process.returncode
        if status is Status.TIMEOUT:
            message = f"did not finish within {self.limits.wall_seconds:g} seconds"
        elif status is Status.CRASHED:
            message = _describe_exit(code)
        else:
            message = f"sent a malformed reply ({detail})"
        self.dead = Reply(status, message=message)
        return self.dead

    def output_tail(self, limit=2000):
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self):
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    def close(self):
        if self.process is not None and self.process.poll() is None:
            try:
                self._requests.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (getattr(self, "_requests", None), getattr(self, "_replies", None)):
            try:
                stream and stream.close()
            except OSError:
                pass
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _describe_exit(code):
    if code is None:
        return "stopped responding"
    if code < 0:
        name = signal.Signals(-code).name
        hints = {"SIGKILL": " (killed: most often memory or the time limit)", "SIGXCPU": " (CPU time limit)",
                 "SIGXFSZ": " (output size limit)", "SIGSEGV": " (segmentation fault)"}
        return f"the process was killed by {name}{hints.get(name, '')}"
    return f"the process exited with code {code} before answering (os._exit or a crash in native code?)"
