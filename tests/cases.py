"""The one format of the graded submission cases: tests/submissions/ (the zoo), tests/hostile/, tests/messy/.

A case is a folder tests/<suite>/<case>/ holding a case.json and, optionally, literal files. The
submission it describes is assembled from two places:

    files          {path in the submission: spec}, where a spec is
                     {"from": "solution:utils.py" | "handout:vae.py"}   the reference (its `# BEGIN/END
                                             SOLUTION` lines dropped, as a student holds it) or the handout
                     {"text": "..."}         literal text
                     {"latin1": "..."}       literal bytes (each character one byte)
                   and, with "from" or "text", in this order:
                     "edits": [[old, new], ...]   each `old` must occur exactly once in the text at that
                                 point (else the case fails to load: a drifting reference breaks it loudly)
                     "append": "..."              added at the end
                     "pad": bytes                 a line SHIPPED_WEIGHTS = "<base64>" that makes the file
                                                  about that large (made here, not committed)
                     "tabs": true                 leading 4-space groups become tabs
                     "newline": "crlf"
                     "encoding": "utf-8"          (default; "utf-16" writes a byte-order mark, ...)
                   and with any spec "age": seconds (the file's mtime that much older than the rest).
                   old, new, append and text may be a list of lines (joined with "\\n") instead of a string.
    literal files  every other file of the folder except case.json, copied byte for byte; a name ending
                   in ".planted" loses that suffix (so that neither pytest nor Python picks up a planted
                   conftest.py or torch.py here). A literal *.py may only be a submission file at the top.
    zip            {name.zip: [path prefixes]}: the files under those prefixes move into that zip
In every assembled file, @@PIDDIR@@ and @@VIEWDIR@@ become the folders the runner passes (where
detached processes leave their pids, and where each sandbox may leave what it saw).

    problems       the problems it is graded on (autograder/problems.py; default ["vae"], the CS236 VAE)

What an honest grader gives, per tag (the families of its problems: config.CHECKS's for the CS236
VAE, "cvae/negative_elbo_bound" ... for the others), never as a number:

    scores         {tag: word}: "full" (the sum of the tag's points in config), "none" (0), "some"
                   (strictly between), "less" (below full)
    fails          {tag: [check names]}: exactly these checks of the tag lose their points (and score 0),
                   the others keep theirs; the tag's score follows from config's points
   Every tag is in scores or fails (not both); the zoo may leave out "training" (then it is not graded),
   and the variants suite every problem's training.

What the student reads, and how the case is graded (see each suite's test module):

    why, item      what the submission does; the issue item it covers (hostile, messy)
    says           {tag: [phrases]}: every failing check of that tag shows each of them (hostile, messy)
    output         phrases the top-level output of results.json shows (hostile, messy)
    hint           phrases the failing checks of the zoo case say, together (zoo)
    line_of        a line of the submission: each "file.py:N" phrase of says names the line holding it

How the runner (tests/runner.py; hostile and messy only) grades it:

    modes          where it is graded: grade, container-root, container-student (default ["grade"])
    xfail          {mode: reason}: a known weakness of the grader (strict xfail)
    env            extra environment variables of the grading (e.g. VAE_THREADS)
    iterations     training iterations (default 20)
    secrets_safe_in  modes where no content of the grader's files may reach results.json (default: all)
    background     true: graded beside the pool from the start (a long hang)
    pids           true: every detached process the submission started (pid files in @@PIDDIR@@) is
                   dead once grading ends
    watch_seconds  results.json does not change for that long after grading
    same_view      true: every sandbox that left a file in @@VIEWDIR@@ saw the same (at least two did)

`python -m tests.cases` checks every case (tests/test_cases.py does, in a few seconds);
`python -m tests.cases edits solution:utils.py FILE` prints the edits that turn the reference into FILE.
"""
import base64
import difflib
import json
import os
import re
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autograder import config, paths
from autograder.problems import PROBLEMS, ProblemSet

