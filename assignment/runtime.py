"""Where to train and with how many threads.

A CPU quota is not a core count: inside a container with half a CPU, a process that sees
the host's 64 cores and starts 64 threads gets throttled badly. The thread pool is sized
from the cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the
tightest one on the process's cgroup and its ancestors) and the affinity mask, whichever is
smaller. VAE_THREADS=N overrides the choice.
"""
import math
import os
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where cgroup v1 mounts the cpu controller (its own folder, or shared with cpuacct).
_V1_CPU_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path):
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _limit_in(directory):
    """CPUs allowed by the quota set in this one cgroup directory, or None (no quota there)."""
    v2 = _read(directory / "cpu.max")
    if v2 is not None:                         # "max 100000" or "50000 100000"
        fields = v2.split()
        try:
            quota, period = int(fields[0]), int(fields[1]) if len(fields) > 1 else 100000
        except (ValueError, IndexError):
            return None
        return quota / period if quota > 0 and period > 0 else None
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None   # v1: -1 means no quota


def _own_cgroup_dirs(root, proc_cgroup):
    """Candidate cgroup directories of this process (v2 and v1 layouts), then the roots.

    Inside a container with its own cgroup namespace the paths in /proc/self/cgroup are
    relative to the container's root, which is what `root` shows; without one they name a
    host path that may not exist here, and then only the roots (the container's) count.
    """
    dirs = []
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        controllers, relative = parts[1].split(","), parts[2].lstrip("/")
        if parts[1] == "":                     # v2 unified hierarchy
            dirs.append(root / relative)
        elif "cpu" in controllers:             # v1 line of the cpu controller
            dirs.extend(root / folder / relative for folder in _V1_CPU_FOLDERS)
    return dirs + [root] + [root / folder for folder in _V1_CPU_FOLDERS]


def cgroup_cpu_limit(root=CGROUP_ROOT, proc_cgroup="/proc/self/cgroup"):
    """CPUs allowed by the cgroup quota (a float, e.g. 0.5), or None when unlimited.

    A quota on any ancestor limits the process too, so each candidate directory is walked
    up to `root` and the smallest quota found wins.
    """
    root = Path(root)
    limits = []
    seen = set()
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        while directory not in seen:
            seen.add(directory)
            limit = _limit_in(directory)
            if limit is not None:
                limits.append(limit)
            if directory == root or root not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None


def affinity_cpus():
    """CPUs in this process's affinity mask (all CPUs where there is no such mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):          # macOS, Windows
        return os.cpu_count() or 1


def available_cpus(root=CGROUP_ROOT, proc_cgroup="/proc/self/cgroup"):
    """Whole CPUs this process may use: min(affinity mask, ceil(cgroup quota)), at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def configure_threads():
    """Size torch's intra-op pool to the CPUs we may actually use; returns that number.

    VAE_THREADS=N (N >= 1) overrides the choice; anything else there is ignored.
    """
    try:
        threads = int(os.environ.get("VAE_THREADS", "0"))
    except ValueError:
        threads = 0
    if threads < 1:
        threads = available_cpus()
    torch.set_num_threads(threads)
    return threads


def mps_available():
    """Whether this torch has Apple's MPS backend and this machine can use it."""
    mps = getattr(torch.backends, "mps", None)
    try:
        return mps is not None and bool(mps.is_available())
    except (AttributeError, RuntimeError):
        return False


def pick_device(name="auto"):
    """auto: CUDA when available, else MPS where torch has it, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name == "mps" and not mps_available():
        raise SystemExit("--device mps: this torch or machine has no MPS device (use --device cpu or auto)")
    return torch.device(name)
