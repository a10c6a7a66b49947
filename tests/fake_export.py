"""A fake Gradescope "Export Submissions" folder, built from the graded cases (tests/cases.py): a
folder per submission and `submission_metadata.yml` as Gradescope writes it (Ruby's YAML: symbol
keys, quoted student ids, each submission's old results nested under `:results`, earlier
submissions under `:history`, a group submission, names that need quoting, a name that would be a
spreadsheet formula).

    from tests import fake_export
    made = fake_export.build(folder)          # the 32-submission class -> {folder name: (suite, case)}
    made = fake_export.build(folder, [("submissions", "distributions_full"), ("messy", "notebook_only")])

Nothing is committed but the list: the cases are assembled each time.
"""
import random
from pathlib import Path

from tests import cases

# A class of 32 drawn from the cases: correct, buggy, broken (packaging, syntax, nothing
# gradable) and hostile submissions, about as a real class mixes them.
CLASS = (
    *[("submissions", name) for name in (
        "all_distributions_full", "bce_with_logits_full", "bernoulli_distribution_full", "distributions_full",
        "exp_half_log_full", "logsigmoid_full", "multivariate_normal_full", "normal_inplace_loop_full",
        "randn_broadcast_logvar_full",
        "elbo_decodes_mean_buggy", "elbo_missing_kl_buggy", "elbo_monte_carlo_kl_buggy", "elbo_sum_over_batch_buggy",
        "elbo_z_from_prior_buggy", "kl_missing_half_buggy", "kl_reversed_buggy", "kl_sum_batch_dim_buggy",
        "kl_variance_as_std_buggy", "sg_exp_v_buggy", "sg_laplace_noise_buggy", "sg_manual_seed_buggy")],
    *[("messy", name) for name in ("single_zip", "case_only_names", "empty_vae", "notebook_only", "backup_and_final")],
    *[("hostile", name) for name in ("syntax_error", "exit_at_import", "os_exit_in_kl_normal", "forge_results_json",
                                     "print_flood", "fake_stdout_json")],
)

FIRST = ("Ada", "Grace", "Alan", "Zoë", "Renée", "Seán", "Ngozi", "Wei", "Ana María", "Kwame", "Ólafur", "Priya")
LAST = ("Lovelace", "Hopper", "Turing", "O'Brien", "Nguyễn", "Okafor", "Smith: Jr", "Müller", "García-López")


def _quote(value):
    """A scalar as Ruby's YAML writes it: plain where it can be, else single-quoted."""
    plain = value and not value[0] in "'\"!&*-?|>%@`#[]{},:~ " and ": " not in value and " #" not in value \
        and not value.replace(".", "", 1).isdigit() and value not in ("true", "false", "null", "yes", "no")
    return value if plain else "'" + value.replace("'", "''") + "'"


def _submitter(rng, number):
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    email = name.lower().replace(" ", ".").replace("'", "").replace(":", "") + f"{number}@example.edu"
    return name, str(10_000_000 + number), email


def _record(rng, key, people, index):
    score = rng.choice([23.0, 21.5, 18.0, 9.5, 0.0])
    lines = [f"{key}:", "  :submitters:"]
    for name, sid, email in people:
        lines += [f"  - :name: {_quote(name)}", f"    :sid: '{sid}'", f"    :email: {_quote(email)}"]
    lines += [f"  :created_at: 2026-11-{10 + index % 18:02d} 17:{index % 60:02d}:00.861687000 Z",
              f"  :score: {score}",
              "  :results:",
              f"    score: {score}",
              "    execution_time: 161.52",
              "    output: |-",
              "      Files graded: utils.py, vae.py",
              "",
              f"      sample_gaussian: {min(score, 6.0):g} / 6",
              "    tests:",
              "    - name: '1.1 shape and dtype: follow the inputs'",
              "      score: 1.0",
              "      max_score: 1.0",
              "      output: \"Expected: shape (2, 3)\\nObserved: \\\"(2, 3)\\\"\\n\"",
              "      tags:",
              "      - sample_gaussian",
              "    leaderboard: []",
              "  :history:"]
    if index % 3 == 0:
        lines += ["  - :created_at: 2026-11-09 12:00:00.000000000 Z", "    :score: 0.0", "    :results:",
                  "      score: 0.0", "      tests: []"]
    else:
        lines[-1] += " []"
    return lines


def build(folder, drawn=CLASS, seed=236, group_every=7):
    """The export of the `drawn` cases in `folder` (created) -> {folder name: what was drawn}. Each drawn
    item is a case, (suite, case), or a literal submission, {path: bytes}.
    Every `group_every`-th submission has two submitters; the last submitter's name is a formula."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ids = rng.sample(range(100_000_000, 999_999_999), len(drawn))
    lines, made = ["---"], {}
    for index, (entry, number) in enumerate(zip(drawn, ids)):
        key = f"submission_{number}"
        if isinstance(entry, dict):
            for relative, data in entry.items():
                (folder / key / relative).parent.mkdir(parents=True, exist_ok=True)
                (folder / key / relative).write_bytes(data)
        else:
            cases.assemble(*entry, folder / key)
        made[key] = entry
        people = [_submitter(rng, 2 * index)]
        if group_every and index % group_every == group_every - 1:
            people.append(_submitter(rng, 2 * index + 1))
        if index == len(drawn) - 1:
            people[-1] = ("=HYPERLINK(\"http://example.com\")", people[-1][1], people[-1][2])
        lines += _record(rng, key, people, index)
    (folder / "submission_metadata.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return made
