"""The registry of open sandboxes and the one thread that watches all of them.

Each tick takes one process table for every sandbox (however many are open) and lets each
check itself (Sandbox.check: the worker's death, memory of all its processes and files,
processes left running between requests).
"""
import atexit
import threading
import time
import weakref

from . import processes

POLL_SECONDS = 0.2                       # while a request is in flight
IDLE_POLL_SECONDS = 0.5                  # while every sandbox waits for the grader

LIVE = weakref.WeakSet()
# Held while a worker is spawned and recorded, and while a process table is taken: a
# worker half-way through Popen must never look like an orphan to another sandbox.
SPAWN_LOCK = threading.RLock()
WORKERS = set()
_THREAD = None
_THREAD_LOCK = threading.Lock()


def snapshot():
    """(process table, pids of our live workers), consistent with each other."""
    with SPAWN_LOCK:
        return processes.table(), set(WORKERS)


def start():
    global _THREAD
    with _THREAD_LOCK:
        if _THREAD is None or not _THREAD.is_alive():
            _THREAD = threading.Thread(target=_loop, daemon=True, name="sandbox-monitor")
            _THREAD.start()


def _loop():
    busy = False
    while True:
        time.sleep(POLL_SECONDS if busy else IDLE_POLL_SECONDS)
        boxes = [box for box in list(LIVE) if box.process is not None and not box.closed]
        busy = any(box.busy for box in boxes)
        if not boxes:
            continue
        try:
            table, _ = snapshot()
        except OSError:
            continue
        for box in boxes:
            try:
                box.check(table)
            except Exception:  # noqa: BLE001 - the monitor must never die of a race with /proc
                pass


def close_all():
    """Close every open sandbox (registered with atexit too)."""
    for box in list(LIVE):
        box.close()


atexit.register(close_all)
