"""The `imagematrix` command: the same tasks as `invoke` in the repository, from any directory."""

from __future__ import annotations

from invoke import Collection, Program

from imagematrix.cli import tasks
from imagematrix.core.version import __version__

program = Program(
    namespace=Collection.from_module(tasks), name="imagematrix", binary="imagematrix", version=__version__
)


def main() -> None:
    program.run()
