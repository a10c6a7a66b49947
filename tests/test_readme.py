"""What README.md and bench/README.md say stays true (in about two seconds): every
`python -m autograder` command and flag they show exists, every flag of `run_vae.py` and
`bench/run.py` they show exists, every path of the layout table exists and every module of
autograder/ is in it, every environment variable they name is read somewhere, and the
installed hypothesis is the pinned one (it decides the examples of the kl_normal properties
check). Running the commands themselves is by hand: the container simulation needs root and
minutes."""
import argparse
import re
import subprocess
import sys

import pytest

from autograder import __main__ as cli
from autograder import paths

PROJECT = paths.PROJECT
README = (PROJECT / "README.md").read_text()
BENCH_README = (PROJECT / "bench" / "README.md").read_text()


def _code(text):
    """Every command a reader would run: the lines of code blocks, and inline code spans."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    lines = [line for block in blocks for line in block.splitlines()]
    outside = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    return lines + re.findall(r"`([^`\n]+)`", outside)


def _invocations(text, marker):
    """(what follows `marker`, up to a comment or the end of the shell command) for each use."""
    found = []
    for code in _code(text):
        for match in re.finditer(re.escape(marker) + r"\s+([^#;&|]*)", code):
            found.append(match.group(1).strip())
    return found


def _flags(arguments):
    return {token.strip("[],()") for token in arguments.split() if token.strip("[(").startswith("--")}


def _subcommands():
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices


def test_every_autograder_command_and_flag_shown_exists():
    commands = _subcommands()
    shown = _invocations(README, "-m autograder") + _invocations(BENCH_README, "-m autograder")
    assert len(shown) >= 10, shown
    for arguments in shown:
        command, *rest = arguments.split()
        assert command in commands, f"README shows `python -m autograder {arguments}`: no command {command!r}"
        known = {option for action in commands[command]._actions for option in action.option_strings}
        unknown = _flags(" ".join(rest)) - known
        assert not unknown, f"`python -m autograder {arguments}`: {command} has no {sorted(unknown)}"
    assert set(commands) <= set(re.findall(r"[\w-]+", cli.__doc__)), "__main__'s docstring lists every command"
    assert not set(re.findall(r"\| (\w+)", cli.__doc__)) - set(commands), "__main__'s docstring lists no other"


def _help(*command):
    done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("script, marker", [("assignment/run_vae.py", "run_vae.py"), ("bench/run.py", "bench/run.py")])
def test_every_flag_of_run_vae_and_bench_shown_exists(script, marker):
    options = set(re.findall(r"(--[\w-]+)", _help(script)))
    shown = [flag for text in (README, BENCH_README) for arguments in _invocations(text, marker)
             for flag in _flags(arguments)]
    prose = README.split("## Speed and memory")[1] if marker == "bench/run.py" else README.split("## Students")[1]
    shown += re.findall(r"`(--[\w-]+)", prose.split("\n## ")[0])      # "Options: `--iters` (20000), ..."
    assert shown
    assert not set(shown) - options, f"{script} has no {sorted(set(shown) - options)}"


def test_every_bench_figure_named_exists():
    from bench.run import FIGURES
    section = README.split("## Speed and memory")[1]
    named = {name for row in section.splitlines() if row.startswith("| ") and not row.startswith("| figure")
             for name in re.findall(r"`(\w+)`", row.rstrip(" |").rsplit("|", 1)[1])}
    named |= set(re.findall(r"`(\w+)`", BENCH_README.split("Options: `--only NAME ...` (")[1].split(")")[0]))
    assert named and not named - set(FIGURES), sorted(named - set(FIGURES))
    assert set(FIGURES) <= named, f"figures the README does not name: {sorted(set(FIGURES) - named)}"


def _layout():
    table = README.split("| path | what it holds |")[1].split("\n\n")[0]
    rows = [row.split(" | ", 1) for row in table.splitlines()[2:]]
    return [(re.findall(r"`([^`]+)`", first), rest) for first, rest in rows]


PATHLIKE = re.compile(r"^[\w.-]+(/[\w.-]+)*(/|\.(py|json|md|sh|txt|toml))$")


def test_every_path_in_the_layout_table_exists():
    checked = 0
    for folders, text in _layout():
        for folder in folders:
            assert (PROJECT / folder).exists() or folder == "data/", f"layout names {folder}: not here"
        here = PROJECT / folders[0] if folders[0].endswith("/") else PROJECT
        for name in re.findall(r"`([^`]+)`", text):
            if not PATHLIKE.match(name) or name.startswith("data/"):
                continue
            places = [here, *[parent for parent in here.parents if parent.is_relative_to(PROJECT)]]
            assert any((place / name).exists() for place in places) or next(here.rglob(name), None), \
                f"layout row {folders}: no {name}"
            checked += 1
    assert checked > 50


def test_the_layout_table_names_every_module_and_top_level_folder():
    rows = {folders[0]: text for folders, text in _layout()}
    for package in ("autograder/", "autograder/checks/", "autograder/sandbox/"):
        named = set(re.findall(r"`([\w.]+\.(?:py|json))`", rows[package]))
        present = {p.name for p in (PROJECT / package).iterdir()
                   if p.suffix in (".py", ".json") and p.name != "__init__.py"}
        assert not present - named, f"README's layout row {package} leaves out {sorted(present - named)}"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the top-level folders are those git tracks")
    folders = {name.split("/")[0] + "/" for name in tracked.stdout.splitlines() if "/" in name}
    folders = {name for name in folders if not name.startswith(".")} | {"data/"}
    assert not folders - set(rows), f"top-level folders missing from README's layout: {sorted(folders - set(rows))}"


def test_every_environment_variable_named_is_read_somewhere():
    code = "".join(path.read_text() for folder in ("autograder", "solution", "tests", "bench")
                   for path in (PROJECT / folder).rglob("*.py"))
    code += (PROJECT / "run_autograder").read_text() + (PROJECT / "setup.sh").read_text()
    named = set(re.findall(r"\b((?:VAE|AUTOGRADER)_[A-Z_]+)", README + BENCH_README))
    assert named
    assert not {name for name in named if name not in code}, "README names variables nothing reads"


def test_the_installed_hypothesis_is_the_pinned_one():
    """The kl_normal properties check draws its examples with hypothesis (derandomized): its
    version decides what a submission is graded on, so requirements.txt pins it exactly."""
    import hypothesis
    from packaging.requirements import Requirement
    pins = [Requirement(line.split("#")[0]) for line in (PROJECT / "requirements.txt").read_text().splitlines()
            if line.startswith("hypothesis")]
    (pin,) = [p for p in pins if p.marker is None or p.marker.evaluate()]
    assert str(pin.specifier).startswith("=="), pin
    assert hypothesis.__version__ == str(pin.specifier)[2:], (hypothesis.__version__, str(pin))
