"""Fixtures shared by the case suites (tests/test_zoo.py, tests/test_hostile.py, tests/test_messy.py;
the case format is tests/cases.py).

    gradings       (module) the subprocess gradings of the requesting module's SUITE: every (case, mode)
                   its selected tests ask for, started together when the first test needs one
    zoo_graded     (session) graded(case) -> (results.json data, whether training ran): one in-process
                   grading per zoo case, cached for the session
    variants_graded  (session) the same for the cases of tests/variants/, each on its problems
    assembled      assembled(suite, case) -> a fresh folder holding the case's submission
"""
import json
import os
import shutil
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.runner")

from tests import cases, runner  # noqa: E402  (after the rewrite hook)

ZOO_ITERATIONS = 20
ZOO_TRAIN_ALL = os.environ.get("ZOO_TRAINING", "").lower() == "all"


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
def zoo_graded(tmp_path_factory):
    """graded(case) -> (results, training): the zoo case graded in this process, as `python -m
    autograder grade` does, with ZOO_ITERATIONS training iterations; training only where the case
    states its score (or ZOO_TRAINING=all). ZOO_DUMP=DIR keeps each results.json."""
    done = {}

    def graded(case):
        if case in done:
            return done[case]
        from autograder import config
        from autograder.grade import grade

        training = ZOO_TRAIN_ALL or "training" in cases.expected(cases.meta("submissions", case))
        families = None if training else [family for family in config.CHECKS if family != "training"]
        work = tmp_path_factory.mktemp(case)
        folder = cases.assemble("submissions", case, work / "submission")
        results_path = work / "results.json"
        data = grade(folder, results_path, iterations=ZOO_ITERATIONS, log=lambda *args: None, families=families)
        on_disk = json.loads(results_path.read_text())
        assert on_disk["score"] == data["score"]
        if os.environ.get("ZOO_DUMP"):        # keep every results.json for a look
            Path(os.environ["ZOO_DUMP"]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results_path, Path(os.environ["ZOO_DUMP"]) / f"{case}.json")
        done[case] = on_disk, training
        return done[case]
    return graded


@pytest.fixture(scope="session")
def variants_graded(tmp_path_factory):
    """graded(case) -> (results, trained families): the case of tests/variants/ graded in this process on its
    problems, as `python -m autograder grade --problems ...` does, with ZOO_ITERATIONS training iterations;
    each problem's training only where the case states its score (or ZOO_TRAINING=all)."""
    done = {}

    def graded(case):
        if case in done:
            return done[case]
        from autograder.grade import grade

        meta = cases.meta("variants", case)
        problem_set = cases.problem_set(meta)
        stated = cases.expected(meta)
        trainings = [f for f in problem_set.checks if f.rsplit("/", 1)[-1] == "training"]
        trained = [f for f in trainings if ZOO_TRAIN_ALL or f in stated]
        families = [f for f in problem_set.checks if f not in trainings or f in trained]
        work = tmp_path_factory.mktemp(case)
        folder = cases.assemble("variants", case, work / "submission")
        results_path = work / "results.json"
        data = grade(folder, results_path, iterations=ZOO_ITERATIONS, log=lambda *args: None, families=families,
                     problems=problem_set)
        on_disk = json.loads(results_path.read_text())
        assert on_disk["score"] == data["score"]
        if os.environ.get("ZOO_DUMP"):
            Path(os.environ["ZOO_DUMP"]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results_path, Path(os.environ["ZOO_DUMP"]) / f"{case}.json")
        done[case] = on_disk, trained
        return done[case]
    return graded
