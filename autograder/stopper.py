"""What a stop signal (Gradescope's timeout) does to a grading; imports only threading, so that
the handler can be installed before anything slow runs."""
import threading


class Stopper:
    """What a stop signal does (install it with signal.signal before grading starts): remembered
    until the submission exists, then its sandboxes are killed, so every remaining check fails at
    once and grade() writes the results so far. Raising in the handler instead would be caught by
    unittest as one check's error.

    The handler runs in the main thread between two of its bytecodes, possibly while that thread
    holds a lock the stop needs (Popen's wait lock, a queue's mutex): so the handler only starts a
    thread that stops the submission, and returns at once."""

    def __init__(self):
        self.requested = False
        self._submission = None
        self.thread = None

    def __call__(self, signum=None, frame=None):
        self.requested = True
        submission = self._submission
        if submission is not None:
            self.thread = threading.Thread(target=submission.stop, daemon=True, name="grading-stop")
            self.thread.start()

    def watch(self, submission):
        self._submission = submission
        if self.requested:
            submission.stop()
