"""`python -m autograder regrade` and `merge`: checks of the input, then the batch and the table.

Exit status: 0 every submission of the slice has a grade; 1 the same, but some need a look (a
timeout, a crash, the grader's own failure: see summary.txt); 2 bad input, nothing graded or
changed (a missing or malformed metadata file, a listed folder that is missing, duplicate ids, an
output folder holding something else); 130 interrupted (what was finished is kept: run the same
command again to go on).
"""
import os
import re
import sys

from . import batch, table
from .export import ExportError
from .export import load as load_export
from .export import shard as shard_of
from .store import OutputError, Store

BAD_INPUT = 2
INTERRUPTED = 130


def parse_shard(text):
    """'K/N' -> (K, N), 1 <= K <= N; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N (e.g. 3/8)")
    return int(match.group(1)), int(match.group(2))


def _error(message):
    print(f"regrade: {message}", file=sys.stderr)
    return BAD_INPUT


def root_sandbox_problem():
    """Why student code would run as root here (the container command then refuses to grade), or None."""
    from ..sandbox import users
    if not users.is_root() or os.environ.get("VAE_ALLOW_ROOT_SANDBOX") == "1":
        return None
    return users.python_problem(sys.executable)


def regrade(args, log=print):
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as error:
        return _error(str(error))
    timeout = batch.default_timeout_seconds() if args.timeout is None else args.timeout
    if args.iterations is not None and args.iterations < 1 or args.jobs is not None and args.jobs < 1 \
            or timeout <= 0:
        return _error("--iterations, --jobs and --timeout must be positive")
    try:
        export = load_export(args.export)
    except ExportError as error:
        return _error(str(error))
    problem = root_sandbox_problem()
    if problem:
        return _error(f"student code would run as root here ({problem}), and each grading would refuse. Give the "
                      f"slot users an interpreter they can run (setup.sh in a folder they can read), or accept the "
                      f"risk with VAE_ALLOW_ROOT_SANDBOX=1")
    try:
        store = Store.open(args.out, export, shard)
    except OutputError as error:
        return _error(str(error))

    from .. import config
    iterations = args.iterations or config.DEFAULT_ITERATIONS
    chosen = shard_of(export.submissions, *shard) if shard else export.submissions
    # the CPUs of the quota (asked once: a child imports torch) size the default jobs and the threads
    cpus = batch.available_cpus() if not args.jobs or not os.environ.get("VAE_THREADS") else None
    if args.jobs:
        jobs, why = args.jobs, "--jobs"
        fit = batch.available_memory()
        if fit is not None and jobs > max(1, fit // batch.PEAK_GRADING_BYTES):
            log(f"warning: {jobs} gradings at once may not fit in the {fit / 2**30:.1f} GiB available "
                f"({batch.PEAK_GRADING_BYTES / 2**20:.0f} MB each at their peak)")
    else:
        jobs, why = batch.default_jobs(cpus)
    threads = batch.threads_per_grading(jobs, cpus) if cpus else None      # None: VAE_THREADS as set
    grader = batch.grader_version()
    where = f" (shard {shard[0]}/{shard[1]}: {len(chosen)} of {len(export.submissions)})" if shard else ""
    each = threads or os.environ.get("VAE_THREADS")
    log(f"regrade: {len(chosen)} submission(s) of {export.folder}{where} -> {store.out}; {jobs} at a time ({why}), "
        f"{each} thread(s) each; {iterations} iterations; timeout {timeout:g} s; grader {grader}")
    try:
        outcome = batch.Batch(store, chosen, grader, iterations, args.device, jobs, timeout, force=args.force,
                              progress=not args.no_progress, log=log, threads=threads).run()
    except KeyboardInterrupt:                  # before the gradings started (hashing the files)
        log("regrade: interrupted before any grading started; nothing was changed")
        return INTERRUPTED
    if outcome.interrupted:
        finished = sum(1 for key in outcome.statuses)
        log(f"regrade: interrupted ({outcome.interrupted}); {finished} of {len(chosen)} submission(s) have their "
            f"grades in {store.out}. Run the same command again to grade the rest")
        return INTERRUPTED

    rows = [table.row(s, store.record(s.key), store.results(s.key)) for s in chosen]
    title = (f"Regrade of {export.folder.name}: {len(chosen)} submissions{where}, grader {grader}, "
             f"{iterations} iterations")
    text = table.write(store.out, rows, title, log=log)
    stale = store.graded_keys() - set(export.keys())
    if stale:
        log(f"note: {store.out} also holds {len(stale)} graded submission(s) that are not in this export "
            f"(kept, not in grades.csv)")
    log(text.rstrip())
    log(f"regrade: {store.out / 'grades.csv'}, summary.txt, summary.png; each submission's results.json under "
        f"{store.out / 'submissions'}")
    return 1 if any(item["status"] in table.NEEDS_A_LOOK for item in rows) else 0


def merge(args, log=print):
    from .merge import merge as run_merge
    try:
        rows, text = run_merge(args.shards, args.out, log=log)
    except OutputError as error:
        print(f"merge: {error}", file=sys.stderr)
        return BAD_INPUT
    log(text.rstrip())
    log(f"merge: {len(rows)} submissions -> {args.out}/grades.csv, summary.txt, summary.png")
    return 1 if any(item["status"] in table.NEEDS_A_LOOK for item in rows) else 0
