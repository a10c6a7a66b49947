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
from .problems import of as problem_set_of
from .reference import runtime
from .text import clean, say

FAMILY_ORDER = tuple(config.CHECKS)          # the CS236 VAE's; a grading's own: its problem set's checks


def _suite(submission, families=None):
    """Every check against `submission`, or those of the given student functions (tags) only."""
    suite = unittest.TestSuite()
    for case in checks.bind(submission):
        for test in unittest.defaultTestLoader.loadTestsFromTestCase(case):
            if families is None or getattr(getattr(test, test._testMethodName), "__family__", None) in families:
                suite.addTest(test)
    return suite


def _summary(tests, problem_set):
    lines = []
    for tag in (problem_set.tag(family) for family in problem_set.checks):
        own = [t for t in tests if tag in t.get("tags", [])]
        got, out_of = sum(t["score"] for t in own), sum(t["max_score"] for t in own)
        lines.append(f"{tag}: {got:g} / {out_of:g}")
    return "\n".join(lines)


def _finish(data, started, submission):
    tests = sorted(data["tests"], key=lambda t: [int(p) for p in t.get("number", "0").split(".")])
    problem_set = problem_set_of(submission)
    for test in tests:
        # A check's family ("cvae/negative_elbo_bound") as results.json shows it: `problem/function` when
        # several problems are graded, the function alone when one is.
        for family in [tag for tag in test.get("tags", []) if tag in problem_set.checks]:
            test["tags"] = [problem_set.tag(family)]
            if test.get("name", "").startswith(f"{family}: "):        # the check's title says its tag too
                test["name"] = problem_set.tag(family) + test["name"][len(family):]
        # A check's output may quote the submission (its exception messages, what it printed): clean it.
        test["output"] = results.cap(clean(test.get("output", "")).replace("Test Failed: ", "", 1).strip())
        test["score"] = float(test.get("score", 0.0))
        test["max_score"] = float(test.get("max_score", 0.0))
        if not test["output"]:
            del test["output"]
    data["tests"] = tests
    data["score"] = round(sum(t["score"] for t in tests), 4)
    data["execution_time"] = round(time.perf_counter() - started, 2)
    data["output"] = submission.selection.report() + "\n\n" + _summary(tests, problem_set)
    data["leaderboard"] = training.leaderboards(submission)
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
          families=None, stopper=None, problems=None):
    """Grade `folder`; write results_path; return the results dict. Never raises for a bad submission.
    `problems`: the problems graded (names or a ProblemSet; default: those this grader serves).
    `families`: only the checks of these student functions (families or results.json tags; default: all).
    `stopper`: a Stopper the caller's signal handler calls (Gradescope's timeout): the sandboxes are
    killed, every remaining check fails at once, and the results so far are written.
    Nothing after the write can undo it: every line logged is cleaned, and a failing log only loses lines."""
    started = time.perf_counter()
    log = _never_failing(log)
    runtime.configure_threads()     # the trusted side's own torch pool, sized from the CPU quota
    submission = submission_module.Submission(folder, iterations, device, python, problems)
    if families is not None:
        families = {submission.problem_set.family(f) if f not in submission.problem_set.checks else f
                    for f in families}
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
