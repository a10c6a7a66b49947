"""Grade one submission folder: submission -> sandboxes -> checks -> results.json.

The checks run under gradescope-utils' JSONTestRunner in this (trusted) process; its
post_processor hook completes the results (numbers as numbers, capped outputs, the
leaderboard, a per-function summary). Every sandbox is closed, killing everything the
submission started, before results.json is written; if anything here fails, a valid
results.json that says so is written instead.
"""
import io
import json
import time
import traceback
import unittest

from gradescope_utils.autograder_utils.json_test_runner import JSONTestRunner

from . import checks, config, privileges, results
from .checks import submission as submission_module
from .checks import training
from .reference import runtime
from .text import clean, say

FAMILY_ORDER = tuple(config.CHECKS)


def _suite(submission, families=None):
    """Every check against `submission`, or those of the given student functions (tags) only."""
    suite = unittest.TestSuite()
    for case in checks.bind(submission):
        for test in unittest.defaultTestLoader.loadTestsFromTestCase(case):
            if families is None or getattr(getattr(test, test._testMethodName), "__family__", None) in families:
                suite.addTest(test)
    return suite


def _summary(tests):
    lines = []
    for family in FAMILY_ORDER:
        own = [t for t in tests if family in t.get("tags", [])]
        got, out_of = sum(t["score"] for t in own), sum(t["max_score"] for t in own)
        lines.append(f"{family}: {got:g} / {out_of:g}")
    return "\n".join(lines)


def _finish(data, started, submission):
    tests = sorted(data["tests"], key=lambda t: [int(p) for p in t.get("number", "0").split(".")])
    for test in tests:
        # A check's output may quote the submission (its exception messages, what it printed): clean it.
        test["output"] = results.cap(clean(test.get("output", "")).replace("Test Failed: ", "", 1).strip())
        test["score"] = float(test.get("score", 0.0))
        test["max_score"] = float(test.get("max_score", 0.0))
        if not test["output"]:
            del test["output"]
    data["tests"] = tests
    data["score"] = round(sum(t["score"] for t in tests), 4)
    data["execution_time"] = round(time.perf_counter() - started, 2)
    data["output"] = submission.selection.report() + "\n\n" + _summary(tests)
    data["leaderboard"] = training.leaderboard(submission)
    if not data["leaderboard"]:
        del data["leaderboard"]


def _never_failing(log):
    def logged(message):
        try:
            log(clean(message))
        except Exception:   # noqa: BLE001 - a log line is never worth the results
            pass
    return logged


def grade(folder, results_path, iterations=config.DEFAULT_ITERATIONS, device="cpu", python=None, log=say,
          families=None, stopper=None):
    """Grade `folder`; write results_path; return the results dict. Never raises for a bad submission.
    `families`: only the checks of these student functions (default: all).
    `stopper`: a Stopper the caller's signal handler calls (Gradescope's timeout): the sandboxes are
    killed, every remaining check fails at once, and the results so far are written.
    Nothing after the write can undo it: every line logged is cleaned, and a failing log only loses lines."""
    started = time.perf_counter()
    log = _never_failing(log)
    runtime.configure_threads()     # the trusted side's own torch pool, sized from the CPU quota
    submission = submission_module.Submission(folder, iterations, device, python)
    if stopper is not None:
        stopper.watch(submission)
    try:
        stream = io.StringIO()
        runner = JSONTestRunner(stream=stream, buffer=True,
                                post_processor=lambda data: _finish(data, started, submission))
        runner.run(_suite(submission, families))
        data = json.loads(stream.getvalue())
    except Exception:
        log(f"[autograder] grading crashed:\n{traceback.format_exc()}")
        data = results.failure("The autograder failed while grading this submission (not your fault); "
                               "your instructor can see the details.", time.perf_counter() - started)
    finally:
        submission.close()          # kill everything the submission started before writing
        privileges.finish()         # as root: every process of the student users, and their scratch files
    try:
        results.validate(data)
    except results.SchemaError as error:
        log(f"[autograder] invalid results ({error}); writing a failure instead")
        data = results.failure("The autograder produced invalid results (not your fault).",
                               time.perf_counter() - started)
    results.write(data, results_path)
    for test in data.get("tests", []):
        log(f"{test.get('number', ''):>4} {test['score']:g}/{test['max_score']:g}  {test['name']}")
        if test["score"] < test["max_score"] and test.get("output"):
            log("       " + test["output"].replace("\n", "\n       "))
    log(f"[autograder] score {data.get('score')} in {data.get('execution_time')} s -> {results_path}")
    return data
