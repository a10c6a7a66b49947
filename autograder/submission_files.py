"""TRUSTED SIDE. Which of a student's files are graded, and the UTF-8 copies the sandbox gets.

Standard library only, never imports or runs submission code (ast parses, nothing more).
The rule (README.md, "Which files are graded", states it for students and instructors):

1. Candidates are the files named utils.py and vae.py (the student files of the graded problems,
   autograder/problems.py: cvae.py too for the conditional VAE) at any depth of the submission,
   skipping __MACOSX, __pycache__ and every folder starting with "." or "__", virtual
   environments and installed packages, symbolic links and AppleDouble "._*" files. A name
   that differs only in case (Utils.py) counts, with a note. When there is no candidate at
   all and the top level holds exactly one .zip, the same search runs inside it (read in
   memory with size and count limits; nothing is extracted).
2. The folders holding candidates are ranked: more of the files first (both before one); then more
   of the student functions implemented (three for the CS236 VAE) (defined, no `raise NotImplementedError` left in them);
   then the most recently modified (in steps of MTIME_TIE_SECONDS); then the shallowest;
   then alphabetical order. The first folder is graded.
3. A file the chosen folder lacks comes from the best folder that has it, and the output
   says that the two files come from different folders.
4. Each graded file is decoded (byte-order mark, PEP 263 coding line, UTF-16 without a mark,
   UTF-8, else Windows-1252 with a note), its line ends made "\\n", and written as UTF-8.
"""
import ast
import codecs
import os
import re
import stat
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

SUBMISSION_FILES = ("utils.py", "vae.py")      # the same names as config.SUBMISSION_FILES
STUDENT_FUNCTIONS = {"utils.py": (None, ("sample_gaussian", "kl_normal")),
                     "vae.py": ("VAE", ("negative_elbo_bound",))}    # the default: problems.VAE's
SKIPPED_FOLDERS = {"site-packages", "dist-packages", "node_modules"}
VENV_FOLDERS = {"bin", "lib", "lib64", "include", "share", "etc", "Lib", "Scripts", "Include"}
MTIME_TIE_SECONDS = 2.0              # zip archives store times to 2 s; copies made together tie
MAX_SOURCE_BYTES = 2 * 2**20         # a larger "utils.py" is not a homework source file
MAX_ZIP_ENTRIES = 20000
MAX_WALK_ENTRIES = 200000
SHOWN_IGNORED = 12

BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
        (codecs.BOM_UTF8, "utf-8", "UTF-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))
CODING_LINE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
BLANK_OR_COMMENT = re.compile(rb"^[ \t\f]*(?:[#\r\n]|$)")
CODING_IN_TEXT = re.compile(r"^([ \t\f]*#.*?coding[:=][ \t]*)([-\w.]+)")


class SourceProblem(ValueError):
    """A graded file that cannot be turned into source code; the message is for the student."""


@dataclass
class Entry:
    """One file of the submission, on disk or inside the submitted zip."""
    shown: str                # how the student sees its path ('hw2/utils.py', 'hw2.zip: hw2/utils.py')
    folder: str               # its folder, relative ('' for the top level)
    name: str
    mtime: float
    size: int
    opener: object = field(repr=False, default=None)   # () -> bytes, at most MAX_SOURCE_BYTES + 1

    @property
    def depth(self):
        return 0 if not self.folder else self.folder.count("/") + 1

    def read(self):
        if self.size > MAX_SOURCE_BYTES:
            raise SourceProblem(f"{self.shown} is {self.size / 2**20:.1f} MB: too large to be the homework's "
                                f"source file (at most {MAX_SOURCE_BYTES // 2**20} MB).")
        data = self.opener()
        if len(data) > MAX_SOURCE_BYTES:
            raise SourceProblem(f"{self.shown} is too large to be the homework's source file.")
        return data


@dataclass
class Selection:
    """What is graded: `sources` {name: UTF-8 text}, `graded` {name: Entry}; the rest is for the student."""
    graded: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)        # shown paths of other candidates
    notes: list = field(default_factory=list)
    problems: dict = field(default_factory=dict)       # name -> why it is not graded
    other_files: set = field(default_factory=set)      # basenames of every other .py file seen
    names: tuple = SUBMISSION_FILES                    # the files graded, in order

    def write(self, folder):
        """The normalised copies, UTF-8 with '\\n' line ends, in `folder` -> {name: path}."""
        written = {}
        for name, text in self.sources.items():
            path = Path(folder) / name
            path.write_bytes(text.encode("utf-8"))
            written[name] = path
        return written

    def report(self):
        """The top-level lines of results.json about the files (always at least 'Files graded')."""
        shown = [self.graded[name].shown for name in self.names if name in self.sources]
        lines = [f"Files graded: {', '.join(shown) if shown else 'none'}"]
        if self.ignored:
            more = len(self.ignored) - SHOWN_IGNORED
            listed = ", ".join(self.ignored[:SHOWN_IGNORED]) + (f" and {more} more" if more > 0 else "")
            lines.append(f"Other copies found and ignored: {listed}")
        lines += [f"Note: {note}" for note in self.notes]
        missing = [name for name in self.names if name not in self.graded]
        if missing:
            lines.append(f"Missing from your submission: {', '.join(missing)}")
            lines += [f"  {self.problems[name]}" for name in missing]
        lines += [f"Not graded: {self.problems[name]}" for name in self.names
                  if name in self.problems and name in self.graded]
        return "\n".join(lines)


