"""results.json: Gradescope's schema, atomic writes, and a valid file on failure."""
import json

import pytest

from autograder import results


def valid():
    return {"score": 3.0, "execution_time": 1.5, "output": "x", "tests": [
        {"name": "a", "score": 1.0, "max_score": 2.0, "status": "failed", "tags": ["kl_normal"], "number": "2.1",
         "visibility": "visible", "output": "why"}],
        "leaderboard": [{"name": "NELBO", "value": 101.2, "order": "asc"}]}


def test_valid_results_pass_and_round_trip(tmp_path):
    path = results.write(valid(), tmp_path / "results" / "results.json")
    assert json.loads(path.read_text()) == valid()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".results-")]


@pytest.mark.parametrize("mutate, problem", [
    (lambda r: r.update(bogus=1), "unknown top-level keys"),
    (lambda r: r["tests"][0].update(weight=1), "unknown keys"),
    (lambda r: r.update(execution_time="1.50"), "execution_time must be a finite number"),
    (lambda r: r["tests"][0].update(score=float("nan")), "score must be a finite number"),
    (lambda r: r["tests"][0].update(status="ok"), "status must be passed or failed"),
    (lambda r: r["tests"][0].update(visibility="secret"), "visibility"),
    (lambda r: r["tests"][0].update(number=2.1), "number a string"),
    (lambda r: r["leaderboard"][0].update(order="up"), "order must be asc or desc"),
])
def test_schema_violations_are_refused(mutate, problem):
    broken = valid()
    mutate(broken)
    with pytest.raises(results.SchemaError, match=problem):
        results.validate(broken)


def test_a_refused_write_leaves_the_old_file(tmp_path):
    path = results.write(valid(), tmp_path / "results.json")
    broken = valid()
    broken["bogus"] = 1
    with pytest.raises(results.SchemaError):
        results.write(broken, path)
    assert json.loads(path.read_text()) == valid()


def test_failure_results_are_valid():
    results.validate(results.failure("boom", 2.0))


def test_long_outputs_are_capped():
    text = results.cap("x" * 100000, limit=1000)
    assert len(text) <= 1000 and "more characters cut" in text


def test_text_a_submission_controls_is_written_clean(tmp_path):
    """Lone surrogates, NULs and control characters (from a submission's exception message) never
    make the write fail; they arrive as U+FFFD, tabs and newlines kept."""
    dirty = valid()
    dirty["tests"][0]["output"] = "bad \ud800 value\x00 and \x1b[31m red\tok\nnext"
    path = results.write(dirty, tmp_path / "results.json")
    path.read_bytes().decode("ascii")
    written = json.loads(path.read_text())["tests"][0]["output"]
    assert written == "bad \ufffd value\ufffd and \ufffd[31m red\tok\nnext"


def test_text_cannot_reorder_or_break_what_is_shown(tmp_path):
    """Bidirectional overrides, isolates and marks (text displayed in another order than stored) and
    U+2028/U+2029 (line breaks to JavaScript) arrive as U+FFFD; other non-ASCII text is kept."""
    dirty = valid()
    dirty["tests"][0]["output"] = ("score \u202e01/0\u202c \u2067x\u2069 \u200f\u200e\u061c a\u2028b\u2029c "
                                   "\u00e9\u4e2d")
    path = results.write(dirty, tmp_path / "results.json")
    written = json.loads(path.read_text())["tests"][0]["output"]
    assert written == ("score \ufffd01/0\ufffd \ufffdx\ufffd \ufffd\ufffd\ufffd a\ufffdb\ufffdc "
                       "\u00e9\u4e2d")


def test_written_here_knows_its_own_file(tmp_path):
    path = tmp_path / "results.json"
    assert not results.written_here(path)
    results.write(valid(), path)
    assert results.written_here(path)
    path.write_text(json.dumps(results.failure("replaced by someone else")))
    assert not results.written_here(path)
