"""`merge`: the shards of one regrade (`regrade --shard K/N`, each into its own folder) joined into
one folder: grades.csv, summary.txt, summary.png and every submission's files, as an unsharded run
makes them. Refused, with the reason, unless the shards are exactly the N slices of the same export,
each complete, all graded by the same grader with the same iterations."""
from pathlib import Path

from . import export as export_module
from . import table
from .store import MANIFEST, OutputError, read_json, write_atomic, write_json


def _shard_of(folder):
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST)
    if manifest is None or manifest.get("kind") != "regrade":
        raise OutputError(f"{folder} is not a regrade's output folder (no {MANIFEST})")
    if not (folder / "grades.csv").is_file():
        raise OutputError(f"{folder} has no grades.csv: its run did not finish. Run its command again")
    try:
        rows = table.read_csv(folder / "grades.csv")
    except (OSError, ValueError) as error:
        raise OutputError(str(error)) from None
    return manifest, rows


def merge(folders, out, log=print):
    """Join the shard folders into `out` -> (rows, summary text). OutputError when they do not make one whole."""
    folders = [Path(f) for f in folders]
    out = Path(out)
    if any(out.resolve() == f.resolve() for f in folders):
        raise OutputError(f"--out {out} is one of the shards: choose a new folder")
    shards = [(folder, *_shard_of(folder)) for folder in folders]
    exports = {manifest["metadata_sha256"] for _, manifest, _ in shards}
    if len(exports) != 1:
        raise OutputError("the folders hold the grades of different exports (their submission_metadata.yml differ): "
                          + ", ".join(f"{folder} ({manifest['export']})" for folder, manifest, _ in shards))
    keys = sorted(shards[0][1]["submissions"])
    slices = {}
    for folder, manifest, _ in shards:
        shard = manifest.get("shard")
        if shard is None:
            if len(shards) > 1:
                raise OutputError(f"{folder} was graded whole (no --shard): it cannot be merged with other folders")
            shard = [1, 1]
        k, n = shard
        if (k, n) in slices:
            raise OutputError(f"shard {k}/{n} is given twice: {slices[(k, n)]} and {folder}")
        slices[(k, n)] = folder
    counts = {n for _, n in slices}
    if len(counts) != 1:
        raise OutputError(f"the shards split the export differently: {sorted(f'{k}/{n}' for k, n in slices)}")
    (n,) = counts
    missing = sorted(set(range(1, n + 1)) - {k for k, _ in slices})
    if missing:
        raise OutputError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: run them, then merge all {n}")

    rows = []
    for folder, manifest, shard_rows in shards:
        k = (manifest.get("shard") or [1, 1])[0]
        wanted = list(export_module.shard(keys, k, n))     # the rule regrade --shard used
        have = [item["folder"] for item in shard_rows]
        if sorted(have) != wanted:
            raise OutputError(f"{folder}: its grades.csv holds {len(have)} submission(s), not the {len(wanted)} of "
                              f"shard {k}/{n} (an older or interrupted run?). Run its command again")
        rows += shard_rows
    versions = {(item["grader"], item["iterations"]) for item in rows if item["grader"]}
    if len(versions) > 1:
        raise OutputError("the shards were graded by different graders or iterations "
                          f"({', '.join(f'grader {g}, {i} iterations' for g, i in sorted(versions))}): "
                          "grade them again with one grader")

    previous = read_json(out / MANIFEST) if out.is_dir() else None
    if out.is_dir() and any(out.iterdir()) and not (previous and previous.get("kind") == "merge"
                                                     and previous.get("metadata_sha256") in exports):
        raise OutputError(f"--out {out} holds other files: choose an empty or new folder")
    rows.sort(key=lambda item: item["folder"])
    sources = {item["folder"]: folder for folder, _, shard_rows in shards for item in shard_rows}
    for key, folder in sources.items():
        for name in ("results.json", "record.json", "log.txt"):
            path = folder / "submissions" / key / name
            if path.is_file():
                write_atomic(out / "submissions" / key / name, path.read_bytes())
    manifest = dict(shards[0][1], kind="merge", shard=None, shards=[str(folder) for folder in folders])
    write_json(out / MANIFEST, manifest)
    ((grader, iterations),) = versions or {("?", "?")}
    title = (f"Regrade of {Path(manifest['export']).name}: {len(rows)} submissions, grader {grader}, "
             f"{iterations} iterations (merged from {n} shards)")
    return rows, table.write(out, rows, title, log=log)

