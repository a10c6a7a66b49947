"""assignment/ is generated from solution/: it must not drift, and its stubs must be loud."""
import importlib.util
import sys

import pytest
import torch

from autograder import paths, skeleton


def test_assignment_matches_what_the_solution_generates():
    rendered = skeleton.render_handout(paths.SOLUTION)
    on_disk = {p.name: p.read_text() for p in paths.ASSIGNMENT.iterdir() if p.is_file()}
    assert set(on_disk) == set(rendered), "run `python -m autograder assign`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"assignment/{name} drifted from solution/: run `python -m autograder assign`"


def test_the_handout_has_no_solution_and_no_instructor_files():
    rendered = skeleton.render_handout(paths.SOLUTION)
    assert not any(name.startswith("test_") or name == "conftest.py" for name in rendered)
    assert all("BEGIN SOLUTION" not in text and "END SOLUTION" not in text for text in rendered.values())
    assert "torch.sqrt(v) * eps" not in rendered["utils.py"]
    assert rendered["utils.py"].count("raise NotImplementedError") == 2
    assert rendered["vae.py"].count("raise NotImplementedError") == 1


def test_stub_keeps_indentation_and_names_the_function():
    text = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    y = x\n    # END SOLUTION\n    return y\n"
    out = skeleton.strip_solutions(text)
    assert '    raise NotImplementedError("f is not implemented yet' in out
    assert "y = x" not in out and out.endswith("    return y\n")


@pytest.mark.parametrize("text, problem", [
    ("# BEGIN SOLUTION\nx\n", "t.py:1: BEGIN SOLUTION is never closed"),
    ("x\n# END SOLUTION\n", "t.py:2: END SOLUTION without BEGIN SOLUTION"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "t.py:2: BEGIN SOLUTION inside the region opened at line 1"),
])
def test_bad_markers_name_file_and_line(text, problem):
    with pytest.raises(skeleton.MarkerError, match=problem):
        skeleton.strip_solutions(text, "t.py")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"handout_{name}", paths.ASSIGNMENT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_untouched_skeleton_raises_not_implemented_everywhere(monkeypatch):
    utils = _load("utils")
    monkeypatch.setitem(sys.modules, "utils", utils)
    monkeypatch.setitem(sys.modules, "nns", _load("nns"))
    vae = _load("vae")
    m, v = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(NotImplementedError, match="sample_gaussian is not implemented yet"):
        utils.sample_gaussian(m, v)
    with pytest.raises(NotImplementedError, match="kl_normal is not implemented yet"):
        utils.kl_normal(m, v, m, v)
    with pytest.raises(NotImplementedError, match="negative_elbo_bound is not implemented yet"):
        vae.VAE().negative_elbo_bound(torch.zeros(2, 784))


def test_the_handout_readme_is_rendered_from_handout_md_with_the_graders_facts():
    from autograder import config, handout
    rendered = skeleton.render_handout(paths.SOLUTION)
    assert "HANDOUT.md" not in rendered and "{{" not in rendered["README.md"]
    readme = rendered["README.md"]
    for family, specs in config.CHECKS.items():
        for spec in specs.values():                 # one row per check: number, function, ..., points
            rows = [line for line in readme.splitlines() if line.startswith(f"| {spec.number} |")]
            assert len(rows) == 1 and rows[0].startswith(f"| {spec.number} | `{family}` |"), rows
            assert rows[0].endswith(f"| {spec.points:g} |"), rows
    total = sum(spec.points for specs in config.CHECKS.values() for spec in specs.values())
    assert f"How it is graded ({total:g} points)" in readme
    stored = handout.calibration()
    subset = stored["subset_bands"]["nelbo"]
    assert f"| this reference, {len(stored['runs'])} seeds | {subset['mean']:.2f} +- {subset['sd']:.2f} |" in readme
    assert len(readme) < 20000                      # a page to read, with nothing dumped into it
    assert "python -m autograder grade PATH/TO/YOUR/FOLDER --results results.json --iterations 2000" in readme


def test_fields_are_filled_and_unknown_ones_name_file_and_line():
    assert skeleton.fill_fields("a {{x}} and {{ y }}\n", {"x": 1, "y": "two"}) == "a 1 and two\n"
    with pytest.raises(skeleton.MarkerError, match=r"t.md:2: unknown field \{\{z\}\}"):
        skeleton.fill_fields("ok\n{{z}}\n", {}, "t.md")
    with pytest.raises(skeleton.MarkerError, match="t.md:1: a '{{' that is not a field"):
        skeleton.fill_fields("{{ not-a-name }}\n", {}, "t.md")
