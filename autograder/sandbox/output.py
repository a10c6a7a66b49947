"""The child's stdout and stderr: a pipe drained by a trusted thread that keeps the first
and the last KEEP_BYTES and counts the rest, so that printing never fails in the child
and never fills the grader's memory or disk."""
import array
import fcntl
import os
import termios
import threading
import time

KEEP_BYTES = 32 * 1024
_CHUNK = 64 * 1024


class Output:
    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="sandbox-output")

    def start(self):
        """Call once the child holds write_fd: closes our copy, so EOF comes when its last writer exits."""
        os.close(self.write_fd)
        self.write_fd = None
        self._thread.start()

    def _drain(self):
        while True:
            try:
                chunk = os.read(self.read_fd, _CHUNK)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._total += len(chunk)
                room = KEEP_BYTES - len(self._head)
                if room > 0:
                    self._head += chunk[:room]
                    chunk = chunk[room:]
                self._tail += chunk
                del self._tail[:-KEEP_BYTES]

    @property
    def total_bytes(self):
        return self._total

    def _pending(self):
        """Bytes written by the child that the drainer has not read yet."""
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self.read_fd, termios.FIONREAD, count, True)
        except (OSError, TypeError):
            return 0
        return count[0]

    def settle(self, seconds=1.0):
        """Wait (at most `seconds`) until the drainer has taken in what the child wrote so far:
        a reply can overtake the output printed just before it."""
        deadline = time.monotonic() + seconds
        while self.read_fd is not None and self._thread.is_alive() and time.monotonic() < deadline:
            seen = self._total
            if self._pending() == 0:
                time.sleep(0.01)
                if self._pending() == 0 and self._total == seen:
                    return
            else:
                time.sleep(0.005)

    def text(self):
        """Everything kept, with a note where bytes were dropped."""
        self.settle()
        with self._lock:
            dropped = self._total - len(self._head) - len(self._tail)
            note = f"\n[... {dropped} bytes of output dropped ...]\n".encode() if dropped else b""
            return (bytes(self._head) + note + bytes(self._tail)).decode(errors="replace")

    def close(self, wait_seconds=1.0):
        """After every writer is dead: read what is left, then release the pipe."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None
        if self._thread.is_alive():
            self._thread.join(wait_seconds)
        if not self._thread.is_alive() and self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None
