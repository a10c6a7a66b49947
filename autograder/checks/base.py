"""What every check shares: its metadata from config, and turning faults into messages.

Every check class derives from CheckCase and reads the submission under test from its
`submission` attribute, which `checks.bind(submission)` sets on a subclass made for that
submission: the submission is passed, never looked up in a module global.

`@check(family, name)` attaches points, number, visibility and tag (gradescope-utils
decorators) from config (ALL_CHECKS: every problem's). A failure is an AssertionError whose text is what the
student reads; anything else raised inside a check is a grader bug: its traceback goes to
the grader's log (hidden from students) and the student sees a short apology.
"""
import functools
import sys
import traceback
import unittest

import numpy as np
from gradescope_utils.autograder_utils.decorators import number, partial_credit, tags, visibility, weight

from .. import config
from ..sandbox import Status
from ..text import clean, say
from .submission import SubmissionFault, explain

INTERNAL_ERROR = ("The autograder itself failed while running this check (not your fault). "
                  "Your instructor can see the details; please tell them.")


class CheckCase(unittest.TestCase):
    """A TestCase of one student function's checks, run against `submission` (set by checks.bind)."""
    longMessage = False      # students read our message, not unittest's repr of the values
    submission = None

    @classmethod
    def setUpClass(cls):
        if cls.submission is None:
            raise TypeError(f"{cls.__name__} has no submission: run the classes that checks.bind(submission) "
                            "returns, not the unbound ones")


def check(family, name, partial=False):
    spec = config.ALL_CHECKS[family][name]

    def decorate(method):
        title = (method.__doc__ or name).strip().splitlines()[0]

        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            self.submission.running_check = f"{spec.number} ({title})"
            try:
                return method(self, *args, **kwargs)
            except AssertionError:
                raise
            except Exception:
                say(clean(f"[autograder] internal error in {family}.{name}:\n{traceback.format_exc()}"), sys.__stderr__)
                raise AssertionError(INTERNAL_ERROR) from None

        wrapped = partial_credit(spec.points)(guarded) if partial else weight(spec.points)(guarded)
        wrapped = number(spec.number)(visibility(spec.visibility)(tags(family)(wrapped)))
        wrapped.__family__ = family
        return wrapped

    return decorate


def ask(submission, family, op, params=None, arrays=None, key=None, timeout=None, on_callback=None):
    """Run `op` in the family's sandbox; fail the check with the student's own error if it breaks."""
    reply = submission.request(family, op, params, arrays, key=key, timeout=timeout, on_callback=on_callback)
    if reply.status is not Status.OK:
        box = submission._sandboxes.get(family)
        raise SubmissionFault(f"{family} failed: " + explain(reply, box, graded=submission.problem_set.student_files))
    return reply


def output(reply, name, what, shape=None):
    """The float64 array `name` of a reply, validated (present, numeric, finite, shape)."""
    array = decoded(reply, name, what)
    if array.dtype.kind not in "fiub":
        raise AssertionError(f"{what}: expected a floating-point tensor, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise AssertionError(f"{what}: {bad} of {array.size} values are NaN or infinite")
    return array


def decoded(reply, name, what):
    """The array `name` exactly as this process decoded it from the wire. Graded properties
    (shape, dtype, values, gradients) are read from it, never from what the child says about it."""
    if name not in reply.arrays:
        raise AssertionError(f"{what}: no value came back (did it return a tensor?)")
    return reply.arrays[name]


def describe(values, limit=4):
    flat = np.asarray(values).ravel()
    shown = ", ".join(f"{v:.6g}" for v in flat[:limit])
    return f"[{shown}{', ...' if flat.size > limit else ''}]"
