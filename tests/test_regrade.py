"""`python -m autograder regrade` and `merge` (autograder/regrade/) on fake Gradescope exports built
from the graded cases (tests/fake_export.py), through the real command line: every grading is a real
one, at a few training iterations.

What is established: the metadata is read as Gradescope writes it, and bad input of every kind is
refused with exit status 2 before anything is graded or written; the shards are disjoint and make up
the export, and merge joins them into the table an unsharded run makes; each submission's scores
are the honest ones of its case (tests/cases.py); a second run skips what is graded (by grader
version and the files' hash), a changed file is graded again, --force grades everything; a hanging
submission is stopped at --timeout and a grading killed from outside (as the OOM killer would) is
marked crashed, neither stopping the others, and a crashed one is retried by the next run; an
interrupted run (SIGINT, and SIGKILL of the batch itself) keeps every finished grading whole, leaves
no half-written file and no grading running, and the next run goes on from there.
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import config, paths
from autograder.regrade import export as export_module
from autograder.regrade.export import ExportError, parse_metadata
from tests import cases, fake_export

ITERATIONS = "30"
# Where the slot users cannot run this interpreter (under /root), student code runs as root: the
# container command refuses that unless told (as tests/runner.py's container-root mode tells it).
# One torch thread per grading, as in Gradescope's half-CPU container (and no child asked for the CPU quota).
ENV = dict(os.environ, VAE_ALLOW_ROOT_SANDBOX="1", PYTHONDONTWRITEBYTECODE="1", VAE_THREADS="1")
FOUR = (("submissions", "distributions_full"), ("submissions", "kl_reversed_buggy"), ("messy", "notebook_only"),
        ("hostile", "exit_at_import"))


def env_in(folder):
    """ENV with the gradings' scratch (TMPDIR) in `folder`: their command lines then name it."""
    scratch = Path(folder) / "tmp"
    scratch.mkdir(exist_ok=True)
    return dict(ENV, TMPDIR=str(scratch))


def command(*arguments, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, arguments)], cwd=paths.PROJECT,
                          env=env or ENV, capture_output=True, text=True, timeout=timeout)


def regrade(export, out, *extra, timeout=900, env=None):
    return command("regrade", export, "--out", out, "--iterations", ITERATIONS, "--no-progress", *extra,
                   timeout=timeout, env=env)


def rows_of(out):
    with open(Path(out) / "grades.csv", newline="", encoding="utf-8") as stream:
        return {row["folder"]: row for row in csv.DictReader(stream)}


def records(out):
    base = Path(out) / "submissions"
    return {path.name: json.loads((path / "record.json").read_text()) for path in sorted(base.iterdir())
            if (path / "record.json").is_file()} if base.is_dir() else {}


def every_file_whole(out):
    """No temporary file, and every JSON file parses."""
    leftovers = [p for p in Path(out).rglob(".tmp-*")]
    assert not leftovers, leftovers
    for path in Path(out).rglob("*.json"):
        json.loads(path.read_text())


def gradings_running(*markers):
    """pids of grading processes whose command line holds every marker (a folder of this test, a key)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    line = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "autograder container" in line and all(marker in line for marker in markers):
                found.append(int(entry))
    return found


def honest(made, out, key):
    """The grading of `key` gives its case's honest scores (tests/cases.py's rule)."""
    results = json.loads((Path(out) / "submissions" / key / "results.json").read_text())
    problems = cases.score_problems(cases.meta(*made[key]), results["tests"])
    assert not problems, f"{made[key]}: {problems}"
    return results


# ---------------------------------------------------------------- the metadata (no grading)

SAMPLE = """\
---
# written by Gradescope
submission_409194023:
  :submitters:
  - :name: First Last
    :sid: '123456789'
    :email: first@example.edu
  :created_at: 2026-04-26 17:34:00.861687000 Z
  :score: 2.0
  :results:
    score: 2.0
    output: |-
      Assignment: Homework 2
      :submitters: not a key here

      - nor a list
    tests:
    - name: 'a: b'
      output: "x: y\\n- z"
  :history:
  - :created_at: 2026-04-25 10:00:00.000000000 Z
    :score: 1.0
