"""The submission zoo: every case in tests/submissions/ graded through the real `grade` path.

test_scores: correct styles ("full") get full marks in sample_gaussian, kl_normal and
negative_elbo_bound (and training); one-mistake submissions ({"buggy": tag}) lose points in
that tag and keep full marks in the other two unit tags (and where case.json lists "fails",
exactly those checks of the tag fail); the untouched handout ("zero") scores 0 in total.
test_feedback: no traceback and no internal error reaches the student; every failing test of
a buggy case says something specific and the words of the case's "hint"; every failing
output of the handout says "not implemented yet".

Each case is graded once (in-process, `autograder.grade.grade`, 20 training iterations).
Training (tag `training`) runs for the correct cases and the handout, where its result is
asserted; for the buggy cases ("training aside") it is left out of the suite unless
ZOO_TRAINING=all, since it costs about half of a grade. ZOO_DUMP=DIR keeps each results.json.
Regenerate the cases with `python tests/submissions/make_zoo.py`.
"""
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parent / "submissions"
ROOT = ZOO.parent.parent
UNIT_TAGS = ("sample_gaussian", "kl_normal", "negative_elbo_bound")
ITERATIONS = 20
TRAIN_ALL = os.environ.get("ZOO_TRAINING", "").lower() == "all"
TRACEBACK = "Traceback (most recent call last)"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_zoo", ZOO / "make_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case_names():
    return sorted(p.name for p in ZOO.iterdir() if (p / "case.json").is_file())


def _meta(case):
    return json.loads((ZOO / case / "case.json").read_text())


def assemble(case, target):
    """The submission folder of `case` in `target`: base files overlaid with the case's files."""
    meta = _meta(case)
    base = {"solution": ROOT / "solution", "skeleton": ROOT / "assignment"}[meta["base"]]
    home = target / meta["subdir"] if meta.get("subdir") else target
    home.mkdir(parents=True, exist_ok=True)
    for name in ("utils.py", "vae.py"):
        shutil.copyfile(base / name, home / name)
    source = ZOO / case
    for path in source.rglob("*"):
        if path.is_file() and path.name != "case.json":
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
    return target


def by_tag(results):
    tags = {}
    for test in results["tests"]:
        (tag,) = test["tags"]
        tags.setdefault(tag, []).append(test)
    return tags


def score(tests):
    return sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)


def show(tests):
    return "\n".join(f"  {t.get('number')} {t.get('name', '')}: {t['score']:g}/{t['max_score']:g} "
                     f"{t.get('output', '')[:400]!r}" for t in tests)


# Where the grader is known to be wrong (reported; see the reasons). strict: a fix turns these red,
# so that the entry is removed.
SCORE_GAPS = {}
FEEDBACK_GAPS = {}
_GRADED = {}


