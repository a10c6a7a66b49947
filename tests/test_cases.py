"""Every case of the graded suites is well formed (tests/cases.py), in seconds and without grading:
no unknown key, expected scores as words that config's points resolve, check names and tags that
config knows, edits that each apply exactly once, a submission that assembles, the line numbers
the messages name; and the format's own rules (words, fails, edits, assembling) on small examples."""
import ast
import json

import pytest

from autograder import config, submission_files
from tests import cases

ALL = [(suite, case) for suite in cases.SUITES for case in cases.names(suite)]
MESSY_ITEMS = ("1", "3", "4", "works")


@pytest.mark.parametrize("suite, case", [pytest.param(*c, id="/".join(c)) for c in ALL])
def test_case_is_well_formed(suite, case, tmp_path):
    found = cases.problems(suite, case, tmp_path / "submission")
    assert not found, f"{suite}/{case}:\n" + "\n".join(found)


def test_suites_are_there():
    assert {suite: len(cases.names(suite)) >= 20 for suite in cases.SUITES} == dict.fromkeys(cases.SUITES, True)


def test_messy_covers_every_item_and_explains_every_loss(tmp_path):
    """Each issue item has three cases or more; a case that loses points says which words explain it;
    a full-marks case holds code that parses once decoded."""
    for case in cases.names("messy"):
        meta = cases.meta("messy", case)
        assert meta["item"] in MESSY_ITEMS, case
        full = all(want.word == "full" for want in cases.expected(meta).values())
        assert full or meta.get("says"), f"{case}: a case that loses points must say which words explain it"
        for relative, spec in meta["files"].items():
            if full and "from" in spec:
                ast.parse(submission_files.decode_source(cases.content(spec, relative), relative)[0])
    for item in MESSY_ITEMS:
        assert sum(cases.meta("messy", case)["item"] == item for case in cases.names("messy")) >= 3, item


# ---------------------------------------------------------------- the format's rules

def _tests(family, failing=()):
    """results.json entries of one tag in which the checks named in `failing` score 0."""
    return [{"number": check.number, "tags": [family], "max_score": check.points,
             "score": 0.0 if name in failing else check.points} for name, check in config.CHECKS[family].items()]


def test_words_and_fails_resolve_against_config():
    family = "sample_gaussian"
    full = sum(check.points for check in config.CHECKS[family].values())
    everything, nothing = _tests(family), _tests(family, failing=config.CHECKS[family])
    one = _tests(family, failing=["inputs_unchanged"])
    for word, holds in {"full": (True, False, False), "none": (False, True, False),
                        "some": (False, False, True), "less": (False, True, True)}.items():
        want = cases.Expected(family, word=word)
        assert [want.problem(t) is None for t in (everything, nothing, one)] == list(holds), word
    exact = cases.Expected(family, fails=("inputs_unchanged",))
    assert exact.score == full - config.CHECKS[family]["inputs_unchanged"].points
    assert exact.problem(one) is None
    assert exact.problem(_tests(family, failing=["shape_dtype_device"])) is not None    # another check failed
    assert exact.problem(everything) is not None and exact.problem(nothing) is not None
    assert cases.score_problems({"scores": {family: "full"}}, everything) == []
    assert cases.score_problems({"scores": {family: "full"}}, one) != []


def _write_case(tmp_path, monkeypatch, meta, literal=None):
    suite = cases.Suite(tmp_path, cases.SUITES["hostile"].keys, cases.SUITES["hostile"].required)
    monkeypatch.setitem(cases.SUITES, "scratch", suite)
    (tmp_path / "one").mkdir(parents=True)
    (tmp_path / "one" / "case.json").write_text(json.dumps(meta))
    for name, text in (literal or {}).items():
        (tmp_path / "one" / name).write_text(text)
    return lambda: cases.problems("scratch", "one", tmp_path / "out")


