"""One table of options: each one reaches invoke's flags and help, the test runner's argparse and the
runner's Options in the same words; a bad value is exit 2 naming the flag, on every command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagematrix.cli import tasks
from imagematrix.core import options as table
from imagematrix.core.errors import UsageError
from imagematrix.testing import run as testrun
from imagematrix.testing.suite import Options

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("option", table.TEST_OPTIONS, ids=lambda o: o.name)
def test_every_test_option_means_the_same_in_invoke_argparse_and_options(option):
    invoke_task = tasks.test
    assert option.name in invoke_task.argspec(invoke_task.body).parameters
    assert invoke_task.help[option.name] == option.help
    actions = {a.dest: a for a in testrun.parser()._actions if a.help != "==SUPPRESS=="}
    assert actions[option.name].help == option.help
    assert option.flag in actions[option.name].option_strings


def test_options_takes_every_value_of_the_table():
    seen = []

    class Values(dict):
        def __getitem__(self, key):
            seen.append(key)
            return super().__getitem__(key)

    values = Values(table.parse_all(table.TEST_OPTIONS, {}))
    Options.from_values(values)
    assert sorted(set(seen)) == sorted(o.name for o in table.TEST_OPTIONS)


def test_the_two_command_lines_make_the_same_options(monkeypatch):
    monkeypatch.delenv(table.MATRIX_ENV, raising=False)
    argv = [
        "--suite",
        "full",
        "--python",
        "3.13",
        "--target",
        "runtime",
        "--jobs",
        "2",
        "--out",
        "b2",
        "--require-gpu",
        "--pytest",
        "-k abi",
    ]
    from_argparse = testrun.options(argv)
    raw = {
        "suite": "full",
        "python": ["3.13"],
        "target": ["runtime"],
        "jobs": "2",
        "out": "b2",
        "require_gpu": True,
        "pytest": "-k abi",
    }
    from_invoke = Options.from_values(table.parse_all(table.TEST_OPTIONS, raw))
    assert from_argparse == from_invoke


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("jobs", "x", "--jobs takes a whole number >= 1, not 'x'"),
        ("jobs", "0", "--jobs takes a whole number >= 1"),
        ("timeout", "nan", "--timeout takes a number >= 1"),
        ("timeout", "-5", "--timeout takes a number >= 1"),
        ("suite", "fast", "--suite takes one of smoke, full"),
        ("pytest", "'", '--pytest "\'": No closing quotation'),
    ],
)
def test_a_bad_value_names_its_flag(name, value, needle):
    with pytest.raises(UsageError) as err:
        table.BY_NAME[name].parse(value)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--jobs", "x", "--dry-run"],
        ["prune", "--cache-hours", "-1"],
        ["prune", "--keep", "abc"],
        ["sizes", "--top", "0"],
        ["test", "--pytest", "'"],
        ["test", "--timeout", "inf"],
    ],
)
def test_invoke_never_shows_a_traceback_for_a_bad_value(argv):
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and f"--{argv[1].lstrip('-')}" in done.stderr


@pytest.mark.parametrize(
    "repo", ["reg/team x", "reg/team;rm -rf /", "Reg/Team", "reg/team:tag", "a/" + "b" * 260, "reg/\n"]
)
def test_a_repository_on_the_command_line_follows_dockers_grammar(repo):
    for option in (table.BY_NAME["candidates"],):
        with pytest.raises(UsageError, match="--candidates"):
            option.parse(repo)
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "publish", "--repository", repo],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "--repository" in done.stderr and "Traceback" not in done.stderr


def test_a_repository_with_a_registry_and_port_is_fine():
    assert table.BY_NAME["candidates"].parse("127.0.0.1:5000/team/pytorch") == "127.0.0.1:5000/team/pytorch"


@pytest.mark.parametrize("option", table.TEST_OPTIONS, ids=lambda o: o.name)
def test_what_invoke_passes_when_a_flag_is_not_given_parses_to_the_tables_default(option):
    """invoke hands a task its parameter's default when a flag is absent; that must parse to the same
    value the runner's argparse gets (an unset --pytest once reached pytest as the argument "()")."""
    assert option.parse(option.invoke_default) == option.parse(None)


def test_each_task_takes_one_dataclass_whose_fields_are_its_options():
    """A task reads v.no_cache, never v["no_cache"]: mypy sees a misspelled option, and a field declared with
    another option's name is refused when the class is read."""
    import dataclasses

    from imagematrix.cli import args
    from imagematrix.core.options import MATRIX

    for kind in [c for c in vars(args).values() if isinstance(c, type) and issubclass(c, args.Args)]:
        assert [o.name for o in kind.options()] == [f.name for f in dataclasses.fields(kind)], kind
    build = args.BuildArgs.parse({"no_cache": True, "jobs": "2"})
    assert build.no_cache is True and build.jobs == 2 and build.cuda == ()

    @dataclasses.dataclass(frozen=True)
    class Wrong(args.Args):
        mtrx: str = args.opt(MATRIX)

    with pytest.raises(TypeError, match="declared with the option 'matrix'"):
        Wrong.options()
