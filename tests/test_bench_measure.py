"""The benchmark's memory sampler counts every process of a tree, not only the largest one;
the host probe runs the training step."""
import os
import sys
import textwrap

import pytest

from bench.measure import measure_command

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")

MB = 1 << 20

# A parent that starts a child, each then holding 120 MB of touched memory for 1.5 seconds.
HOLD = "import time; block = bytearray(120 << 20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)"
TREE = textwrap.dedent(f"""
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", {HOLD!r}])
    {HOLD}
    child.wait()
""")


def test_peak_sums_parent_and_child():
    wall, peak_rss = measure_command([sys.executable, "-c", TREE])
    assert wall >= 1.5
    assert measure_command.last_processes >= 2
    assert peak_rss >= 240 * MB                      # both blocks, not just the larger process
    pss = measure_command.last_peak_pss
    if pss:                                          # smaps_rollup exists on Linux >= 4.14
        assert 240 * MB <= pss <= peak_rss
        at_peak = measure_command.last_peak_by_process.values()
        assert sum(1 for _, rss, _ in at_peak if rss >= 120 * MB) >= 2


def test_a_failing_command_raises():
    import subprocess
    with pytest.raises(subprocess.CalledProcessError):
        measure_command([sys.executable, "-c", "raise SystemExit(3)"])


def test_host_probe_times_the_training_step():
    """bench/host_probe.py runs the provided loop and prints its milliseconds per step."""
    import subprocess
    from pathlib import Path
    probe = Path(__file__).resolve().parent.parent / "bench" / "host_probe.py"
    done = subprocess.run([sys.executable, str(probe), "200"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ms_per_step = float(done.stdout.split()[-1])
    assert 0.05 < ms_per_step < 1000          # a real step: not zero, not a hang
