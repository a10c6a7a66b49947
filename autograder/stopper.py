"""What a stop signal (Gradescope's timeout) does to a grading; imports nothing, so that the
handler can be installed before anything slow runs."""


class Stopper:
    """What a stop signal does (install it with signal.signal before grading starts): remembered
    until the submission exists, then its sandboxes are killed, so every remaining check fails at
    once and grade() writes the results so far. Raising in the handler instead would be caught by
    unittest as one check's error."""

    def __init__(self):
        self.requested = False
        self._submission = None

    def __call__(self, signum=None, frame=None):
        self.requested = True
        if self._submission is not None:
            self._submission.stop()

    def watch(self, submission):
        self._submission = submission
        if self.requested:
            submission.stop()