def graded(case, tmp_path_factory):
    """grade(case) -> results dict (once per case per session), in this process, as
    `python -m autograder grade` does."""
    if case in _GRADED:
        return _GRADED[case]
    from autograder import checks
    from autograder.grade import grade

    expected = _meta(case)["expected"]
    training = TRAIN_ALL or not isinstance(expected, dict)
    everything = checks.ALL
    if not training:
        checks.ALL = tuple(c for c in everything if c is not checks.TrainingChecks)
    try:
        work = tmp_path_factory.mktemp(case)
        folder = assemble(case, work / "submission")
        results_path = work / "results.json"
        data = grade(folder, results_path, iterations=ITERATIONS, log=lambda *args: None)
    finally:
        checks.ALL = everything
    on_disk = json.loads(results_path.read_text())
    assert on_disk["score"] == data["score"]
    if os.environ.get("ZOO_DUMP"):        # keep every results.json for a look
        Path(os.environ["ZOO_DUMP"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results_path, Path(os.environ["ZOO_DUMP"]) / f"{case}.json")
    _GRADED[case] = on_disk, training
    return _GRADED[case]


def _params(gaps):
    return [pytest.param(case, marks=pytest.mark.xfail(reason=gaps[case], strict=True)) if case in gaps else case
            for case in _case_names()]


def test_zoo_is_generated_and_complete():
    """The committed files are exactly what make_zoo.py generates; the zoo has its minimum size."""
    generator = _load_generator()
    expected = generator.render()
    committed = {str(p.relative_to(ZOO)): p.read_text() for p in ZOO.rglob("*")
                 if p.is_file() and p.parent != ZOO and "__pycache__" not in p.parts}
    stale = sorted(set(committed) - set(expected))
    missing = sorted(set(expected) - set(committed))
    changed = sorted(p for p in set(expected) & set(committed) if expected[p] != committed[p])
    assert not (stale or missing or changed), \
        f"tests/submissions is out of date; run `python tests/submissions/make_zoo.py`. " \
        f"stale={stale} missing={missing} changed={changed}"
    kinds = [_meta(case)["expected"] for case in _case_names()]
    assert sum(k == "full" for k in kinds) >= 6
    assert sum(isinstance(k, dict) for k in kinds) >= 20
    assert kinds.count("zero") == 1
    for tag in UNIT_TAGS:
        assert sum(isinstance(k, dict) and k["buggy"] == tag for k in kinds) >= 5, tag


def test_cases_differ_from_base_only_in_student_regions():
    """Outside the student functions, every case file is the provided code, byte for byte."""
    generator = _load_generator()
    solution = {name: (ROOT / "solution" / name).read_text() for name in ("utils.py", "vae.py")}
    for case in _case_names():
        for path in (ZOO / case).rglob("*.py"):
            if "backup" in path.parts:
                continue
            text = path.read_text()
            assert _outside_regions(text, generator) == _outside_regions(solution[path.name], generator), \
                f"{case}/{path.relative_to(ZOO / case)} changes provided code"


def _outside_regions(text, generator):
    """The text with every student function's body replaced by a placeholder, and without the
    top-level functions the student added (their own helpers)."""
    import ast
    tree = ast.parse(text)
    lines = text.splitlines()
    keep = list(lines)
    provided = {node.name for path in ("utils.py", "vae.py")
                for node in ast.parse((ROOT / "solution" / path).read_text()).body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name not in provided:
            keep[node.lineno - 1 - len(node.decorator_list):node.end_lineno] = \
                [None] * (node.end_lineno - node.lineno + 1 + len(node.decorator_list))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in generator.FILE_OF:
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # keep the docstring
            body = [b for b in body if not (isinstance(b, ast.Return) and b is node.body[-1])]
            if body:
                for i in range(body[0].lineno - 1, body[-1].end_lineno):
                    keep[i] = None
    out = [line for line in keep if line is not None
           and not line.lstrip().startswith(("import ", "from ", "# BEGIN SOLUTION", "# END SOLUTION"))]
    return "\n".join(out).rstrip()


@pytest.mark.parametrize("case", _params(SCORE_GAPS))
def test_scores(case, tmp_path_factory):
    """Per-tag scores: full marks / losses in the buggy function's tag only / zero."""
    meta = _meta(case)
    expected = meta["expected"]
    results, training = graded(case, tmp_path_factory)
    tags = by_tag(results)
    assert set(UNIT_TAGS) <= set(tags), sorted(tags)
    if expected == "full":
        for tag in UNIT_TAGS + (("training",) if training else ()):
            got, out_of = score(tags[tag])
            assert got == out_of, f"{case} ({meta['why']}) is correct but lost points in {tag}:\n{show(tags[tag])}"
    elif expected == "zero":
        assert "training" in tags
        assert results["score"] == 0, show(results["tests"])
        assert all(t["score"] == 0 for t in results["tests"]), show(results["tests"])
    else:
        buggy = expected["buggy"]
        got, out_of = score(tags[buggy])
        assert got < out_of, f"{case} ({meta['why']}) lost no points in {buggy}:\n{show(tags[buggy])}"
        if "fails" in meta:     # one property per check: exactly these checks see the mistake
            failing = sorted(t["number"] for t in tags[buggy] if t["score"] < t["max_score"])
            assert failing == sorted(meta["fails"]), \
                f"{case}: expected only {meta['fails']} to fail in {buggy}, got {failing}:\n{show(tags[buggy])}"
        for tag in UNIT_TAGS:
            if tag != buggy:
                got, out_of = score(tags[tag])
                assert got == out_of, f"{case}: a {buggy} bug cost points in {tag}:\n{show(tags[tag])}"


@pytest.mark.parametrize("case", _params(FEEDBACK_GAPS))
def test_feedback(case, tmp_path_factory):
    """What the student reads: no traceback, no internal error; a specific message naming the mistake."""
    meta = _meta(case)
    expected = meta["expected"]
    results, _ = graded(case, tmp_path_factory)
    everything = "\n".join(t.get("output", "") for t in results["tests"]) + results.get("output", "")
    assert TRACEBACK not in everything, f"a traceback reached the student:\n{show(results['tests'])}"
    assert "autograder itself failed" not in everything and "not your fault" not in everything, \
        f"an internal error of the grader:\n{show(results['tests'])}"
    failing = [t for t in results["tests"] if t["score"] < t["max_score"]]
    if expected == "zero":
        for test in failing:
            assert "not implemented yet" in test.get("output", ""), f"{test['name']}: {test.get('output')!r}"
    elif isinstance(expected, dict):
        for test in failing:
            message = test.get("output", "").strip()
            assert len(message) >= 40, f"{test['name']}: no specific message: {message!r}"
            assert "not implemented yet" not in message, message
        said = "\n".join(t.get("output", "") for t in failing)
        for word in meta.get("hint", []):
            assert word in said, f"{case}: the feedback never says {word!r}:\n{show(failing)}"
