"""The build directory (``build/`` or ``--out DIR``): its lock and its one timestamp format.

Every command that writes contexts or the record into a build directory holds
its lock (``build_lock``) for as long as it writes: `invoke build`, `invoke
render`, `invoke clean`. Test runs of already-built images write only their own
results and may run alongside. Stdlib only: host-mode test runs import it.
"""

from __future__ import annotations

import contextlib
import os
import typing
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from imagematrix.core import files, platform_os
from imagematrix.core.errors import DiskWriteError, ImagematrixError, UsageError

LOCK_FILE = ".build.lock"
LOGS_DIR = "logs"
# Written into every build directory imagematrix writes: `invoke clean` removes only a directory that has it.
MARKER = ".imagematrix-build"
MARKER_TEXT = "This directory was made by imagematrix; `invoke clean` may remove it.\n"


def utcnow() -> str:
    """The record's one timestamp format: UTC, seconds, ``Z`` (``2026-11-30T04:35:38Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class BuildLocked(UsageError):
    """Another command holds the build directory; nothing was written (exit 2)."""


@contextlib.contextmanager
def flocked(path: Path, blocking: bool = True) -> Iterator[typing.BinaryIO]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing); yields the open file.

    Non-blocking: raises BlockingIOError when another process holds it.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:  # never a FIFO or a device put where the lock belongs: open() would wait for a writer forever
        fd = files.open_regular(path, f"the lock {path}", os.O_RDWR | os.O_CREAT)
    except files.Unreadable as exc:
        raise ImagematrixError(f"{exc}. Fix: remove it; imagematrix makes its locks itself") from None
    # Unbuffered: a write that fails (a full disk) leaves nothing for close() to fail on again.
    with os.fdopen(fd, "a+b", buffering=0) as f:
        platform_os.lock(f, blocking)
        try:
            yield f
        finally:
            platform_os.unlock(f)


def mark(build_dir: Path) -> None:
    """Say that ``build_dir`` is imagematrix's (idempotent)."""
    path = Path(build_dir) / MARKER
    if not path.is_file():
        path.write_text(MARKER_TEXT, encoding="utf-8")


def is_marked(build_dir: Path) -> bool:
    """Made by imagematrix: the marker, or (before the marker existed) a record beside a build lock."""
    d = Path(build_dir)
    return (d / MARKER).is_file() or ((d / LOCK_FILE).is_file() and (d / "status.json").is_file())


def lock_holder(build_dir: Path) -> str | None:
    """Who holds ``build_dir``'s lock ("PID n (invoke build) since t"), or None when nobody does."""
    path = Path(build_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        with flocked(path, blocking=False):
            return None
    except BlockingIOError:
        return path.read_text().strip() or "PID unknown"


@contextlib.contextmanager
def build_lock(build_dir: Path, command: str = "invoke build") -> Iterator[None]:
    """Hold ``build_dir``'s lock for ``command`` or raise BuildLocked naming the holder."""
    path = Path(build_dir) / LOCK_FILE
    try:
        with flocked(path, blocking=False) as f:
            try:
                f.seek(0)
                f.truncate()
                f.write(f"PID {os.getpid()} ({command}) since {utcnow()}\n".encode())
                mark(build_dir)
            except OSError as exc:
                raise DiskWriteError.of(path, exc) from None
            yield
    except BlockingIOError:
        holder = path.read_text().strip() or "PID unknown"
        raise BuildLocked(
            f"{build_dir} is in use by another command ({holder}); nothing was done. "
            f"Wait for it to finish, or use another build directory with --out DIR."
        ) from None
