"""Fixtures shared by the case suites (tests/test_zoo.py, tests/test_hostile.py, tests/test_messy.py;
the case format is tests/cases.py).

    gradings       (module) the subprocess gradings of the requesting module's SUITE: every (case, mode)
                   its selected tests ask for, started together when the first test needs one
    zoo_graded     (session) graded(case) -> (results.json data, whether training ran): one grading per
                   zoo case through the `grade` function, in a pool of processes (tests/inprocess.py)
    variants_graded  (session) the same for the cases of tests/variants/, each on its problems
    assembled      assembled(suite, case) -> a fresh folder holding the case's submission
"""
import pytest

pytest.register_assert_rewrite("tests.runner")

from tests import cases, inprocess, runner  # noqa: E402  (after the rewrite hook)


@pytest.fixture(scope="module")
def gradings(request):
    """Runs the gradings the requesting module's selected tests name by their (case, mode) params."""
    module = request.module
    wanted = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is module and "case" in params and "mode" in params:
            wanted.append((params["case"], params["mode"]))
    started = runner.Gradings(module.SUITE, list(dict.fromkeys(wanted)))
    yield started
    started.close()


@pytest.fixture
def assembled(tmp_path):
    counter = iter(range(10**6))

    def make(suite, case, **places):
        return cases.assemble(suite, case, tmp_path / f"{case}-{next(counter)}", **places)
    return make


@pytest.fixture(scope="session")
def zoo_graded(request, tmp_path_factory):
    """graded(case) -> (results, training): the zoo case graded as `python -m autograder grade` does, with
    20 training iterations; training only where the case states its score (or ZOO_TRAINING=all).
    ZOO_DUMP=DIR keeps each results.json. The session's cases are graded ZOO_JOBS at a time
    (tests/inprocess.py)."""
    graded = inprocess.Graded("submissions", inprocess.wanted_by(request.session, "zoo_graded"),
                              tmp_path_factory.mktemp("zoo"))

    def zoo(case):
        results, trained = graded(case)
        return results, bool(trained)
    yield zoo
    graded.close()


@pytest.fixture(scope="session")
def variants_graded(request, tmp_path_factory):
    """graded(case) -> (results, trained families): the case of tests/variants/ graded on its problems, as
    `python -m autograder grade --problems ...` does, with 20 training iterations; each problem's training
    only where the case states its score (or ZOO_TRAINING=all). VARIANTS_JOBS at a time."""
    graded = inprocess.Graded("variants", inprocess.wanted_by(request.session, "variants_graded"),
                              tmp_path_factory.mktemp("variants"))
    yield graded
    graded.close()
