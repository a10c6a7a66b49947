"""The sandbox against hostile, broken and runaway submissions (issue 4, items 1-3 and 5).

Each test writes a tiny hostile `utils.py` and talks to it through the worker's "import"
and "call" ops. Most hostile modules do their damage at import time and report what they
saw by raising (`RuntimeError("REPORT ...")`), so they need no torch and start in ~0.1 s.
Every test runs in both modes that exist on the machine: "student" (the child runs as a
slot user; needs root) and "current" (the child runs as us). Times are bounded
generously: the tests assert behaviour, not speed.
"""
import io
import os
import re
import secrets
import shutil
import socket
import stat
import struct
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from autograder import privileges, wire
from autograder.sandbox import (CallbackError, Limits, Sandbox, SandboxError, Status, exchange, launch, output, probe,
                                processes)
from tests.student_python import build_student_python

ROOT = os.geteuid() == 0


@pytest.fixture(scope="session")
def student_python():
    """An interpreter the slot users can run (ours, or a shim venv where ours sits under /root)."""
    if not ROOT:
        yield None
        return
    privileges.ensure_student_user()
    if privileges.python_problem(sys.executable) is None:
        yield sys.executable
        return
    directory = tempfile.mkdtemp(prefix="vae-student-python-", dir="/tmp")
    os.chmod(directory, 0o755)
    python = build_student_python(directory)
    if python is None or privileges.python_problem(python) is not None:
        shutil.rmtree(directory, ignore_errors=True)
        yield None
        return
    yield python
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["student", "current"])
def mode(request, student_python):
    if request.param == "student":
        if not ROOT:
            pytest.skip("the student user needs the grader to run as root")
        if student_python is None:
            pytest.skip("no interpreter the student user can run on this machine")
    return request.param


@pytest.fixture
def sandbox(tmp_path, mode, student_python):
    """sandbox(source, **limits) -> a started Sandbox whose utils.py is `source`; closed at teardown."""
    boxes = []

    def make(source, **limits):
        path = tmp_path / f"utils{len(boxes)}.py"
        path.write_text(textwrap.dedent(source))
        box = Sandbox({"utils.py": path}, Limits(**{"wall_seconds": 30, **limits}),
                      python=student_python if mode == "student" else None, user=mode)
        boxes.append(box)
        box.start()
        return box

    yield make
    for box in boxes:
        box.close()


def report(reply):
    """The text a hostile module raised as RuntimeError('REPORT ...')."""
    assert reply.status is Status.EXCEPTION, (reply.status, reply.message)
    match = re.search(r"REPORT (.*)", reply.message)
    assert match, reply.message
    return match.group(1)


def alive(pid):
    """True if pid runs (a zombie or a vanished pid is not running)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def wait_dead(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def import_utils(box, timeout=None):
    return box.request("import", {"modules": ["utils"]}, timeout=timeout)


# ---------------------------------------------------------------- the normal path, and who runs it

TORCH_UTILS = """
    import os
    import torch

    def sample_gaussian(m, v):
        return m + torch.sqrt(v) * torch.randn_like(m)

    def whoami(x):
        return torch.tensor([os.getuid(), os.geteuid(), os.getgid(), len(os.getgroups())])

    def hog(x):
        big = torch.ones(4 * 2**30, dtype=torch.uint8)      # 4 GB, past RLIMIT_DATA
        return x + big[0]
"""


def test_call_identity_and_torch_memory_limit(sandbox, mode):
    box = sandbox(TORCH_UTILS, memory_bytes=1536 * 2**20)
    m, v = np.zeros((2, 3)), np.ones((2, 3))
    reply = box.request("call", {"function": "sample_gaussian", "args": ["m", "v"], "seed": 0}, {"m": m, "v": v})
    assert reply.ok, reply.message
    assert reply.arrays["out0"].shape == (2, 3)
    assert set(box.isolation) >= {"user", "network", "kill", "memory"}

    ids = box.request("call", {"function": "whoami", "args": ["m"]}, {"m": m})
    assert ids.ok, ids.message
    uid, euid, gid, groups = (int(x) for x in ids.arrays["out0"])
    if mode == "student":
        assert uid == euid == box.identity.uid != 0 and gid == box.identity.gid and groups == 0
        assert box.isolation["kill"] == "uid"
    else:
        assert uid == os.getuid()

    # 4 GB under a 1.5 GB RLIMIT_DATA: torch's allocator fails cleanly, the sandbox lives on
    hog = box.request("call", {"function": "hog", "args": ["m"]}, {"m": m})
    assert hog.status is Status.EXCEPTION and "out of memory" in hog.message, hog
    assert box.request("call", {"function": "sample_gaussian", "args": ["m", "v"]}, {"m": m, "v": v}).ok


# ---------------------------------------------------------------- killing everything

DETACH = """
    import os, sys, time
    r, w = os.pipe()
    pids = []
    for variant in range({copies}):
        if os.fork() == 0:
            os.setsid()                                  # leave the process group and the session
            if os.fork() == 0:                           # and the parent: re-parented away
                os.write(w, b"%d\\n" % os.getpid())
                os.close(w)
                if variant % 2:                          # and the environment (token) with exec
                    os.execve("/bin/sleep", ["sleep", "600"], {{}})
                while True:
                    time.sleep(1)
            os._exit(0)
    os.close(w)
    data = b""
    while data.count(b"\\n") < {copies}:
        data += os.read(r, 100)
    raise RuntimeError("REPORT " + data.decode().replace("\\n", " "))
