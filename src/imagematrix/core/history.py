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

from imagematrix.core.builddir import flocked
from imagematrix.core.errors import ImagematrixError

HISTORY_FILE = "history.jsonl"
HISTORY_LOCK = ".history.lock"
STATE_ENV = "IMAGEMATRIX_STATE_DIR"
KINDS = ("build", "test")
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
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise HistoryError(
            f"could not append to {path}: {exc.strerror}. status.json has the result; free disk space "
            f"(or point {STATE_ENV} at a writable directory) so the history keeps it too"
        ) from None


def read(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Events of every given history file, oldest first, each once (merged histories overlap);
    and one note per unreadable line (a run killed mid-write leaves at most a partial last line)."""
    seen: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except json.JSONDecodeError:
                notes.append(f"{path}:{n}: not a JSON line (skipped)")
                continue
            if not isinstance(ev, dict) or ev.get("kind") not in KINDS or not isinstance(ev.get("cell"), str):
                notes.append(f"{path}:{n}: not a history event (skipped)")
                continue
            seen.setdefault(json.dumps(ev, sort_keys=True), ev)
    events = sorted(seen.values(), key=lambda e: (str(e.get("at") or ""), e["cell"], e["kind"]))
    return events, notes
