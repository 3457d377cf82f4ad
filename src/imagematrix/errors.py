"""Errors a user can act on. Each names the cause and the fix; none needs a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ImagematrixError(Exception):
    """An error with a message meant for the user; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(ImagematrixError):
    """Bad input from the user (options, files): exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One finding in a matrix file, located by line and key path."""

    file: Path
    line: int | None
    path: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        key = ".".join(str(p) for p in self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


class MatrixError(UsageError):
    """A matrix file that cannot be used; lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        n = len(problems)
        head = f"{problems[0].file}: {n} problem{'s' if n != 1 else ''} in the matrix file"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))
