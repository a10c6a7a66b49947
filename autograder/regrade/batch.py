"""Grading the submissions of an export, N at a time, each exactly as Gradescope grades it.

Each grading is its own `python -m autograder container --root ROOT` process, what run_autograder
runs in Gradescope's container: the same sandboxes and checks, the same refusal to run student code
as root, the same SIGTERM handling (the sandboxes are stopped and the results so far written). ROOT
is fresh for every submission, in a private temporary folder, and holds a copy of the submission's
folder (the export itself is only read). Student code never runs in this process, and one grading's
crash, hang or hostility cannot reach another: each is a separate process tree with its own
sandboxes (as root, its own slot users), in its own session, bounded by a wall-clock timeout after
which it gets SIGTERM, then SIGKILL with everything under it.

This process starts and watches the gradings from its one thread, so a grading is tied to it: each
gets SIGTERM when this process dies (PR_SET_PDEATHSIG), even by SIGKILL. On SIGINT, SIGTERM or
SIGHUP the running gradings are stopped and thrown away, finished ones are kept (store.py), and
the next run with the same command goes on where this one stopped.
"""
import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional

from .. import paths, results, submission_files
from . import export as export_module

# The peak memory of one whole grading at 20,000 iterations (grader, sandbox children and
# evaluator; PSS sum, the memory a container is charged): 560-571 MB measured on 2026-11-29,
# bench/README.md ("where the grader's memory went"), README.md's "peak memory of the grading
# tree"; rounded up. The default number of concurrent gradings never exceeds what fits in the
# memory available at this figure each.
PEAK_GRADING_BYTES = 600 * 2**20
# Gradescope's timeout the README recommends (the grading's own bound, config.BUDGETS, is 17 min).
DEFAULT_TIMEOUT_SECONDS = 20 * 60


def default_timeout_seconds():
    """Gradescope's timeout for the problems this grader serves: the whole grading's bound plus the 3
    minutes it leaves for start-up and results (20 minutes for one problem, 40 at most)."""
    from ..problems import ProblemSet
    return ProblemSet().grading_seconds + 3 * 60
# After SIGTERM a grading stops its sandboxes and writes what it has; then SIGKILL. A request in
# flight may run to its own limit first (30 s for a unit request: a submission hanging at import
# took 34 s to stop on 2026-11-29).
STOP_GRACE_SECONDS = 60
INTERRUPT_GRACE_SECONDS = 5      # the same when the whole batch is interrupted (its results are dropped)
LOG_BYTES = 4 * 2**20            # what is kept of a grading's log (head and tail)
POLL_SECONDS = 0.2

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
SCRATCH_PREFIX = "vae-regrade-"
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl
except (OSError, AttributeError):            # not Linux: the gradings are not tied to this process
    _LIBC = None


# ---------------------------------------------------------------- what a grading is worth

_VERSIONED_PACKAGES = ("torch", "numpy", "hypothesis", "gradescope-utils", "psutil")


