"""The sandbox against hostile, broken and runaway submissions (issue 4, items 1-3 and 5).

Each test writes a tiny hostile `utils.py` and talks to it through the worker's "import"
and "call" ops. Most hostile modules do their damage at import time and report what they
saw by raising (`RuntimeError("REPORT ...")`), so they need no torch and start in ~0.1 s.
Every test runs in both modes that exist on the machine: "student" (the child runs as a
slot user; needs root) and "current" (the child runs as us). Times are bounded
generously: the tests assert behaviour, not speed.
"""
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from autograder import privileges
from autograder import sandbox as sandbox_module
from autograder.sandbox import CallbackError, Limits, Sandbox, SandboxError, Status

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
    python = privileges.build_student_python(directory)
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
    box = sandbox(DETACH.format(copies=4), background_processes=True)
    pids = [int(p) for p in report(import_utils(box)).split()]
    assert len(pids) == 4
    time.sleep(0.5)                                      # let the monitor see them too
    assert all(alive(p) for p in pids)
    box.close()
    assert wait_dead(pids, 5) == []


def test_processes_left_after_a_reply_are_killed(sandbox):
    box = sandbox(DETACH.format(copies=2))               # background_processes=False (default)
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
    """, processes=40, background_processes=True)
    reply = import_utils(box, timeout=5)
    # Stopped either at the deadline or, first, by the memory monitor (40 forked interpreters).
    assert reply.status is Status.TIMEOUT or (reply.status is Status.CRASHED and "memory" in reply.message), reply
    uid = box.identity.uid
    box.close()
    left = [pid for pid, proc in privileges.process_table().items() if uid in proc.uids and proc.state != "Z"]
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
    """)
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


def test_output_flood_is_capped(sandbox):
    box = sandbox("""
        while True:
            print("x" * 1000)
    """, output_bytes=64 * 1024)
    reply = import_utils(box)
    assert reply.status is Status.EXCEPTION and "output limit" in reply.message, reply
    assert os.path.getsize(box.log_path) <= 64 * 1024
    assert 0 < len(box.output_tail(2000)) <= 2000
    box.close()
    assert len(box.output_tail(2000)) <= 2000


def test_printing_forever_despite_errors_times_out(sandbox):
    box = sandbox("""
        while True:
            try:
                print("x" * 1000)
            except OSError:
                pass
    """, output_bytes=4096)
    reply = import_utils(box, timeout=3)
    assert reply.status is Status.TIMEOUT
    assert os.path.getsize(box.log_path) <= 4096


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

def test_student_cannot_reach_the_graders_files(tmp_path, mode):
    """A simulated /autograder, set up as setup.sh does (venv inside source/), after prepare()."""
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
        python = privileges.build_student_python(fake / "source" / ".venv")
        if python is None:
            pytest.skip("no system interpreter to build a venv inside the simulated source/")
        report_ = privileges.prepare(fake, data_dir=fake / "source" / "data", python=python)
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


def test_files_left_in_scratch_directories_are_removed(sandbox, mode):
    if mode != "student":
        pytest.skip("scratch files are attributed by owner, which needs the slot user")
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
    monkeypatch.setattr(sandbox_module, "MAX_CALLBACKS", 20)
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
