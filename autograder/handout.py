"""The facts the handout's README states, read from where the grader keeps them.

solution/HANDOUT.md is the README's source; its `{{field}}`s are filled by skeleton.py from
`fields()`: the checks with their numbers, titles and points (config.CHECKS and the checks'
docstrings), the expected figures (calibration.json's runs and config.PUBLISHED_BAND) and the
limits a submission meets (config). A change to any of them makes assignment/README.md drift
from what `python -m autograder assign` writes, which tests/test_skeleton.py reports.
"""
import json

from . import config, paths
from .skeleton import fill_fields

VISIBILITY = {"visible": "", "hidden": " (not shown to you)", "after_due_date": " (shown after the due date)",
              "after_published": " (shown when the grades are published)"}


def _number(text):
    return tuple(int(part) for part in text.split("."))


def check_rows(problem=None):
    """-> [(number, function, title, points, visibility)] of every check of `problem` (default: the
    CS236 VAE), in the order of their numbers."""
    from .problems import VAE
    problem = problem or VAE
    rows = []
    for case in problem.classes():
        for name in sorted(vars(case)):
            method = getattr(case, name)
            family = getattr(method, "__family__", None)
            if family is None:
                continue
            title = (method.__doc__ or name).strip().splitlines()[0]
            title = title[len(family) + 2:] if title.startswith(f"{family}: ") else title
            spec = next(spec for spec in problem.checks[family].values() if spec.number == method.__number__)
            rows.append((spec.number, family, title, spec.points, spec.visibility))
    listed = {(family, spec.number) for family, specs in problem.checks.items() for spec in specs.values()}
    if {(family, number) for number, family, *_ in rows} != listed:
        raise ValueError(f"config's checks of {problem.name} and its check methods in autograder/checks/ do not match")
    return sorted(rows, key=lambda row: _number(row[0]))


def _checks_table(rows):
    lines = ["| check | function | what it establishes | points |", "|---|---|---|---|"]
    for number, family, title, points, visibility in rows:
        title = title.replace("|", "\\|")
        lines.append(f"| {number} | `{family}` | {title}{VISIBILITY.get(visibility, '')} | {points:g} |")
    return "\n".join(lines)


def _band(band, digits=2):
    return f"{band['mean']:.{digits}f} +- {band['sd']:.{digits}f}"


def calibration(problem=None):
    """The stored calibration of `problem` (default: the CS236 VAE): its runs on the hidden set and on
    the CS236 subset."""
    path = problem.calibration_path if problem is not None else paths.CALIBRATION
    stored = json.loads(path.read_text())
    if "subset_bands" not in stored or "bands" not in stored:
        raise ValueError(f"{path} holds no bands: run `python -m autograder calibrate` first")
    return stored


def _calibrated(problem):
    """calibration(problem), or None where it has none yet (a problem's document then says so)."""
    try:
        return calibration(problem)
    except (OSError, ValueError):
        if problem.name == "vae":
            raise
        return None


def fields(problem_set=None, problem=None):
    """{field: text} for the `{{field}}`s of `problem`'s document (default: the CS236 VAE) in the
    handout of `problem_set` (default: the grader's problems)."""
    from . import evaluation
    from .problems import VAE, ProblemSet
    problem_set = problem_set or ProblemSet()
    problem = problem or VAE
    # each check's function as results.json tags it in this handout's grading
    rows = [(number, problem_set.tag(family) if family in problem_set.checks else family, *rest)
            for number, family, *rest in check_rows(problem)]
    stored = _calibrated(problem)
    published = config.PUBLISHED_BAND["nelbo"]
    points = {family.rsplit("/", 1)[-1]: sum(spec.points for spec in specs.values())
              for family, specs in problem.checks.items()}
    values = {
        "iterations": f"{config.DEFAULT_ITERATIONS:,}",
        "z_dim": str(config.Z_DIM),
        "checks_table": _checks_table(rows),
        "total_points": f"{sum(points.values()):g}",
        "published_nelbo": f"{published['mean']:g} +- {published['sd']:g}",
        "hidden_images": f"{len(evaluation.hidden_indices()):,}",
        "partial_credit_nats": f"{config.PARTIAL_CREDIT_NATS:g}",
        "max_file_kb": f"{config.MAX_SUBMISSION_FILE_BYTES // 1000}",
        "packages": ", ".join(config.STUDENT_PACKAGES),
        "submission_files": " and ".join(f"`{name}`" for name in problem.student_files),
        "provided_files": ", ".join(f"`{name}`" for name in problem.provided),
    }
    if stored is not None:
        subset, hidden = stored["subset_bands"], stored["bands"]
        nelbo = subset["nelbo"]
        values.update({
            "calibration_runs": str(len(stored["runs"])),
            "subset_nelbo": _band(nelbo),
            "subset_kl": _band(subset["kl"]),
            "subset_rec": _band(subset["rec"]),
            "subset_nelbo_typical": f"{nelbo['mean'] - 2 * nelbo['sd']:.1f} to {nelbo['mean'] + 2 * nelbo['sd']:.1f}",
            "hidden_nelbo": _band(hidden["nelbo"]),
            "hidden_band": f"[{hidden['nelbo']['low']:.2f}, {hidden['nelbo']['high']:.2f}]",
        })
    else:
        pending = "(not calibrated yet)"
        values.update(dict.fromkeys(("calibration_runs", "subset_nelbo", "subset_kl", "subset_rec",
                                     "subset_nelbo_typical", "hidden_nelbo", "hidden_band"), pending))
    if problem.assets:                       # a problem whose samples are graded: the floor it is held to
        from . import sample_quality
        floors = sample_quality.floors(problem.name)[0]
        bands = (stored or {}).get(sample_quality.KEY, {}).get("bands", {})
        if "min_fraction" in floors:         # conditional: each digit read as itself
            values["sample_floor"] = f"{floors['min_fraction']:.1%}"
            measured = bands.get("min_fraction")
            values["sample_reference"] = f"{measured['mean']:.0%}" if measured else "(not calibrated yet)"
        else:                                # unconditional: the digits covered, read clearly
            values["sample_digits"] = str(floors["digits_present"])
            values["sample_floor"] = f"{floors['mean_top_probability']:.3f}"
            measured = bands.get("mean_top_probability")
            values["sample_reference"] = f"{measured['mean']:.3f}" if measured else "(not calibrated yet)"
    if problem.name != "vae":                # the CS236 VAE's figures, to compare with
        vae = calibration()["subset_bands"]
        values.update({"vae_subset_nelbo": f"{vae['nelbo']['mean']:.1f}", "vae_subset_kl": f"{vae['kl']['mean']:.1f}"})
    if problem.needs:
        mine = [name for name in problem.needs if problem_set.sandbox_files.get(name) == "student"]
        values["needs_note"] = (
            f"{' and '.join(f'`{name}`' for name in mine)} {'is' if len(mine) == 1 else 'are'} yours, from the "
            "other part of this homework: the grader trains with your own copy" if mine else
            f"{' and '.join(f'`{name}`' for name in problem.needs)} {'is' if len(problem.needs) == 1 else 'are'} "
            "provided complete: the grader uses its own copy")
    if problem.name == "ae":
        values.update(_ae_fields(problem))
    values.update({f"points_{function}": f"{total:g}" for function, total in points.items()})
    return values


