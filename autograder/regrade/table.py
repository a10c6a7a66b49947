"""The table of a regrade: grades.csv, summary.txt and summary.png, all from the rows alone (so that
`merge` makes the same from the shards' CSVs).

grades.csv has one row per submission: its id and folder, the submitters' names, emails and student
ids (from the metadata, `; `-separated for a group), the status, the score and its maximum, the
score of each student function (the checks' tags), the trained model's NELBO/KL/Rec on the hidden
set (the leaderboard), the numbers of the checks that lost points, the score Gradescope held when
the export was made, the grading's seconds, a message where the status is not `graded`, and the
grader version and iterations it was graded with. Statuses: graded; no_files (neither file found:
graded, and the results say what was missing); timeout (stopped at --timeout; the results so far,
if any); grader_failed (the grader's own failure, results.json says so); crashed (no valid
results.json: see its log.txt).
"""
import csv
import io
import statistics
from collections import Counter
from pathlib import Path

from .. import config
from .store import write_atomic

FAMILIES = tuple(config.CHECKS)
CHECK_NAMES = {check.number: (family, name) for family, checks in config.CHECKS.items()
               for name, check in checks.items()}
FIELDS = ("submission_id", "folder", "names", "emails", "sids", "status", "score", "max_score", *FAMILIES,
          "nelbo", "kl", "rec", "failed_checks", "gradescope_score", "seconds", "message", "grader", "iterations",
          "graded_at")
NEEDS_A_LOOK = ("timeout", "crashed", "grader_failed")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TOLERANCE = 1e-9
SHOWN_CHECKS = 10


def _number(value):
    return "" if value is None else f"{value:g}"


def _text(value):
    """A cell a spreadsheet shows as text: no formula from a name a student chose."""
    value = " ".join(str(value).split()) if value is not None else ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def row(submission, record, results):
    """One row of grades.csv: a submission of the export, its record (store.py) and results.json (or None)."""
    people = submission.submitters
    out = {"submission_id": submission.id, "folder": submission.key,
           "names": _text("; ".join(p.name for p in people)), "emails": _text("; ".join(p.email for p in people)),
           "sids": _text("; ".join(p.sid for p in people)),
           "status": record["status"] if record else "not_graded",
           "gradescope_score": _number(submission.gradescope_score),
           "message": _text(record.get("message", "") if record else "")}
    if record:
        print_ = record.get("fingerprint", {})
        out.update(seconds=_number(record.get("seconds")), grader=print_.get("grader", ""),
                   iterations=_number(print_.get("iterations")), graded_at=record.get("graded_at", ""))
    if results:
        tests = results.get("tests", [])
        out["score"] = _number(results.get("score", sum(t.get("score", 0) for t in tests)))
        out["max_score"] = _number(sum(t.get("max_score", 0) for t in tests))
        for family in FAMILIES:
            own = [t for t in tests if family in t.get("tags", [])]
            out[family] = _number(sum(t.get("score", 0) for t in own)) if own else ""
        out["failed_checks"] = " ".join(t.get("number", "?") for t in tests
                                        if t.get("score", 0) < t.get("max_score", 0) - TOLERANCE)
        board = {entry["name"]: entry["value"] for entry in results.get("leaderboard", [])}
        out.update(nelbo=_number(board.get("NELBO")), kl=_number(board.get("KL")), rec=_number(board.get("Rec")))
    return {field: out.get(field, "") for field in FIELDS}


def csv_bytes(rows):
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for item in rows:
        writer.writerow(item)
    return stream.getvalue().encode("utf-8")


