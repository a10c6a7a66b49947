"""How the child is started: its environment, and what runs between fork and exec (limits,
namespaces and private tmpfs, the slot user, seccomp)."""
import os
import resource

from . import kernel, scratch, seccomp
from .processes import TOKEN_VARIABLE


def namespaces(found, needed):
    """-> (unshare flags, directories to cover with a private tmpfs). For root only; `found` is
    probe.mechanisms(), `needed` the paths the child must still see (interpreter, data, work)."""
    flags = (kernel.CLONE_NEWNET if found["netns"] else 0) | (kernel.CLONE_NEWIPC if found["ipcns"] else 0)
    private = []
    if found["mountns"]:
        needed = [*needed, *[os.path.realpath(p) for p in needed if p]]
        private = scratch.private_directories(needed)
        if private:
            flags |= kernel.CLONE_NEWNS
    return flags, private


def environment(workdir, identity, token):
    keep = ("PATH", "LANG", "LC_ALL", "VAE_DATA_DIR", "VAE_THREADS", "CUDA_VISIBLE_DEVICES")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    work = str(workdir)
    env.update(HOME=work, TMPDIR=work, MPLBACKEND="Agg", MPLCONFIGDIR=work, **{TOKEN_VARIABLE: token})
    if identity is not None:
        env.update(USER=identity.name, LOGNAME=identity.name)
    return env


def preexec(limits, identity, flags, private, use_seccomp):
    """The function Popen runs in the forked child before exec."""
    rlimits = [(resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_DATA, limits.memory_bytes),
               (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0)]
    if identity is not None:
        rlimits.append((resource.RLIMIT_NPROC, limits.processes))
    ids = (identity.uid, identity.gid) if identity is not None else None
    private, tmpfs_bytes = list(private), limits.scratch_bytes

    def child():
        for which, value in rlimits:
            # CPU: SIGXCPU at the soft limit (reported as such), SIGKILL 2 s later
            resource.setrlimit(which, (value, value + 2 if which == resource.RLIMIT_CPU else value))
        if flags:
            kernel.unshare(flags)
        if flags & kernel.CLONE_NEWNS:
            kernel.make_mounts_private()
            for directory in private:
                kernel.mount_tmpfs(directory, tmpfs_bytes)
        if ids is not None:
            os.setgroups([])
            os.setresgid(ids[1], ids[1], ids[1])
            os.setresuid(ids[0], ids[0], ids[0])
            if os.getuid() != ids[0] or os.geteuid() != ids[0]:
                os._exit(126)
        os.umask(0o077)
        if use_seccomp:
            seccomp.install()
    return child
