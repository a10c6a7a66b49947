"""The variants' zoo: the cases of tests/variants/ (problems other than the CS236 VAE, alone and
beside it) graded through the real `grade` path on their problems.

test_scores: correct CVAEs and beta-VAEs get full marks (training included, 20 iterations), each buggy
one loses points in its problem's negative_elbo_bound only (exactly its "fails" where the case lists them), a bug of
the CS236 VAE's utils.py graded beside a CVAE costs points in that function only, the untouched
handouts get nothing. test_feedback: no traceback and no internal error reaches the student; every
failing check of a buggy case says something specific and, together, the words of its "hint";
results.json tags every check `problem/function` when several problems are graded, the function
alone when one is. Regenerate the cases with `python tests/variants/make_variants.py`.
"""
import importlib.util

import pytest

from tests import cases

SUITE = "variants"
FOLDER = cases.SUITES[SUITE].folder
TRACEBACK = "Traceback (most recent call last)"


def _generator():
    spec = importlib.util.spec_from_file_location("make_variants", FOLDER / "make_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def show(tests):
    return "\n".join(f"  {t.get('number')} {t.get('tags')} {t.get('name', '')}: {t['score']:g}/{t['max_score']:g} "
                     f"{t.get('output', '')[:400]!r}" for t in tests)


def test_variants_are_generated_and_complete():
    """The committed case.json files are what make_variants.py generates; each new problem has at least 5
    correct styles and 10 bugs of its own, and its handout."""
    expected = _generator().render()
    committed = {str(p.relative_to(FOLDER)): p.read_text() for p in FOLDER.rglob("case.json")}
    assert committed == expected, "tests/variants is out of date: run `python tests/variants/make_variants.py`"
    names = cases.names(SUITE)
    for problem in ("cvae", "beta", "logvar", "mmd", "ae", "conv"):
        assert sum(n.startswith(f"{problem}_") and n.endswith("_full") for n in names) >= 5
        assert sum(n.startswith(f"{problem}_") and n.endswith("_buggy") for n in names) >= 10
        assert f"{problem}_skeleton_zero" in names
    assert "both_skeleton_zero" in names and "three_skeleton_zero" in names


@pytest.mark.parametrize("case", cases.names(SUITE))
def test_scores(case, variants_graded):
    """Per-tag scores: those of case.json."""
    meta = cases.meta(SUITE, case)
    results, trained = variants_graded(case)
    problem_set = cases.problem_set(meta)
    graded = cases.by_family(results["tests"], problem_set)
    assert set(graded) == {f for f in problem_set.checks if f.rsplit("/", 1)[-1] != "training" or f in trained}
    dishonest = cases.score_problems(meta, results["tests"])
    assert not dishonest, f"{case} ({meta['why']}):\n" + "\n".join(dishonest) + "\n" + show(results["tests"])


@pytest.mark.parametrize("case", cases.names(SUITE))
def test_feedback(case, variants_graded):
    """What the student reads: no traceback, no internal error, tags per problem; a specific message."""
    meta = cases.meta(SUITE, case)
    results, _ = variants_graded(case)
    problem_set = cases.problem_set(meta)
    for test in results["tests"]:
        (tag,) = test["tags"]
        assert ("/" in tag) == (len(problem_set.problems) > 1), (tag, problem_set)
    everything = "\n".join(t.get("output", "") for t in results["tests"]) + results.get("output", "")
    assert TRACEBACK not in everything, f"a traceback reached the student:\n{show(results['tests'])}"
    assert "autograder itself failed" not in everything and "not your fault" not in everything, \
        f"an internal error of the grader:\n{show(results['tests'])}"
    failing = [t for t in results["tests"] if t["score"] < t["max_score"]]
    if case.endswith("_zero"):
        assert failing and all("not implemented yet" in t.get("output", "") for t in failing), show(failing)
    elif case.endswith("_buggy"):
        assert failing, f"{case}: no check failed"
        for test in failing:
            assert len(test.get("output", "").strip()) >= 40, f"{test['name']}: no specific message"
        said = "\n".join(t.get("output", "") for t in failing)
        for word in meta.get("hint", []):
            assert word in said, f"{case}: the feedback never says {word!r}:\n{show(failing)}"
    else:
        assert not failing, show(failing)