# ---------------------------------------------------------------- decoding

def _line_of(data, offset):
    return data.count(b"\n", 0, offset) + 1


def _declared_coding(data):
    """(encoding name, line number) of a PEP 263 declaration in the first two lines, or None."""
    lines = data.split(b"\n", 2)
    for number, line in enumerate(lines[:2], start=1):
        match = CODING_LINE.match(line)
        if match:
            return match.group(1).decode("ascii", "replace"), number
        if not BLANK_OR_COMMENT.match(line):
            return None
    return None


def _utf16_without_bom(data):
    """'utf-16-le' or 'utf-16-be' when the bytes look like mostly-ASCII UTF-16 text, else None."""
    sample = data[:4096]
    if len(sample) < 4 or len(data) % 2:
        return None
    pairs = len(sample) // 2
    even_zero = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] == 0)
    odd_zero = sum(1 for i in range(1, 2 * pairs, 2) if sample[i] == 0)
    if odd_zero > 0.6 * pairs and even_zero < 0.05 * pairs:
        return "utf-16-le"
    if even_zero > 0.6 * pairs and odd_zero < 0.05 * pairs:
        return "utf-16-be"
    return None


def _decode_with(data, codec, label, shown):
    try:
        return data.decode(codec)
    except UnicodeDecodeError as error:
        raise SourceProblem(f"{shown} is not valid {label}: byte 0x{data[error.start]:02x} on line "
                            f"{_line_of(data, error.start)} cannot be decoded. Save the file as UTF-8.") from None


