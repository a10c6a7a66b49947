"""results.json: build from the runner's output, validate against Gradescope's schema, write.

Written once, atomically (temp file + rename), and always: `failure` produces a
valid file even when the grader itself crashed. Every string is cleaned before writing
(text.clean: a submission's text may hold lone surrogates or control characters), and
`written_here` tells whether the file on disk is still the one this process wrote, so that a
later fault never replaces valid results.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

from . import config
from .text import clean

_WRITTEN = {}    # resolved path -> sha256 of the bytes this process wrote there last

TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
             "tags", "visibility", "extra_data"}
LEADERBOARD_KEYS = {"name", "value", "order"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


class SchemaError(ValueError):
    pass


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise SchemaError(f"{what} must be a finite number, got {value!r}")


def validate(results):
    """Raise SchemaError unless `results` follows Gradescope's results.json specification."""
    if not isinstance(results, dict):
        raise SchemaError("results must be an object")
    unknown = set(results) - TOP_KEYS
    if unknown:
        raise SchemaError(f"unknown top-level keys {sorted(unknown)}")
    if "score" not in results and "tests" not in results:
        raise SchemaError("either score or tests is required")
    for key in ("score", "execution_time"):
        if key in results:
            _number(results[key], key)
    for key in ("visibility", "stdout_visibility"):
        if key in results and results[key] not in VISIBILITIES:
            raise SchemaError(f"{key} must be one of {sorted(VISIBILITIES)}")
    for key in ("output_format", "test_output_format", "test_name_format"):
        if key in results and results[key] not in FORMATS:
            raise SchemaError(f"{key} must be one of {sorted(FORMATS)}")
    for index, test in enumerate(results.get("tests", [])):
        unknown = set(test) - TEST_KEYS
        if unknown:
            raise SchemaError(f"test {index} has unknown keys {sorted(unknown)}")
        for key in ("score", "max_score"):
            if key in test:
                _number(test[key], f"test {index} {key}")
        if test.get("status", "passed") not in ("passed", "failed"):
            raise SchemaError(f"test {index} status must be passed or failed")
        if "visibility" in test and test["visibility"] not in VISIBILITIES:
            raise SchemaError(f"test {index} visibility must be one of {sorted(VISIBILITIES)}")
        if not isinstance(test.get("tags", []), list) or not isinstance(test.get("number", ""), str):
            raise SchemaError(f"test {index}: tags must be a list and number a string")
        if not isinstance(test.get("name", ""), str) or not isinstance(test.get("output", ""), str):
            raise SchemaError(f"test {index}: name and output must be strings")
    for index, entry in enumerate(results.get("leaderboard", [])):
        if set(entry) - LEADERBOARD_KEYS or "name" not in entry or "value" not in entry:
            raise SchemaError(f"leaderboard entry {index} must have name and value (and optionally order)")
        if entry.get("order", "desc") not in ("asc", "desc"):
            raise SchemaError(f"leaderboard entry {index} order must be asc or desc")
    json.dumps(results, allow_nan=False)
    return results


def cap(text, limit=config.TEST_OUTPUT_CHARS):
    if len(text) <= limit:
        return text
    return text[: limit - 60] + f"\n... [{len(text) - limit + 60} more characters cut]"


def cleaned(value):
    """`value` with every string in it (keys too) cleaned: safe to encode as UTF-8 and to show."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {cleaned(key): cleaned(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [cleaned(item) for item in value]
    return value


def write(results, path):
    """Validate and write atomically: readers see the old file or the whole new one."""
    validate(results)
    payload = json.dumps(cleaned(results), indent=2, allow_nan=False).encode("ascii")
    path = write_atomic(path, payload, prefix=".results-")
    _WRITTEN[str(path.resolve())] = hashlib.sha256(payload).hexdigest()
    return path


def write_atomic(path, data, prefix):
    """Write bytes to `path` so that no reader and no interruption ever sees part of them: a temporary
    file (named `prefix`...) in the same folder, flushed to disk, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:                                   # the rename itself reaches the disk with the folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass
    return path


def written_here(path):
    """True when the file at `path` is, byte for byte, the results this process wrote there last."""
    path = Path(path)
    expected = _WRITTEN.get(str(path.resolve()))
    try:
        return expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def failure(message, execution_time=0.0):
    """A valid results.json for when grading could not run at all."""
    return {"score": 0.0, "execution_time": round(float(execution_time), 2), "output": message,
            "tests": [{"name": "Autograder", "score": 0.0, "max_score": 0.0, "status": "failed",
                       "output": message}]}
