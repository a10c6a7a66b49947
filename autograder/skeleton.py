"""Markers -> student copy: `solution/` is the source of truth, `assignment/` is generated.

Whole-line `# BEGIN SOLUTION` / `# END SOLUTION` markers enclose each solution region;
the region becomes `raise NotImplementedError(...)` at the same indentation. Hints live in
the docstrings, so both versions carry them. Nested, unclosed or stray markers are errors
naming file:line.

Documents: solution/HANDOUT.md becomes assignment/README.md, its `{{field}}`s filled from the
grader's configuration, checks and calibration (autograder/handout.py), so that the points and
figures a student reads are the ones the grader uses. An unknown field is an error naming file:line.
"""
import re
import shutil
from pathlib import Path

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEF = re.compile(r"^\s*def (\w+)\(")

# What the handout contains: every module of solution/ except the instructor-only files.
INSTRUCTOR_ONLY = ("conftest.py", "test_*.py")
STUB_MESSAGE = "{name} is not implemented yet: see its docstring, then replace this line"
# solution/<source> -> assignment/<name>, with its fields filled.
DOCUMENTS = {"HANDOUT.md": "README.md"}
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


def handout_files(solution_dir):
    """The solution's files that belong in the handout, sorted by name."""
    files = [p for p in Path(solution_dir).iterdir() if p.is_file() and p.suffix in (".py", ".md")]
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


def render_handout(solution_dir):
    """-> {filename: text} of the student handout."""
    rendered = {}
    for p in handout_files(solution_dir):
        text = strip_solutions(p.read_text(), str(p))
        if p.name in DOCUMENTS:
            from .handout import fields
            rendered[DOCUMENTS[p.name]] = fill_fields(text, fields(), str(p))
        else:
            rendered[p.name] = text
    return rendered


def write_handout(solution_dir, assignment_dir):
    """(Re)generate assignment_dir from solution_dir; returns the names written."""
    assignment_dir = Path(assignment_dir)
    if assignment_dir.exists():
        shutil.rmtree(assignment_dir)
    assignment_dir.mkdir(parents=True)
    rendered = render_handout(solution_dir)
    for name, text in rendered.items():
        (assignment_dir / name).write_text(text)
    return sorted(rendered)