"""


def test_close_kills_detached_processes(sandbox):
    box = sandbox(DETACH.format(copies=4), background_processes=True, processes_allowed=True)
    pids = [int(p) for p in report(import_utils(box)).split()]
    assert len(pids) == 4
    time.sleep(0.5)                                      # let the monitor see them too
    assert all(alive(p) for p in pids)
    box.close()
    assert wait_dead(pids, 5) == []


def test_processes_left_after_a_reply_are_killed(sandbox):
    box = sandbox(DETACH.format(copies=2), processes_allowed=True)     # background_processes=False (default)
    pids = [int(p) for p in report(import_utils(box)).split()]
    assert wait_dead(pids, 10) == []
    assert box.request("import", {"modules": ["os"]}).ok   # the worker itself lives on


def test_fork_bomb_is_bounded_and_killed(sandbox, mode):
    if mode != "student":
        pytest.skip("an unbounded fork bomb needs RLIMIT_NPROC, which only a slot user gets")
    box = sandbox("""
        import os, time
        for _ in range(2000):
            try:
                os.fork()
            except OSError:
                pass
        time.sleep(600)
    """, processes=40, background_processes=True, processes_allowed=True)
    reply = import_utils(box, timeout=5)
    # Stopped either at the deadline or, first, by the memory monitor (40 forked interpreters).
    assert reply.status is Status.TIMEOUT or (reply.status is Status.CRASHED and "memory" in reply.message), reply
    uid = box.identity.uid
    box.close()
    left = [pid for pid, proc in processes.table().items() if uid in proc.uids and proc.state != "Z"]
    assert left == []


# ---------------------------------------------------------------- hangs, exits, signals, protocol

def test_hang_times_out_and_other_sandboxes_still_run(sandbox):
    healthy = sandbox("VALUE = 1\n")
    hung = sandbox("""
        import time
        def sample_gaussian(m, v):
            while True:
                time.sleep(0.1)
    """)
    assert import_utils(hung).ok
    started = time.monotonic()
    reply = hung.request("call", {"function": "sample_gaussian", "args": ["m", "v"]},
                         {"m": np.zeros(2), "v": np.ones(2)}, timeout=3)
    assert reply.status is Status.TIMEOUT and "3 seconds" in reply.message
    assert time.monotonic() - started < 30
    started = time.monotonic()
    assert import_utils(hung).status is Status.TIMEOUT     # dead from now on, answered at once
    assert time.monotonic() - started < 1
    assert hung.process.poll() is not None
    assert import_utils(healthy).ok


GRADER_THAT_DIES = """
import sys, time
from pathlib import Path
from autograder.sandbox import Limits, Sandbox
utils = Path(sys.argv[1])
box = Sandbox({"utils.py": utils}, Limits(wall_seconds=600), python=sys.argv[2] or None, user=sys.argv[3])
box.start()
print(box.process.pid, flush=True)
box.request("import", {"modules": ["utils"]})      # hangs: utils.py sleeps while it is imported
"""


def test_a_worker_dies_with_a_grader_killed_by_sigkill(tmp_path, mode, student_python):
    """A grader killed outright (no close, no stop) leaves no sandbox worker running on."""
    import signal
    import subprocess
    utils = tmp_path / "utils.py"
    utils.write_text("import time\nwhile True:\n    time.sleep(0.1)\n")
    utils.chmod(0o644)
    grader = subprocess.Popen([sys.executable, "-c", GRADER_THAT_DIES, str(utils),
                               (student_python or "") if mode == "student" else "", mode],
                              cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(grader.stdout.readline())
        time.sleep(1.0)                          # the worker is importing utils.py, which never returns
        assert alive(worker)
    finally:
        grader.send_signal(signal.SIGKILL)
        grader.wait()
    assert wait_dead([worker], seconds=10) == [], "the sandbox worker outlived the grader"


def test_sandboxes_started_beside_a_live_one_are_not_taken_for_its_orphans(sandbox):
    live = sandbox("VALUE = 1\n")
    assert import_utils(live).ok
    for _ in range(8):                       # each start races the live sandbox's monitor
        other = sandbox("VALUE = 2\n")
        assert import_utils(other).ok
        other.close()
    assert import_utils(live).ok


@pytest.mark.parametrize("source, status, words", [
    ("import sys\nsys.exit(3)\n", Status.EXCEPTION, "sys.exit(3)"),
    ("import os\nos._exit(3)\n", Status.CRASHED, "exited with code 3"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", Status.CRASHED, "SIGSEGV"),
    ("import os\nos.abort()\n", Status.CRASHED, "SIGABRT"),
    ("import os, sys\nos.write(int(sys.argv[2]), b'\\xff' * 8)\n", Status.PROTOCOL, "malformed reply"),
    ("import os, sys, time\nos.close(int(sys.argv[2]))\ntime.sleep(60)\n", Status.CRASHED, "closed its connection"),
])
def test_exits_signals_and_garbage_are_reported(sandbox, source, status, words):
    box = sandbox(source)
    started = time.monotonic()
    reply = import_utils(box)
    assert reply.status is status and words in reply.message, (reply.status, reply.message)
    assert time.monotonic() - started < 20


def test_worker_death_is_reported_although_a_child_holds_the_pipe(sandbox):
    box = sandbox("""
        import os, time
        if os.fork() == 0:          # inherits the reply pipe and keeps it open
            time.sleep(600)
        os._exit(4)
    """, processes_allowed=True)
    started = time.monotonic()
    reply = import_utils(box)
    assert reply.status is Status.CRASHED and "code 4" in reply.message
    assert time.monotonic() - started < 20                 # not the 30 s deadline


def test_cpu_limit(sandbox):
    box = sandbox("while True:\n    pass\n", cpu_seconds=1)
    reply = import_utils(box)
    assert reply.status is Status.CRASHED and "CPU time limit" in reply.message


# ---------------------------------------------------------------- memory and output

def test_shared_memory_past_the_limit_is_stopped(sandbox):
    # MAP_SHARED memory is not counted by RLIMIT_DATA: the PSS monitor must catch it.
    box = sandbox("""
        import mmap, time
        chunk = mmap.mmap(-1, 600 * 2**20)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        time.sleep(60)
    """, memory_bytes=300 * 2**20)
    started = time.monotonic()
    reply = import_utils(box)
    assert reply.status is Status.CRASHED and "MB of memory" in reply.message, reply.message
    assert time.monotonic() - started < 25


def test_heap_past_the_limit_is_a_memory_error(sandbox):
    box = sandbox("hog = bytearray(4 * 2**30)\n", memory_bytes=300 * 2**20)
    reply = import_utils(box)
    assert reply.status is Status.EXCEPTION and reply.kind == "MemoryError" and "out of memory" in reply.message


def test_output_flood_is_drained_with_head_and_tail_kept_and_never_fails_in_the_child(sandbox):
    """Item 11: 25 MB of prints are not an error in the child; the grader keeps the first and last lines."""
    box = sandbox("""
        import sys
        for i in range(250_000):
            print(f"line {i:06d} " + "x" * 88)
        sys.stderr.write("last words\\n")
        raise RuntimeError("REPORT printed")
    """)
    assert report(import_utils(box)) == "printed"
    text = box.output()
    assert text.startswith("line 000000 ") and text.endswith("last words\n"), (text[:50], text[-50:])
    dropped = int(re.search(r"\[\.\.\. (\d+) bytes of output dropped \.\.\.\]", text).group(1))
    assert dropped + len(text.encode()) - len(re.search(r"\n\[.*dropped.*\]\n", text).group(0)) \
        == 250_000 * 101 + len("last words\n")
    assert len(text) <= 2 * output.KEEP_BYTES + 100
    assert box.output_tail(11) == "last words\n"
    box.close()
    assert box.output() == text


def test_printing_forever_times_out_with_bounded_output(sandbox):
    box = sandbox("""
        import time
        while True:
            print("x" * 1000)
            time.sleep(0.0001)
    """)
    reply = import_utils(box, timeout=10)                   # the worker's own start takes a few seconds
    assert reply.status is Status.TIMEOUT
    assert len(box.output()) <= 2 * output.KEEP_BYTES + 100 and "bytes of output dropped" in box.output()


def test_a_file_past_the_file_size_limit_is_an_error(sandbox):
    box = sandbox("""
        open("big.bin", "wb").write(b"x" * 100_000)
    """, file_bytes=4096)
    reply = import_utils(box)
    assert reply.status is Status.EXCEPTION and "file size limit" in reply.message, reply


# ---------------------------------------------------------------- network and other syscalls

def test_network_is_blocked(sandbox):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    box = sandbox(f"""
        import os, socket
        seen = []
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"pwned")
            seen.append("connected")
        except OSError as error:
            seen.append("inet:" + type(error).__name__)
        a, b = socket.socketpair()                        # AF_UNIX stays allowed (multiprocessing)
        a.send(b"x")
        seen.append("unix:" + ("ok" if b.recv(1) == b"x" else "bad"))
        try:
            os.kill(-1, 0)                                # would be kill(-1, SIGKILL) in a real attack
            seen.append("kill-all:allowed")
        except PermissionError:
            seen.append("kill-all:blocked")
        raise RuntimeError("REPORT " + " ".join(seen))
    """)
    if box.isolation["network"].startswith("none"):
        listener.close()
        pytest.skip(box.isolation["network"])
    seen = report(import_utils(box)).split()
    listener.settimeout(0.5)
    with pytest.raises(OSError):                           # nothing ever connected
        listener.accept()
    listener.close()
    assert "connected" not in seen and "unix:ok" in seen, seen
    if "seccomp" in box.isolation["network"]:
        assert "inet:PermissionError" in seen and "kill-all:blocked" in seen, seen


# ---------------------------------------------------------------- privileges and file access

def test_student_cannot_reach_the_graders_files(tmp_path, mode, monkeypatch):
    """A simulated /autograder, set up as setup.sh does (venv inside source/), after prepare()
    and with $VAE_DATA_DIR set as container.run sets it."""
    if mode != "student":
        pytest.skip("file isolation needs the slot user")
    fake = Path(tempfile.mkdtemp(prefix="vae-fake-autograder-", dir="/tmp"))
    box = None
    try:
        (fake / "source" / "tests").mkdir(parents=True)
        (fake / "source" / "tests" / "hidden.py").write_text("SECRET = 42\n")
        (fake / "source" / "data").mkdir()
        (fake / "source" / "data" / "mnist.bin").write_bytes(b"pixels")
        (fake / "results").mkdir()
        (fake / "submission_metadata.json").write_text("{}")
        for path in [fake, *fake.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o666)     # worst case: world-writable
        python = build_student_python(fake / "source" / ".venv")
        if python is None:
            pytest.skip("no system interpreter to build a venv inside the simulated source/")
        report_ = privileges.prepare(fake, data_dir=fake / "source" / "data", python=python)
        monkeypatch.setenv("VAE_DATA_DIR", str(fake / "source" / "data"))
        assert report_["root"] and report_["users"] and report_["problems"] == [], report_
        utils = tmp_path / "utils.py"
        utils.write_text(textwrap.dedent(f"""
            import os
            seen = []
            def attempt(name, action):
                try:
                    action()
                    seen.append(name + ":yes")
                except OSError:
                    seen.append(name + ":no")
            attempt("read-hidden", lambda: open("{fake}/source/tests/hidden.py").read())
            attempt("list-source", lambda: os.listdir("{fake}/source"))
            attempt("read-metadata", lambda: open("{fake}/submission_metadata.json").read())
            attempt("write-results", lambda: open("{fake}/results/results.json", "w").write("{{}}"))
            attempt("write-source", lambda: open("{fake}/source/tests/planted.py", "w").write(""))
            attempt("read-data", lambda: open("{fake}/source/data/mnist.bin").read())
            attempt("signal-grader", lambda: os.kill({os.getpid()}, 0))
            attempt("grader-environ", lambda: open("/proc/{os.getpid()}/environ").read())
            attempt("read-root-home", lambda: os.listdir("/root"))
            raise RuntimeError("REPORT " + " ".join(seen))
        """))
        box = Sandbox({"utils.py": utils}, Limits(wall_seconds=30), python=python, user="student")
        box.start()
        seen = set(report(import_utils(box)).split())
        assert seen == {"read-hidden:no", "list-source:no", "read-metadata:no", "write-results:no", "write-source:no",
                        "read-data:yes", "signal-grader:no", "grader-environ:no", "read-root-home:no"}, seen
        assert not (fake / "results" / "results.json").exists()
        assert stat.S_IMODE(os.stat(fake / "source" / "tests" / "hidden.py").st_mode) & 0o077 == 0
    finally:
        if box is not None:
            box.close()
        shutil.rmtree(fake, ignore_errors=True)


def test_workdir_holds_only_the_given_files(sandbox):
    box = sandbox("import os\nraise RuntimeError('REPORT ' + ' '.join(sorted(os.listdir('.'))))\n")
    assert report(import_utils(box)).split() == ["_worker.py", "utils.py", "wire.py"]


def test_files_left_in_scratch_directories_are_removed(sandbox, mode, monkeypatch):
    """Without namespaces (with them, the file never reaches the host's /tmp)."""
    if mode != "student":
        pytest.skip("scratch files are attributed by owner, which needs the slot user")
    without_namespaces(monkeypatch)
    box = sandbox("""
        import os, tempfile
        path = "/tmp/vae-planted-" + str(os.getpid())
        open(path, "w").write("later")
        raise RuntimeError("REPORT " + path)
    """)
    path = report(import_utils(box))
    assert os.path.exists(path)
    box.close()
    assert not os.path.exists(path)


def test_student_user_is_required_when_asked(tmp_path):
    utils = tmp_path / "utils.py"
    utils.write_text("")
    if ROOT:
        pytest.skip("as root the student user exists")
    with pytest.raises(RuntimeError, match="root"):
        Sandbox({"utils.py": utils}, user="student").start()


def test_slots_are_exclusive():
    if not ROOT:
        pytest.skip("slots are for root")
    first = privileges.acquire_slot()
    second = privileges.acquire_slot()
    try:
        assert first.identity != second.identity
        assert privileges.try_slot(first.identity) is None
    finally:
        first.release()
        second.release()


# ---------------------------------------------------------------- callbacks to the grader during a request

CALLBACK_UTILS = """
    import torch
    import _worker

    def echo(x):
        info, arrays = _worker.grader_call("double", {"add": 0.5, "nested": {"k": [1, 2]}}, {"a": x.numpy()})
        return torch.as_tensor(arrays["b"]) + info["add"]

    def refused(x):
        try:
            _worker.grader_call("refuse", {"why": "not today"})
        except RuntimeError as error:
            raise RuntimeError("REPORT " + str(error))
        return x

    def many(x):
        for i in range(int(x.item())):
            _worker.grader_call("count", {"i": i})
        return x
"""


def call(box, function, x, **kwargs):
    return box.request("call", {"function": function, "args": ["x"]}, {"x": np.asarray(x, dtype="float64")},
                       **kwargs)


def test_callback_values_round_trip(sandbox):
    box = sandbox(CALLBACK_UTILS)
    seen = []

    def handler(name, params, arrays):
        seen.append((name, params, {k: v.tolist() for k, v in arrays.items()}))
        return {"add": params["add"]}, {"b": arrays["a"] * 2}

    reply = call(box, "echo", [1.0, 2.0, 3.0], on_callback=handler)
    assert reply.ok, reply
    assert reply.arrays["out0"].tolist() == [2.5, 4.5, 6.5]
    assert seen == [("double", {"add": 0.5, "nested": {"k": [1, 2]}}, {"a": [1.0, 2.0, 3.0]})]
    # The sandbox serves later requests as usual, with and without callbacks.
    assert call(box, "many", 3, on_callback=lambda *a: ({}, {})).ok


def test_callback_error_and_missing_handler_are_errors_in_the_child(sandbox):
    box = sandbox(CALLBACK_UTILS)

    def refuse(name, params, arrays):
        raise CallbackError(f"{name} refused: {params['why']}")

    assert report(call(box, "refused", 1, on_callback=refuse)) == "refuse refused: not today"
    assert report(call(box, "refused", 1)) == "no callbacks are served for this request"


def test_a_failing_handler_is_raised_in_the_grader(sandbox):
    box = sandbox(CALLBACK_UTILS)

    def broken(name, params, arrays):
        raise KeyError("grader bug")

    with pytest.raises(KeyError, match="grader bug"):
        call(box, "echo", [1.0], on_callback=broken)
    with pytest.raises(SandboxError, match="grader error"):
        call(box, "echo", [1.0], on_callback=broken)
    assert wait_dead([box.process.pid]) == []


def test_callbacks_are_bounded_per_request(sandbox, monkeypatch):
    monkeypatch.setattr(exchange, "MAX_CALLBACKS", 20)
    box = sandbox(CALLBACK_UTILS)
    counted = []
    handler = lambda name, params, arrays: (counted.append(params["i"]) or {}, {})  # noqa: E731
    assert call(box, "many", 20, on_callback=handler).ok
    reply = call(box, "many", 21, on_callback=handler)
    assert reply.status is Status.PROTOCOL and "callbacks" in reply.message, reply
    assert counted == list(range(20)) * 2


def test_callbacks_count_against_the_deadline(sandbox):
    box = sandbox(CALLBACK_UTILS)
    started = time.monotonic()
    reply = call(box, "many", 10**9, on_callback=lambda *a: (time.sleep(0.01), {})[1:] + ({},), timeout=2)
    assert reply.status is Status.TIMEOUT, reply
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------- state and memory outside the process (issue 10, items 2, 3)

IPC_KEY = 0x56414531                       # the same key in every sandbox
IPC_PROBE = """
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    CREATE = {create}
    seen = []
    def attempt(name, call):
        result = call()
        seen.append(name + ":" + ("ok" if result != -1 else errno.errorcode[ctypes.get_errno()]))
    flags = (0o1000 if CREATE else 0) | 0o666                    # IPC_CREAT
    attempt("shmget", lambda: libc.shmget({key}, 1 << 20, flags))
    attempt("semget", lambda: libc.semget({key}, 1, flags))
    attempt("msgget", lambda: libc.msgget({key}, flags))
    attempt("mq_open", lambda: libc.mq_open(b"/vae-carry", (os.O_CREAT if CREATE else 0) | os.O_RDWR, 0o666, None))
    raise RuntimeError("REPORT " + " ".join(seen))
"""


def sysv_keys():
    keys = set()
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as table:
            keys |= {int(line.split()[0]) for line in list(table)[1:]}
    return keys


def without_namespaces(monkeypatch):
    """The fallback layer alone: what a sandbox gets where unshare is refused (seccomp stays)."""
    found = probe.mechanisms()
    monkeypatch.setattr(probe, "_FOUND", dict(found, netns=False, ipcns=False, mountns=False))


def test_sysv_ipc_and_message_queues_are_refused(sandbox):
    if not probe.mechanisms()["seccomp"]:
        pytest.skip("no seccomp here")
    box = sandbox(IPC_PROBE.format(create=True, key=IPC_KEY))
    assert report(import_utils(box)).split() == ["shmget:EPERM", "semget:EPERM", "msgget:EPERM", "mq_open:EPERM"]
    assert IPC_KEY not in sysv_keys()


def test_without_seccomp_sysv_ipc_is_private_to_the_sandbox_and_gone_after_close(sandbox, monkeypatch):
    """The second layer (root): a private IPC namespace, destroyed with the sandbox."""
    if not ROOT or not probe.mechanisms()["ipcns"]:
        pytest.skip("no IPC namespace here")
    monkeypatch.setattr(probe, "_FOUND", dict(probe.mechanisms(), seccomp=False))
    writer = sandbox(IPC_PROBE.format(create=True, key=IPC_KEY))
    assert report(import_utils(writer)).split() == ["shmget:ok", "semget:ok", "msgget:ok", "mq_open:ok"]
    assert IPC_KEY not in sysv_keys()                      # not in the grader's namespace either
    reader = sandbox(IPC_PROBE.format(create=False, key=IPC_KEY))
    assert report(import_utils(reader)).split() == ["shmget:ENOENT", "semget:ENOENT", "msgget:ENOENT",
                                                    "mq_open:ENOENT"]
    writer.close()
    reader.close()
    assert IPC_KEY not in sysv_keys()


SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


@pytest.mark.parametrize("layers", ["all", "without namespaces"])
def test_files_written_in_one_sandbox_are_invisible_to_the_next(sandbox, mode, layers, monkeypatch):
    if not ROOT:
        pytest.skip("without root there is neither a namespace nor a slot user that owns the files")
    if layers == "without namespaces":
        if mode != "student":
            pytest.skip("without namespaces files are attributed by owner, which needs the slot user")
        without_namespaces(monkeypatch)
    name = f"vae-carry-{secrets.token_hex(4)}"
    writer = sandbox(f"""
        import os
        written = []
        for directory in {SHARED_DIRS!r}:
            try:
                os.makedirs(os.path.join(directory, "{name}.d"))
                open(os.path.join(directory, "{name}"), "w").write("carried")
                written.append(directory)
            except OSError:
                pass
        raise RuntimeError("REPORT " + " ".join(written))
    """)
    assert report(import_utils(writer)).split() == [d for d in SHARED_DIRS if os.path.isdir(d)]
    writer.close()
    reader = sandbox(f"""
        import os
        seen = [d for d in {SHARED_DIRS!r} if os.path.lexists(os.path.join(d, "{name}"))
                or os.path.lexists(os.path.join(d, "{name}.d"))]
        raise RuntimeError("REPORT [" + " ".join(seen) + "]")
    """)
    assert report(import_utils(reader)) == "[]"
    assert not [d for d in SHARED_DIRS if os.path.lexists(f"{d}/{name}") or os.path.lexists(f"{d}/{name}.d")]


@pytest.mark.parametrize("layers", ["all", "without namespaces"])
@pytest.mark.parametrize("where", ["/dev/shm", "/run/lock", "/tmp", "."])
def test_bytes_in_files_count_against_memory_or_cannot_be_written(sandbox, mode, layers, where, monkeypatch):
    """Item 3: a thousand files (each within the file size limit), in tmpfs or the work directory."""
    if where != "." and not ROOT:
        pytest.skip("without root, files outside the work directory cannot be attributed or made private")
    if layers == "without namespaces":
        if mode != "student" or where == ".":
            pytest.skip("without namespaces files are attributed by owner, which needs the slot user")
        without_namespaces(monkeypatch)
    box = sandbox(f"""
        import os, time
        written, error = 0, "none"
        block = b"x" * (512 * 1024)
        try:
            for i in range(1000):
                with open(os.path.join({where!r}, "hoard-%d" % i), "wb") as handle:
                    handle.write(block)
                written += len(block)
        except OSError as caught:
            error = type(caught).__name__
        time.sleep(10)
        raise RuntimeError("REPORT %d %s" % (written, error))
    """, memory_bytes=300 * 2**20, scratch_bytes=128 * 2**20)
    reply = import_utils(box)
    if reply.status is Status.CRASHED:
        assert "MB of memory" in reply.message, reply.message
    else:
        written, error = report(reply).split()
        assert error != "none" and int(written) <= 128 * 2**20, (written, error)
    box.close()
    if where != "." and (layers != "all" or mode == "student"):
        assert not [p for p in os.listdir(where) if p.startswith("hoard-") and os.stat(os.path.join(where, p)).st_uid
                    != os.getuid()]


# ---------------------------------------------------------------- the wire (issue 15)

def test_header_bomb_is_a_protocol_error_with_bounded_memory(sandbox):
    box = sandbox("""
        import struct, _worker
        channel = _worker._CHANNELS["replies"]
        def bomb(x):
            body = b'{"status": "ok", "info": {"pad": [' + b"[]," * (64 * 2**20 // 3) + b'[]]}}'
            channel.write(struct.pack("<Q", len(body)) + body)
            channel.flush()
            return x
        def wide(x):
            body = b'{"status": "ok", "info": {"pad": [' + b"[]," * 300_000 + b'[]]}}'
            channel.write(struct.pack("<Q", len(body)) + body)
            channel.flush()
            return x
    """)
    assert import_utils(box).ok
    tracemalloc.start()
    try:
        reply = box.request("call", {"function": "bomb", "args": ["x"]}, {"x": np.zeros(1)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply.status is Status.PROTOCOL and "larger than" in reply.message, reply
    assert peak < 16 * 2**20, peak
    second = sandbox(box.files["utils.py"].read_text())
    assert import_utils(second).ok
    reply = second.request("call", {"function": "wide", "args": ["x"]}, {"x": np.zeros(1)})
    assert reply.status is Status.PROTOCOL and "more than" in reply.message, reply


@pytest.mark.parametrize("header, words", [
    (b"[" * 200_000 + b"]" * 200_000, "not JSON"),
    (b'{"status": "ok", "info": {"n": ' + b"9" * 5000 + b"}}", "digits"),
    (b'{"status": "ok", "info": {"s": "' + b"x" * 20_000 + b'"}}', "string"),
    (b'{"status": "ok", "info": ' + b'{"a": ' * 20 + b"1" + b"}" * 20 + b"}", "deeper"),
    (b'{"status": "ok", "arrays": ["a", "a"]}', "distinct"),
    (b'[1, 2]', "not a JSON object"),
])
def test_malformed_headers_are_wire_errors(header, words):
    stream = io.BytesIO(struct.pack("<Q", len(header)) + header)
    with pytest.raises(wire.WireError, match=words):
        wire.read_message(stream)


def test_directories_the_grader_declares_shared_stay_visible_and_kept(sandbox, monkeypatch):
    """$VAE_SANDBOX_SHARED (set only by the grader's environment, for tests) is the one exception."""
    if not ROOT:
        pytest.skip("without root nothing is private anyway")
    shared = Path(tempfile.mkdtemp(prefix="vae-shared-", dir="/tmp"))
    try:
        os.chmod(shared, 0o1777)
        monkeypatch.setenv("VAE_SANDBOX_SHARED", str(shared))
        box = sandbox(f"open('{shared}/left', 'w').write('pid')\nraise RuntimeError('REPORT ok')\n")
        assert report(import_utils(box)) == "ok"
        box.close()
        assert (shared / "left").read_text() == "pid"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_modules_a_pth_file_puts_under_a_covered_directory_stay_importable(tmp_path):
    """An interpreter whose site-packages lie under /tmp through a .pth file (a checkout under
    /tmp, tests' shim venvs) still imports them in the child, while /tmp itself stays private;
    a world-writable directory on its path is not kept (it would be shared)."""
    if not ROOT:
        pytest.skip("the private tmpfs needs root")
    base = Path(tempfile.mkdtemp(prefix="vae-pth-", dir="/tmp"))
    box = None
    try:
        os.chmod(base, 0o755)
        packages, open_dir = base / "packages", base / "open"
        packages.mkdir(mode=0o755)
        open_dir.mkdir()
        os.chmod(open_dir, 0o777)
        (packages / "pth_probe.py").write_text("VALUE = 'seen'\n")
        (open_dir / "open_probe.py").write_text("VALUE = 'open'\n")
        for path in (packages / "pth_probe.py", open_dir / "open_probe.py"):
            os.chmod(path, 0o644)
        python = build_student_python(base / "venv")
        if python is None or privileges.python_problem(python) is not None:
            pytest.skip("no interpreter the student user can run on this machine")
        pth = next((base / "venv" / "lib").glob("python3*/site-packages")) / "vae-shared.pth"
        pth.write_text(pth.read_text() + f"{packages}\n{open_dir}\n")
        assert str(packages) in launch.interpreter_directories(python)
        assert str(open_dir) not in launch.interpreter_directories(python)
        utils = tmp_path / "utils.py"
        utils.write_text(textwrap.dedent("""
            import os
            import pth_probe
            try:
                import open_probe
                opened = "imported"
            except ImportError:
                opened = "hidden"
            raise RuntimeError("REPORT " + pth_probe.VALUE + " " + opened + " " + ",".join(os.listdir("/tmp")))
        """))
        box = Sandbox({"utils.py": utils}, Limits(wall_seconds=60), python=python, user="student")
        box.start()
        if "/tmp" not in box.private_directories:
            pytest.skip("no mount namespace here: /tmp is not covered, so nothing is hidden")
        # only the kept paths: this one, and where the checkout's own interpreter lies under /tmp (a clone there)
        kept = sorted({Path(d).relative_to("/tmp").parts[0] for d in launch.interpreter_directories(python)
                       if Path(d).is_relative_to("/tmp") and d != "/tmp"})
        assert base.name in kept
        seen, opened, listed = report(import_utils(box)).split()
        assert (seen, opened, sorted(listed.split(","))) == ("seen", "hidden", kept)
    finally:
        if box is not None:
            box.close()
        shutil.rmtree(base, ignore_errors=True)


UNSEEN_STATE_PROBE = """
    import ctypes, errno, os, platform
    libc = ctypes.CDLL(None, use_errno=True)
    NUMBERS = {"x86_64": dict(add_key=248, keyctl=250, memfd_create=319, userfaultfd=323, bpf=321),
               "aarch64": dict(add_key=217, keyctl=219, memfd_create=279, userfaultfd=282, bpf=280)}[platform.machine()]
    seen = []
    def outcome(name, result):
        seen.append(name + ":" + ("ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")))
    outcome("add_key", libc.syscall(NUMBERS["add_key"], b"user", b"vae-probe", b"x", 1, -4))      # KEY_SPEC_USER_KEYRING
    outcome("keyctl", libc.syscall(NUMBERS["keyctl"], 0, -4, 0))                                   # KEYCTL_GET_KEYRING_ID
    outcome("memfd_create", libc.syscall(NUMBERS["memfd_create"], b"hoard", 0))
    outcome("userfaultfd", libc.syscall(NUMBERS["userfaultfd"], 0))
    outcome("bpf", libc.syscall(NUMBERS["bpf"], 0, None, 0))
    try:
        os.memfd_create("hoard")
        seen.append("os.memfd_create:ok")
    except OSError as error:
        seen.append("os.memfd_create:" + errno.errorcode[error.errno])
    raise RuntimeError("REPORT " + " ".join(seen))
"""


def test_keyrings_and_memory_no_mapping_shows_are_refused(sandbox):
    """The slot user's keyring outlives a sandbox (state carried to the next); a memfd holds
    memory that neither the child's mappings nor its files show, so the monitor cannot charge it."""
    if not probe.mechanisms()["seccomp"]:
        pytest.skip("no seccomp here")
    box = sandbox(UNSEEN_STATE_PROBE)
    assert report(import_utils(box)).split() == ["add_key:EPERM", "keyctl:EPERM", "memfd_create:EPERM",
                                                 "userfaultfd:EPERM", "bpf:EPERM", "os.memfd_create:EPERM"]


@pytest.mark.parametrize("patch, named", [
    ("import wire\nwire.write_message = lambda stream, header, arrays=None: None\n", "wire.write_message"),
    ("import builtins\nbuiltins.sorted = lambda values, **kw: []\n", "builtins.sorted"),
    ("import _worker\ndel _worker.OPS['call']\n", "_worker.OPS['call']"),
    ("import _worker\n_worker.len = lambda value: 0\n", "_worker.len"),
])
def test_a_submission_that_changes_the_workers_code_voids_what_its_process_reports(sandbox, patch, named):
    box = sandbox(patch + "def sample_gaussian(m, v):\n    return m\n")
    for _ in range(2):                  # the import, and every request after it
        reply = import_utils(box)
        assert reply.status is Status.EXCEPTION and "changed the grader's own code" in reply.message, reply.message
        assert named in reply.message, reply.message


@pytest.mark.parametrize("attempt, refused", [
    ("import sys\nsys.settrace(lambda *args: None)\n", "sys.settrace is refused"),
    ("import sys\nsys.setprofile(lambda *args: None)\n", "sys.setprofile is refused"),
    ("import _worker\n_worker.op_call.__defaults__ = (None,) * len(_worker.op_call.__defaults__)\n",
     "changing __defaults__ of the grader's own functions"),
    ("import wire\nwire.write_message.__code__ = (lambda stream, header, arrays=None: None).__code__\n",
     "changing __code__ of the grader's own functions"),
])
def test_hooks_into_the_workers_frames_and_changes_to_its_functions_are_refused(sandbox, attempt, refused):
    """A hook or a swapped function could rewrite what a request records and be undone before the
    request ends, where the comparison after each request would not see it."""
    box = sandbox(attempt + "def sample_gaussian(m, v):\n    return m\n")
    reply = import_utils(box)
    assert reply.status is Status.EXCEPTION and refused in reply.message, reply.message


def test_an_audit_hook_of_the_submission_never_runs(sandbox):
    box = sandbox("""
        import sys
        calls = []
        sys.addaudithook(lambda event, args: calls.append(event))
        open("/dev/null").close()
        raise RuntimeError("REPORT " + str(len(calls)))
    """)
    assert report(import_utils(box)) == "0"


PROCESS_PROBE = """
    import os, subprocess, threading, torch
    seen = []
    def attempt(name, action):
        try:
            action()
            seen.append(name + ":ok")
        except OSError as error:
            seen.append(name + ":" + errno.errorcode[error.errno])
    import errno
    attempt("fork", lambda: os.fork() or None)
    attempt("subprocess", lambda: subprocess.run(["/bin/true"]))
    attempt("posix_spawn", lambda: os.posix_spawn("/bin/true", ["true"], {})) if hasattr(os, "posix_spawn") else None
    done = []
    worker = threading.Thread(target=lambda: done.append(1))
    worker.start()
    worker.join()
    seen.append("thread:" + ("ok" if done else "no"))
    torch.set_num_threads(2)
    seen.append("torch:" + ("ok" if float(torch.ones(256, 256).matmul(torch.ones(256, 256)).sum()) == 256 ** 3 else "no"))
    raise RuntimeError("REPORT " + " ".join(seen))
"""


def test_new_processes_are_refused_and_threads_are_not(sandbox):
    """A process the child starts could go on working beyond its request (training further on
    shared memory), its CPU time charged to the grader that reaps it: seccomp refuses them."""
    if not probe.mechanisms()["seccomp"]:
        pytest.skip("no seccomp here")
    box = sandbox(PROCESS_PROBE)
    assert report(import_utils(box)).split() == ["fork:EPERM", "subprocess:EPERM", "posix_spawn:EPERM", "thread:ok",
                                                 "torch:ok"]


def test_open_descriptors_are_bounded(sandbox):
    """Socket pairs with full buffers hold kernel memory no process's resident memory shows."""
    box = sandbox("""
        import socket
        held = []
        try:
            while True:
                held.append(socket.socketpair())
        except OSError as error:
            raise RuntimeError("REPORT " + str(len(held)) + " " + type(error).__name__)
    """)
    count, kind = report(import_utils(box)).split()
    assert int(count) < 1024 // 2 and kind == "OSError", (count, kind)


def test_warnings_attributed_to_the_workers_frames_do_not_count_as_changes(sandbox):
    box = sandbox("""
        import warnings
        def sample_gaussian(m, v):
            for level in (1, 2, 3, 4):
                warnings.warn(f"level {level}", UserWarning, stacklevel=level)
            return m + v
    """)
    assert import_utils(box).ok
    m = np.zeros((2, 3), np.float32)
    for _ in range(2):
        reply = box.request("call", {"function": "sample_gaussian", "args": ["m", "v"]}, {"m": m, "v": m + 1})
        assert reply.ok, reply.message


def test_reading_the_workers_code_is_no_change(sandbox):
    box = sandbox("""
        import _worker
        def sample_gaussian(m, v):
            return m + v
        def rebind(m):
            _worker._changed.__defaults__[0]          # read only: no change
            return m
    """)
    assert import_utils(box).ok
    m = np.zeros(3, np.float32)
    assert box.request("call", {"function": "rebind", "args": ["m"]}, {"m": m}).ok
