"""The record of every cell: ``build/status.json``.

One JSON document, ``{"schema": 1, "cells": {cell_id: {section: {...}}}}``.
Each writer owns one section of a cell ("build", "test", "sizes"), so builds,
test runs and size reports never overwrite each other's facts.

Writes are read-modify-write under an exclusive ``flock`` and land with an
atomic rename of a fsynced temporary file: an interrupted process, a killed
one or a full disk leaves the previous complete record in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ImagematrixError

SCHEMA = 1
STATUS_FILE = "status.json"


class StatusError(ImagematrixError):
    pass


def status_path(build_dir: Path) -> Path:
    return Path(build_dir) / STATUS_FILE


def read_status(build_dir: Path) -> dict[str, dict[str, Any]]:
    """All cells' records (``{}`` when nothing was recorded yet)."""
    path = status_path(build_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusError(
            f"{path} is not valid JSON ({exc}); it was written by something other than imagematrix. "
            f"Move it aside and rerun: nothing is lost but the record."
        ) from None
    if doc.get("schema") != SCHEMA:
        raise StatusError(f"{path} has schema {doc.get('schema')!r}; this imagematrix reads schema {SCHEMA}")
    return doc.get("cells", {})


@contextlib.contextmanager
def _locked(build_dir: Path) -> Iterator[None]:
    Path(build_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(build_dir) / ".status.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def update_cell(build_dir: Path, cell_id: str, section: str, data: dict[str, Any], replace: bool = False) -> dict:
    """Merge ``data`` into one section of one cell's record (or replace the section)."""
    with _locked(build_dir):
        cells = read_status(build_dir)
        record = cells.setdefault(cell_id, {})
        record[section] = dict(data) if replace else {**record.get(section, {}), **data}
        doc = {"schema": SCHEMA, "cells": dict(sorted(cells.items()))}
        try:
            _write_atomic(status_path(build_dir), json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise StatusError(
                f"could not write {status_path(build_dir)}: {exc.strerror}. The previous record is intact; "
                "free disk space (docker system df; invoke clean) and rerun."
            ) from None
        return record