TESTS = Path(__file__).resolve().parent
SOURCES = {"solution": paths.SOLUTION, "handout": paths.ASSIGNMENT}
SOLUTION_MARKER = re.compile(r"^\s*# (BEGIN|END) SOLUTION\s*\n", re.M)
MODES = ("grade", "container-root", "container-student")
WORDS = ("full", "none", "some", "less")
FAMILIES = tuple(config.ALL_CHECKS)
STUDENT_FILES = tuple(name for problem in PROBLEMS.values() for name in problem.student_files)
TOLERANCE = 1e-6
ITERATIONS = 20              # the training length every case suite grades at (a case may state its own)

# The keys each suite honours (a key nobody reads is refused, not ignored).
_COMMON = {"why", "files", "zip", "scores", "fails", "problems"}
_RUNNER = {"item", "says", "output", "line_of", "modes", "xfail", "env", "iterations", "secrets_safe_in",
           "background", "pids", "watch_seconds", "same_view"}


@dataclass(frozen=True)
class Suite:
    folder: Path
    keys: frozenset
    required: tuple
    optional_families: tuple = ()


SUITES = {
    "submissions": Suite(TESTS / "submissions", frozenset(_COMMON | {"hint"}), ("why", "files", "scores"),
                         optional_families=("training",)),
    "hostile": Suite(TESTS / "hostile", frozenset(_COMMON | _RUNNER), ("item", "why", "files", "scores")),
    "messy": Suite(TESTS / "messy", frozenset(_COMMON | _RUNNER), ("item", "why", "files", "scores")),
    "variants": Suite(TESTS / "variants", frozenset(_COMMON | {"hint"}), ("why", "files", "problems"),
                      optional_families=("training", "cvae/training", "beta/training", "mmd/training",
                                         "ae/training", "conv/training")),
}
SPEC_KEYS = {"from", "text", "latin1", "edits", "append", "pad", "tabs", "newline", "encoding", "age"}


class CaseError(ValueError):
    """A case.json that does not describe a submission."""


# ---------------------------------------------------------------- reading

def names(suite):
    return sorted(p.name for p in SUITES[suite].folder.iterdir() if (p / "case.json").is_file())


def meta(suite, case):
    return json.loads((SUITES[suite].folder / case / "case.json").read_text(encoding="utf-8"))


def joined(value):
    """A string, or a list of lines joined with newlines."""
    return value if isinstance(value, str) else "\n".join(value)


def occurrences(text, part):
    """How often `part` stands in `text`, overlapping ones counted."""
    count, start = 0, text.find(part)
    while start != -1:
        count, start = count + 1, text.find(part, start + 1)
    return count


def apply_edits(text, edits, where="<text>"):
    for number, (old, new) in enumerate(edits, start=1):
        old, new = joined(old), joined(new)
        found = occurrences(text, old) if old else 0
        if found != 1:
            raise CaseError(f"{where}: edit {number} must match exactly once, matches {found} times: {old[:200]!r}")
        text = text.replace(old, new)
    return text


def reference(source):
    """The text of "solution:NAME" (solution markers dropped) or "handout:NAME" (a student file of
    another problem than the CS236 VAE: made from solution/ as the handout makes it)."""
    kind, _, name = source.partition(":")
    if kind not in SOURCES or name not in STUDENT_FILES:
        raise CaseError(f"unknown source {source!r} (solution: or handout: and one of {STUDENT_FILES})")
    if kind == "handout" and name not in config.SUBMISSION_FILES:
        from autograder.skeleton import strip_solutions
        return strip_solutions((paths.SOLUTION / name).read_text(encoding="utf-8"), name)
    return SOLUTION_MARKER.sub("", (SOURCES[kind] / name).read_text(encoding="utf-8"))


