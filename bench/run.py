"""Every training and thread figure of the speed issue, in one command.

    .venv/bin/python bench/run.py            # all figures (about 16 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # no 20,000-iteration runs (about 4 minutes)
    .venv/bin/python bench/run.py --only ratio pinned --json out.json

Figures (each a whole process, start-up, data loading, evaluation and pictures included):
  threads  what runtime.configure_threads() and the matmul probe choose, normally and pinned
  ratio    plain eager loop (bench/plain_loop.py) vs `run_vae.py`, same iterations (--iters,
           default 3000), best of --repeat (3) interleaved runs each; target ours <= 0.6 x plain
  full     `run_vae.py` with its default 20,000 iterations: wall time (target <= 70 s here),
           peak memory of the process tree, the NELBO line; three runs (--full-runs N). Before
           each run, bench/host_probe.py times the training step on this host as it is at
           that moment (a shared virtual machine can be 50% slower one minute than the next)
  pinned   `run_vae.py` pinned to one core (taskset, else sched_setaffinity); with --quick
           3,000 iterations extrapolated to 20,000 from a 10-iteration run's fixed cost.
           Half a CPU (Gradescope's smallest container, a CFS quota of 0.5) runs a
           one-thread process at half the speed of a whole core, so its estimate is 2 x this.
  gpu      `run_vae.py --device cuda`, 20,000 iterations (only where CUDA is available)
  units    the unit checks of one submission (the reference solution), no training:
           `python -m autograder grade solution --checks sample_gaussian kl_normal
           negative_elbo_bound`, normally and pinned to one core (target <= 20 s)
  grading  the whole grading of the reference solution, every check plus the 20,000-iteration
           training gate: wall time (target <= 120 s) and the peak memory of the whole process
           tree, grader, sandbox children and evaluator (target <= 700 MB)
  grading_pinned  the same pinned to one core; twice that is the half-CPU estimate (target
           <= 8 minutes). With --quick both grading figures run 200 and 2,000 iterations and
           extrapolate to 20,000 (the per-iteration cost is the training gate's).
  regrade  `python -m autograder regrade` of a fake Gradescope export (tests/fake_export.py:
           correct, buggy, broken and hostile submissions; --regrade-count of them, 8 by default,
           at --regrade-iterations, 20,000 by default) with its default concurrency: submissions
           per hour and the peak memory of the whole batch (every grading's tree). Not in --quick
           (about 15 minutes at 8 submissions on 2 cores)

Peak memory is sampled every 50 ms over the whole process tree of every run (bench/measure.py),
as two sums: of resident sets (RSS; a page shared by two processes counts twice) and of
proportional set sizes (PSS; shared pages split between the processes that map them, the
memory the tree really holds). Timings are only meaningful on an otherwise idle machine: the
script warns when the load average says it is not, and --wait-idle waits for one.
More figures are added by registering a function in FIGURES; see `figure_ratio`.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SOLUTION = PROJECT / "solution"
sys.path.insert(0, str(PROJECT))

from bench.measure import measure_command, wait_until_idle  # noqa: E402

PYTHON = sys.executable
MB = 1 << 20


def pinned_prefix():
    """A command prefix that pins to one core: taskset, else a Python shim."""
    if shutil.which("taskset"):
        cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        return ["taskset", "-c", str(cpu)]
    return [PYTHON, str(HERE / "pin_one_core.py")]


WAIT_IDLE = [0.0]      # --wait-idle: seconds to wait for an idle machine before each run


def _idle():
    if WAIT_IDLE[0] > 0:
        busy = wait_until_idle(WAIT_IDLE[0])
        if busy >= 0.1:
            print(f"  (still {busy:.2f} CPUs busy after waiting {WAIT_IDLE[0]:.0f} s)")


def measured(cmd, cwd=None, env=None, ok=(0,)):
    """Run `cmd` on a (by --wait-idle) quiet machine -> row: wall time, peak memory of its tree.
    `ok`: the exit statuses that count as success."""
    _idle()
    try:
        wall, peak = measure_command(cmd, cwd=cwd, env=env or _env())
    except subprocess.CalledProcessError as error:
        if error.returncode not in ok:
            raise
        wall, peak = measure_command.last_wall, measure_command.last_peak
    by_process = sorted(measure_command.last_peak_by_process.values(), key=lambda row: -row[2])
    return {"command": " ".join(cmd), "seconds": round(wall, 2), "peak_rss_mb": round(peak / MB, 1),
            "peak_pss_mb": round(measure_command.last_peak_pss / MB, 1),
            "at_pss_peak": [{"process": c, "rss_mb": round(r / MB, 1), "pss_mb": round(q / MB, 1)}
                            for c, r, q in by_process],
            "processes": measure_command.last_processes, **_cpu_note()}


def extrapolate(short, row, short_iterations, iterations):
    """Add to `row` (a run of `iterations`) the cost per iteration against `short` and the
    20,000-iteration time it implies -> that time."""
    per_iteration = (row["seconds"] - short["seconds"]) / (iterations - short_iterations)
    full = row["seconds"] + (20000 - iterations) * per_iteration
    row.update(measured_iterations=iterations, ms_per_iteration=round(per_iteration * 1e3, 3),
               extrapolated_20000_seconds=round(full, 1))
    return full


def run_vae(iters, out_dir, extra=(), prefix=()):
    row = measured([*prefix, PYTHON, "run_vae.py", "--iters", str(iters), "--quiet", "--out", str(out_dir), *extra],
                   cwd=SOLUTION)
    row["result"] = next((l for l in measure_command.last.stdout.splitlines() if l.startswith("NELBO")), "")
    return row


def _cpu_note():
    background = measure_command.last_background_cpus
    if background > 0.1:
        print(f"  WARNING: other processes kept {background:.2f} CPUs busy during this run: contaminated")
    return {"cpu_seconds": round(measure_command.last_cpu_seconds, 2), "background_cpus": round(background, 2)}


def _env():
    env = dict(os.environ)
    env.pop("VAE_THREADS", None)                  # the run chooses its own threads
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# --- figures ------------------------------------------------------------------------------

def figure_threads(args, tmp):
    code = ("import runtime, fast, torch; n = runtime.configure_threads(); "
            "print(n, runtime.affinity_cpus(), runtime.cgroup_cpu_limit(), "
            "'onednn' if fast.onednn_matmul_pays() else 'blas', torch.__version__)")
    rows = {}
    for name, prefix in (("normal", []), ("pinned", pinned_prefix())):
        out = subprocess.run([*prefix, PYTHON, "-c", code], cwd=SOLUTION, env=_env(), capture_output=True,
                             text=True, check=True).stdout.split()
        rows[name] = {"threads": int(out[0]), "affinity_cpus": int(out[1]), "cgroup_quota": out[2],
                      "matmul": out[3], "torch": out[4]}
        print(f"  {name:7s} threads {out[0]} (affinity mask {out[1]} CPUs, cgroup quota {out[2]}), "
              f"matmul {out[3]}, torch {out[4]}")
    return rows


def figure_ratio(args, tmp):
    best, pairs = {}, []
    for repeat in range(args.repeat):
        plain = measured([PYTHON, str(HERE / "plain_loop.py"), str(args.iters)])
        plain["result"] = measure_command.last.stdout.strip()
        ours = run_vae(args.iters, tmp / "ratio")
        pairs.append((plain["seconds"], ours["seconds"]))
        print(f"  run {repeat + 1}: plain {plain['seconds']:.2f} s, ours {ours['seconds']:.2f} s "
              f"({ours['seconds'] / plain['seconds']:.3f})", flush=True)
        for name, row in (("plain", plain), ("ours", ours)):
            if name not in best or row["seconds"] < best[name]["seconds"]:
                best[name] = row
    ratio = best["ours"]["seconds"] / best["plain"]["seconds"]
    print(f"  plain eager loop, {args.iters} iterations: {best['plain']['seconds']:7.2f} s, "
          f"peak RSS {best['plain']['peak_rss_mb']:.0f} MB")
    print(f"  run_vae.py --iters {args.iters}:            {best['ours']['seconds']:7.2f} s, "
          f"peak RSS {best['ours']['peak_rss_mb']:.0f} MB ({best['ours']['processes']} processes)")
    print(f"  ratio ours / plain: {ratio:.3f} (target <= 0.6){'' if args.repeat == 1 else f', best of {args.repeat}'}")
    return {"iterations": args.iters, "plain": best["plain"], "ours": best["ours"], "ratio": round(ratio, 3),
            "runs": pairs}


def host_probe():
    """ms per training step of this host right now (bench/host_probe.py, about 4 s), or None."""
    _idle()
    done = subprocess.run([PYTHON, str(HERE / "host_probe.py")], cwd=SOLUTION, env=_env(), capture_output=True,
                          text=True)
    try:
        return float(done.stdout.split()[-1])
    except (IndexError, ValueError):
        print(f"  (host probe failed: {done.stderr.strip()[-300:]})")
        return None


def figure_full(args, tmp):
    rows = []
    for run in range(args.full_runs):
        probe = host_probe()
        row = run_vae(20000, tmp / "full")
        row["host_probe_ms_per_step"] = probe
        rows.append(row)
        host = "" if probe is None else (f"; host probe just before: {probe:.2f} ms/step, "
                                         f"20,000 x probe = {20 * probe:.0f} s")
        print(f"  run_vae.py, 20,000 iterations: {row['seconds']:.1f} s (target <= 70 s), "
              f"peak RSS {row['peak_rss_mb']:.0f} MB{host}", flush=True)
    seconds = [row["seconds"] for row in rows]
    print(f"  {rows[-1]['result']}")
    print(f"  {len(rows)} run(s): median {statistics.median(seconds):.1f} s, best {min(seconds):.1f} s, "
          f"worst {max(seconds):.1f} s")
    return {"runs": rows, "median_seconds": statistics.median(seconds)}


def figure_pinned(args, tmp):
    prefix = pinned_prefix()
    if args.quick:
        short = run_vae(10, tmp / "pin10", prefix=prefix)
        row = run_vae(3000, tmp / "pin3000", prefix=prefix)
        full = extrapolate(short, row, 10, 3000)
        print(f"  pinned to one core, 3000 iterations: {row['seconds']:.1f} s "
              f"({row['ms_per_iteration']:.2f} ms/iteration, 10 iterations {short['seconds']:.1f} s)")
        print(f"  -> 20,000 iterations on one core ~ {full:.0f} s (extrapolated)")
    else:
        row = run_vae(20000, tmp / "pin20000", prefix=prefix)
        full = row["seconds"]
        print(f"  pinned to one core, 20,000 iterations: {full:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB, "
              f"{row['result']}")
    row["half_cpu_estimate_seconds"] = round(2 * full, 1)
    print(f"  -> at half a CPU (quota 0.5): ~ {2 * full:.0f} s ({2 * full / 60:.1f} min) for the training run")
    return row


def figure_gpu(args, tmp):
    import torch
    if not torch.cuda.is_available():
        print("  no CUDA device here: skipped")
        return None
    row = run_vae(20000, tmp / "gpu", extra=("--device", "cuda"))
    print(f"  run_vae.py --device cuda, 20,000 iterations: {row['seconds']:.1f} s (target <= 15 s), {row['result']}")
    return row


UNIT_FAMILIES = ("sample_gaussian", "kl_normal", "negative_elbo_bound")


def grade(out_dir, iterations=None, checks=None, prefix=(), problems=None):
    """Grade the reference solution as an instructor would -> row of figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    cmd = [*prefix, PYTHON, "-m", "autograder", "grade", "solution", "--results", str(results)]
    if problems:
        cmd += ["--problems", problems]
    if iterations is not None:
        cmd += ["--iterations", str(iterations)]
    if checks:
        cmd += ["--checks", *checks]
    row = measured(cmd, cwd=PROJECT)
    graded = json.loads(results.read_text())
    row.update(score=graded.get("score"), execution_time=graded.get("execution_time"))
    return row