def _ae_fields(problem):
    """The linear autoencoder's figures: its loop's iterations and the calibrated bounds per k."""
    from .reference import train_ae
    try:
        stored = json.loads(problem.calibration_path.read_text())
        bands, runs = stored["bands"], stored["runs"]
    except (OSError, ValueError, KeyError):
        return {"ae_iterations": f"{train_ae.ITERATIONS:,}", "ae_calibration_runs": "(not calibrated yet)",
                "ae_bounds": "(not calibrated yet)"}
    lines = ["| k | PCA's validation error | reference: excess over PCA, mean +- sd | bound (12.2) | "
             "reference: largest angle, mean +- sd | bound (12.3) |", "|---|---|---|---|---|---|"]
    for k in config.AE_CODE_SIZES:
        excess = bands[f"excess_{k}"]
        angles = [run[f"angle_{k}"] for run in runs]
        angle_mean = sum(angles) / len(angles)
        angle_sd = (sum((a - angle_mean) ** 2 for a in angles) / (len(angles) - 1)) ** 0.5
        bound = f"{bands[f'angle_{k}']['high']:.2f} degrees" if f"angle_{k}" in bands else "not judged"
        lines.append(f"| {k} | {stored['pca_errors'][str(k)]:.5f} | {100 * excess['mean']:+.3f}% +- "
                     f"{100 * excess['sd']:.3f}% | {100 * excess['high']:+.3f}% | {angle_mean:.2f} +- {angle_sd:.2f} "
                     f"degrees | {bound} |")
    return {"ae_iterations": f"{train_ae.ITERATIONS:,}", "ae_calibration_runs": str(len(runs)),
            "ae_bounds": "\n".join(lines)}


def readme(problem_set, documents):
    """assignment/README.md from the chosen problems' documents ({name: text, solution markers
    already handled}): one problem's document alone, its fields filled; with several, a header
    listing them, then each document one heading level down."""
    parts = [(problem, fill_fields(documents[problem.document], fields(problem_set, problem),
                                   str(paths.SOLUTION / problem.document)))
             for problem in problem_set.problems if problem.document in documents]
    if len(parts) == 1:
        return parts[0][1]
    rows = ["| problem | you write | you submit | points |", "|---|---|---|---|"]
    for problem, _ in parts:
        written = "; ".join(", ".join(f"`{cls + '.' if cls else ''}{function}`" for function in functions)
                            + f" in `{name}`" for name, (cls, functions) in problem.student_files.items())
        total = sum(spec.points for specs in problem.checks.values() for spec in specs.values())
        rows.append(f"| {problem.title} (`{problem.name}`) | {written} | "
                    f"{', '.join(f'`{name}`' for name in problem.student_files)} | {total:g} |")
    files = ", ".join(f"`{name}`" for name in problem_set.student_files)
    header = [f"# Homework: {' and '.join(problem.title for problem, _ in parts)}", "",
              f"This homework has {len(parts)} parts. Each section below says what to write, how to run it "
              "and how it is graded.", "", *rows, "",
              f"Submit {files} together, in one folder or one `.zip`. In your results, each check's tag names its "
              "part and its function (e.g. `" + problem_set.tag(next(iter(parts[-1][0].checks))) + "`).", ""]
    return "\n".join(header) + "".join("\n" + _demoted(text) for _, text in parts)


def _demoted(text):
    """Markdown headings one level down (`# A` -> `## A`), code blocks left alone."""
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" + line if not fenced and line.startswith("#") else line)
    return "".join(out)
