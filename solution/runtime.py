"""Where to train and with how many threads.

A CPU quota is not a core count: inside a container with half a CPU, a process that sees
the host's 64 cores and starts 64 threads gets throttled badly. The thread pool is sized
from the cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) and
the affinity mask, whichever is smaller.
"""
import math
import os
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root, proc_cgroup):
    """The cgroup directories of this process, innermost first (then the root itself)."""
    dirs = []
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2].startswith("/"):
            relative = parts[2].lstrip("/")
            if "cpu" in parts[1].split(",") or parts[1] == "":
                for sub in ("", "cpu", "cpu,cpuacct", "cpuacct,cpu"):
                    dirs.append(root / sub / relative)
    return dirs + [root, root / "cpu", root / "cpu,cpuacct"]


def cgroup_cpu_limit(root=CGROUP_ROOT, proc_cgroup="/proc/self/cgroup"):
    """CPUs allowed by the cgroup quota (a float, e.g. 0.5), or None when unlimited."""
    root = Path(root)
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        v2 = _read(directory / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                return int(quota) / int(period)
            return None
        quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return int(quota) / int(period) if int(quota) > 0 else None
    return None


def available_cpus(root=CGROUP_ROOT, proc_cgroup="/proc/self/cgroup"):
    """Whole CPUs this process may use: min(affinity mask, ceil(cgroup quota)), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def configure_threads():
    """Size torch's intra-op pool to the CPUs we may actually use; returns that number."""
    threads = int(os.environ.get("VAE_THREADS", 0)) or available_cpus()
    torch.set_num_threads(threads)
    return threads


def pick_device(name="auto"):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)