def content(spec, where="<file>"):
    """The bytes one file spec describes."""
    if "latin1" in spec:
        return spec["latin1"].encode("latin-1")
    text = joined(spec["text"]) if "text" in spec else reference(spec["from"])
    text = apply_edits(text, spec.get("edits", []), where)
    text += joined(spec.get("append", ""))
    if spec.get("pad"):             # a blob like shipped weights
        blob = base64.b64encode(bytes(range(256)) * (spec["pad"] // 256 + 1)).decode()
        text += f'\nSHIPPED_WEIGHTS = "{blob[:max(0, spec["pad"] - len(text) - 22)]}"\n'
    if spec.get("tabs"):
        lines = []
        for line in text.split("\n"):
            stripped = line.lstrip(" ")
            indent = len(line) - len(stripped)
            lines.append("\t" * (indent // 4) + " " * (indent % 4) + stripped)
        text = "\n".join(lines)
    if spec.get("newline") == "crlf":
        text = text.replace("\n", "\r\n")
    return text.encode(spec.get("encoding", "utf-8"))


def literal_files(folder):
    """{path in the submission: path in the case folder} of the case's literal files."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "case.json" and "__pycache__" not in path.relative_to(folder).parts:
            relative = path.relative_to(folder)
            found[str(relative.with_name(relative.name.removesuffix(".planted")))] = path
    return found


def assemble(suite, case, target, pid_dir="", view_dir=""):
    """The submission of `case` in `target` (created) -> target."""
    folder = SUITES[suite].folder / case
    data = meta(suite, case)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    places = {b"@@PIDDIR@@": os.fsencode(pid_dir), b"@@VIEWDIR@@": os.fsencode(view_dir)}

    def write(relative, blob):
        for placeholder, value in places.items():
            blob = blob.replace(placeholder, value)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)

    now = time.time()
    for relative, spec in data["files"].items():
        write(relative, content(spec, f"{suite}/{case}: {relative}"))
        stamp = now - spec.get("age", 0)
        os.utime(target / relative, (stamp, stamp))
    literal = literal_files(folder)
    for relative, source in literal.items():
        write(relative, source.read_bytes())
    for archive_name, prefixes in data.get("zip", {}).items():
        members = [relative for relative in [*data["files"], *literal] if relative.startswith(tuple(prefixes))]
        if not members:
            raise CaseError(f"{suite}/{case}: nothing to put in {archive_name}")
        with zipfile.ZipFile(target / archive_name, "w", zipfile.ZIP_DEFLATED) as archive:
            for relative in members:
                archive.write(target / relative, relative)
        for relative in members:
            (target / relative).unlink()
        for prefix in prefixes:
            if (target / prefix).is_dir():
                shutil.rmtree(target / prefix)
    return target


# ---------------------------------------------------------------- what an honest grader gives

def full_points(family):
    return sum(check.points for check in config.ALL_CHECKS[family].values())


@dataclass(frozen=True)
class Expected:
    """The honest outcome of one tag: a word of WORDS, or the exact set of failing checks."""
    family: str
    word: str = None
    fails: tuple = None

    @property
    def score(self):
        """The exact score, where the case states one (else None)."""
        if self.fails is not None:
            return full_points(self.family) - sum(config.ALL_CHECKS[self.family][name].points for name in self.fails)
        return {"full": full_points(self.family), "none": 0.0}.get(self.word)

    def problem(self, tests):
        """None if the tag's graded `tests` (results.json entries) are honest, else what is wrong."""
        got = sum(t["score"] for t in tests)
        full = full_points(self.family)
        if self.fails is not None:
            numbers = {config.ALL_CHECKS[self.family][name].number: name for name in self.fails}
            failing = sorted(t["number"] for t in tests if t["score"] < t["max_score"] - TOLERANCE)
            if failing != sorted(numbers) or abs(got - self.score) > TOLERANCE:
                return f"{self.family}: expected exactly {sorted(numbers)} ({', '.join(self.fails)}) to fail, " \
                       f"scoring {self.score:g}; got {failing} failing, scoring {got:g}"
            return None
        fits = {"full": abs(got - full) <= TOLERANCE, "none": abs(got) <= TOLERANCE,
                "some": TOLERANCE < got < full - TOLERANCE, "less": got < full - TOLERANCE}[self.word]
        return None if fits else f"{self.family}: expected {self.word!r} of {full:g}, got {got:g}"


def expected(data):
    """{family: Expected} of a case's meta (the families it states)."""
    out = {family: Expected(family, word=word) for family, word in data.get("scores", {}).items()}
    out.update({family: Expected(family, fails=tuple(checks)) for family, checks in data.get("fails", {}).items()})
    return {family: out[family] for family in FAMILIES if family in out}


def problem_set(data):
    """The ProblemSet a case is graded on."""
    return ProblemSet(data.get("problems", ["vae"]))


def by_family(tests, problems=None):
    """results.json tests -> {family: [tests]}; `problems` (a ProblemSet) maps its tags to families."""
    out = {}
    for test in tests:
        (tag,) = test["tags"]
        family = problems.family(tag) if problems is not None else tag
        out.setdefault(family, []).append(test)
    return out


def score_problems(data, tests):
    """What is dishonest in the graded `tests` against the case's expectations (empty: all honest)."""
    graded = by_family(tests, problem_set(data))
    return [problem for family, want in expected(data).items()
            if (problem := want.problem(graded.get(family, [])))]


# ---------------------------------------------------------------- validation (fast, no grading)

def _strings(value):
    return isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)


def _text(value):
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _spec_problems(relative, spec):
    if not isinstance(spec, dict):
        return [f"files[{relative!r}] is not an object"]
    out = [f"files[{relative!r}]: unknown key {key!r}" for key in sorted(set(spec) - SPEC_KEYS)]
    kinds = {"from", "text", "latin1"} & set(spec)
    if len(kinds) != 1:
        return out + [f"files[{relative!r}]: needs exactly one of from, text, latin1"]
    if "latin1" in spec and set(spec) - {"latin1", "age"}:
        out.append(f"files[{relative!r}]: latin1 takes only age")
    if not isinstance(spec.get("edits", []), list) or \
            not all(isinstance(e, list) and len(e) == 2 and all(map(_text, e)) for e in spec.get("edits", [])):
        out.append(f"files[{relative!r}]: edits must be [[old, new], ...] of strings or lists of lines")
    if not _text(spec.get("append", "")) or not _text(spec.get("text", "")) or \
            not isinstance(spec.get("latin1", ""), str):
        out.append(f"files[{relative!r}]: append, text and latin1 hold text")
    if "pad" in spec and not (isinstance(spec["pad"], int) and spec["pad"] > 0):
        out.append(f"files[{relative!r}]: pad is a positive number of bytes")
    if spec.get("newline", "crlf") != "crlf" or not isinstance(spec.get("tabs", False), bool):
        out.append(f"files[{relative!r}]: newline can only be 'crlf', tabs true or false")
    if not isinstance(spec.get("age", 0), (int, float)) or spec.get("age", 0) < 0:
        out.append(f"files[{relative!r}]: age is seconds >= 0")
    if "encoding" in spec:
        try:
            "".encode(spec["encoding"])
        except (LookupError, TypeError):
            out.append(f"files[{relative!r}]: unknown encoding {spec['encoding']!r}")
    if not out:
        try:
            content(spec, relative)
        except (CaseError, UnicodeError, OSError) as error:
            out.append(str(error))
    return out


def problems(suite, case, scratch):
    """Everything wrong with one case's case.json, found without grading (`scratch`: an empty folder)."""
    rules, folder = SUITES[suite], SUITES[suite].folder / case
    try:
        data = meta(suite, case)
    except ValueError as error:
        return [f"case.json is not JSON: {error}"]
    if not isinstance(data, dict):
        return ["case.json is not an object"]
    out = [f"unknown key {key!r}" for key in sorted(set(data) - rules.keys)]
    out += [f"missing key {key!r}" for key in rules.required if key not in data]
    for key in ("why", "item", "line_of"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            out.append(f"{key} must be a non-empty string")

    # the submission
    files, literal = data.get("files", {}), literal_files(folder)
    if not isinstance(files, dict) or not (files or literal):
        out.append("files must be an object, and the case must hold some file")
        files = {}
    for relative, spec in files.items():
        out += _spec_problems(relative, spec)
    out += [f"{relative} is both in files and a literal file" for relative in sorted(set(files) & set(literal))]
    for relative, source in literal.items():
        if source.suffix == ".py" and (Path(relative).name not in STUDENT_FILES or "/" in relative):
            out.append(f"literal {source.relative_to(folder)}: a Python file here must be a submission file at the "
                       f"top (name planted files *.planted)")
    if not isinstance(data.get("zip", {}), dict) or \
            not all(_strings(prefixes) for prefixes in data.get("zip", {}).values()):
        out.append("zip must be {name.zip: [path prefixes]}")

    # the problems
    try:
        graded = problem_set(data).checks
    except (ValueError, TypeError) as error:
        return out + [f"problems: {error}"]
    if "problems" in data and not _strings(data["problems"]):
        return out + ["problems must be a list of problem names"]

    # the scores
    scores, fails = data.get("scores", {}), data.get("fails", {})
    if not isinstance(scores, dict) or not isinstance(fails, dict):
        return out + ["scores and fails must be objects"]
    out += [f"scores: unknown tag {family!r}" for family in scores if family not in graded]
    out += [f"scores[{family!r}]: {word!r} is none of {WORDS}" for family, word in scores.items() if word not in WORDS]
    for family, checks in fails.items():
        if family not in graded:
            out.append(f"fails: unknown tag {family!r}")
        elif not _strings(checks) or len(set(checks)) != len(checks) or set(checks) - set(graded[family]):
            out.append(f"fails[{family!r}]: {checks!r} must name distinct checks of {sorted(graded[family])}")
    out += [f"{family} is in both scores and fails" for family in sorted(set(scores) & set(fails))]
    missing = set(graded) - set(scores) - set(fails) - set(rules.optional_families)
    out += [f"no expected score for {family}" for family in sorted(missing)]
    if out:
        return out
    want = expected(data)

    # what the student reads
    says = data.get("says", {})
    if not isinstance(says, dict):
        return out + ["says must be {tag: [phrases]}"]
    for family, words in says.items():
        if family not in want:
            out.append(f"says: {family!r} is not a tag with an expected score")
        elif not _strings(words):
            out.append(f"says[{family!r}] must be a non-empty list of phrases")
        elif want[family].word == "full" or want[family].fails == ():
            out.append(f"says[{family!r}]: the tag keeps all its points, no check fails to say anything")
    for key in ("output", "hint"):
        if key in data and not (isinstance(data[key], list) and all(isinstance(w, str) and w for w in data[key])):
            out.append(f"{key} must be a list of phrases")

    # the runner's keys
    modes = data.get("modes", ["grade"])
    if not (_strings(modes) and set(modes) <= set(MODES) and len(set(modes)) == len(modes)):
        out.append(f"modes must be distinct modes of {MODES}")
    for key in ("xfail", "env"):
        value = data.get(key, {})
        if not (isinstance(value, dict) and all(isinstance(v, str) and v for v in value.values())):
            out.append(f"{key} must map names to strings")
    if not set(data.get("xfail", {})) <= set(modes):
        out.append("xfail names a mode the case is not graded in")
    if not set(data.get("secrets_safe_in", [])) <= set(modes):
        out.append("secrets_safe_in names a mode the case is not graded in")
    if "iterations" in data and not (isinstance(data["iterations"], int) and data["iterations"] > 0):
        out.append("iterations must be a positive whole number")
    if "watch_seconds" in data and not (isinstance(data["watch_seconds"], (int, float)) and data["watch_seconds"] > 0):
        out.append("watch_seconds must be positive")
    for key in ("background", "pids", "same_view"):
        if data.get(key, True) is not True:
            out.append(f"{key} is true or left out")
    if out:
        return out

    # the submission assembles, and the line numbers the messages name are those of line_of
    try:
        assemble(suite, case, scratch)
    except (CaseError, OSError) as error:
        return [str(error)]
    places = [re.fullmatch(r"([\w./ -]+\.py):(\d+)", word) for words in says.values() for word in words]
    places = [place for place in places if place]
    if places and "line_of" not in data:
        out.append(f"says names a line ({places[0].group(0)}): line_of must say what stands there")
    if "line_of" in data and not places:
        out.append("line_of: no phrase of says names a line (file.py:N)")
    for place in places:
        lines = (Path(scratch) / place.group(1)).read_text(encoding="utf-8").split("\n")
        number = int(place.group(2))
        if "line_of" in data and not (number <= len(lines) and data["line_of"] in lines[number - 1]):
            out.append(f"{place.group(0)} does not hold {data['line_of']!r}")
    return out


# ---------------------------------------------------------------- writing cases

def as_lines(text):
    """A text for case.json: a list of its lines where it has several."""
    return text.split("\n") if "\n" in text else text


def edits_between(original, text):
    """The edits (each old unique) and the text to append that turn `original` into `text`:
    -> (edits, append), for a files entry."""
    a, b = original.split("\n"), text.split("\n")
    hunks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            if hunks and i1 - hunks[-1][1] <= 2:           # close changes make one edit
                hunks[-1] = (hunks[-1][0], i2, hunks[-1][2], j2)
            else:
                hunks.append((i1, i2, j1, j2))
    current, edits, append = original, [], ""
    for index, (i1, i2, j1, j2) in enumerate(hunks):
        if index == len(hunks) - 1 and i1 == i2 and i1 >= len(a) - 1 and text.startswith(current):
            append = text[len(current):]                    # after the last line
            break
        found = None
        for context in range(len(a)):
            choices = sorted(((before, context - before) for before in range(context + 1)),
                             key=lambda c: (c[0] > 0 and not a[i1 - 1].strip(),
                                            c[1] > 0 and i2 < len(a) and not a[i2].strip(), -c[1]))
            for before, after in choices:
                if i1 - before >= 0 and i2 + after <= len(a):
                    old = "\n".join(a[i1 - before:i2 + after])
                    if old and occurrences(current, old) == 1:
                        found = old, "\n".join(a[i1 - before:i1] + b[j1:j2] + a[i2:i2 + after])
                        break
            if found:
                break
        if not found:
            raise CaseError("no unique context for a change")
        current = current.replace(*found)
        edits.append([as_lines(found[0]), as_lines(found[1])])
    if apply_edits(original, edits) + append != text:
        raise CaseError("edits_between does not reproduce the text")
    return edits, as_lines(append) if "\n" in append[:-1] else append


def spec_for(source, text):
    """The files entry that makes `text` from the reference `source` ("solution:utils.py")."""
    edits, append = edits_between(reference(source), text)
    spec = {"from": source}
    if edits:
        spec["edits"] = edits
    if append:
        spec["append"] = append
    assert content(spec) == text.encode()
    return spec


def dumps(data):
    """case.json's text."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main(argv):
    if argv[:1] == ["edits"] and len(argv) == 3:
        print(json.dumps(spec_for(argv[1], Path(argv[2]).read_text(encoding="utf-8")), indent=1, ensure_ascii=False))
        return 0
    import tempfile
    bad = 0
    for suite in SUITES:
        for case in names(suite):
            with tempfile.TemporaryDirectory() as scratch:
                for problem in problems(suite, case, scratch):
                    bad += 1
                    print(f"{suite}/{case}: {problem}")
    print("every case is well formed" if not bad else f"{bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
