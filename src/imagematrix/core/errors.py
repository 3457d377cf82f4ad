"""Errors a user can act on. Each names the cause and the fix; none needs a traceback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagematrix.core.interrupts import Terminated
from imagematrix.core.text import printable


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


class HostFault(ImagematrixError):
    """The host cannot go on (disk full, engine lost): the cell at hand fails, no new work starts,
    and what is already built or recorded stays as it is."""

    reason = "host fault"


class DiskWriteError(HostFault):
    """A file imagematrix writes could not be written (full disk, read-only mount, permissions)."""

    reason = "no space left"

    @classmethod
    def of(cls, path: Path, exc: OSError, needed: int = 0) -> DiskWriteError:
        import errno
        import shutil

        where = Path(path)
        probe = next((p for p in (where, *where.parents) if p.exists()), Path("/"))
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            free = -1
        space = f"{free / 1e6:.1f} MB free on its filesystem" if free >= 0 else "free space unknown"
        if needed:
            space += f", {needed / 1e6:.1f} MB needed"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space there (docker system df; invoke clean; an older build/ directory) and rerun"
        else:
            fix = "make it writable, or choose another build directory with --out DIR"
        err = cls(f"could not write {path}: {exc.strerror or exc} ({space}); {fix}")
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            err.reason = exc.strerror or "write failed"
        return err


class EngineLost(HostFault):
    """The Docker engine stopped answering while imagematrix was using it."""

    reason = "engine lost"


def outcome(command: Callable[[], int | None], stopped: str = "") -> tuple[int, str | None]:
    """Run a command; its exit code and what to print on stderr, never a traceback.

    The one mapping for every entry point (invoke tasks, ``python -m imagematrix.testing``):
    an ImagematrixError is its message and exit code, SIGTERM 143, Ctrl-C 130; ``stopped``
    says what was cleaned up on the way out.
    """
    tail = f": {stopped}" if stopped else ""
    try:
        return int(command() or 0), None
    except ImagematrixError as exc:  # messages quote records, logs and file names: printable, always
        return exc.exit_code, printable(f"error: {exc}", 20_000, lines=True)
    except Terminated:
        return 143, f"terminated{tail}"
    except KeyboardInterrupt:
        return 130, f"interrupted{tail}"
    except OSError as exc:  # a path the command was given that cannot be used, or the host's own fault
        import errno

        given = exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ELOOP)
        where = f" {exc.filename}" if exc.filename else ""
        return (2 if given else 1), printable(f"error: cannot use{where}: {exc.strerror or exc}", 2000)