def _meta(**changes):
    meta = {"item": "test", "why": "a test", "files": {"utils.py": {"from": "solution:utils.py"}},
            "scores": dict.fromkeys(config.CHECKS, "full")}
    meta.update(changes)
    return meta


def test_problems_are_found(tmp_path, monkeypatch):
    """Each kind of mistake in a case.json is reported (and a good case reports none)."""
    assert _write_case(tmp_path / "good", monkeypatch, _meta())() == []
    bad = {
        "unknown key": _meta(hint=["x"]),
        "is none of": _meta(scores={**dict.fromkeys(config.CHECKS, "full"), "kl_normal": 5}),
        "no expected score": _meta(scores={"kl_normal": "full"}),
        "unknown tag": _meta(scores={**dict.fromkeys(config.CHECKS, "full"), "bonus": "full"}),
        "checks of": _meta(fails={"kl_normal": ["1.2"]}),
        "in both scores and fails": _meta(fails={"training": ["trained_nelbo"]}),
        "keeps all its points": _meta(says={"kl_normal": ["x"]}),
        "must match exactly once": _meta(files={"utils.py": {"from": "solution:utils.py", "edits": [["def ", "x"]]}}),
        "matches 0 times": _meta(files={"utils.py": {"from": "solution:utils.py", "edits": [["no such", "x"]]}}),
        "unknown source": _meta(files={"utils.py": {"from": "solution:nns.py"}}),
        "unknown key 'form'": _meta(files={"utils.py": {"form": "solution:utils.py"}}),
        "mode": _meta(modes=["grade", "gpu"]),
        "does not hold": _meta(scores={**dict.fromkeys(config.CHECKS, "full"), "kl_normal": "none"},
                         says={"kl_normal": ["utils.py:1"]}, line_of="def kl_normal"),
    }
    for number, (expected, meta) in enumerate(bad.items()):
        found = _write_case(tmp_path / str(number), monkeypatch, meta)()
        assert any(expected in problem for problem in found), (expected, found)
    found = _write_case(tmp_path / "literal", monkeypatch, _meta(), {"utils.py": "x = 1\n", "torch.py": ""})()
    assert any("both in files and a literal file" in p for p in found), found
    assert any("torch.py" in p for p in found), found


def test_assemble_edits_append_placeholders_and_planted(tmp_path, monkeypatch):
    meta = _meta(files={"utils.py": {"from": "solution:utils.py", "edits": [["import math", ["import math", "import os"]]],
                                     "append": "X = '@@PIDDIR@@'\n"},
                        "sub/vae.py": {"from": "handout:vae.py", "age": 3600}})
    _write_case(tmp_path, monkeypatch, meta, {"conftest.py.planted": "raise SystemExit('@@VIEWDIR@@')\n"})
    folder = cases.assemble("scratch", "one", tmp_path / "out", pid_dir="/p", view_dir="/v")
    utils = (folder / "utils.py").read_text()
    assert utils.startswith(cases.reference("solution:utils.py").split("import math")[0] + "import math\nimport os\n")
    assert utils.endswith("\nX = '/p'\n") and "BEGIN SOLUTION" not in utils
    assert (folder / "conftest.py").read_text() == "raise SystemExit('/v')\n"
    assert (folder / "sub" / "vae.py").read_text() == (cases.paths.ASSIGNMENT / "vae.py").read_text()
    assert (folder / "utils.py").stat().st_mtime - (folder / "sub" / "vae.py").stat().st_mtime == pytest.approx(3600)


def test_edits_between_rebuilds_the_text():
    reference = cases.reference("solution:utils.py")
    text = reference.replace("import math\n", "import math\nimport sys\n").replace(
        "    kl = element_wise.sum(-1)\n", "    kl = element_wise.sum(-1)\n    sys.exit(0)\n") + "\n\nEXTRA = 1\n"
    spec = cases.spec_for("solution:utils.py", text)
    assert cases.content(spec) == text.encode()
    assert len(spec["edits"]) == 2 and spec["append"] == ["", "", "EXTRA = 1", ""]