def _print_memory(row, target="target <= 700 MB"):
    print(f"  peak memory of the process tree: {row['peak_pss_mb']:.0f} MB PSS sum "
          f"({row['peak_rss_mb']:.0f} MB RSS sum; {target}); at the PSS peak:")
    for process in row["at_pss_peak"]:
        print(f"    {process['pss_mb']:6.0f} MB PSS {process['rss_mb']:6.0f} MB RSS  {process['process']}")


def figure_units(args, tmp):
    rows = {}
    for name, prefix in (("normal", ()), ("pinned", pinned_prefix())):
        row = rows[name] = grade(tmp / f"units-{name}", checks=UNIT_FAMILIES, prefix=prefix)
        print(f"  unit checks, {name:6s}: {row['seconds']:.1f} s whole process ({row['execution_time']} s in "
              f"results.json), score {row['score']} (target <= 20 s)")
    print(f"  -> at half a CPU: ~ {2 * rows['pinned']['seconds']:.0f} s")
    _print_memory(rows["normal"])
    return rows


def _whole_grading(args, tmp, name, prefix, problems=None):
    if not args.quick:
        return grade(tmp / name, prefix=prefix, problems=problems)
    short = grade(tmp / f"{name}-200", iterations=200, prefix=prefix, problems=problems)
    row = grade(tmp / f"{name}-2000", iterations=2000, prefix=prefix, problems=problems)
    extrapolate(short, row, 200, 2000)
    print(f"  ({name}: 200 iterations {short['seconds']:.1f} s, 2,000 iterations {row['seconds']:.1f} s: "
          f"{row['ms_per_iteration']:.2f} ms/iteration, extrapolated to 20,000)")
    return row


