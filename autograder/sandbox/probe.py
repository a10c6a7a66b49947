"""Which isolation mechanisms work on this machine, probed once per process in a forked child.

Namespaces need root (Gradescope's Docker may still refuse unshare); seccomp works
unprivileged where the kernel allows it and we know the machine's syscall numbers.
"""
import os
import socket
import tempfile
import threading

from . import kernel, seccomp

_BITS = {"netns": 1, "ipcns": 2, "mountns": 4, "seccomp": 8}
_FOUND = None
_LOCK = threading.Lock()


def _probe_in_child():  # pragma: no cover - runs in the forked child
    bits = 0
    try:
        if os.geteuid() == 0:
            for name, flag in (("netns", kernel.CLONE_NEWNET), ("ipcns", kernel.CLONE_NEWIPC)):
                try:
                    kernel.unshare(flag)
                    bits |= _BITS[name]
                except OSError:
                    pass
            try:
                kernel.unshare(kernel.CLONE_NEWNS)
                kernel.make_mounts_private()
                kernel.mount_tmpfs(tempfile.gettempdir(), 1 << 20)     # private: the host never sees it
                bits |= _BITS["mountns"]
            except OSError:
                pass
        if seccomp.AVAILABLE:
            seccomp.install()
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            except PermissionError:
                bits |= _BITS["seccomp"]
    finally:
        os._exit(bits)


def mechanisms():
    """{'netns', 'ipcns', 'mountns', 'seccomp'} -> bool: what a sandbox child can get here."""
    global _FOUND
    with _LOCK:
        if _FOUND is None:
            pid = os.fork()
            if pid == 0:
                _probe_in_child()
            _, status = os.waitpid(pid, 0)
            bits = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 0
            _FOUND = {name: bool(bits & bit) for name, bit in _BITS.items()}
        return dict(_FOUND)


def network_mechanisms():
    """Which network blocks work here: {'netns': bool, 'seccomp': bool}."""
    found = mechanisms()
    return {"netns": found["netns"], "seccomp": found["seccomp"]}
