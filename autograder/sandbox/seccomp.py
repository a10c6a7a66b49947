"""A classic-BPF seccomp filter for the sandbox child, assembled here (no libseccomp).

Refused: socket() for every family but AF_UNIX (EACCES); io_uring, ptrace,
process_vm_readv/writev, kill(-1), every SysV IPC call (shared memory, semaphores, message
queues: they outlive the process and hold memory no process is charged for), POSIX
message queues, the kernel keyrings (add_key, request_key, keyctl: a key in the slot user's
keyring outlives the sandbox and carries state to the next one), memfd_create and
memfd_secret (memory in a file no path names and no mapping shows: the monitor cannot
charge it), userfaultfd, bpf, perf_event_open, kcmp and pidfd_getfd (EPERM); and, unless
asked to allow them, new processes: fork, vfork and clone without CLONE_THREAD (EPERM), clone3
(ENOSYS, so that the C library makes its threads with clone, whose flags a filter can read).
A process the child started could work on beyond its request (training the model further on
shared memory) with CPU time charged to the grader, which reaps it, not to the sandbox.
Threads stay allowed. Everything else is allowed. Works without privileges
(PR_SET_NO_NEW_PRIVS first).
"""
import ctypes
import platform
import socket
import struct

from . import kernel

_SYSV = ("shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semctl", "semtimedop",
         "msgget", "msgsnd", "msgrcv", "msgctl")
_MQUEUE = ("mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr")
_KEYRINGS = ("add_key", "request_key", "keyctl")
_UNSEEN_MEMORY = ("memfd_create", "memfd_secret", "userfaultfd")
_KERNEL_PROBES = ("bpf", "perf_event_open", "kcmp", "pidfd_getfd")
DENIED = ("io_uring_setup", "ptrace", "process_vm_readv", "process_vm_writev", *_SYSV, *_MQUEUE, *_KEYRINGS,
          *_UNSEEN_MEMORY, *_KERNEL_PROBES)

# (audit arch, x32 bit, syscall numbers) per machine
_ARCHES = {
    "x86_64": (0xC000003E, 0x40000000, dict(
        socket=41, kill=62, ptrace=101, process_vm_readv=310, process_vm_writev=311, io_uring_setup=425,
        shmget=29, shmat=30, shmctl=31, shmdt=67, semget=64, semop=65, semctl=66, semtimedop=220,
        msgget=68, msgsnd=69, msgrcv=70, msgctl=71,
        mq_open=240, mq_unlink=241, mq_timedsend=242, mq_timedreceive=243, mq_notify=244, mq_getsetattr=245,
        add_key=248, request_key=249, keyctl=250, memfd_create=319, memfd_secret=447, userfaultfd=323,
        bpf=321, perf_event_open=298, kcmp=312, pidfd_getfd=438, fork=57, vfork=58, clone=56, clone3=435)),
    "aarch64": (0xC00000B7, None, dict(
        socket=198, kill=129, ptrace=117, process_vm_readv=270, process_vm_writev=271, io_uring_setup=425,
        shmget=194, shmat=196, shmctl=195, shmdt=197, semget=190, semop=193, semctl=191, semtimedop=192,
        msgget=186, msgsnd=189, msgrcv=188, msgctl=187,
        mq_open=180, mq_unlink=181, mq_timedsend=182, mq_timedreceive=183, mq_notify=184, mq_getsetattr=185,
        add_key=217, request_key=218, keyctl=219, memfd_create=279, memfd_secret=447, userfaultfd=282,
        bpf=280, perf_event_open=241, kcmp=272, pidfd_getfd=438, clone=220, clone3=435)),
}

_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _EACCES, _ENOSYS = 1, 13, 38
_CLONE_THREAD = 0x00010000
_PROCESS_CALLS = ("fork", "vfork")           # x86_64 only; aarch64 forks through clone


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _assemble(code):
    """code: labels (str) and instructions ("ld", offset) | ("ret", value) | (op, k, true_label, false_label)."""
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
            raw += struct.pack("=HBBI", _LD, 0, 0, item[1])
        elif item[0] == "ret":
            raw += struct.pack("=HBBI", _RET, 0, 0, item[1])
        else:
            op, k, true, false = item
            jump = [0 if target is None else labels[target] - position - 1 for target in (true, false)]
            raw += struct.pack("=HBBI", op, jump[0], jump[1], k)
        position += 1
    return raw


def _program(allow_processes=False):
    """(sock_fprog, buffer that must stay alive), or None on machines we have no numbers for."""
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        return None
    audit_arch, x32_bit, nr = arch
    code = [("ld", 4), (_JEQ, audit_arch, None, "deny"), ("ld", 0)]      # arch, then syscall number
    if x32_bit:
        code.append((_JGE, x32_bit, "deny", None))
    code += [(_JEQ, nr["socket"], "socket", None), (_JEQ, nr["kill"], "kill", None)]
    code += [(_JEQ, nr[name], "deny", None) for name in DENIED]
    if not allow_processes:
        code += [(_JEQ, nr[name], "deny", None) for name in _PROCESS_CALLS if name in nr]
        code += [(_JEQ, nr["clone"], "clone", None), (_JEQ, nr["clone3"], "nosys", None)]
    code += [("ret", _ALLOW),
             "clone", ("ld", 16), (_JSET, _CLONE_THREAD, "allow", "deny"),
             "nosys", ("ret", _ERRNO | _ENOSYS),
             "socket", ("ld", 16), (_JEQ, socket.AF_UNIX, "allow", None), ("ret", _ERRNO | _EACCES),
             "kill", ("ld", 16), (_JEQ, 0xFFFFFFFF, "deny", "allow"),
             "allow", ("ret", _ALLOW),
             "deny", ("ret", _ERRNO | _EPERM)]
    raw = _assemble(code)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    return _SockFprog(len(raw) // 8, ctypes.addressof(buffer)), buffer


PROGRAMS = {allow: _program(allow) for allow in (False, True)}
AVAILABLE = PROGRAMS[False] is not None


def install(allow_processes=False):
    """Install the filter on the calling process (and everything it starts later)."""
    program = PROGRAMS[bool(allow_processes)]
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")
    kernel.prctl(kernel.PR_SET_SECCOMP, kernel.SECCOMP_MODE_FILTER, ctypes.addressof(program[0]),
                 what="PR_SET_SECCOMP")