def grader_version():
    """A short hash of everything that decides a grade: the grader's files (autograder/ but this
    package, the reference in solution/ but its tests, calibration.json), Python and the packages
    the checks use. A grader fix changes it, so every submission is graded again."""
    digest = hashlib.sha256()
    grader = paths.PROJECT / "autograder"
    files = [p for p in grader.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix != ".pyc" and not p.is_relative_to(grader / "regrade")]
    files += [p for p in paths.SOLUTION.glob("*.py") if not p.name.startswith("test_")]
    for path in sorted(files):
        digest.update(path.relative_to(paths.PROJECT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(sys.version.encode())
    for package in _VERSIONED_PACKAGES:
        try:
            digest.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    return digest.hexdigest()[:16]


def fingerprint(grader, iterations, device, files_sha256):
    return {"grader": grader, "iterations": iterations, "device": device, "files_sha256": files_sha256}


# ---------------------------------------------------------------- how many at a time

def available_cpus():
    """Whole CPUs this process may use, from the CPU quota and the affinity mask: the reference's own
    rule (solution/runtime.py), asked in a child so that this process never imports torch."""
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('rt', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(m.available_cpus())")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(paths.SOLUTION / "runtime.py")], capture_output=True,
                              text=True, timeout=120)
        return max(1, int(done.stdout.split()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _meminfo_available():
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom(root=Path("/sys/fs/cgroup"), proc_cgroup="/proc/self/cgroup"):
    """Memory left under the tightest cgroup limit of this process and its ancestors (v2, else v1), or None."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    room = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, relative = parts[1], parts[2].lstrip("/")
        if controllers == "":                                  # v2: walk up to the root
            directory = root / relative
            while True:
                try:
                    limit = (directory / "memory.max").read_text().strip()
                    if limit != "max":
                        used = int((directory / "memory.current").read_text())
                        left = int(limit) - used
                        room = left if room is None else min(room, left)
                except (OSError, ValueError):
                    pass
                if directory == root or root not in directory.parents:
                    break
                directory = directory.parent
        elif "memory" in controllers.split(","):               # v1: the process's own group
            directory = root / "memory" / relative
            try:
                limit = int((directory / "memory.limit_in_bytes").read_text())
                used = int((directory / "memory.usage_in_bytes").read_text())
                if limit < 1 << 60:
                    left = limit - used
                    room = left if room is None else min(room, left)
            except (OSError, ValueError):
                pass
    return room


def available_memory():
    """Bytes that new processes can use now: MemAvailable, or less where a cgroup limit is tighter."""
    figures = [f for f in (_meminfo_available(), _cgroup_headroom()) if f is not None]
    return min(figures) if figures else None


def default_jobs(cpus):
    """-> (concurrent gradings, why): one per CPU of the quota (`cpus`), never more than fit in memory at
    PEAK_GRADING_BYTES each."""
    memory = available_memory()
    if memory is None:
        return cpus, f"{cpus} CPU(s); memory unknown"
    fit = max(1, memory // PEAK_GRADING_BYTES)
    jobs = max(1, min(cpus, fit))
    return jobs, (f"{cpus} CPU(s) of the quota; {memory / 2**30:.1f} GiB available holds {fit} grading(s) "
                  f"at {PEAK_GRADING_BYTES / 2**20:.0f} MB each")


def threads_per_grading(jobs, cpus):
    """Torch threads of each grading: the CPUs shared out (Gradescope's half-CPU container runs one)."""
    return max(1, cpus // max(1, jobs))


# ---------------------------------------------------------------- one grading

def _tie_to_parent(parent):
    """In the child, before exec: SIGTERM when `parent` dies (the thread that forked it, here the only one)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _children_table():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid):
    """Every process under `pid` (children, theirs, ...), read from /proc."""
    children, found, todo = _children_table(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _become_subreaper():
    """Orphans of a grading that died (killed from outside, as by the OOM killer) come to this process,
    which kills them (`_reap_orphans`) instead of letting them run on."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_orphans(known):
    """Kill and reap every child of this process that is not a running grading (`known` pids): what a
    dead grading left, re-parented here."""
    for pid in _children_table().get(os.getpid(), []):
        if pid in known:
            continue
        for victim in [*descendants(pid), pid]:
            try:
                os.kill(victim, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _clean_stale_scratch():
    """Remove the scratch folders of batches that died (SIGKILL) on this machine."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(SCRATCH_PREFIX + "*"):
        try:
            pid = int(folder.name[len(SCRATCH_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def kill_tree(process):
    """SIGKILL a grading and every process under it (stopped first, so that it starts nothing new and
    its orphans, which it reaps as a child subreaper, stay below it)."""
    try:
        os.kill(process.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    for _ in range(100):
        pids = descendants(process.pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.kill()
    process.wait()


def _after_hard_kill():
    """As root: kill what a killed grading's sandboxes left as their slot users (free slots only:
    another grading's live sandbox holds its own)."""
    try:
        from ..sandbox import users
        if users.is_root():
            users.kill_student_processes()
    except Exception:   # noqa: BLE001 - cleanup of a dead grading never stops the batch
        pass


def is_failure(data):
    """True for the results.json the grader writes when it could not grade (results.failure)."""
    tests = data.get("tests") or []
    return len(tests) == 1 and tests[0].get("name") == "Autograder" and tests[0].get("max_score") == 0


def _describe_exit(code):
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _capped_log(path):
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            if size <= LOG_BYTES:
                return stream.read()
            head = stream.read(LOG_BYTES // 2)
            stream.seek(size - LOG_BYTES // 2)
            return head + f"\n[... {size - LOG_BYTES} bytes of the log left out ...]\n".encode() + stream.read()
    except OSError:
        return b""


@dataclass
class Running:
    submission: export_module.Submission
    fingerprint: dict
    no_files: bool
    home: Path
    process: subprocess.Popen
    started: float
    deadline: float
    stop_sent: Optional[float] = None
    timed_out: bool = False
    log: object = field(default=None, repr=False)

    @property
    def root(self):
        return self.home / "root"


def _start(submission, home, iterations, device, env):
    """Copy the submission into a fresh ROOT and start its grading -> (process, log handle)."""
    root = home / "root"
    shutil.copytree(submission.folder, root / "submission", symlinks=True)
    (home / "tmp").mkdir()             # the grading's own temporary files: removed with `home`, even if it is killed
    env = dict(env, TMPDIR=str(home / "tmp"))
    log = open(home / "log.txt", "wb")
    command = [sys.executable, "-m", "autograder", "container", "--root", str(root),
               "--iterations", str(iterations), "--device", device]
    process = subprocess.Popen(command, cwd=paths.PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda parent=os.getpid(): _tie_to_parent(parent))
    return process, log


def _outcome(job):
    """-> (status, message, results bytes or None) of a grading that ended."""
    path = job.root / "results" / "results.json"
    try:
        raw = path.read_bytes()
        data = results.validate(json.loads(raw))
    except (OSError, ValueError, results.SchemaError):
        raw, data = None, None
    code = job.process.returncode
    if job.timed_out:
        so_far = "the results so far are kept" if data is not None else "no results were written"
        return "timeout", f"stopped after the {job.deadline - job.started:.0f} s timeout ({so_far})", raw
    if data is None:
        return "crashed", f"the grading ended with {_describe_exit(code)} and no valid results.json (see log.txt)", None
    if is_failure(data):
        return "grader_failed", " ".join(str(data.get("output", "")).split())[:300], raw
    if job.no_files:
        first = next((line for line in str(data.get("output", "")).splitlines() if line.startswith("Missing")), "")
        return "no_files", first or "neither utils.py nor vae.py was found", raw
    return "graded", "", raw


# ---------------------------------------------------------------- the batch

@dataclass
class Outcome:
    statuses: dict                 # key -> status of every submission of the slice (skipped ones too)
    graded: int = 0                # graded in this run
    skipped: int = 0               # already done with this fingerprint
    interrupted: Optional[str] = None


class Batch:
    def __init__(self, store, submissions, grader, iterations, device="cpu", jobs=1, timeout=DEFAULT_TIMEOUT_SECONDS,
                 force=False, progress=True, log=print, threads=None):
        self.store, self.submissions, self.grader = store, list(submissions), grader
        self.iterations, self.device, self.jobs, self.timeout = iterations, device, max(1, jobs), timeout
        self.force, self.progress, self.log = force, progress, log
        self.threads = threads
        self.stopping = None

    def _environment(self):
        env = dict(os.environ)
        if self.threads and "VAE_THREADS" not in env:
            env["VAE_THREADS"] = str(self.threads)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _signal(self, signum, frame):
        self.stopping = signal.Signals(signum).name

    def plan(self):
        """-> ([(submission, fingerprint)] to grade, {key: status} of those already done)."""
        todo, done = [], {}
        for submission in self.submissions:
            print_ = fingerprint(self.grader, self.iterations, self.device,
                                 export_module.files_sha256(submission.folder))
            record = None if self.force else self.store.done(submission.key, print_)
            if record is not None:
                done[submission.key] = record["status"]
            else:
                todo.append((submission, print_))
        return todo, done

    def run(self):
        todo, done = self.plan()
        outcome = Outcome(statuses=dict(done), skipped=len(done))
        if done:
            self.log(f"{len(done)} of {len(self.submissions)} submission(s) already graded by this grader "
                     f"(same files, iterations and device): kept (--force grades them again)")
        if not todo:
            return outcome
        handlers = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        _become_subreaper()
        _clean_stale_scratch()
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))  # 0700: no sandbox user looks in
        try:
            self._loop(deque(todo), outcome, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return outcome

    def _loop(self, todo, outcome, scratch):
        from tqdm import tqdm
        tqdm.monitor_interval = 0          # no monitor thread: children are forked from the only thread
        env, running, failures = self._environment(), [], 0
        bar = tqdm(total=len(todo), desc="regrade", unit="submission", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True, smoothing=0)
        try:
            while (todo or running) and self.stopping is None:
                while todo and len(running) < self.jobs and self.stopping is None:
                    submission, print_ = todo.popleft()
                    home = scratch / submission.key
                    home.mkdir()
                    no_files = not submission_files.select(submission.folder).sources
                    try:
                        process, log = _start(submission, home, self.iterations, self.device, env)
                    except OSError as error:
                        self.log(f"{submission.key}: could not start its grading ({error})")
                        record = self._record(submission, print_, "crashed", f"could not start: {error}", 0.0, None)
                        self.store.save(submission.key, record)
                        outcome.statuses[submission.key] = "crashed"
                        failures += 1
                        bar.update(1)
                        continue
                    now = time.monotonic()
                    running.append(Running(submission, print_, no_files, home, process, now, now + self.timeout,
                                           log=log))
                bar.set_postfix_str(f"running {len(running)}, failed {failures}", refresh=False)
                time.sleep(POLL_SECONDS)
                _reap_orphans({job.process.pid for job in running})
                for job in list(running):
                    now = time.monotonic()
                    if job.process.poll() is not None:
                        running.remove(job)
                        status = self._collect(job)
                        outcome.statuses[job.submission.key] = status
                        outcome.graded += 1
                        failures += status in ("crashed", "timeout", "grader_failed")
                        bar.update(1)
                    elif job.stop_sent is None and now > job.deadline:
                        job.timed_out = True
                        self._terminate(job, now)
                    elif job.stop_sent is not None and now > job.stop_sent + STOP_GRACE_SECONDS:
                        kill_tree(job.process)
                        _after_hard_kill()
        finally:
            if running:                     # interrupted (or this process failed): drop what runs
                for job in running:
                    self._terminate(job, time.monotonic())
                deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
                while any(job.process.poll() is None for job in running) and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                for job in running:
                    if job.process.poll() is None:
                        kill_tree(job.process)
                    job.log.close()
                _reap_orphans(set())
                _after_hard_kill()
            bar.close()
        outcome.interrupted = self.stopping

    def _terminate(self, job, now):
        job.stop_sent = now
        try:
            job.process.send_signal(signal.SIGTERM)     # what Gradescope's timeout does: results so far
        except ProcessLookupError:
            pass

    def _record(self, submission, print_, status, message, seconds, exit_code):
        return {"key": submission.key, "id": submission.id, "status": status, "message": message,
                "seconds": round(seconds, 1), "exit_code": exit_code, "fingerprint": print_,
                "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def _collect(self, job):
        """Store a finished grading (results, log, then the record) and clear its scratch -> status."""
        job.log.close()
        seconds = time.monotonic() - job.started
        status, message, raw = _outcome(job)
        if job.process.returncode != 0:          # killed from outside, or failed: nothing of it may run on
            _after_hard_kill()
        record = self._record(job.submission, job.fingerprint, status, message, seconds, job.process.returncode)
        self.store.save(job.submission.key, record, raw, _capped_log(job.home / "log.txt"))
        shutil.rmtree(job.home, ignore_errors=True)
        score = ""
        if raw is not None:
            data = json.loads(raw)
            score = f" {data.get('score', 0):g}/{sum(t.get('max_score', 0) for t in data.get('tests', [])):g}"
        line = f"{job.submission.key}: {status}{score} in {seconds:.0f} s" + (f" ({message})" if message else "")
        if self.progress:
            from tqdm import tqdm
            tqdm.write(line, file=sys.stderr)
        else:
            self.log(line)
        return status
