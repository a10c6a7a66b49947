"""How the child is started: its environment, and what runs between fork and exec (limits,
namespaces and private tmpfs, the slot user, seccomp)."""
import functools
import json
import os
import resource
import signal
import stat
import subprocess
from pathlib import Path

from . import kernel, scratch, seccomp
from .processes import TOKEN_VARIABLE


def namespaces(found, needed):
    """-> (unshare flags, directories to cover with a private tmpfs, directories inside them to
    keep). For root only; `found` is probe.mechanisms(), `needed` the directories the child
    must still see (its interpreter's environment, the data, its own directory)."""
    flags = (kernel.CLONE_NEWNET if found["netns"] else 0) | (kernel.CLONE_NEWIPC if found["ipcns"] else 0)
    private, keep = [], []
    if found["mountns"]:
        needed = [*needed, *[os.path.realpath(p) for p in needed if p]]
        private, keep = scratch.private_directories(needed)
        if private:
            flags |= kernel.CLONE_NEWNS
    return flags, private, keep


def interpreter_home(python):
    """The directory an interpreter needs: its virtual environment's root, else its own directory."""
    bin_dir = os.path.dirname(os.path.abspath(python))
    parent = os.path.dirname(bin_dir)
    return parent if os.path.exists(os.path.join(parent, "pyvenv.cfg")) else bin_dir


@functools.lru_cache(maxsize=None)
def interpreter_directories(python):
    """-> the directories an interpreter reads its modules from: `interpreter_home` and every
    directory on its isolated sys.path, which a .pth file or a base installation can put
    anywhere (under /tmp too, where the child's private tmpfs would hide it). A directory
    others can write, or one holding such a directory, is left out: keeping it would share
    that directory with every sandbox."""
    listed = []
    try:
        done = subprocess.run([python, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        listed = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    found = []
    for path in listed if isinstance(listed, list) else []:
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and not info.st_mode & stat.S_IWOTH:
            found.append(os.path.normpath(path))
    shared = [Path(d) for d in scratch.writable_directories() if _world_writable(d)]
    found = [p for p in found if not any(d.is_relative_to(p) for d in shared)]
    return tuple(dict.fromkeys([interpreter_home(python), *found]))


def _world_writable(directory):
    try:
        return bool(os.lstat(directory).st_mode & stat.S_IWOTH)
    except OSError:
        return False


def _make_path(directory):
    """Create `directory` and its missing parents in a fresh tmpfs: searchable, not listable."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        os.mkdir(path)
        os.chmod(path, 0o711)


def describe(found, flags, private, identity):
    """What the child gets, in words (Sandbox.isolation)."""
    network = [name for name, used in (("network namespace", flags & kernel.CLONE_NEWNET),
                                       ("seccomp", found["seccomp"])) if used]
    ipc = [name for name, used in (("seccomp", found["seccomp"]), ("IPC namespace", flags & kernel.CLONE_NEWIPC))
           if used]
    elsewhere = "the slot user's files removed" if identity else "not attributable (current user)"
    return {"network": " + ".join(network) or "none (no network namespace or seccomp here)",
            "ipc": " + ".join(ipc) or "none (no seccomp or IPC namespace here)",
            "files": f"private tmpfs on {', '.join(private) or 'nothing'}; elsewhere {elsewhere}",
            "kill": "uid" if identity else "process tree",
            "memory": "RLIMIT_DATA + monitor of resident memory and files written"}


def environment(workdir, identity, token):
    keep = ("PATH", "LANG", "LC_ALL", "VAE_DATA_DIR", "VAE_THREADS", "CUDA_VISIBLE_DEVICES")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    work = str(workdir)
    # Library threads that outlive a call void its reply (_worker._quiesce): torch.compile's inductor
    # compiles in the calling thread instead of a pool.
    env.update(HOME=work, TMPDIR=work, MPLBACKEND="Agg", MPLCONFIGDIR=work, TORCHINDUCTOR_COMPILE_THREADS="1",
               **{TOKEN_VARIABLE: token})
    if identity is not None:
        env.update(USER=identity.name, LOGNAME=identity.name)
    return env


def preexec(limits, identity, flags, private, keep, hold, use_seccomp):
    """The function Popen runs in the forked child before exec. `keep` directories lie inside
    `private` ones: each is bound to a directory under `hold` (outside them) before the tmpfs
    hides it, then bound back at its own path."""
    rlimits = [(resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_DATA, limits.memory_bytes),
               (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0),
               (resource.RLIMIT_NOFILE, limits.open_files)]
    if identity is not None:
        rlimits.append((resource.RLIMIT_NPROC, limits.processes))
    ids = (identity.uid, identity.gid) if identity is not None else None
    private, keep, tmpfs_bytes = list(private), list(keep), limits.scratch_bytes
    holds = [os.path.join(hold, str(i)) for i in range(len(keep))]
    grader = os.getpid()

    def child():
        for which, value in rlimits:
            # CPU: SIGXCPU at the soft limit (reported as such), SIGKILL 2 s later
            resource.setrlimit(which, (value, value + 2 if which == resource.RLIMIT_CPU else value))
        if flags:
            kernel.unshare(flags)
        if flags & kernel.CLONE_NEWNS:
            kernel.make_mounts_private()
            for directory, held in zip(keep, holds):
                kernel.bind(directory, held)
            for directory in private:
                kernel.mount_tmpfs(directory, tmpfs_bytes)
            for directory, held in zip(keep, holds):
                _make_path(directory)
                kernel.bind(held, directory)
        if ids is not None:
            os.setgroups([])
            os.setresgid(ids[1], ids[1], ids[1])
            os.setresuid(ids[0], ids[0], ids[0])
            if os.getuid() != ids[0] or os.geteuid() != ids[0]:
                os._exit(126)
        # The worker dies with the grader (a grader killed by SIGKILL cannot close its sandboxes).
        # Set after the identity change, which clears it; a grader already gone is seen here.
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL, what="PR_SET_PDEATHSIG")
        if os.getppid() != grader:
            os._exit(126)
        os.umask(0o077)
        if use_seccomp:
            seccomp.install(allow_processes=limits.processes_allowed)
    return child
