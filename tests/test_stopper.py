"""The stop signal's handler (autograder/stopper.py): a SIGTERM before or during grading stops
the submission's sandboxes, whenever it comes."""
import os
import signal

from autograder.stopper import Stopper


class _Submission:
    def __init__(self):
        self.stops = 0

    def stop(self):
        self.stops += 1


def test_a_signal_before_the_submission_exists_stops_it_as_soon_as_it_does():
    stopper, submission = Stopper(), _Submission()
    previous = signal.signal(signal.SIGUSR1, stopper)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stopper.requested and submission.stops == 0
        stopper.watch(submission)
        assert submission.stops == 1
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_signal_while_grading_stops_the_submission_at_once():
    stopper, submission = Stopper(), _Submission()
    stopper.watch(submission)
    assert submission.stops == 0 and not stopper.requested
    stopper(signal.SIGTERM, None)
    stopper.thread.join(5)             # the handler only starts the stop: it may hold no lock itself
    assert stopper.requested and submission.stops == 1


def test_the_handler_returns_while_the_stop_waits_for_a_lock_the_interrupted_code_holds():
    """A SIGTERM that lands while the main thread holds a lock the stop needs (Popen's wait lock,
    a queue's mutex) must not deadlock: the stop runs in its own thread and waits for the lock."""
    import threading
    held = threading.Lock()

    class _Locked(_Submission):
        def stop(self):
            with held:
                super().stop()

    stopper, submission = Stopper(), _Locked()
    stopper.watch(submission)
    with held:                          # the interrupted main thread holds the lock
        stopper(signal.SIGTERM, None)   # returns at once
        assert submission.stops == 0
    stopper.thread.join(5)
    assert submission.stops == 1