def _grading_seconds(row):
    return row.get("extrapolated_20000_seconds", row["seconds"])


def figure_grading(args, tmp):
    row = _whole_grading(args, tmp, "grading", ())
    print(f"  whole grading of the reference, 20,000 iterations: {_grading_seconds(row):.1f} s "
          f"(target <= 120 s), score {row['score']}")
    _print_memory(row)
    return row


def figure_grading_pinned(args, tmp):
    row = _whole_grading(args, tmp, "grading-pinned", pinned_prefix())
    seconds = _grading_seconds(row)
    row["half_cpu_estimate_seconds"] = round(2 * seconds, 1)
    print(f"  whole grading pinned to one core: {seconds:.1f} s, score {row['score']}")
    print(f"  -> at half a CPU (quota 0.5): ~ {2 * seconds:.0f} s ({2 * seconds / 60:.1f} min; target <= 8 min)")
    return row


def figure_regrade(args, tmp):
    """`python -m autograder regrade` of a fake export drawn from the cases (tests/fake_export.py)."""
    from autograder.regrade.batch import PEAK_GRADING_BYTES
    from tests import fake_export
    step = max(1, len(fake_export.CLASS) // args.regrade_count)
    drawn = fake_export.CLASS[::step][:args.regrade_count]
    fake_export.build(tmp / "export", drawn)
    env = _env()
    env["VAE_ALLOW_ROOT_SANDBOX"] = "1"      # this host's slot users may not run the interpreter (as under /root)
    cmd = [PYTHON, "-m", "autograder", "regrade", str(tmp / "export"), "--out", str(tmp / "grades"), "--no-progress",
           "--iterations", str(args.regrade_iterations)]
    row = measured(cmd, cwd=PROJECT, env=env, ok=(0, 1))          # 1: some submission timed out or crashed
    lines = measure_command.last.stdout.splitlines()
    row["plan"] = next((line for line in lines if line.startswith("regrade: ")), "")
    row["status"] = next((line for line in lines if line.startswith("Status: ")), "")
    row.update(submissions=len(drawn), iterations=args.regrade_iterations,
               submissions_per_hour=round(len(drawn) * 3600 / row["seconds"], 1),
               seconds_per_submission=round(row["seconds"] / len(drawn), 1))
    print(f"  {row['plan']}")
    print(f"  {len(drawn)} submissions at {args.regrade_iterations} iterations: {row['seconds']:.0f} s, "
          f"{row['submissions_per_hour']:.1f} submissions/hour ({row['seconds_per_submission']:.0f} s each); "
          f"{row['status']}")
    gradings = sum(1 for process in row["at_pss_peak"] if "autograder container" in process["process"])
    _print_memory(row, f"{gradings} grading(s) at the peak; regrade's default --jobs counts "
                       f"{PEAK_GRADING_BYTES / MB:.0f} MB each")
def figure_grading_two(args, tmp):
    """A two-problem zip's grading: the reference graded on the CS236 VAE and the conditional VAE
    (every check of both, both 20,000-iteration gates)."""
    row = _whole_grading(args, tmp, "grading-two", (), problems="vae,cvae")
    print(f"  whole grading of the reference on vae,cvae, 2 x 20,000 iterations: {_grading_seconds(row):.1f} s, "
          f"score {row['score']}")
    _print_memory(row)
    return row


FIGURES = {            # name -> (function, included by --quick)
    "threads": (figure_threads, True),
    "ratio": (figure_ratio, True),
    "full": (figure_full, False),
    "pinned": (figure_pinned, True),
    "gpu": (figure_gpu, False),
    "units": (figure_units, True),
    "grading": (figure_grading, True),
    "grading_pinned": (figure_grading_pinned, True),
    "regrade": (figure_regrade, False),
    "grading_two": (figure_grading_two, False),
}


def machine_note():
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cpus} CPUs in the affinity mask, load average {load:.2f}")
    if load > 0.5:
        print("WARNING: the machine is busy (load average > 0.5): timings below are contaminated")
    return {"cpus": cpus, "load_average_before": round(load, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="skip the 20,000-iteration runs (extrapolate instead)")
    p.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="just these figures")
    p.add_argument("--iters", type=int, default=3000, help="iterations of the ratio figure (default 3000)")
    p.add_argument("--repeat", type=int, default=3,
                   help="best of N for each side of the ratio figure, runs interleaved (default 3: on a "
                        "shared host one run of either side can be 30%% slow)")
    p.add_argument("--full-runs", type=int, default=3, metavar="N",
                   help="20,000-iteration runs of the full figure, each after a host probe (default 3: "
                        "on a shared host one run can be 30%% slow on either side)")
    p.add_argument("--regrade-count", type=int, default=8, metavar="N",
                   help="submissions of the regrade figure, drawn evenly from the fake class (default 8 of 32)")
    p.add_argument("--regrade-iterations", type=int, default=20000, metavar="N",
                   help="training iterations of the regrade figure (default 20000, the real grading)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for other processes to go quiet")
    args = p.parse_args(argv)
    WAIT_IDLE[0] = args.wait_idle
    names = args.only or [n for n, (_, quick) in FIGURES.items() if quick or not args.quick]
    results = {"machine": machine_note()}
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        for name in names:
            print(f"[{name}]", flush=True)
            results[name] = FIGURES[name][0](args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
