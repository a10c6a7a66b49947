"""The facts the handout's README states, read from where the grader keeps them.

solution/HANDOUT.md is the README's source; its `{{field}}`s are filled by skeleton.py from
`fields()`: the checks with their numbers, titles and points (config.CHECKS and the checks'
docstrings), the expected figures (calibration.json's runs and config.PUBLISHED_BAND) and the
limits a submission meets (config). A change to any of them makes assignment/README.md drift
from what `python -m autograder assign` writes, which tests/test_skeleton.py reports.
"""
import json

from . import config, paths

VISIBILITY = {"visible": "", "hidden": " (not shown to you)", "after_due_date": " (shown after the due date)",
              "after_published": " (shown when the grades are published)"}


def _number(text):
    return tuple(int(part) for part in text.split("."))


def check_rows():
    """-> [(number, function, title, points, visibility)] of every check, in the order of their numbers."""
    from . import checks
    rows = []
    for case in checks.ALL:
        for name in sorted(vars(case)):
            method = getattr(case, name)
            family = getattr(method, "__family__", None)
            if family is None:
                continue
            title = (method.__doc__ or name).strip().splitlines()[0]
            title = title[len(family) + 2:] if title.startswith(f"{family}: ") else title
            spec = next(spec for spec in config.CHECKS[family].values() if spec.number == method.__number__)
            rows.append((spec.number, family, title, spec.points, spec.visibility))
    listed = {(family, spec.number) for family, specs in config.CHECKS.items() for spec in specs.values()}
    if {(family, number) for number, family, *_ in rows} != listed:
        raise ValueError("config.CHECKS and the check methods in autograder/checks/ do not match")
    return sorted(rows, key=lambda row: _number(row[0]))


def _checks_table(rows):
    lines = ["| check | function | what it establishes | points |", "|---|---|---|---|"]
    for number, family, title, points, visibility in rows:
        title = title.replace("|", "\\|")
        lines.append(f"| {number} | `{family}` | {title}{VISIBILITY.get(visibility, '')} | {points:g} |")
    return "\n".join(lines)


def _band(band, digits=2):
    return f"{band['mean']:.{digits}f} +- {band['sd']:.{digits}f}"


def calibration():
    """The stored calibration (its runs on the hidden set and on the CS236 subset)."""
    stored = json.loads(paths.CALIBRATION.read_text())
    if "subset_bands" not in stored or "bands" not in stored:
        raise ValueError(f"{paths.CALIBRATION} holds no bands: run `python -m autograder calibrate` first")
    return stored


def fields():
    """{field: text} for the README's `{{field}}`s."""
    from . import evaluation
    rows = check_rows()
    stored = calibration()
    subset, hidden = stored["subset_bands"], stored["bands"]
    published = config.PUBLISHED_BAND["nelbo"]
    points = {family: sum(spec.points for spec in specs.values()) for family, specs in config.CHECKS.items()}
    nelbo = subset["nelbo"]
    values = {
        "iterations": f"{config.DEFAULT_ITERATIONS:,}",
        "z_dim": str(config.Z_DIM),
        "checks_table": _checks_table(rows),
        "total_points": f"{sum(points.values()):g}",
        "published_nelbo": f"{published['mean']:g} +- {published['sd']:g}",
        "calibration_runs": str(len(stored["runs"])),
        "subset_nelbo": _band(nelbo),
        "subset_kl": _band(subset["kl"]),
        "subset_rec": _band(subset["rec"]),
        "subset_nelbo_typical": f"{nelbo['mean'] - 2 * nelbo['sd']:.1f} to {nelbo['mean'] + 2 * nelbo['sd']:.1f}",
        "hidden_images": f"{len(evaluation.hidden_indices()):,}",
        "hidden_nelbo": _band(hidden["nelbo"]),
        "hidden_band": f"[{hidden['nelbo']['low']:.2f}, {hidden['nelbo']['high']:.2f}]",
        "partial_credit_nats": f"{config.PARTIAL_CREDIT_NATS:g}",
        "max_file_kb": f"{config.MAX_SUBMISSION_FILE_BYTES // 1000}",
        "packages": ", ".join(config.STUDENT_PACKAGES),
        "submission_files": " and ".join(f"`{name}`" for name in config.SUBMISSION_FILES),
        "provided_files": ", ".join(f"`{name}`" for name in config.PROVIDED_FILES),
    }
    values.update({f"points_{family}": f"{total:g}" for family, total in points.items()})
    return values
