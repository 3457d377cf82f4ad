"""The `imagematrix` command: the same tasks as `invoke` in the repository, from any directory."""

from __future__ import annotations

import os
import sys

from invoke import Collection, Program

from imagematrix.cli import tasks
from imagematrix.core.options import PROGRAM_ENV
from imagematrix.core.version import __version__

program = Program(
    namespace=Collection.from_module(tasks), name="imagematrix", binary="imagematrix", version=__version__
)
HELP = ("--help", "-h")


def argv_for_invoke(argv: list[str]) -> list[str]:
    """``imagematrix TASK --help`` as invoke reads it (``--help TASK``): a task that takes a positional
    argument (verify) would otherwise take ``--help`` as that argument and run."""
    names = set(program.namespace.task_names) if program.namespace else set()
    words = argv[1:]
    if len(words) >= 2 and words[0] in names and any(w in HELP for w in words[1:]):
        return [argv[0], "--help", words[0]]
    return argv


def main() -> None:
    os.environ[PROGRAM_ENV] = "imagematrix"  # what the sheet and the hints name as the command to run
    try:
        program.run(argv_for_invoke(list(sys.argv)))
    except BrokenPipeError:  # `imagematrix … | head`: the reader left; nothing more to say
        sys.stderr.close()
        raise SystemExit(0) from None