submission_500000001:
  :submitters:
  - :name: "Zo\\u00EB \\"Z\\" O'Neil"
    :sid: '111'
    :email: zoe@example.edu
  -
    :name: 'Bob ''B'' Long

      Name'
    :sid: 222
    :email: bob@example.edu
  :score: 10.0
submission_600000002:
  :submitters:
  - :sid: 333
  :score:
submission_700000003:
  :submitters: []
  :status: processed
submission_8:
  :submitters:
  - :name: !binary |-
      w6lsw6huZQ==
    :email: eli@example.edu # a comment
"""


def test_the_metadata_is_read_as_gradescope_writes_it():
    data = parse_metadata(SAMPLE)
    assert list(data) == ["submission_409194023", "submission_500000001", "submission_600000002",
                          "submission_700000003", "submission_8"]
    assert data["submission_409194023"][":submitters"] == [
        {":name": "First Last", ":sid": "123456789", ":email": "first@example.edu"}]
    assert data["submission_409194023"][":score"] == "2.0"
    assert data["submission_409194023"][":created_at"] == "2026-04-26 17:34:00.861687000 Z"
    zoe, bob = data["submission_500000001"][":submitters"]
    assert zoe == {":name": "Zoë \"Z\" O'Neil", ":sid": "111", ":email": "zoe@example.edu"}
    assert bob == {":name": "Bob 'B' Long\nName", ":sid": "222", ":email": "bob@example.edu"}
    assert data["submission_600000002"] == {":submitters": [{":sid": "333"}], ":score": None}
    assert data["submission_700000003"] == {":submitters": [], ":status": "processed"}
    assert data["submission_8"][":submitters"] == [{":name": "élène", ":email": "eli@example.edu"}]
    assert parse_metadata(SAMPLE.replace("\n", "\r\n")) == data
    assert parse_metadata("--- {}\n") == {}


@pytest.mark.parametrize("text, line, words", [
    ("submission_1:\n  :score: 1\n", 1, "without :submitters"),
    ("submission_1:\n  :submitters:\n  - :name: A\nsubmission_1:\n  :submitters: []\n", 4, "appears twice"),
    ("- submission_1\n", 1, "expected 'key: value'"),
    ("  submission_1:\n    :submitters: []\n", 1, "from column 1"),
    ("submission_1:\n  :submitters: nobody\n", 2, "list of submitters"),
    ("submission_1:\n  :submitters:\n  - :name: 'unterminated\n", 3, "unterminated"),
    ("submission_1:\n  :submitters:\n  - :name: *alias\n", 3, "alias"),
    ("submission_1:\n  :submitters:\n  - :name: !ruby/object:Name x\n", 3, "tag"),
    ("submission_1:\n\t:submitters: []\n", 2, "tab"),
    ("submission_1:\n  :submitters:\n  - :name: \"bad \\q\"\n", 3, "escape"),
    ("submission_1:\n  :submitters: []\n    :score: 1\n", 3, "indented"),
])
def test_malformed_metadata_is_refused_with_its_line(text, line, words):
    with pytest.raises(ExportError) as raised:
        parse_metadata(text)
    assert f"line {line}:" in str(raised.value) and words in str(raised.value), str(raised.value)


def test_the_fake_class_reads_whole_and_its_shards_partition_it(tmp_path):
    made = fake_export.build(tmp_path / "export")
    loaded = export_module.load(tmp_path / "export")
    assert len(loaded.submissions) == len(made) == len(fake_export.CLASS) >= 30
    assert [s.key for s in loaded.submissions] == sorted(made)
    suites = {entry[0] for entry in made.values()}
    assert suites == {"submissions", "messy", "hostile"}
    assert any(len(s.submitters) == 2 for s in loaded.submissions)
    names = [p.name for s in loaded.submissions for p in s.submitters]
    assert any("'" in name for name in names) and any(": " in name for name in names)
    assert any(name.startswith("=") for name in names)
    for s in loaded.submissions:
        assert s.id == s.key.split("_")[1] and s.gradescope_score is not None and s.created_at
        assert all(p.sid and p.email for p in s.submitters)
    for n in (1, 2, 3, 7, len(made), len(made) + 5):
        slices = [export_module.shard(loaded.submissions, k, n) for k in range(1, n + 1)]
        keys = [s.key for part in slices for s in part]
        assert sorted(keys) == sorted(made) and len(keys) == len(set(keys)), n     # disjoint, union = all
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
    with pytest.raises(ValueError):
        export_module.shard(loaded.submissions, 4, 3)


# ---------------------------------------------------------------- how many at a time (no grading)

def test_the_default_concurrency_never_exceeds_what_fits_in_memory(tmp_path, monkeypatch):
    from autograder.regrade import batch
    peak = batch.PEAK_GRADING_BYTES
    for memory, cpus, jobs in ((int(2.5 * peak), 8, 2), (peak // 2, 8, 1), (100 * peak, 2, 2), (None, 3, 3)):
        monkeypatch.setattr(batch, "available_memory", lambda memory=memory: memory)
        assert batch.default_jobs(cpus)[0] == jobs, (memory, cpus)
    assert batch.threads_per_grading(2, 2) == 1 and batch.threads_per_grading(1, 4) == 4
    # the memory left under the tightest cgroup limit of the process and its ancestors (v2)
    (tmp_path / "a" / "b").mkdir(parents=True)
    for folder, limit, used in (("", "max", "0"), ("a", str(4 << 30), str(1 << 30)), ("a/b", str(8 << 30), "0")):
        (tmp_path / folder / "memory.max").write_text(limit + "\n")
        (tmp_path / folder / "memory.current").write_text(used + "\n")
    (tmp_path / "cgroup").write_text("0::/a/b\n")
    assert batch._cgroup_headroom(tmp_path, tmp_path / "cgroup") == 3 << 30


# ---------------------------------------------------------------- bad input: exit 2, nothing written

def _export_with(tmp_path, edit):
    """A two-submission export (no grading happens) changed by `edit(folder, metadata text) -> text`."""
    folder = tmp_path / "export"
    fake_export.build(folder, FOUR[:2])
    metadata = folder / "submission_metadata.yml"
    metadata.write_text(edit(folder, metadata.read_text()))
    return folder


def _first(folder):
    return sorted(p for p in folder.iterdir() if p.is_dir())[0]


BAD = {
    "no metadata": (lambda f, t: (f / "submission_metadata.yml").unlink() or t, "no submission_metadata.yml"),
    "malformed metadata": (lambda f, t: t.replace("  :submitters:\n", "  :submitters: - oops\n", 1),
                           "line 3: :submitters must be a list"),
    "missing folder": (lambda f, t: shutil.rmtree(_first(f)) or t, "are not in"),
    "folder without metadata": (lambda f, t: (f / "submission_42").mkdir() or t, "not in its submission_metadata"),
    "duplicate id": (lambda f, t: t + "submission_0" + _first(f).name.split("_")[1] + ":\n  :submitters: []\n",
                     "the same submission id"),
    "duplicate key": (lambda f, t: t + _first(f).name + ":\n  :submitters: []\n", "appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_before_anything_is_written(tmp_path, case):
    edit, words = BAD[case]
    folder = _export_with(tmp_path, lambda f, t: t)
    if case == "no metadata":
        (folder / "submission_metadata.yml").unlink()
    else:
        metadata = folder / "submission_metadata.yml"
        metadata.write_text(edit(folder, metadata.read_text()))
    done = regrade(folder, tmp_path / "grades", timeout=120)
    assert done.returncode == 2, done.stderr + done.stdout
    assert words in done.stderr, done.stderr
    assert not (tmp_path / "grades").exists()


def test_bad_output_folder_and_arguments_are_refused(tmp_path):
    folder = _export_with(tmp_path, lambda f, t: t)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for arguments, words in (((folder, tmp_path / "other"), "not a regrade's output folder"),
                             ((folder, tmp_path / "g", "--shard", "3/2"), "1 <= K <= N"),
                             ((folder, tmp_path / "g", "--jobs", "0"), "must be positive"),
                             ((folder / "nothing", tmp_path / "g"), "not a folder")):
        done = regrade(*arguments, timeout=120)
        assert done.returncode == 2 and words in done.stderr, (arguments, done.stderr)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine" and len(list((tmp_path / "other").iterdir())) == 1
    assert not (tmp_path / "g").exists()
    (folder.parent / "export.zip").write_bytes(b"PK")
    done = regrade(folder.parent / "export.zip", tmp_path / "g", timeout=120)
    assert done.returncode == 2 and "unzip it first" in done.stderr
    nested = tmp_path / "download"
    nested.mkdir()
    shutil.move(str(folder), nested / "assignment_1_export")
    done = regrade(nested, tmp_path / "g", timeout=120)
    assert done.returncode == 2 and "pass that folder" in done.stderr, done.stderr


# ---------------------------------------------------------------- real gradings

@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """FOUR graded as two shards, each into its own folder -> (export folder, made, shard folders, outputs)."""
    base = tmp_path_factory.mktemp("sharded")
    made = fake_export.build(base / "export", FOUR)
    outs, done = [base / "shard-1", base / "shard-2"], []
    for k, out in enumerate(outs, start=1):
        if k == 1:                    # the progress bar once: done/total, failures
            done.append(command("regrade", base / "export", "--out", out, "--iterations", ITERATIONS, "--jobs", "2",
                                "--shard", "1/2"))
        else:                         # the default concurrency (CPU quota, memory) once
            done.append(regrade(base / "export", out, "--shard", "2/2"))
    return base / "export", made, outs, done


def test_shards_grade_disjoint_slices_and_merge_makes_the_whole_table(sharded, tmp_path):
    export, made, outs, done = sharded
    for run in done:
        assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert "2/2" in done[0].stderr and "failed 0" in done[0].stderr, done[0].stderr[-2000:]
    assert "CPU(s) of the quota" in done[1].stdout and "holds" in done[1].stdout, done[1].stdout
    first, second = rows_of(outs[0]), rows_of(outs[1])
    assert len(first) == len(second) == 2 and not set(first) & set(second) and set(first) | set(second) == set(made)
    for out in outs:
        every_file_whole(out)

    merged = tmp_path / "all"
    alone = command("merge", outs[0], "--out", merged)
    assert alone.returncode == 2 and "shard(s) 2/2 missing" in alone.stderr, alone.stderr
    twice = command("merge", outs[0], outs[0], outs[1], "--out", merged)
    assert twice.returncode == 2 and "given twice" in twice.stderr, twice.stderr
    assert not merged.exists()
    joined = command("merge", *outs, "--out", merged)
    assert joined.returncode == 0, joined.stderr + joined.stdout
    rows = rows_of(merged)
    assert list(rows) == sorted(made) and rows == {**first, **second}
    every_file_whole(merged)

    loaded = {s.key: s for s in export_module.load(export).submissions}
    for key, case in made.items():
        row, results = rows[key], honest(made, merged, key)
        assert row["status"] == ("no_files" if case == ("messy", "notebook_only") else "graded"), row
        assert float(row["score"]) == pytest.approx(results["score"])
        assert float(row["max_score"]) == sum(c.points for checks in config.CHECKS.values() for c in checks.values())
        for family in config.CHECKS:
            assert float(row[family]) == pytest.approx(sum(t["score"] for t in results["tests"]
                                                           if t["tags"] == [family]))
        failing = sorted(t["number"] for t in results["tests"] if t["score"] < t["max_score"])
        assert sorted(row["failed_checks"].split()) == failing
        board = {e["name"]: e["value"] for e in results.get("leaderboard", [])}
        assert (float(row["nelbo"]) if row["nelbo"] else None) == board.get("NELBO")
        people = loaded[key].submitters
        assert row["emails"] == "; ".join(p.email for p in people) and row["sids"] == "; ".join(p.sid for p in people)
        assert row["gradescope_score"] and row["grader"] and row["iterations"] == ITERATIONS
    formula = [row for row in rows.values() if "HYPERLINK" in row["names"]]
    assert len(formula) == 1 and formula[0]["names"].startswith("'="), formula
    assert any(row["nelbo"] for row in rows.values())

    summary = (merged / "summary.txt").read_text()
    assert "3 graded" in summary and "1 no_files" in summary, summary
    assert "Full marks (23/23): 1 of 4" in summary, summary
    assert "Checks that fail most" in summary and "closed_form (kl_normal)" in summary, summary
    assert (merged / "summary.png").read_bytes().startswith(b"\x89PNG")
    assert (outs[0] / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_a_second_run_skips_what_is_graded_a_changed_file_and_force_grade_again(sharded, tmp_path):
    export, made, outs, _ = sharded
    export_copy, out = tmp_path / "export", tmp_path / "grades"
    shutil.copytree(export, export_copy)
    shutil.copytree(outs[0], out)
    before = records(out)
    assert len(before) == 2

    started = time.monotonic()
    again = regrade(export_copy, out, "--shard", "1/2", "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "2 of 2 submission(s) already graded" in again.stdout, again.stdout
    assert records(out) == before and time.monotonic() - started < 60

    changed = sorted(before)[0]
    utils = next((export_copy / changed).rglob("utils.py"), None) or next((export_copy / changed).rglob("*.py"))
    utils.write_text(utils.read_text() + "\n# one more comment\n")
    third = regrade(export_copy, out, "--shard", "1/2", "--jobs", "2")
    assert third.returncode == 0, third.stderr
    after = records(out)
    assert after[changed]["graded_at"] != before[changed]["graded_at"] or \
        after[changed]["fingerprint"] != before[changed]["fingerprint"]
    assert after[changed]["fingerprint"]["files_sha256"] != before[changed]["fingerprint"]["files_sha256"]
    unchanged = sorted(before)[1]
    assert after[unchanged] == before[unchanged]

    forced = regrade(export_copy, out, "--shard", "1/2", "--jobs", "2", "--force")
    assert forced.returncode == 0, forced.stderr
    last = records(out)
    assert all(last[key]["graded_at"] >= after[key]["graded_at"] and last[key] != after[key] for key in last)
    every_file_whole(out)

    other = tmp_path / "other-export"
    fake_export.build(other, FOUR[:1], seed=1)
    foreign = regrade(other, out, timeout=120)
    assert foreign.returncode == 2 and "another export" in foreign.stderr, foreign.stderr
    assert records(out) == last


def _hanging():
    """A submission whose utils.py blocks at import (a student's forgotten input() or sleep)."""
    return {"utils.py": (cases.reference("solution:utils.py") + "\nimport time\ntime.sleep(3600)\n").encode(),
            "vae.py": cases.reference("solution:vae.py").encode()}


def test_a_hang_and_a_killed_grading_stop_nothing_else(tmp_path):
    made = fake_export.build(tmp_path / "export", [_hanging(), ("submissions", "kl_reversed_buggy"),
                                                   ("submissions", "sg_exp_v_buggy")])
    hang, buggy, victim = list(made)
    out, env = tmp_path / "grades", env_in(tmp_path)
    # Well past a grading at a few iterations, two at a time on a busy 2-core host (20-40 s), and well
    # short of the hang's own length: the grader gives each of its four sandboxes' imports 30 s, so a
    # utils.py that blocks at import holds one grading at least 120 s.
    timeout = "100"
    process = subprocess.Popen([sys.executable, "-m", "autograder", "regrade", tmp_path / "export", "--out", out,
                                "--iterations", ITERATIONS, "--no-progress", "--jobs", "2", "--timeout", timeout],
                               cwd=paths.PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the OOM killer, or anyone, kills one grading: that submission is marked, the batch goes on
    deadline, killed = time.monotonic() + 600, False
    while not killed and time.monotonic() < deadline and process.poll() is None:
        for pid in gradings_running(victim, str(tmp_path)):
            time.sleep(3)
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.5)
    stdout, stderr = process.communicate(timeout=900)
    assert killed, stderr
    assert process.returncode == 1, stderr + stdout
    rows = rows_of(out)
    assert rows[hang]["status"] == "timeout" and f"{timeout} s timeout" in rows[hang]["message"], rows[hang]
    assert rows[victim]["status"] == "crashed" and "SIGKILL" in rows[victim]["message"], rows[victim]
    assert rows[buggy]["status"] == "graded"
    honest(made, out, buggy)
    summary = (out / "summary.txt").read_text()
    assert "Needs a look" in summary and hang in summary and victim in summary, summary
    every_file_whole(out)
    assert not gradings_running(str(tmp_path)) and not list((tmp_path / "tmp").iterdir())

    # the next run grades the crashed one again; the timeout and the graded one are done
    before = records(out)
    again = regrade(tmp_path / "export", out, "--jobs", "2", "--timeout", timeout, env=env)
    assert again.returncode == 1, again.stderr          # the hang is still there
    after = records(out)
    assert after[hang] == before[hang] and after[buggy] == before[buggy]
    assert after[victim]["status"] == "graded", after[victim]
    honest(made, out, victim)


def _wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_an_interrupted_run_keeps_what_finished_and_the_next_goes_on(tmp_path):
    made = fake_export.build(tmp_path / "export", [("submissions", "distributions_full"),
                                                   ("submissions", "kl_missing_half_buggy")])
    out, env = tmp_path / "grades", env_in(tmp_path)
    arguments = [sys.executable, "-m", "autograder", "regrade", tmp_path / "export", "--out", out, "--iterations",
                 ITERATIONS, "--no-progress", "--jobs", "1"]

    # Ctrl-C once the first grading is done
    first = subprocess.Popen(arguments, cwd=paths.PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    _wait_for(lambda: len(records(out)) == 1, 600, "the first grading")
    _wait_for(lambda: gradings_running(str(tmp_path)), 60, "the second grading to start")
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr + stdout
    assert "Run the same command again" in stdout
    done = records(out)
    assert len(done) == 1
    every_file_whole(out)
    assert not (out / "grades.csv").exists()
    _wait_for(lambda: not gradings_running(str(tmp_path)), 30, "no grading left running")
    assert not list((tmp_path / "tmp").iterdir()), "the scratch folder is left behind"

    # SIGKILL of the batch itself, mid-grading: its grading is told to stop and does
    second = subprocess.Popen(arguments, cwd=paths.PROJECT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    _wait_for(lambda: gradings_running(str(tmp_path)), 120, "a grading to start")
    time.sleep(2)
    second.kill()
    second.wait()
    _wait_for(lambda: not gradings_running(str(tmp_path)), 60, "the orphaned grading to stop")
    assert records(out) == done
    for path in out.rglob("*.json"):
        json.loads(path.read_text())

    # the next run grades the other one only
    last = subprocess.run(arguments, cwd=paths.PROJECT, env=env, capture_output=True, text=True, timeout=900)
    assert last.returncode == 0, last.stderr + last.stdout
    assert "1 of 2 submission(s) already graded" in last.stdout
    final = records(out)
    assert len(final) == 2 and all(final[key] == record for key, record in done.items())
    assert set(rows_of(out)) == set(made)
    for key in made:
        honest(made, out, key)
    every_file_whole(out)
    assert not list((tmp_path / "tmp").iterdir()), "the killed batch's scratch folder was not cleaned"


def test_the_default_timeout_follows_the_problems_the_grader_serves(tmp_path, monkeypatch):
    """20 minutes for one problem (Gradescope's recommended timeout), 12 more per further problem, and
    never past Gradescope's largest timeout, 40 minutes."""
    from autograder import problems
    from autograder.regrade import batch as regrade_batch
    marker = tmp_path / "PROBLEMS"
    monkeypatch.setattr(problems, "MARKER", marker)
    assert regrade_batch.default_timeout_seconds() == regrade_batch.DEFAULT_TIMEOUT_SECONDS == 20 * 60   # no marker: vae
    marker.write_text("vae,cvae\n")
    assert regrade_batch.default_timeout_seconds() == 32 * 60
    marker.write_text(",".join(problems.PROBLEMS))
    assert regrade_batch.default_timeout_seconds() == 40 * 60
