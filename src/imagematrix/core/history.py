"""The append-only history of builds and test runs: ``history.jsonl`` in the state directory.

status.json keeps each cell's last build and test; the sheet also needs what came
before (expected build times, cold against cached, the trouble log, which driver
and GPU each image passed on). Every finished build and test run appends one JSON
line here. The state directory is ``$IMAGEMATRIX_STATE_DIR`` when set (a runner
keeps it across CI checkouts, which delete ignored files), else the build
directory. `invoke clean` keeps it unless told ``--history``; `invoke report
--merge FILE` reads other runners' histories into one sheet.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imagematrix.core import files
from imagematrix.core.builddir import flocked
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.records import HistoryEvent, RecordError

HISTORY_FILE = "history.jsonl"
HISTORY_LOCK = ".history.lock"
STATE_ENV = "IMAGEMATRIX_STATE_DIR"
# Kept out of the history: the command line and log tails are in status.json and the logs.
DROPPED = ("command", "tail")


class HistoryError(ImagematrixError):
    pass


def state_dir(build_dir: Path) -> Path:
    given = os.environ.get(STATE_ENV)
    return Path(given) if given else Path(build_dir)


def history_path(build_dir: Path) -> Path:
    return state_dir(build_dir) / HISTORY_FILE


def event(kind: str, cell: str, record: dict[str, Any], runner: str | None = None) -> dict[str, Any]:
    """One history line: what happened to which cell, where, and the record as written."""
    at = record.get("ended") or record.get("finished") or ""
    body = {k: v for k, v in record.items() if k not in DROPPED}
    return {"kind": kind, "cell": cell, "at": at, "runner": runner or socket.gethostname(), **body}


def append(build_dir: Path, kind: str, cell: str, record: dict[str, Any]) -> None:
    """Append one event (one ``write`` of one line, under a lock, flushed to disk)."""
    path = history_path(build_dir)
    line = json.dumps(event(kind, cell, record), sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with flocked(path.with_name(HISTORY_LOCK)):
            fd = files.open_regular(path, f"the history {path}", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
    except files.Unreadable as exc:
        raise HistoryError(f"could not append to it: {exc}. Fix: move it away; status.json has the result") from None
    except OSError as exc:
        raise HistoryError(
            f"could not append to {path}: {exc.strerror}. status.json has the result; free disk space "
            f"(or point {STATE_ENV} at a writable directory) so the history keeps it too"
        ) from None


MAX_HISTORY_BYTES = 256 * 1024 * 1024  # years of a busy runner's history; more is read from its end
MAX_LINE = 1024 * 1024


def read(paths: Iterable[Path]) -> tuple[list[HistoryEvent], list[str]]:
    """Events of every given history file, oldest first, each once (merged histories overlap); and one
    note per file with damaged lines (skipped and counted: a run killed mid-write leaves at most a
    partial last line, a merged file from elsewhere may hold anything)."""
    seen: dict[str, HistoryEvent] = {}
    notes: list[str] = []
    for path in paths:
        path = Path(path)
        try:
            fd = files.open_regular(path, f"{path}")
        except FileNotFoundError:
            continue
        except files.Unreadable as exc:
            notes.append(f"{exc}: not read")
            continue
        except OSError as exc:
            raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_HISTORY_BYTES:
                    f.seek(size - MAX_HISTORY_BYTES)
                    notes.append(f"{path}: {size:,} bytes; only its last {MAX_HISTORY_BYTES:,} were read")
                data = f.read(MAX_HISTORY_BYTES)
        except OSError as exc:
            raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
        damaged: list[tuple[int, str]] = []
        for n, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                if len(raw) > MAX_LINE:
                    raise ValueError(f"a line of {len(raw):,} bytes")
                event = HistoryEvent.from_json(json.loads(raw.decode("utf-8")), f"line {n}")
            except (ValueError, RecursionError, RecordError) as exc:  # ValueError: JSON, UTF-8, an absurd number
                damaged.append((n, str(exc).splitlines()[0][:200]))
                continue
            seen.setdefault(json.dumps(event.to_json(), sort_keys=True), event)
        if damaged:
            n, why = damaged[0]
            notes.append(f"{path}: {len(damaged)} damaged line(s) skipped, the first at line {n} ({why})")
    events = sorted(seen.values(), key=lambda e: (e.at, e.cell, e.kind))
    return events, notes
