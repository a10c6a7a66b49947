"""A Gradescope "Export Submissions" folder: `submission_metadata.yml` and one folder per submission.

The metadata is YAML written by Ruby (Psych): a mapping from each submission's folder name to
its record, whose keys are Ruby symbols (a leading colon):

    submission_123456:
      :submitters:
      - :name: Ada Lovelace
        :sid: '1815'
        :email: ada@example.edu
      :created_at: 2026-11-20 17:34:00.861687000 Z
      :score: 21.5
      :results: ...        (the results.json Gradescope keeps, as nested YAML: skipped)
      :history: ...        (earlier submissions: skipped)

It is read by a strict parser of exactly this shape (no YAML library in the grader's image): the
scalars of the submitters, `:created_at`, `:score` and `:status` are parsed (plain, single- or
double-quoted, block, `!binary`); every other value is skipped by its indentation, which YAML's
block structure guarantees (a value's lines are more indented than its key, or are `- ` items at
the key's indentation), whatever it holds. Anything else (a top level that is not a mapping of
folder names, a record without `:submitters`, a tag or alias where a name is read, a tab in the
indentation) is refused with its line number, never guessed.
"""
import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

METADATA = "submission_metadata.yml"
IGNORED_ENTRIES = ("__MACOSX",)          # what unzipping on a Mac adds beside the submissions
SUBMISSION_ID = re.compile(r"submission_(\d+)")


class ExportError(ValueError):
    """The export cannot be graded as it is; the message says what to fix."""


@dataclass(frozen=True)
class Submitter:
    name: str
    sid: str
    email: str


@dataclass(frozen=True)
class Submission:
    key: str                    # the folder's name, as the metadata lists it ("submission_123456")
    id: str                     # Gradescope's submission id ("123456"), else the key
    folder: Path
    submitters: Tuple[Submitter, ...]
    created_at: str = ""
    gradescope_score: Optional[float] = None   # the score Gradescope held when the export was made


@dataclass(frozen=True)
class Export:
    folder: Path
    metadata_sha256: str
    submissions: Tuple[Submission, ...]      # sorted by key

    def keys(self):
        return [s.key for s in self.submissions]


# ---------------------------------------------------------------- the YAML subset

class _Lines:
    """The metadata's lines: (number, indentation, text without it); blank and comment lines kept."""

    def __init__(self, text):
        if text.startswith("\ufeff"):
            text = text[1:]
        self.rows = []
        for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
            stripped = raw.lstrip(" ")
            indent = len(raw) - len(stripped)
            if stripped.startswith("\t") and stripped.strip():
                raise ExportError(f"{METADATA}, line {number}: a tab in the indentation (YAML allows only spaces)")
            self.rows.append((number, indent, stripped.rstrip()))

    def __len__(self):
        return len(self.rows)

    def blank(self, i):
        text = self.rows[i][2]
        return not text or text.startswith("#")

    def next_content(self, i):
        while i < len(self.rows) and self.blank(i):
            i += 1
        return i


def _fail(number, message):
    raise ExportError(f"{METADATA}, line {number}: {message}")


_KEY = re.compile(r"""(?P<key>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^'"#\s][^#]*?)\s*:(?:\s+(?P<value>.*))?$""")


def _split_entry(number, text):
    """'key: value' -> (key, value text or ''); the key unquoted."""
    match = _KEY.match(text)
    if not match or text.startswith(("- ", "? ", "[", "{", "&", "*", "!", "|", ">")) or text == "-":
        _fail(number, f"expected 'key: value', found {text[:60]!r}")
    key, value = match.group("key"), (match.group("value") or "").strip()
    if value.startswith("#"):
        value = ""
    if key.startswith("'"):
        key = key[1:-1].replace("''", "'")
    elif key.startswith('"'):
        key = _double_quoted(number, key[1:-1])
    return key, value


_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}


