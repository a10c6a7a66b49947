"""Hostile and broken submissions (issue 4, items 4 and 5), graded through the real paths.

Every folder tests/hostile/<case>/ is one submission in the format of tests/cases.py: mostly the
reference utils.py and vae.py with the hostile code edited in, and planted files beside them
(*.planted). case.json says what the submission does (item, why) and what an honest grader gives
it (scores, fails, says); tests/runner.py grades each (case, mode) and checks what every grading
must show (bounded time, a valid and honest results.json, no forged value, no leaked file content,
nothing left running). HOSTILE_JOBS (default 2) gradings run at a time; HOSTILE_KEEP=1 keeps them.
"""
import json

import pytest

from autograder import results
from tests import runner

SUITE = "hostile"


@pytest.mark.parametrize("case, mode", list(runner.params(SUITE)))
def test_hostile_submission(case, mode, gradings):
    gradings.checked(case, mode)


@pytest.mark.parametrize("case, mode", [("os_exit_in_kl_normal", "grade")])
def test_crash_messages_read_as_sentences(case, mode, gradings):
    record = gradings.result(case, mode)
    outputs = [t.get("output", "") for t in json.loads(record["text"])["tests"]]
    crashed = [o for o in outputs if "exited with code 0" in o]
    assert crashed, outputs
    print(f"{case} [{mode}]: {crashed[0].splitlines()[0]}")
    assert not [o for o in crashed if "your code the process" in o], crashed[0]


@pytest.mark.parametrize("case, mode", [("hang_everywhere", "container-sigterm"), ("hang_at_import", "container-sigterm")])
def test_sigterm_while_a_sandbox_hangs_ends_grading_with_a_result(case, mode, gradings):
    """The simulated container, SIGTERMed while a sandbox hangs (in a check, or in the import that
    starts it): it must stop within SIGTERM_GRACE_SECONDS (tests/runner.py), with a valid results.json."""
    record = gradings.result(case, mode)
    print(f"{case} [{mode}]: ended {record['after_sigterm']} s after SIGTERM (None: still running after "
          f"{runner.SIGTERM_GRACE_SECONDS} s, then killed)")
    assert record["after_sigterm"] is not None, f"still grading {runner.SIGTERM_GRACE_SECONDS} s after SIGTERM"
    if case == "hang_at_import":        # the hanging import is killed, not waited for (its limit is 30 s)
        assert record["after_sigterm"] < 15, record["log"]
    assert not record["timed_out"] and record["rc"] == 0, record["log"]
    results.validate(json.loads(record["text"]))
