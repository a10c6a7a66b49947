"""TRUSTED SIDE. A number computed by our own code in a forked child of the grader, so that what the
computation imports and allocates dies with the child: the reference's timing loop builds
torch.optim.Adam, whose first use imports torch._dynamo (about 70 MB the grader would otherwise hold
for the rest of the grading, in a 768 MB container). No submission code runs in the child.

Fork keeps only the calling thread: the child runs torch with one thread only (as DataLoader's forked
workers do). Its signal handlers are reset: a SIGTERM meant for the grader (Gradescope's timeout) must
not run the grader's stopper in the child too. It dies with the grader (PDEATHSIG).
"""
import math
import os
import signal
import struct

from .sandbox import kernel

_FORMAT = "d"


def number_in_child(function, *args, **kwargs):
    """function(*args, **kwargs) -> a float, computed in a forked child; where fork is not possible,
    here. Raises RuntimeError when the child fails."""
    try:
        read, write = os.pipe()
    except OSError:
        return float(function(*args, **kwargs))
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return float(function(*args, **kwargs))
    if pid == 0:                                                     # pragma: no cover - child
        code = 1
        try:
            os.close(read)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
                signal.signal(signum, signal.SIG_DFL)
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL, what="PR_SET_PDEATHSIG")
            if os.getppid() == parent:
                value = float(function(*args, **kwargs))
                os.write(write, struct.pack(_FORMAT, value))
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(data) != struct.calcsize(_FORMAT):
        raise RuntimeError(f"the reference's timing failed in its child (status {status})")
    (value,) = struct.unpack(_FORMAT, data)
    if not math.isfinite(value):
        raise RuntimeError(f"the reference's timing gave {value}")
    return value
