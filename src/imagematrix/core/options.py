"""Every command-line option that more than one command takes, declared once.

Each ``Option`` yields its argparse entry (``python -m imagematrix.testing``, nox's ``gpu_*``
sessions), its invoke flag and help (``imagematrix TASK``, ``invoke TASK``) and the parsing of
its value, so the commands cannot drift apart: adding an option is one entry here. Stdlib only:
the test runner parses its command line with it on hosts that have nothing but torch and pytest.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from imagematrix.core import files
from imagematrix.core.errors import UsageError
from imagematrix.core.reference import check_repository

MATRIX_ENV = "IMAGEMATRIX_MATRIX"
DEFAULT_MATRIX = "matrix.yaml"


PROGRAM_ENV = "IMAGEMATRIX_PROGRAM"  # set by the `imagematrix` command; unset, the tasks ran through invoke


def program() -> str:
    """The command the user runs the tasks with, for text that tells them what to run: `imagematrix`, or
    `invoke` in this repository."""
    return "imagematrix" if os.environ.get(PROGRAM_ENV) == "imagematrix" else "invoke"


def default_matrix() -> str:
    """The matrix a command reads when --matrix is not given: $IMAGEMATRIX_MATRIX, else matrix.yaml."""
    return os.environ.get(MATRIX_ENV) or DEFAULT_MATRIX


@dataclass(frozen=True)
class Option:
    """One option: ``name`` is its keyword (``require_gpu``), its flag is ``--require-gpu``.

    ``kind``: ``str``, ``bool`` (a switch), ``int``/``number`` (checked against ``minimum``),
    ``choice`` (one of ``choices``), ``list`` (repeatable), ``words`` (a shell-quoted string),
    ``repository`` (an image repository, by Docker's reference grammar), ``workers`` (``auto`` or a whole
    number of at least 0), ``dir`` (a directory to write into:
    a path that is one, or can be made; never a file, a device or the kernel's /proc).
    ``default`` is the parsed default; invoke sees string defaults for numbers so that a bad value
    reaches our parser (and its message) instead of invoke's own int().
    """

    name: str
    help: str
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    metavar: str | None = None
    default_from: Callable[[], Any] | None = None  # a default read when parsing (e.g. from the environment)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def invoke_default(self) -> Any:
        if self.kind == "list":
            return None
        if self.kind == "bool":
            return bool(self.default)
        if self.kind == "words":  # invoke takes one string; the table's default is a tuple
            return " ".join(self.default or ())
        return "" if self.default is None else str(self.default)

    def parse(self, value: Any) -> Any:
        """The value as the commands use it, or UsageError naming the flag."""
        if self.kind == "list":
            if value is None:
                return ()
            values = [value] if isinstance(value, (str, int)) else list(value)
            return tuple(str(v).strip() for v in values if str(v).strip())
        if self.kind == "bool":
            return bool(value)
        if value is None or value == "":
            return self.default_from() if self.default_from else self.default
        if self.kind in ("int", "number"):
            return number(self.flag, value, minimum=self.minimum, integer=self.kind == "int")
        if self.kind == "choice":
            if str(value) not in self.choices:
                raise UsageError(f"{self.flag} takes one of {', '.join(self.choices)}, not {str(value)[:40]!r}")
            return str(value)
        if self.kind == "words":
            return tuple(words(self.flag, str(value)))
        if self.kind == "repository":
            return check_repository(self.flag, str(value))
        if self.kind == "workers":
            text = str(value).strip()
            if text == "auto":
                return text
            return str(number(self.flag, text, minimum=0, integer=True))
        if self.kind == "dir":
            why = files.out_dir_problem(str(value))
            if why:
                raise UsageError(f"{self.flag} {str(value)[:80]!r} {why}")
        return str(value)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """This option as an argparse argument (values parsed later by ``parse``, for one message)."""
        if self.kind == "bool":
            parser.add_argument(self.flag, action="store_true", help=self.help)
        elif self.kind == "list":
            parser.add_argument(self.flag, action="append", default=[], metavar=self.metavar, help=self.help)
        else:
            parser.add_argument(self.flag, default=None, metavar=self.metavar or self.name.upper(), help=self.help)


def number(flag: str, value: object, *, minimum: float | None = None, integer: bool = False) -> float:
    """``value`` as a finite number (an integer with ``integer``) of at least ``minimum``, or exit 2."""
    kind = "a whole number" if integer else "a number"
    bound = f" >= {minimum:g}" if minimum is not None else ""
    try:
        n = float(str(value).strip())
    except ValueError:
        raise UsageError(f"{flag} takes {kind}{bound}, not {str(value)[:40]!r}") from None
    if not math.isfinite(n) or (integer and n != int(n)) or (minimum is not None and n < minimum):
        raise UsageError(f"{flag} takes {kind}{bound}, not {str(value)[:40]!r}")
    return int(n) if integer else n


def words(flag: str, value: str) -> list[str]:
    """A shell-quoted argument string (``--pytest '-k abi -x'``) as its words, or exit 2."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"{flag} {value[:60]!r}: {exc} (quote it as a shell would)") from None


# --- the table ---------------------------------------------------------------------------------

FILTERS = (
    Option("phase", "only cells of build phase N (repeatable)", "list", metavar="N"),
    Option("cuda", "only this CUDA version, e.g. 12.8.1 (repeatable)", "list", metavar="X.Y[.Z]"),
    Option("python", "only this Python version, e.g. 3.13 (repeatable)", "list", metavar="X.Y"),
    Option("target", "only this target, e.g. runtime (repeatable)", "list", metavar="TARGET"),
    Option(
        "platform",
        "only cells of this platform, e.g. linux/arm64 (repeatable; matrices with a platforms axis)",
        "list",
        metavar="OS/ARCH",
    ),
)
MATRIX = Option(
    "matrix", f"matrix file (default: ${MATRIX_ENV}, else matrix.yaml)", metavar="FILE", default_from=default_matrix
)
OUT = Option(
    "out",
    "build directory: contexts, logs, results, status.json (default: build)",
    "dir",
    default="build",
    metavar="DIR",
)

TEST = (
    Option("suite", "smoke: fast checks; full: every check (default: smoke)", "choice", "smoke", ("smoke", "full")),
    Option("require_gpu", "fail GPU checks that find no GPU instead of skipping them (GPU runners)", "bool", False),
    Option(
        "jobs",
        "cells tested at once, each container on its own GPU while there are enough (default: 1)",
        "int",
        1,
        minimum=1,
        metavar="N",
    ),
    Option(
        "workers",
        "pytest-xdist workers per image: a number, auto (one per CPU, at most 16; with --jobs N, half of "
        "each container's share) or 0 (no xdist) (default: auto)",
        "workers",
        "auto",
        metavar="N|auto",
    ),
    Option(
        "backend",
        "docker: inside each built image (default); host: this host's interpreter",
        "choice",
        "docker",
        ("docker", "host"),
    ),
    Option(
        "timeout",
        "seconds per image before it is killed (default: smoke 900, full 3600)",
        "number",
        minimum=1,
        metavar="SECONDS",
    ),
    Option(
        "interpreter",
        "--backend host: the Python to test (default: this one, or python<X.Y> for --python)",
        metavar="PATH",
    ),
    Option(
        "candidates",
        "pull each cell's candidate from REPO (build --push-candidates REPO) and test it; the record keeps its digest",
        "repository",
        metavar="REPO",
    ),
    Option("pytest", "more pytest arguments, one shell-quoted string, e.g. --pytest '-k abi -x'", "words", ()),
    Option(
        "no_reuse",
        "test every cell again, even one that passed with the very same image, suite and host",
        "bool",
        False,
    ),
    Option(
        "reuse_max_age",
        "reuse a passed result only when it is younger than this many days (default: 30)",
        "number",
        30,
        minimum=0,
        metavar="DAYS",
    ),
    Option(
        "run_anyway", "run a cell the oracle predicts to fail on this GPU and driver (to measure it)", "bool", False
    ),
    Option(
        "verbose",
        "stream each image's pytest output as it runs (it is always in build/test-results/<cell>.log); "
        "default: one progress line per image on a terminal",
        "bool",
        False,
    ),
    Option(
        "signing_key",
        "sign each result of a GPU run (--require-gpu) with this ed25519 key (imagematrix keygen); "
        "default: $IMAGEMATRIX_SIGNING_KEY_FILE or $IMAGEMATRIX_SIGNING_KEY",
        metavar="FILE",
    ),
)
TEST_OPTIONS = (*FILTERS, MATRIX, *TEST, OUT)
BY_NAME = {o.name: o for o in TEST_OPTIONS}


def parse_all(options: Iterable[Option], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's parsed value from ``raw`` (keyword -> as given), in one pass."""
    return {o.name: o.parse(raw.get(o.name)) for o in options}


def build_command(matrix: str, cuda: str, python: str, target: str) -> str:
    argv = ["imagematrix", "build"] + (["--matrix", matrix] if matrix != DEFAULT_MATRIX else [])
    return shlex.join([*argv, "--cuda", cuda, "--python", python, "--target", target])


def invoke_help(options: Iterable[Option]) -> dict[str, str]:
    return {o.name: o.help for o in options}
