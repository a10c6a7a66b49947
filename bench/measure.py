"""Wall time and peak memory of a whole process tree.

    from bench.measure import measure_command
    wall_s, peak_rss_bytes = measure_command([sys.executable, "run_vae.py", "--iters", "3000"], cwd="solution")

The peak is of the SUM of the resident set sizes of the command and every process below it
(children, grandchildren, and anything still in its session after being re-parented),
sampled every 50 ms from /proc. Sampling can miss a spike shorter than the interval; the
figure is a lower bound of the true peak, close to it for anything that lasts.

A plain RSS sum counts a page shared by two processes (the torch library both the grader
and its sandbox child map, for one) twice. The proportional set size (PSS, from
/proc/PID/smaps_rollup) charges each shared page in equal parts to the processes that map
it, so the PSS sum is the memory the tree really holds, which is what a container's memory
limit counts. `measure_command.last_peak_pss` holds that peak (0 where smaps_rollup cannot
be read, e.g. another user's process without root), `.last_peak_by_process` the RSS and
PSS of each process at the moment of the PSS peak.
"""
import os
import resource
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat(pid):
    """-> (ppid, session id, resident bytes) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
        with open(f"/proc/{pid}/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()           # after "pid (comm) "
    return int(fields[1]), int(fields[3]), resident_pages * PAGE


def _pss(pid):
    """Proportional set size of a live process in bytes, or 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:120]
    except OSError:
        command = ""
    return command or "(exiting)"


def busy_cpu_seconds():
    """CPU-seconds the whole machine has spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)    # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(max_wait=600.0, threshold=0.1, window=3.0):
    """Block until the machine's busy CPUs over `window` seconds fall below `threshold`, or
    `max_wait` seconds have passed -> the busy CPUs last seen."""
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(window)
        busy = (busy_cpu_seconds() - before) / window
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def tree_members(root):
    """{pid: resident bytes} of `root`, its descendants and its session."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                table[int(entry)] = info
    members = {root} if root in table else set()
    members |= {pid for pid, (_, session, _) in table.items() if session == root}
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    return {pid: table[pid][2] for pid in members}


class TreeSampler:
    """Samples the tree of `pid` every `interval` seconds in a thread: .peak (RSS sum),
    .peak_pss (PSS sum, every `pss_every`-th sample: smaps_rollup walks the page tables),
    .peak_by_process ({pid: (command, rss, pss)} at the PSS peak) and .peak_processes."""

    def __init__(self, pid, interval=0.05, pss_every=4):
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak = self.peak_processes = self.peak_pss = 0
        self.peak_by_process = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        sample = 0
        while not self._stop.is_set():
            members = tree_members(self.pid)
            self.peak = max(self.peak, sum(members.values()))
            self.peak_processes = max(self.peak_processes, len(members))
            if sample % self.pss_every == 0:
                pss = {pid: _pss(pid) for pid in members}
                if sum(pss.values()) > self.peak_pss:
                    self.peak_pss = sum(pss.values())
                    self.peak_by_process = {pid: (_command(pid), members[pid], pss[pid]) for pid in members}
            sample += 1
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()


def measure_command(cmd, cwd=None, env=None, timeout=None, interval=0.05, capture=True):
    """Run `cmd` (a list) to completion -> (wall_seconds, peak_tree_rss_bytes).

    The child runs in a session of its own, so that everything it starts is counted even
    after re-parenting. Its output is kept in `measure_command.last` (a CompletedProcess)
    when `capture` is true, with `.last_cpu_seconds` (its CPU time, children included) and
    `.last_background_cpus` (CPUs kept busy by other processes meanwhile, on average). Raises subprocess.CalledProcessError on a non-zero exit and
    subprocess.TimeoutExpired after `timeout` seconds (the whole session is killed).
    """
    out = subprocess.PIPE if capture else None
    busy_before = busy_cpu_seconds()
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=out, text=True,
                               start_new_session=True)
    sampler = TreeSampler(process.pid, interval)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        raise
    finally:
        wall = time.perf_counter() - start
        sampler.stop()
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    measure_command.last = subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)
    measure_command.last_processes = sampler.peak_processes
    measure_command.last_peak_pss = sampler.peak_pss
    measure_command.last_peak_by_process = sampler.peak_by_process
    measure_command.last_cpu_seconds = own
    measure_command.last_wall, measure_command.last_peak = wall, sampler.peak
    # CPUs that other processes kept busy meanwhile, on average: the timing is only clean
    # when this is near 0.
    measure_command.last_background_cpus = max(0.0, busy_cpu_seconds() - busy_before - own) / max(wall, 1e-9)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, cmd, stdout, stderr)
    return wall, sampler.peak


measure_command.last = None
measure_command.last_processes = 0
measure_command.last_peak_pss = 0
measure_command.last_peak_by_process = {}
measure_command.last_cpu_seconds = 0.0
measure_command.last_background_cpus = 0.0
measure_command.last_wall = 0.0
measure_command.last_peak = 0
