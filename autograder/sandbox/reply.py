"""What a request returns, and the sentences that explain a failure to the student."""
import enum
import signal
from dataclasses import dataclass, field


class Status(enum.Enum):
    OK = "ok"
    EXCEPTION = "exception"      # the submission raised; message and where say what
    TIMEOUT = "timeout"          # past the deadline; the child was killed
    CRASHED = "crashed"          # the child died (os._exit, a signal, out of memory)
    PROTOCOL = "protocol"        # the child sent something that is not a valid reply


class SandboxError(RuntimeError):
    """The sandbox could not be set up or used as asked (not the submission's fault)."""


class CallbackError(Exception):
    """Raised by an on_callback handler to answer the child's callback with an error message
    (the child's grader_call raises RuntimeError(message)). Any other exception from a
    handler is a grader bug: it ends the request and propagates to the caller of request()."""


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


def explain_exception(kind, message, limits):
    """The child's own exception message, with the limit that caused it when one did."""
    if kind == "MemoryError" or "can't allocate memory" in message or "Cannot allocate memory" in message:
        return f"{message} (out of memory: the limit is {limits.memory_bytes / 2**20:.0f} MB)"
    if "File too large" in message:
        return f"{message} (file size limit: one file may hold at most {limits.file_bytes} bytes)"
    if "Operation not permitted" in message or "Permission denied" in message:
        return (f"{message} (the grader runs your code without the right to start processes, use the network, "
                "shared memory or kernel keyrings, or open the grader's files: your functions need none of these)")
    return message


def describe_exit(code):
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hints = {"SIGKILL": " (killed: most often memory or the time limit)", "SIGXCPU": " (CPU time limit)",
                 "SIGXFSZ": " (file size limit)", "SIGSEGV": " (segmentation fault)"}
        return f"was killed by {name}{hints.get(name, '')}"
    return f"exited with code {code} before answering (sys.exit in a thread, os._exit or a crash in native code?)"


def over_memory(limits):
    return (f"used more than {limits.memory_bytes / 2**20:.0f} MB of memory (all its processes together, "
            f"and the files it wrote) and was stopped")
