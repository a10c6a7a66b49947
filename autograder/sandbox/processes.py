"""Processes: the table the monitor reads, and signalling and reaping without pid-reuse races.

The table is the one place that parses /proc by hand: it needs RssAnon + RssShmem (resident
private and shared memory, kernel counters that cost no page walk) and the session id,
which psutil does not give without reading smaps. Everything about a single pid uses psutil.
"""
import errno
import os
import signal
import time
from typing import NamedTuple

import psutil

TOKEN_VARIABLE = "VAE_SANDBOX_TOKEN"


class Proc(NamedTuple):
    ppid: int
    uids: tuple          # real, effective, saved, filesystem
    state: str           # R S D Z T X ...
    session: int
    memory: int          # bytes of RssAnon + RssShmem


def table():
    """{pid: Proc} of every process now (one read of /proc/PID/status each)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                text = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("PPid", "Uid", "State", "NSsid", "RssAnon", "RssShmem"):
                fields[key] = value.split()
        try:
            memory = sum(int(fields[k][0]) * 1024 for k in ("RssAnon", "RssShmem") if k in fields)
            found[int(entry)] = Proc(int(fields["PPid"][0]), tuple(int(u) for u in fields["Uid"]),
                                     fields["State"][0], int(fields.get("NSsid", ["-1"])[-1]), memory)
        except (KeyError, IndexError, ValueError):
            continue
    return found


def start_time(pid):
    """When `pid` started (identifies a process across pid reuse), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def uids_of(pid):
    try:
        return tuple(psutil.Process(pid).uids())
    except psutil.Error:
        return ()


def has_token(pid, token):
    """True if `pid` carries our sandbox's environment token (a process we started)."""
    try:
        return psutil.Process(pid).environ().get(TOKEN_VARIABLE) == token
    except psutil.Error:
        return False


def signal_process(pid, signum=signal.SIGKILL, check=None):
    """Send `signum` to `pid` if `check(pid)` still holds once the pid is pinned (pidfd, no reuse race)."""
    pidfd = None
    try:
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as error:
                if error.errno == errno.ESRCH:
                    return False
                pidfd = None                  # old kernel: fall back to kill()
        if check is not None and not check(pid):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
        return True
    except OSError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def reap(pids):
    """Collect the exit status of those `pids` that are our zombie children (so they free their slot)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except OSError:
            pass


def _kill_everything_as(identity):
    """Fork, become `identity`, kill(-1, SIGKILL): atomically kills every process of that uid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.setgroups([])
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def kill_uid(identity, rounds=100):
    """Kill every process running as `identity` (as root): one atomic kill(-1) as that uid (no
    fork bomb can outrun it), then scans until nothing of that uid is left but zombies, which
    are reaped where they are our children. Returns the number of processes signalled."""
    uid, killed = identity.uid, 0
    if os.geteuid() == 0:
        _kill_everything_as(identity)
    for _ in range(rounds):
        now = table()
        mine = [pid for pid, proc in now.items() if uid in proc.uids]
        reap([pid for pid in mine if now[pid].ppid == os.getpid()])
        alive = [pid for pid in mine if now[pid].state not in "ZX"]
        if not alive:
            return killed
        for pid in alive:
            killed += signal_process(pid, check=lambda p: uid in uids_of(p))
        time.sleep(0.005)
    return killed
