"""Markers -> student copy: `solution/` is the source of truth, `assignment/` is generated.

Whole-line `# BEGIN SOLUTION` / `# END SOLUTION` markers enclose each solution region;
the region becomes `raise NotImplementedError(...)` at the same indentation. Hints live in
the docstrings, so both versions carry them. Nested, unclosed or stray markers are errors
naming file:line.

The handout holds the chosen problems only (autograder/problems.py; default: the grader's): their
student files with stubs, the provided modules and run scripts they use, and another problem's
student file they import (utils.py for the CVAE alone) whole. Documents: each problem's
(solution/HANDOUT.md for the CS236 VAE) becomes assignment/README.md, its `{{field}}`s filled from the
grader's configuration, checks and calibration (autograder/handout.py), so that the points and
figures a student reads are the ones the grader uses. An unknown field is an error naming file:line.
"""
import re
import shutil
from pathlib import Path

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEF = re.compile(r"^\s*def (\w+)\(")

# Never in a handout, whatever a problem lists.
INSTRUCTOR_ONLY = ("conftest.py", "test_*.py")
STUB_MESSAGE = "{name} is not implemented yet: see its docstring, then replace this line"
# Each problem's document (solution/HANDOUT.md for the CS236 VAE, autograder/problems.py) becomes
# assignment/README.md, its fields filled (several problems: one README, a part per problem).
FIELD = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


class MarkerError(ValueError):
    pass


def strip_solutions(text, filename="<text>"):
    """Return `text` with every solution region replaced by a NotImplementedError stub."""
    out, region_start, function = [], None, None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if region_start is None:
            if definition := DEF.match(line):
                function = definition.group(1)
            if end:
                raise MarkerError(f"{filename}:{number}: END SOLUTION without BEGIN SOLUTION")
            if begin:
                region_start = number
                message = STUB_MESSAGE.format(name=function or "this part")
                out.append(f'{begin.group(1)}raise NotImplementedError("{message}")\n')
            else:
                out.append(line)
        elif begin:
            raise MarkerError(f"{filename}:{number}: BEGIN SOLUTION inside the region opened at line {region_start}")
        elif end:
            region_start = None
    if region_start is not None:
        raise MarkerError(f"{filename}:{region_start}: BEGIN SOLUTION is never closed")
    return "".join(out)


def handout_files(solution_dir, problem_set=None):
    """The solution's files that belong in the handout of the chosen problems (default: the grader's),
    sorted by name: their modules, run scripts and documents, never an instructor-only file."""
    from .problems import ProblemSet
    problem_set = problem_set or ProblemSet()
    wanted = {*problem_set.handout_sources, *problem_set.documents}
    files = [Path(solution_dir) / name for name in wanted if (Path(solution_dir) / name).is_file()]
    return sorted(p for p in files if not any(p.match(pattern) for pattern in INSTRUCTOR_ONLY))


def fill_fields(text, values, filename="<text>"):
    """Replace every `{{name}}` of `text` by values[name]; an unknown name or a stray `{{` is an error."""
    out = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        def value(match):
            if match.group(1) not in values:
                raise MarkerError(f"{filename}:{number}: unknown field {{{{{match.group(1)}}}}}")
            return str(values[match.group(1)])
        filled = FIELD.sub(value, line)
        if "{{" in FIELD.sub("", line):
            raise MarkerError(f"{filename}:{number}: a '{{{{' that is not a field: {line.strip()[:80]}")
        out.append(filled)
    return "".join(out)


def drop_markers(text):
    """`text` with its solution markers dropped and its solutions kept: another problem's student
    file that a chosen problem imports (utils.py for the CVAE alone) comes whole."""
    return SOLUTION_MARKER.sub("", text)


SOLUTION_MARKER = re.compile(r"^\s*# (BEGIN|END) SOLUTION\s*\n", re.M)


def render_handout(solution_dir, problem_set=None):
    """-> {filename: text} of the student handout of the chosen problems (default: the grader's)."""
    from .problems import ProblemSet
    problem_set = problem_set or ProblemSet()
    rendered, documents = {}, {}
    kept = {name for name, source in problem_set.sandbox_files.items() if source == "reference"}
    for p in handout_files(solution_dir, problem_set):
        text = p.read_text()
        text = drop_markers(text) if p.name in kept else strip_solutions(text, str(p))
        if p.name in problem_set.documents:
            documents[p.name] = text
        else:
            rendered[p.name] = text
    if documents:
        from .handout import readme
        rendered["README.md"] = readme(problem_set, documents)
    return rendered


def write_handout(solution_dir, assignment_dir, problem_set=None):
    """(Re)generate assignment_dir from solution_dir; returns the names written."""
    assignment_dir = Path(assignment_dir)
    if assignment_dir.exists():
        shutil.rmtree(assignment_dir)
    assignment_dir.mkdir(parents=True)
    rendered = render_handout(solution_dir, problem_set)
    for name, text in rendered.items():
        (assignment_dir / name).write_text(text)
    return sorted(rendered)
