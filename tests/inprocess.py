"""The zoo's and the variants' gradings (fixtures `zoo_graded`, `variants_graded` of tests/conftest.py):
each case graded as `python -m autograder grade` grades it (the `grade` function, with the scoring in
the calling process), in a pool of <SUITE>_JOBS spawned processes (ZOO_JOBS, VARIANTS_JOBS; default: the
CPUs this process may use, at most 2), each grading its share of the cases one after another with the
CPUs shared out (VAE_THREADS, as `regrade` does).

Every case the session's selected tests name is started when the first one is asked for, in the tests'
order; one the tests did not name is graded when asked for.
"""
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from autograder.regrade import batch
from tests import cases

TRAIN_ALL = os.environ.get("ZOO_TRAINING", "").lower() == "all"


def families_of(suite, case, train_all=TRAIN_ALL):
    """(problem set or None, families to grade, trained families) of a case: training only where the
    case states its score (or ZOO_TRAINING=all), since it costs about half of a grade."""
    meta = cases.meta(suite, case)
    stated = cases.expected(meta)
    if suite == "submissions":
        from autograder import config
        training = train_all or "training" in stated
        families = [family for family in config.CHECKS if training or family != "training"]
        return None, families, ["training"] if training else []
    problem_set = cases.problem_set(meta)
    trainings = [f for f in problem_set.checks if f.rsplit("/", 1)[-1] == "training"]
    trained = [f for f in trainings if train_all or f in stated]
    families = [f for f in problem_set.checks if f not in trainings or f in trained]
    return problem_set, families, trained


def grade_case(suite, case, work, train_all=TRAIN_ALL, dump=""):
    """Grades one case of `suite` in this process into `work` -> (results.json's data, trained families)."""
    from autograder.grade import grade

    problem_set, families, trained = families_of(suite, case, train_all)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    folder = cases.assemble(suite, case, work / "submission")
    results_path = work / "results.json"
    options = {} if problem_set is None else {"problems": problem_set}
    data = grade(folder, results_path, iterations=cases.ITERATIONS, log=lambda *args: None, families=families, **options)
    on_disk = json.loads(results_path.read_text())
    assert on_disk["score"] == data["score"], (on_disk["score"], data["score"])
    if dump:                       # keep every results.json for a look
        Path(dump).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results_path, Path(dump) / f"{case}.json")
    return on_disk, trained


def _share_cpus(threads):
    if threads and "VAE_THREADS" not in os.environ:
        os.environ["VAE_THREADS"] = str(threads)


class Graded:
    """graded(case) -> (results, trained families), each case graded once in the pool."""

    def __init__(self, suite, wanted, scratch):
        self.suite, self.wanted, self.scratch = suite, list(dict.fromkeys(wanted)), Path(scratch)
        variable = "ZOO" if suite == "submissions" else suite.upper()
        cpus = batch.available_cpus()
        self.jobs = max(1, int(os.environ.get(f"{variable}_JOBS") or min(2, cpus)))
        self.threads = batch.threads_per_grading(self.jobs, cpus)
        self._pool = None
        self._futures = {}

    def _submit(self, case):
        if case not in self._futures:
            self._futures[case] = self._pool.submit(grade_case, self.suite, case, str(self.scratch / case),
                                                    TRAIN_ALL, os.environ.get("ZOO_DUMP", ""))
        return self._futures[case]

    def __call__(self, case):
        if self._pool is None:
            # spawn: fresh interpreters, nothing of this process's torch threads or state
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_share_cpus, initargs=(self.threads,))
            for wanted in self.wanted:
                self._submit(wanted)
        return self._submit(case).result()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def wanted_by(session, fixture):
    """The `case` params of the session's selected tests that use `fixture`, in their order."""
    return [item.callspec.params["case"] for item in session.items
            if fixture in getattr(item, "fixturenames", ()) and "case" in getattr(
                getattr(item, "callspec", None), "params", {})]