def decode_source(data, shown):
    """bytes of a graded file -> (UTF-8-ready text with '\\n' line ends, [notes]); SourceProblem if impossible."""
    notes = []
    if not data:
        raise SourceProblem(f"{shown} is empty (0 bytes): it holds no code. Check that you saved it before "
                            f"submitting.")
    for bom, codec, label in BOMS:
        if data.startswith(bom):
            text = _decode_with(data[len(bom):], codec, label, shown)
            if label != "UTF-8":
                notes.append(f"{shown} is saved as {label}; it was converted to UTF-8 for grading "
                             f"(save it as UTF-8 to be safe).")
            break
    else:
        codec = _utf16_without_bom(data)
        if codec:
            text = _decode_with(data, codec, "UTF-16", shown)
            notes.append(f"{shown} is saved as UTF-16 ({codec[-2:].upper()}, without a byte-order mark); it was "
                         f"converted to UTF-8 for grading (save it as UTF-8 to be safe).")
        elif b"\0" in data:
            line = _line_of(data, data.index(b"\0"))
            raise SourceProblem(f"{shown} is not a text file: it holds a null byte on line {line} (a compiled .pyc, "
                                f"or a file saved in a binary format?). Submit the Python source, saved as UTF-8.")
        else:
            declared = _declared_coding(data)
            if declared:
                encoding, line = declared
                try:
                    codecs.lookup(encoding)
                except LookupError:
                    raise SourceProblem(f"{shown} line {line} declares the encoding '{encoding}', which Python "
                                        f"does not know. Remove that line and save the file as UTF-8.") from None
                text = _decode_with(data, encoding, f"'{encoding}' (the encoding line {line} declares)", shown)
            else:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as error:
                    line = _line_of(data, error.start)
                    try:
                        text = data.decode("cp1252")
                    except UnicodeDecodeError:
                        text = data.decode("latin-1")
                    notes.append(f"{shown} is not valid UTF-8 (byte 0x{data[error.start]:02x} on line {line}, "
                                 f"probably Windows-1252, e.g. an accent or a curly quote); it was read as "
                                 f"Windows-1252 and converted to UTF-8 for grading (save it as UTF-8 to be safe).")
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise SourceProblem(f"{shown} holds a null character on line {line}: remove it and save the file as UTF-8.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    head = text.split("\n", 2)
    for index in range(min(2, len(head))):         # the copy is UTF-8 whatever the file declared
        head[index] = CODING_IN_TEXT.sub(r"\1utf-8", head[index])
    text = "\n".join(head)
    if not text.strip():
        raise SourceProblem(f"{shown} is empty (only whitespace, {len(data)} bytes): it holds no code. Check that "
                            f"you saved it before submitting.")
    return text, notes


def _definitions(tree, class_name):
    """{name: node} of the functions (and assignments) at module level, or in the last class `class_name`."""
    scope = tree.body
    if class_name is not None:
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name]
        if not classes:
            return {}
        scope = classes[-1].body
    defined = {node.name: node for node in scope if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in scope:              # `kl_normal = some_other_function` counts as implemented too
        if isinstance(node, ast.Assign):
            defined.update({target.id: node for target in node.targets if isinstance(target, ast.Name)})
    return defined


def implemented_functions(name, text, student_functions=None):
    """How many of the student functions of `name` are defined without `raise NotImplementedError`."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return 0
    class_name, functions = (student_functions or STUDENT_FUNCTIONS)[name]
    # a function named "Class.method" is looked up in that class, whatever class_name says (mmd_vae.py:
    # the module function mmd and the method MMDVAE.loss)
    defined = {}
    for scope_class in {class_name, *(f.split(".")[0] for f in functions if "." in f)}:
        found = _definitions(tree, scope_class)
        defined.update({(f"{scope_class}.{key}" if scope_class and scope_class != class_name else key): node
                        for key, node in found.items()})

    def raises_not_implemented(node):
        """The skeleton's shape: `raise NotImplementedError` among the body's own statements, before
        any `return`. One inside an `if` (a guard against unsupported input) leaves it implemented."""
        for inner in getattr(node, "body", []):
            if isinstance(inner, ast.Return):
                return False
            if isinstance(inner, ast.Raise) and inner.exc is not None:
                target = inner.exc.func if isinstance(inner.exc, ast.Call) else inner.exc
                if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                    return True
        return False

    return sum(1 for function in functions if function in defined and not raises_not_implemented(defined[function]))


# ---------------------------------------------------------------- listing the submission

def _skipped_folder(name, path=None):
    """Hidden and cache folders, installed packages, and a virtual environment's own folders
    (beside its pyvenv.cfg): a homework folder made a venv (`python -m venv .`) keeps its files."""
    return (name.startswith((".", "__")) or name in SKIPPED_FOLDERS
            or (path is not None and name in VENV_FOLDERS and (path.parent / "pyvenv.cfg").exists()))


def _shown_name(text):
    """A path as text that is safe to show and to put in JSON (undecodable bytes replaced)."""
    return os.fsencode(text).decode("utf-8", "replace") if isinstance(text, str) else str(text)


def _disk_entries(root):
    root = Path(root)
    seen = 0
    for directory, folders, files in os.walk(root):
        here = Path(directory)
        folders[:] = sorted(f for f in folders if not _skipped_folder(f, here / f) and not (here / f).is_symlink())
        relative = here.relative_to(root).as_posix()
        relative = "" if relative == "." else relative
        for name in sorted(files):
            seen += 1
            if seen > MAX_WALK_ENTRIES:
                return
            path = here / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or name.startswith("._"):
                continue
            shown = _shown_name(f"{relative}/{name}" if relative else name)
            yield Entry(shown, _shown_name(relative), _shown_name(name), info.st_mtime, info.st_size,
                        lambda path=path: _read_capped(path))


def _read_capped(path):
    with open(path, "rb") as handle:
        return handle.read(MAX_SOURCE_BYTES + 1)


def _zip_entries(path, problems):
    """Entries inside one submitted zip, read in memory; problems gets a sentence if it cannot be read."""
    label = path.name
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        problems.append(f"{_shown_name(label)} is not a readable zip archive ({error}).")
        return []
    if len(infos) > MAX_ZIP_ENTRIES:
        problems.append(f"{_shown_name(label)} holds {len(infos)} entries (more than {MAX_ZIP_ENTRIES}).")
        return []
    entries = []
    for info in infos:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or info.is_dir() or ".." in parts or info.filename.startswith("/"):
            continue
        if stat.S_ISLNK(info.external_attr >> 16) or parts[-1].startswith("._"):
            continue
        if any(_skipped_folder(part) for part in parts[:-1]):
            continue
        if info.flag_bits & 0x1:
            problems.append(f"{_shown_name(label)} is encrypted: submit the files without a password.")
            return []
        try:
            mtime = time.mktime(info.date_time + (0, 0, -1))
        except (OverflowError, ValueError):
            mtime = 0.0

        def opener(info=info):
            try:
                with archive.open(info) as handle:
                    return handle.read(MAX_SOURCE_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as error:
                raise SourceProblem(f"{label}: {info.filename} cannot be read from the zip ({error}).") from None
        folder = "/".join(parts[:-1])
        entries.append(Entry(f"{_shown_name(label)}: {'/'.join(parts)}", folder, parts[-1], mtime, info.file_size,
                             opener))
    return entries


# ---------------------------------------------------------------- near misses

def _near_miss_advice(entry, wanted):
    """A sentence when `entry` looks like an attempt at `wanted` (utils.py / vae.py), else None."""
    stem = wanted[:-3]
    lowered = entry.name.lower()
    if lowered.endswith(".ipynb"):
        return (f"'{entry.shown}' is a notebook: notebooks are not graded; copy your code into {wanted}")
    if not re.search(rf"(^|[^a-z]){stem}([^a-z]|$)", lowered):
        return None
    if lowered.endswith(".pyc"):
        return f"'{entry.shown}' is compiled bytecode: submit the source file {wanted}"
    if lowered.endswith((".py.txt", ".txt")):
        return f"'{entry.shown}': rename it to {wanted} (a browser or editor added .txt)"
    if ".py" in lowered:
        return f"'{entry.shown}': rename it to {wanted} if it is your {stem} file"
    return None


def listed(names):
    """'utils.py and vae.py', 'utils.py, vae.py and cvae.py'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _missing_message(name, entries, zips, wanted=SUBMISSION_FILES):
    advice = [a for a in (_near_miss_advice(e, name) for e in entries) if a]
    message = f"{name} not found in your submission."
    names = ", ".join(_shown_name(z.name) for z in zips)
    if len(zips) > 1:
        message += f" It holds {len(zips)} zip files ({names}): submit {listed(wanted)} themselves, or one zip."
    elif zips and any(_graded_name(e, wanted) for e in entries):
        message += (f" {names} was not opened, since files were found outside it: submit {listed(wanted)} "
                    f"together, outside any zip.")
    if advice:
        message += " Found " + "; ".join(advice[:5]) + "."
    else:
        message += f" Submit {listed(wanted)} (at the top level or in one folder)."
    return message


# ---------------------------------------------------------------- the rule

def _graded_name(entry, wanted=SUBMISSION_FILES):
    """'utils.py' / 'vae.py' when the entry is one of them (exactly or up to case), else None."""
    lowered = entry.name.lower()
    return lowered if lowered in wanted else None


def select(folder, student_functions=None):
    """Apply the rule to the submission `folder` -> Selection (never raises for a student's mistake).
    student_functions: {file: (class or None, (function, ...))} of the graded problems (default: the
    CS236 VAE's utils.py and vae.py)."""
    student_functions = student_functions or STUDENT_FUNCTIONS
    wanted = tuple(student_functions)
    folder = Path(folder)
    selection = Selection(names=wanted)
    entries = list(_disk_entries(folder))
    zips = [folder / e.name for e in entries if not e.folder and e.name.lower().endswith(".zip")]
    zip_problems = []
    if not any(_graded_name(e, wanted) for e in entries) and len(zips) == 1:
        inner = _zip_entries(zips[0], zip_problems)
        if any(_graded_name(e, wanted) for e in inner):
            selection.notes.append(f"your files were read from the zip archive {_shown_name(zips[0].name)}.")
        entries += inner
    elif zips:
        selection.ignored += [f"{_shown_name(z.name)} (not opened)" for z in zips]
    selection.other_files = {e.name for e in entries if e.name.endswith(".py") and not _graded_name(e, wanted)}

    # folder -> {name: entry}; an exact name beats a case-only one in the same folder
    folders = {}
    for entry in entries:
        name = _graded_name(entry, wanted)
        if name is None:
            continue
        key = entry.shown[: -len(entry.name)]
        current = folders.setdefault(key, {}).get(name)
        if current is None or (entry.name == name and current.name != name):
            if current is not None:
                selection.ignored.append(current.shown)
            folders[key][name] = entry
        else:
            selection.ignored.append(entry.shown)

    texts, problems = {}, {}
    for files in folders.values():
        for name, entry in files.items():
            try:
                texts[entry.shown] = decode_source(entry.read(), entry.shown)
            except SourceProblem as problem:
                problems[entry.shown] = str(problem)
            except Exception as error:  # noqa: BLE001 - unreadable bytes of any kind (permissions, corrupt zip)
                problems[entry.shown] = f"{entry.shown} cannot be read ({type(error).__name__}: {error})."

    def rank(item):
        key, files = item
        implemented = sum(implemented_functions(name, texts[e.shown][0], student_functions) for name, e in files.items()
                          if e.shown in texts)
        newest = max(e.mtime for e in files.values())
        depth = min(e.depth for e in files.values())
        return -len(files), -implemented, -int(newest // MTIME_TIE_SECONDS), depth, key

    ranked = [files for _, files in sorted(folders.items(), key=rank)]
    for name in wanted:
        holder = next((files for files in ranked if name in files), None)
        if holder is None:
            selection.problems[name] = _missing_message(name, entries, zips, wanted)
            continue
        entry = holder[name]
        selection.graded[name] = entry
        if entry.name != name:
            selection.notes.append(f"'{entry.shown}' was graded as {name} (the name differs only in case; "
                                   f"rename it to {name}, since Linux and Python's import are case-sensitive).")
        if entry.shown in problems:
            selection.problems[name] = problems[entry.shown]
        else:
            text, notes = texts[entry.shown]
            selection.sources[name] = text
            selection.notes += notes
    for files in ranked:
        for name, entry in files.items():
            if selection.graded.get(name) is not entry:
                selection.ignored.append(entry.shown)
    graded = list(selection.graded.values())
    if len(graded) == 2 and graded[0].shown[: -len(graded[0].name)] != graded[1].shown[: -len(graded[1].name)]:
        selection.notes.append(f"no folder holds both {listed(list(selection.graded))}, so they come from different folders: "
                               f"{graded[0].shown} and {graded[1].shown}. Put both in one folder.")
    elif len(graded) > 2 and len({entry.shown[: -len(entry.name)] for entry in graded}) > 1:
        selection.notes.append(f"no folder holds all of {listed(wanted)}, so they come from different folders: "
                               f"{listed([entry.shown for entry in graded])}. Put them in one folder.")
    selection.notes += zip_problems
    return selection
