"""Threads from the CPU quota: cgroup v1 and v2 read from fake cgroup trees, the affinity
mask, and a real process pinned to one core."""
import os
import shutil
import subprocess
import sys

import pytest

from autograder import paths
from autograder.reference import runtime


def make_tree(tmp_path, files, proc_lines):
    """A fake /sys/fs/cgroup under tmp_path/cg and a fake /proc/self/cgroup."""
    root = tmp_path / "cg"
    root.mkdir()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("\n".join(proc_lines) + "\n")
    return root, proc


@pytest.fixture
def cpus_in_mask(monkeypatch):
    """Pretend the affinity mask holds n CPUs."""
    def set_mask(n):
        monkeypatch.setattr(runtime, "affinity_cpus", lambda: n)
    return set_mask


def test_v2_half_a_cpu_gives_one_thread(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {"cpu.max": "50000 100000"}, ["0::/"])
    cpus_in_mask(64)
    assert runtime.cgroup_cpu_limit(root, proc) == 0.5
    assert runtime.available_cpus(root, proc) == 1


def test_v2_quota_rounds_up_and_is_capped_by_the_affinity_mask(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {"cpu.max": "320000 100000"}, ["0::/"])
    cpus_in_mask(64)
    assert runtime.available_cpus(root, proc) == 4          # 3.2 CPUs -> 4 threads
    cpus_in_mask(2)
    assert runtime.available_cpus(root, proc) == 2          # but never more than the mask


def test_v2_unlimited_follows_the_mask(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {"cpu.max": "max 100000"}, ["0::/"])
    cpus_in_mask(3)
    assert runtime.cgroup_cpu_limit(root, proc) is None
    assert runtime.available_cpus(root, proc) == 3


def test_v2_nested_path_from_proc_self_cgroup(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {
        "cpu.max": "max 100000",
        "system.slice/cpu.max": "max 100000",
        "system.slice/grader.service/cpu.max": "150000 100000",
        "other.slice/cpu.max": "10000 100000",               # someone else's cgroup: ignored
    }, ["0::/system.slice/grader.service"])
    cpus_in_mask(16)
    assert runtime.cgroup_cpu_limit(root, proc) == 1.5
    assert runtime.available_cpus(root, proc) == 2


def test_v2_quota_on_an_ancestor_limits_an_unlimited_leaf(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {
        "kubepods/cpu.max": "50000 100000",
        "kubepods/pod1/cpu.max": "max 100000",
        "kubepods/pod1/box/cpu.max": "max 100000",
    }, ["0::/kubepods/pod1/box"])
    cpus_in_mask(8)
    assert runtime.cgroup_cpu_limit(root, proc) == 0.5
    assert runtime.available_cpus(root, proc) == 1


def test_v1_quota(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
    }, ["12:memory:/docker/abc", "4:cpu,cpuacct:/docker/abc", "1:name=systemd:/docker/abc"])
    cpus_in_mask(32)
    assert runtime.cgroup_cpu_limit(root, proc) == 2.0
    assert runtime.available_cpus(root, proc) == 2


def test_v1_separate_cpu_folder_and_half_a_cpu(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {
        "cpu/cpu.cfs_quota_us": "50000",
        "cpu/cpu.cfs_period_us": "100000",
    }, ["3:cpuacct:/", "2:cpu:/"])
    cpus_in_mask(4)
    assert runtime.cgroup_cpu_limit(root, proc) == 0.5
    assert runtime.available_cpus(root, proc) == 1


def test_v1_unlimited(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {
        "cpu/cpu.cfs_quota_us": "-1",
        "cpu/cpu.cfs_period_us": "100000",
    }, ["2:cpu:/"])
    cpus_in_mask(6)
    assert runtime.cgroup_cpu_limit(root, proc) is None
    assert runtime.available_cpus(root, proc) == 6


def test_v1_container_without_cgroup_namespace(tmp_path, cpus_in_mask):
    """/proc/self/cgroup names a host path that does not exist inside; the mounted root is ours."""
    root, proc = make_tree(tmp_path, {
        "cpu,cpuacct/cpu.cfs_quota_us": "100000",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
    }, ["4:cpu,cpuacct:/docker/0123456789abcdef"])
    cpus_in_mask(64)
    assert runtime.available_cpus(root, proc) == 1


def test_no_cgroup_files_and_garbage_mean_no_quota(tmp_path, cpus_in_mask):
    root, proc = make_tree(tmp_path, {"a/cpu.max": "not a number"}, ["0::/a", "garbage line"])
    cpus_in_mask(5)
    assert runtime.cgroup_cpu_limit(root, proc) is None
    assert runtime.available_cpus(root, proc) == 5
    assert runtime.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_vae_threads_overrides_and_bad_values_are_ignored(monkeypatch):
    import torch
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("VAE_THREADS", "1")
        assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("VAE_THREADS", "lots")
        assert runtime.configure_threads() == runtime.available_cpus()
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_a_process_pinned_to_one_core_uses_one_thread():
    code = (
        "import os, sys\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        f"sys.path.insert(0, {str(paths.SOLUTION)!r})\n"
        "import runtime, torch\n"
        "print(runtime.configure_threads(), torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_taskset_to_one_core_gives_one_thread():
    code = f"import sys; sys.path.insert(0, {str(paths.SOLUTION)!r}); import runtime; print(runtime.configure_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
