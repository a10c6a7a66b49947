"""The output folder of a regrade: what is done, written so that no interruption loses or half-writes it.

    OUT/regrade.json                       which export and which slice the folder holds (the manifest)
    OUT/submissions/<folder>/results.json  the grader's results.json, as it wrote it
    OUT/submissions/<folder>/log.txt       the grading's log (the hidden stdout on Gradescope)
    OUT/submissions/<folder>/record.json   written last: status, seconds, and the fingerprint of
                                           what was graded (grader version, iterations, device,
                                           the hash of the submission's files)
    OUT/grades.csv, summary.txt, summary.png   the table (table.py), rewritten at the end of each run

Every file is written to a temporary file in its own folder, flushed to disk and renamed over the
old one (os.replace is atomic): a reader, or a run killed at any instant, sees the old file or the
whole new one. A submission counts as done only when its record is there and matches; temporary
files a killed run left (hidden, `.tmp-*`) are removed when the next run opens the folder.
"""
import fcntl
import hashlib
import json
from pathlib import Path

from .. import results

MANIFEST = "regrade.json"
LOCK = ".lock"                 # held by the run writing to the folder
FORMAT = 1
TEMPORARY_PREFIX = ".tmp-"
# A grading that ended like this is not done: the next run grades it again (without --force).
RETRIED = ("crashed",)


class OutputError(ValueError):
    """The output folder cannot take this run's grades; the message says why."""


def write_atomic(path, data):
    """Write bytes to `path` so that no reader and no interruption ever sees part of them."""
    return results.write_atomic(path, data, TEMPORARY_PREFIX)


def write_json(path, value):
    return write_atomic(path, (json.dumps(value, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode())


def read_json(path):
    """The JSON object in `path`, or None (absent, unreadable, not an object)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Store:
    """One output folder, opened for an export (and a slice of it)."""

    def __init__(self, out):
        self.out = Path(out)
        self.manifest = None
        self._lock = None

    @classmethod
    def open(cls, out, export, shard=None):
        """The folder `out` for `export` (created if need be) -> Store; OutputError if it holds
        something else: files that are no regrade's, or the grades of another export (none of the
        submissions it graded is in this one; submission ids are unique across Gradescope)."""
        store = cls(out)
        out = store.out
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file, not a folder")
        previous = read_json(out / MANIFEST) if out.is_dir() else None
        if out.is_dir() and previous is None and any(path.name != LOCK for path in out.iterdir()):
            what = "an unreadable " + MANIFEST if (out / MANIFEST).exists() else "no " + MANIFEST
            raise OutputError(f"--out {out} holds files and {what}: it is not a regrade's output folder. "
                              f"Choose an empty or new folder")
        if previous is not None:
            if previous.get("kind") != "regrade":
                raise OutputError(f"--out {out} holds the output of `{previous.get('kind')}`, not of a regrade: "
                                  f"choose another folder")
            graded = store.graded_keys()
            keys = set(export.keys())
            if graded and not graded & keys:
                raise OutputError(
                    f"--out {out} holds the grades of another export ({previous.get('export')}: "
                    f"{len(graded)} graded submissions, none of them in {export.folder}). Choose another folder")
        out.mkdir(parents=True, exist_ok=True)
        store._lock = open(out / LOCK, "a+")
        try:
            fcntl.flock(store._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            store._lock.close()
            raise OutputError(f"another regrade is writing to --out {out} right now: wait for it, or choose "
                              f"another folder") from None
        except OSError:                        # a file system without locks (some network ones): go on
            pass
        store.clean_temporaries()
        store.manifest = {"kind": "regrade", "format": FORMAT, "export": str(export.folder),
                          "metadata_sha256": export.metadata_sha256, "submissions": export.keys(),
                          "shard": list(shard) if shard else None}
        write_json(out / MANIFEST, store.manifest)
        return store

    # ------------------------------------------------------------ per submission

    def folder(self, key):
        return self.out / "submissions" / key

    def graded_keys(self):
        """Keys of the submissions this folder holds a record of."""
        base = self.out / "submissions"
        if not base.is_dir():
            return set()
        return {path.name for path in base.iterdir() if (path / "record.json").is_file()}

    def record(self, key):
        return read_json(self.folder(key) / "record.json")

    def results(self, key):
        return read_json(self.folder(key) / "results.json")

    def done(self, key, fingerprint):
        """The record of `key` if it was graded as `fingerprint` says and its results are intact, else None."""
        record = self.record(key)
        if record is None or record.get("fingerprint") != fingerprint or record.get("status") in RETRIED:
            return None
        expected = record.get("results_sha256")
        if expected is not None:
            try:
                if sha256((self.folder(key) / "results.json").read_bytes()) != expected:
                    return None
            except OSError:
                return None
        return record

    def save(self, key, record, results_bytes=None, log_bytes=None):
        """Store one finished grading: results and log first, the record (which makes it done) last."""
        folder = self.folder(key)
        if results_bytes is not None:
            write_atomic(folder / "results.json", results_bytes)
            record = dict(record, results_sha256=sha256(results_bytes))
        else:
            (folder / "results.json").unlink(missing_ok=True)
            record = dict(record, results_sha256=None)
        if log_bytes is not None:
            write_atomic(folder / "log.txt", log_bytes)
        write_json(folder / "record.json", record)
        return record

    def clean_temporaries(self):
        """Remove what a killed run left half-written (never a finished file)."""
        removed = 0
        if self.out.is_dir():
            for path in self.out.rglob(TEMPORARY_PREFIX + "*"):
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
