"""TRUSTED SIDE. Runs submission code in a child process with limits; exchanges plain data.

One `Sandbox` (box.py) is one child (`python -I -B -u _worker.py`) in a fresh directory that
holds only the files it is given. Requests go over a pipe (exchange.py, wire.py); each has
a wall-clock deadline, after which everything the child started is killed and every later
request answers TIMEOUT. The child may call back to the grader during a request.

What a child gets (see `Sandbox.isolation` for what was actually applied here):
- user (users.py): as root, its own unprivileged slot user, so its processes are exactly
  that uid's processes; otherwise the current user.
- limits (config.Limits): wall clock per request; RLIMIT_CPU per process; RLIMIT_DATA per
  process (RLIMIT_AS would break `import torch`) plus a monitor (monitor.py) that stops the
  sandbox when the resident memory of all its processes plus the files it holds (work
  directory, private tmpfs, what its user owns in shared writable directories) passes
  the same figure; RLIMIT_FSIZE per file; RLIMIT_NPROC (as a slot user); no core files.
- output (output.py): stdout and stderr go to a pipe the grader drains, keeping the first
  and last 32 KB: printing never fails in the child.
- isolation (seccomp.py, kernel.py, probe.py): a seccomp filter refusing non-Unix sockets,
  io_uring, ptrace, process_vm_*, kill(-1), SysV IPC and POSIX message queues; as root,
  fresh network and IPC namespaces, and a mount namespace with a private size-limited
  tmpfs on every world-writable directory (scratch.py; what the child needs inside one,
  its interpreter or the data, is bound back).
- processes (tracking.py, processes.py): the grader is a child subreaper; processes still
  running when a request has been answered are killed (unless Limits.background_processes),
  and `close()` kills every one, then removes every file the slot user left anywhere it
  could write.
"""
from .. import config
from .box import Sandbox
from .exchange import MAX_CALLBACKS
from .monitor import close_all
from .probe import mechanisms, network_mechanisms
from .reply import CallbackError, Reply, SandboxError, Status

Limits = config.Limits

__all__ = ["Sandbox", "Limits", "Reply", "Status", "SandboxError", "CallbackError", "close_all",
           "network_mechanisms", "mechanisms", "MAX_CALLBACKS"]
