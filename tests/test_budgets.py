"""Time budgets and upstream failures (issue 10, items 8, 9 and 12), graded in process on
small submissions with shortened budgets and limits: a slow function is stopped when its
budget is spent and its later checks say why once; a stopped sandbox is named by the check
it stopped in; text a submission controls never breaks the results or their printing."""
import io
import json
import time

import pytest

from autograder import config, paths
from autograder.grade import grade

FUNCTION_BODY = "    eps = torch.randn_like(m + v)\n    z = m + torch.sqrt(v) * eps\n"


def _submission(tmp_path, replace_in_utils):
    folder = tmp_path / "submission"
    folder.mkdir()
    text = (paths.SOLUTION / "utils.py").read_text()
    for old, new in replace_in_utils.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    (folder / "utils.py").write_text(text)
    (folder / "vae.py").write_text((paths.SOLUTION / "vae.py").read_text())
    return folder


def _outputs(outcome, family):
    return {t["number"]: t.get("output", "") for t in outcome["tests"] if t["tags"] == [family]
            and t["score"] < t["max_score"]}


def test_a_slow_function_is_stopped_by_its_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "BUDGETS", config.Budgets(unit_function_seconds=15.0))
    folder = _submission(tmp_path, {"    eps = torch.randn_like(m + v)\n": "    import time\n    time.sleep(3)\n"
                                                                          "    eps = torch.randn_like(m + v)\n"})
    started = time.monotonic()
    outcome = grade(folder, tmp_path / "results.json", families=["sample_gaussian"], log=lambda line: None)
    assert time.monotonic() - started < 15.0 + 20       # the budget, plus closing and writing
    failing = _outputs(outcome, "sample_gaussian")
    assert failing, outcome
    spent = [n for n, text in failing.items() if "the time budget of 15 seconds for the checks of sample_gaussian "
                                                  "is spent" in text]
    assert len(spent) == len(failing), failing
    (stopped_in,) = [n for n, text in failing.items() if "This check could not run" not in text]   # run order
    for number, text in failing.items():
        if number != stopped_in:
            assert text.startswith(f"This check could not run: the checks of sample_gaussian stopped in check "
                                   f"{stopped_in} ("), text


def test_after_a_timeout_later_checks_name_the_check_it_happened_in(tmp_path, monkeypatch):
    """A hang on one input (v of shape (1, dim), sent by 1.3 only): the checks that still need the
    sandbox say where it stopped; 1.2, whose draws came back before, is still graded."""
    monkeypatch.setattr(config, "LIMITS", config.Limits(wall_seconds=10.0))
    folder = _submission(tmp_path, {"    eps = torch.randn_like(m + v)\n": "    while v.shape[0] == 1 < m.shape[0]:\n"
                                                                          "        pass\n"
                                                                          "    eps = torch.randn_like(m + v)\n"})
    outcome = grade(folder, tmp_path / "results.json", families=["sample_gaussian"], log=lambda line: None)
    failing = _outputs(outcome, "sample_gaussian")
    assert sorted(failing) == ["1.1", "1.3", "1.4", "1.5"], failing
    (stopped_in,) = [n for n, text in failing.items() if "This check could not run" not in text]
    assert "did not finish within 10 seconds" in failing[stopped_in]
    for number, text in failing.items():
        if number != stopped_in:
            assert text.startswith(f"This check could not run: the checks of sample_gaussian stopped in check "
                                   f"{stopped_in} (sample_gaussian: "), text
            assert "did not finish within 10 seconds" in text


def test_text_from_the_submission_cannot_break_results_or_printing(tmp_path):
    folder = _submission(tmp_path, {"    element_wise = 0.5 * (torch.log(pv)":
                                    "    raise ValueError('bad \\ud800 value\\x00\\x1b[2J' + '\\udfff' * 3000)\n"
                                    "    element_wise = 0.5 * (torch.log(pv)"})
    printed = io.BytesIO()
    strict = io.TextIOWrapper(printed, encoding="ascii", errors="strict", write_through=True)
    outcome = grade(folder, tmp_path / "results.json", families=["kl_normal"], log=lambda line: print(line, file=strict))
    on_disk = json.loads((tmp_path / "results.json").read_bytes().decode("ascii"))
    assert on_disk["score"] == outcome["score"] == 0
    for text in _outputs(on_disk, "kl_normal").values():
        assert "ValueError" in text and "bad \ufffd value\ufffd\ufffd[2J" in text, text
        assert len(text) <= config.TEST_OUTPUT_CHARS
    assert b"[autograder] score 0.0" in printed.getvalue()


@pytest.mark.parametrize("spent", [0.0])
def test_a_spent_grading_budget_fails_every_check_at_once(tmp_path, monkeypatch, spent):
    monkeypatch.setattr(config, "BUDGETS", config.Budgets(grading_seconds=spent))
    outcome = grade(paths.SOLUTION, tmp_path / "results.json", families=["kl_normal"], log=lambda line: None)
    failing = _outputs(outcome, "kl_normal")
    assert sorted(failing) == ["2.1", "2.2", "2.3", "2.4"], failing
    assert all("time budget of 0 seconds for the whole grading is spent" in text for text in failing.values()), failing