def _double_quoted(number, body):
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = body[i + 1:i + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                _fail(number, f"bad escape \\{code}{digits} in a double-quoted string")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            _fail(number, f"unknown escape \\{code} in a double-quoted string")
    return "".join(out)


def _fold(pieces):
    """YAML line folding of a flow scalar's lines: one break is a space, n empty lines are n breaks."""
    text, empty = pieces[0], 0
    for k, piece in enumerate(pieces[1:], start=2):
        if piece == "" and k < len(pieces):     # the last line (the closing quote's) is never empty
            empty += 1
            continue
        text += ("\n" * empty if empty else " ") + piece
        empty = 0
    return text


def _continuation(lines, i, parent_indent):
    """The rows after row i that continue a flow scalar: indented past the parent, or blank between
    such rows -> (their texts, the row after them)."""
    pieces, j, end = [], i + 1, i + 1
    while j < len(lines):
        number, indent, text = lines.rows[j]
        if text and indent <= parent_indent:
            break
        pieces.append(text)
        j += 1
        if text:
            end = j
    return pieces[:end - i - 1], end


def _block_scalar(lines, i, header, parent_indent):
    """A literal (|) or folded (>) block scalar whose header is on row i -> (text, next row)."""
    number = lines.rows[i][0]
    match = re.fullmatch(r"([|>])([1-9]?)([-+]?)([1-9]?)(\s+#.*)?", header)
    if not match or (match.group(2) and match.group(4)):
        _fail(number, f"bad block scalar header {header!r}")
    style, chomp, explicit = match.group(1), match.group(3), match.group(2) or match.group(4)
    body, j = [], i + 1
    while j < len(lines) and (not lines.rows[j][2] or lines.rows[j][1] > parent_indent):
        body.append(lines.rows[j])
        j += 1
    trailing = 0
    while body and not body[-1][2]:
        body.pop()
        trailing += 1
    indent = parent_indent + int(explicit) if explicit else next((row[1] for row in body if row[2]), parent_indent + 1)
    texts = []
    for row_number, row_indent, text in body:
        if text and row_indent < indent:
            _fail(row_number, "a block scalar's line is less indented than its first line")
        texts.append(" " * (row_indent - indent) + text if text else "")
    if style == "|":
        value = "\n".join(texts)
    else:                                   # folded: a break between two plain lines is a space
        value = ""
        for k, text in enumerate(texts):
            if k:
                previous = texts[k - 1]
                value += " " if previous and text and not previous.startswith(" ") and not text.startswith(" ") \
                    else "\n"
            value += text
    if value and chomp != "-":
        value += "\n" + ("\n" * trailing if chomp == "+" else "")
    return value, j


def _join_double_quoted(lines_of_text):
    """The lines of a multi-line double-quoted scalar, folded: a line ending in an escaped break
    (an odd number of backslashes) joins the next without a space."""
    out, empty = lines_of_text[0], 0
    for k, text in enumerate(lines_of_text[1:], start=2):
        if text == "" and k < len(lines_of_text):
            empty += 1
            continue
        trailing = len(out) - len(out.rstrip("\\"))
        if trailing % 2 and not empty:
            out = out[:-1] + text
        else:
            out += ("\n" * empty if empty else " ") + text
        empty = 0
    return out


def _scalar(lines, i, value, parent_indent):
    """The scalar whose text starts as `value` on row i (a key's value) -> (value, next row).
    None for YAML's null; strings otherwise (numbers stay text: the caller converts)."""
    number = lines.rows[i][0]
    if value.startswith("&"):                               # an anchor: the value follows it
        anchor, _, value = value.partition(" ")
        value = value.strip()
        if not value:
            _fail(number, f"anchor {anchor} without a value where a scalar is read")
    if value.startswith("*"):
        _fail(number, f"an alias ({value[:40]}) where a scalar is read: not supported")
    if value.startswith("!"):
        tag, _, rest = value.partition(" ")
        if tag not in ("!binary", "!!binary"):
            _fail(number, f"tag {tag} where a scalar is read: not supported")
        encoded, j = _scalar(lines, i, rest.strip(), parent_indent)
        try:
            raw = base64.b64decode("".join((encoded or "").split()), validate=True)
        except ValueError:
            _fail(number, "a !binary value that is not base64")
        return raw.decode("utf-8", errors="replace"), j
    if value.startswith(("|", ">")):
        return _block_scalar(lines, i, value, parent_indent)
    if value.startswith(("[", "{")):
        if value in ("[]", "{}"):
            return value, i + 1
        _fail(number, f"a flow collection ({value[:40]}) where a scalar is read: not supported")
    if value.startswith(("'", '"')):
        quote = value[0]
        pieces, j = [value[1:]], i + 1
        pattern = re.compile(r"(?:[^']|'')*'(?!')" if quote == "'" else r'(?:[^"\\]|\\.)*"', re.S)
        while not (match := pattern.match("\n".join(pieces))):
            if j >= len(lines) or (lines.rows[j][2] and lines.rows[j][1] <= parent_indent):
                _fail(number, f"unterminated {quote}quoted{quote} string")
            pieces.append(lines.rows[j][2])
            j += 1
        text = "\n".join(pieces)
        body, rest = text[:match.end() - 1], text[match.end():].strip()
        if rest and not rest.startswith("#"):
            _fail(number, f"text after a quoted string: {rest[:40]!r}")
        if quote == "'":
            return _fold(body.split("\n")).replace("''", "'"), j
        return _double_quoted(number, _join_double_quoted(body.split("\n"))), j
    value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
    pieces, j = _continuation(lines, i, parent_indent)
    for k, piece in enumerate(pieces):
        if re.search(r":(\s|$)", piece) or piece.startswith("- "):
            _fail(lines.rows[i + 1 + k][0], "a value cannot be followed by a nested mapping or list")
    text = _fold([value, *pieces]) if pieces else value
    return (None if text in ("", "~", "null", "Null", "NULL") else text), j


def _skip(lines, i, value, indent):
    """Row after the value of the entry on row i (at `indent`, inline text `value`): its lines are
    more indented, blank, or (a block sequence under the key) '- ' items at the key's indentation."""
    j = i + 1
    while j < len(lines):
        number, row_indent, text = lines.rows[j]
        if text and not text.startswith("#") and row_indent <= indent:
            if not (row_indent == indent and not value and (text == "-" or text.startswith("- "))):
                break
        j += 1
    return j


def _mapping(lines, i, indent, read):
    """The block mapping whose entries start at row i with `indent` -> ({key: value}, next row).
    `read`: {key: kind}, kind "scalar" or a function (lines, row, value, indent) -> (value, next row);
    other keys' values are skipped."""
    found, lines_of = {}, {}
    while True:
        i = lines.next_content(i)
        if i >= len(lines) or lines.rows[i][1] < indent:
            return found, i
        number, row_indent, text = lines.rows[i]
        if row_indent > indent:
            _fail(number, f"indented {row_indent} spaces where {indent} were expected")
        if text in ("---", "...") and indent == 0:
            i += 1
            continue
        key, value = _split_entry(number, text)
        if key in lines_of:
            _fail(number, f"{key!r} appears twice (first on line {lines_of[key]})")
        lines_of[key] = number
        kind = read.get(key) if read is not None else None
        if kind == "scalar":
            found[key], i = _scalar(lines, i, value, indent)
        elif kind is not None:
            found[key], i = kind(lines, i, value, indent)
        else:
            found[key], i = None, _skip(lines, i, value, indent)


_SUBMITTER_KEYS = {":name": "scalar", ":sid": "scalar", ":email": "scalar"}


def _submitters(lines, i, value, indent):
    """`:submitters:`'s value: [] or a block sequence of mappings -> ([{key: value}], next row)."""
    number = lines.rows[i][0]
    if value:
        if value == "[]":
            return [], i + 1
        _fail(number, f":submitters must be a list of submitters, found {value[:40]!r}")
    items, j = [], lines.next_content(i + 1)
    item_indent = lines.rows[j][1] if j < len(lines) else indent
    if j >= len(lines) or item_indent < indent or not (lines.rows[j][2] == "-" or lines.rows[j][2].startswith("- ")):
        _fail(number, ":submitters must be a list of submitters")
    while j < len(lines) and lines.rows[j][1] == item_indent and \
            (lines.rows[j][2] == "-" or lines.rows[j][2].startswith("- ")):
        row_number, _, text = lines.rows[j]
        inline = text[1:].lstrip(" ")
        if inline:
            offset = item_indent + len(text) - len(inline)
            # the item's first entry stands on the '- ' line: read it as a row of its own
            lines.rows[j] = (row_number, offset, inline)
            entry, j = _mapping(lines, j, offset, _SUBMITTER_KEYS)
        else:
            k = lines.next_content(j + 1)
            if k >= len(lines) or lines.rows[k][1] <= item_indent:
                _fail(row_number, "an empty submitter")
            entry, j = _mapping(lines, k, lines.rows[k][1], _SUBMITTER_KEYS)
        items.append(entry)
        j = lines.next_content(j)
    return items, j


_RECORD_KEYS = {":submitters": _submitters, ":created_at": "scalar", ":score": "scalar", ":status": "scalar"}


def _record(lines, i, value, indent):
    number = lines.rows[i][0]
    if value:
        _fail(number, f"a submission's record must be a mapping, found {value[:40]!r}")
    j = lines.next_content(i + 1)
    if j >= len(lines) or lines.rows[j][1] <= indent:
        _fail(number, "a submission without a record (no :submitters)")
    record, j = _mapping(lines, j, lines.rows[j][1], _RECORD_KEYS)
    if ":submitters" not in record:
        _fail(number, "a submission's record without :submitters (is this Gradescope's submission_metadata.yml?)")
    return record, j


class _Everything(dict):
    """Every top-level key is a submission record."""

    def get(self, key, default=None):
        return _record


def parse_metadata(text):
    """submission_metadata.yml's text -> {folder name: {":submitters": [...], ":created_at": ..., ...}}."""
    lines = _Lines(text)
    start = lines.next_content(0)
    if start < len(lines) and lines.rows[start][2] in ("---", "--- {}", "{}"):
        if lines.rows[start][2] != "---":
            return {}
        start += 1
    first = lines.next_content(start)
    if first < len(lines) and lines.rows[first][1] != 0:
        _fail(lines.rows[first][0], "the top level must be a mapping of submission folders, from column 1")
    found, end = _mapping(lines, start, 0, _Everything())
    end = lines.next_content(end)
    if end < len(lines) and lines.rows[end][2] != "...":
        _fail(lines.rows[end][0], f"unexpected {lines.rows[end][2][:60]!r}")
    return found


# ---------------------------------------------------------------- the export

def _text(value):
    return "" if value is None else str(value)


def _score(number_text):
    try:
        return float(number_text) if number_text is not None else None
    except ValueError:
        return None


def _listing(names, limit=8):
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load(folder):
    """The export in `folder` -> Export, or ExportError saying what is wrong (nothing is graded then)."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".zip":
        raise ExportError(f"{folder} is a zip: unzip it first and pass the folder that holds {METADATA}")
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder")
    metadata = folder / METADATA
    if not metadata.is_file():
        inside = [p.parent for p in folder.glob(f"*/{METADATA}")]
        hint = f": it is in {inside[0]}, pass that folder" if len(inside) == 1 else \
            " (Gradescope's Export Submissions puts it at the top of the export, beside the submission folders)"
        raise ExportError(f"no {METADATA} in {folder}{hint}")
    raw = metadata.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ExportError(f"{metadata} is not UTF-8 text (byte {error.start})") from None
    records = parse_metadata(text)
    if not records:
        raise ExportError(f"{metadata} lists no submission")

    submissions, ids = [], {}
    for key, record in records.items():
        if not key or key in (".", "..") or "/" in key or "\\" in key or "\0" in key or key.startswith("."):
            raise ExportError(f"{metadata}: {key!r} cannot be a submission folder's name")
        match = SUBMISSION_ID.fullmatch(key)
        ident = str(int(match.group(1))) if match else key
        if ident in ids:
            raise ExportError(f"{metadata}: {ids[ident]!r} and {key!r} are the same submission id {ident}")
        ids[ident] = key
        people = []
        for person in record[":submitters"]:
            if not isinstance(person, dict):
                raise ExportError(f"{metadata}: a submitter of {key} is not a mapping")
            people.append(Submitter(_text(person.get(":name")), _text(person.get(":sid")),
                                    _text(person.get(":email"))))
        submissions.append(Submission(key, ident, folder / key, tuple(people), _text(record.get(":created_at")),
                                      _score(record.get(":score"))))

    missing = [s.key for s in submissions if not s.folder.is_dir()]
    if missing:
        raise ExportError(f"{len(missing)} submission folder(s) the metadata lists are not in {folder}: "
                          f"{_listing(missing)} (an incomplete unzip?)")
    listed = set(records)
    unlisted = [p.name for p in folder.iterdir() if p.is_dir() and p.name not in listed
                and not p.name.startswith(".") and p.name not in IGNORED_ENTRIES]
    if unlisted:
        raise ExportError(f"{len(unlisted)} folder(s) in {folder} are not in its {METADATA}: {_listing(unlisted)} "
                          f"(folders of another export? move them out)")
    return Export(folder.resolve(), hashlib.sha256(raw).hexdigest(),
                  tuple(sorted(submissions, key=lambda s: s.key)))


def shard(submissions, k, n):
    """The k-th (1-based) of n disjoint slices of `submissions` (every n-th, starting at the k-th)."""
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N")
    return tuple(submission for index, submission in enumerate(submissions) if index % n == k - 1)


def files_sha256(folder):
    """A hash of everything in a submission folder: each path, kind and bytes (symbolic links by their
    target, never followed). Modification times are left out: a fresh unzip grades the same."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        relative = path.relative_to(folder).as_posix().encode("utf-8", "surrogateescape")
        if path.is_symlink():
            digest.update(b"L" + relative + b"\0" + str(path.readlink()).encode("utf-8", "surrogateescape") + b"\0")
        elif path.is_file():
            digest.update(b"F" + relative + b"\0" + str(path.stat().st_size).encode() + b"\0")
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        elif path.is_dir():
            digest.update(b"D" + relative + b"\0")
    return digest.hexdigest()