def read_csv(path):
    """The rows of a grades.csv; ValueError if its columns are not this version's."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: its columns are not those of grades.csv ({', '.join(FIELDS[:6])}, ...)")
        return list(reader)


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def summary(rows, title, band=None):
    """The short text summary of `rows` (grades.csv's)."""
    lines = [title]
    statuses = Counter(item["status"] for item in rows)
    lines.append("Status: " + ", ".join(f"{count} {status}" for status, count in statuses.most_common()))
    scored = [item for item in rows if _float(item["score"]) is not None]
    if scored:
        scores = [_float(item["score"]) for item in scored]
        top = max(_float(item["max_score"]) or 0 for item in scored)
        full = sum(1 for item in scored if item["status"] == "graded"
                   and _float(item["score"]) >= (_float(item["max_score"]) or 0) - TOLERANCE)
        lines.append(f"Full marks ({top:g}/{top:g}): {full} of {len(rows)}")
        lines.append(f"Scores: mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g}, "
                     f"min {min(scores):g}, max {max(scores):g}")
        before = [(item, _float(item["gradescope_score"])) for item in scored
                  if _float(item["gradescope_score"]) is not None]
        changed = [(item, old) for item, old in before if abs(_float(item["score"]) - old) > TOLERANCE]
        if before:
            up = sum(1 for item, old in changed if _float(item["score"]) > old)
            lines.append(f"Against Gradescope's scores in the export: {len(changed)} of {len(before)} changed "
                         f"({up} up, {len(changed) - up} down)")
    nelbos = [_float(item["nelbo"]) for item in rows if _float(item["nelbo"]) is not None]
    if nelbos:
        text = f"Trained NELBO (hidden set): {len(nelbos)} model(s), median {statistics.median(nelbos):.2f}"
        if band is not None:
            low, high, source = band
            inside = sum(1 for v in nelbos if low <= v <= high)
            above = sum(1 for v in nelbos if v > high)
            text += (f"; {inside} inside the {source} pass band [{low:.2f}, {high:.2f}], {above} above, "
                     f"{len(nelbos) - inside - above} below")
            if source == "published":
                text += " (without a calibration the grader applies that band to the CS236-subset NELBO instead)"
        shortened = {item["iterations"] for item in rows
                     if item["iterations"] and (_float(item["iterations"]) or 0) < config.DEFAULT_ITERATIONS}
        if shortened:
            text += (f"; shortened runs ({', '.join(sorted(shortened))} iterations): the band applies to "
                     f"{config.DEFAULT_ITERATIONS:,} only")
        lines.append(text)
    graded = [item for item in rows if item["status"] == "graded"]
    failing = Counter(number for item in graded for number in item["failed_checks"].split())
    if failing:
        lines.append(f"Checks that fail most (of the {len(graded)} graded submissions, how many lose points there):")
        ranked = sorted(failing.items(), key=lambda pair: (-pair[1], [int(p) for p in pair[0].split(".")]))
        for number, count in ranked[:SHOWN_CHECKS]:
            family, name = CHECK_NAMES.get(number, ("?", "?"))
            lines.append(f"  {count:4d}  {number} {name} ({family})")
        if len(ranked) > SHOWN_CHECKS:
            lines.append(f"  ... and {len(ranked) - SHOWN_CHECKS} more checks, each failing less often")
    look = [item for item in rows if item["status"] in NEEDS_A_LOOK or item["status"] == "not_graded"]
    if look:
        lines.append("Needs a look:")
        lines += [f"  {item['folder']} ({item['status']}): {item['message']}" for item in look]
    return "\n".join(lines) + "\n"


def pass_band():
    """(low, high, source) of the gate's NELBO band, as the grader applies it (the calibrated one where
    it holds for this hidden set, else the published one)."""
    try:
        from ..checks.training import pass_band as grader_band
        return grader_band()
    except Exception:   # noqa: BLE001 - a picture never fails the table
        band = config.PUBLISHED_BAND["nelbo"]
        return band["low"], band["high"], "published"


def picture(rows, title, band=None):
    """summary.png's bytes: the score histogram, and each trained model's NELBO against the pass band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    scores = [_float(item["score"]) for item in rows if _float(item["score"]) is not None]
    top = max([_float(item["max_score"]) or 0 for item in rows] + [1])
    left.hist(scores, bins=[float(x) for x in range(0, int(top) + 2)], color="#4c72b0", edgecolor="white")
    left.set_xlabel("score (bars of 1 point)")
    left.set_ylabel("submissions")
    left.set_title(f"Scores of {len(scores)} of {len(rows)} submissions")
    left.set_xlim(0, int(top) + 1)
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    nelbos = sorted(_float(item["nelbo"]) for item in rows if _float(item["nelbo"]) is not None)
    if band is not None:
        low, high, source = band
        right.axhspan(low, high, color="#55a868", alpha=0.35, label=f"{source} pass band [{low:.2f}, {high:.2f}]")
    if nelbos:
        right.plot(range(1, len(nelbos) + 1), nelbos, "o", color="#c44e52", markersize=5,
                   label=f"trained models ({len(nelbos)})")
        right.set_xlabel("submissions, by NELBO")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        right.text(0.5, 0.5, "no trained model was scored", ha="center", va="center", transform=right.transAxes)
    right.set_ylabel("NELBO on the hidden set (nats)")
    right.set_title("Trained models against the pass band")
    right.legend(loc="best", fontsize=8)
    iterations = sorted({item["iterations"] for item in rows if item["iterations"]}, key=lambda i: _float(i) or 0)
    shortened = [i for i in iterations if (_float(i) or 0) < config.DEFAULT_ITERATIONS]
    note = (f"\nshortened runs ({', '.join(shortened)} iterations): the band applies to "
            f"{config.DEFAULT_ITERATIONS:,} iterations only" if shortened else "")
    figure.suptitle(title + note, fontsize=10)
    figure.tight_layout()
    stream = io.BytesIO()
    figure.savefig(stream, format="png")
    return stream.getvalue()


def write(out, rows, title, log=print):
    """grades.csv, summary.txt and summary.png in `out` (each atomically) -> the summary text."""
    out = Path(out)
    band = pass_band()
    text = summary(rows, title, band)
    write_atomic(out / "grades.csv", csv_bytes(rows))
    write_atomic(out / "summary.txt", text.encode("utf-8"))
    try:
        write_atomic(out / "summary.png", picture(rows, title, band))
    except ImportError as error:
        log(f"summary.png not drawn: {error}")
    return text
