"""Which processes belong to one sandbox, and killing all of them.

As a slot user the answer is simple: every process of that uid (killed by one atomic
kill(-1) as that uid). As the current user it is a process-tree walk: the worker, its
session, every process seen before (pid and start time), and the orphans re-parented to
us (we are a child subreaper) since the worker started, then all their descendants.
"""
import os
import signal
import time

from . import monitor, processes


class Tracker:
    def __init__(self, process, identity, token):
        self.process, self.identity, self.token = process, identity, token
        self.worker_start = processes.start_time(process.pid) or 0
        self.seen = {}                     # tree mode: pid -> start time of every process seen

    def members(self, table=None):
        """pids of every live process that belongs to this sandbox."""
        table = monitor.snapshot()[0] if table is None else table
        if self.identity is not None:
            return {pid for pid, proc in table.items() if self.identity.uid in proc.uids and proc.state not in "ZX"}
        me, worker, my_session = os.getpid(), self.process.pid, os.getsid(0)
        with monitor.SPAWN_LOCK:
            workers = set(monitor.WORKERS)
        roots = {worker} if worker in table else set()
        for pid, proc in table.items():
            if pid == me or proc.state in "ZX":
                continue
            if proc.session == worker:
                roots.add(pid)
            elif pid in self.seen and processes.start_time(pid) == self.seen[pid]:
                roots.add(pid)
            elif proc.ppid == me and pid not in workers and proc.session != my_session \
                    and (processes.has_token(pid, self.token)
                         or (proc.session != pid and (processes.start_time(pid) or 0) >= self.worker_start)):
                # Without our token, only a process that is not a session leader: the grader's
                # own children started in a session of their own (another grading launched by a
                # test runner, say) look like orphans too, and must never be killed.
                roots.add(pid)
        children = {}
        for pid, proc in table.items():
            children.setdefault(proc.ppid, []).append(pid)
        found, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid in found or pid == me or pid not in table or table[pid].state in "ZX":
                continue
            found.add(pid)
            todo += children.get(pid, [])
        for pid in found:
            if pid not in self.seen:
                self.seen[pid] = processes.start_time(pid)
        return found

    def _signal(self, pids):
        def still_ours(pid):
            if self.identity is not None:
                return self.identity.uid in processes.uids_of(pid)
            return processes.start_time(pid) == self.seen.get(pid, processes.start_time(pid))
        for pid in pids:
            processes.signal_process(pid, signal.SIGKILL, check=still_ours)

    def _reap(self, table):
        me, worker = os.getpid(), self.process.pid
        ours = self.identity.uid if self.identity is not None else None
        processes.reap([pid for pid, proc in table.items()
                        if proc.ppid == me and proc.state == "Z" and pid != worker
                        and (ours in proc.uids if ours is not None else pid in self.seen)])

    def kill_strays(self):
        """Kill every process of the sandbox but the worker (nothing may outlive a request)."""
        for _ in range(50):
            table = monitor.snapshot()[0]
            strays = self.members(table) - {self.process.pid}
            self._reap(table)
            if not strays:
                return
            self._signal(strays)
            time.sleep(0.005)

    def kill_all(self):
        """Kill every process this sandbox started, however it detached; reap what we inherited."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.identity is not None:
            processes.kill_uid(self.identity)
            return
        for _ in range(100):
            table = monitor.snapshot()[0]
            alive = self.members(table)
            self._reap(table)
            if not alive:
                return
            self._signal(alive)
            time.sleep(0.005)
