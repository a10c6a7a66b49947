"""Thin ctypes wrappers for the Linux calls the standard library lacks: prctl, unshare, mount."""
import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 36, 38, 22, 2
PR_SET_PDEATHSIG = 1
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 0x1000, 0x4000, 1 << 18


def _check(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def prctl(option, value, arg3=0, what="prctl"):
    _check(_prctl(option, value, arg3, 0, 0), what)


def unshare(flags):
    _check(_unshare(flags), f"unshare({flags:#x})")


def make_mounts_private():
    """In a fresh mount namespace: nothing mounted here propagates back to the host."""
    _check(_mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


def mount_tmpfs(directory, size_bytes):
    options = f"size={size_bytes},mode=1777".encode()
    _check(_mount(b"tmpfs", os.fsencode(directory), b"tmpfs", MS_NOSUID | MS_NODEV, options),
           f"mount tmpfs on {directory}")


def bind(source, target):
    _check(_mount(os.fsencode(source), os.fsencode(target), None, MS_BIND | MS_REC, None),
           f"mount --rbind {source} {target}")


_SUBREAPER = None


def become_subreaper():
    """Orphans of sandboxed processes are re-parented to us, not init: we can find and reap them."""
    global _SUBREAPER
    if _SUBREAPER is None:
        _SUBREAPER = _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _SUBREAPER
