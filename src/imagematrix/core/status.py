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
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from imagematrix.core.builddir import flocked, mark
from imagematrix.core.errors import ImagematrixError

SCHEMA = 1
STATUS_FILE = "status.json"
BACKUP_SUFFIX = ".bak"  # the record before the last write: what a damaged record is recovered from
FILE_MODE = 0o644
STATUS_LOCK_FILE = ".status.lock"


class StatusError(ImagematrixError):
    pass


def status_path(build_dir: Path) -> Path:
    return Path(build_dir) / STATUS_FILE


def backup_path(build_dir: Path) -> Path:
    return status_path(build_dir).with_name(STATUS_FILE + BACKUP_SUFFIX)


def _shape_problem(doc: Any) -> str | None:
    """Why a decoded record is not ``{"schema": 1, "cells": {id: {section: {...}}}}``, or None."""
    if not isinstance(doc, dict):
        return f"the top level is a JSON {type(doc).__name__}, not an object"
    if doc.get("schema") != SCHEMA:
        return f"schema is {doc.get('schema')!r}; this imagematrix reads schema {SCHEMA}"
    cells = doc.get("cells", {})
    if not isinstance(cells, dict):
        return f"'cells' is a JSON {type(cells).__name__}, not an object"
    for cid, rec in cells.items():
        if not isinstance(rec, dict) or not all(isinstance(v, dict) for v in rec.values()):
            return f"the record of cell {cid!r} is not an object of sections (build, test, sizes)"
    return None


def _damaged(path: Path, why: str) -> StatusError:
    bak = path.with_name(path.name + BACKUP_SUFFIX)
    if bak.is_file():
        fix = (f"The record before the last write is kept in {bak}: `cp {bak} {path}` restores it "
               f"(or move {path} aside to start a new record; images are not affected).")
    else:
        fix = f"Move {path} aside and rerun: nothing is lost but the record (images are not affected)."
    return StatusError(f"{path} is damaged: {why}. It was not written by imagematrix as it is. {fix}")


def read_status(build_dir: Path) -> dict[str, dict[str, Any]]:
    """All cells' records (``{}`` when nothing was recorded yet)."""
    path = status_path(build_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _damaged(path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise StatusError(f"cannot read {path}: {exc.strerror}") from None
    why = _shape_problem(doc)
    if why:
        raise _damaged(path, why)
    return doc.get("cells", {})


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename; the previous version stays as ``<path>.bak``."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 would make the record private
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            bak = path.with_name(path.name + BACKUP_SUFFIX)
            link = Path(f"{tmp}.bak")
            os.link(path, link)  # a second name for the current record, then swapped in atomically
            os.replace(link, bak)
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, f"{tmp}.bak"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise


def update_cell(build_dir: Path, cell_id: str, section: str, data: dict[str, Any], replace: bool = False) -> dict:
    """Merge ``data`` into one section of one cell's record (or replace the section)."""
    # Its own short-lived lock: test runs record beside a running build (which holds the build lock).
    with flocked(Path(build_dir) / STATUS_LOCK_FILE):
        try:
            mark(build_dir)
        except OSError as exc:
            raise StatusError(f"could not write into {build_dir}: {exc.strerror}; free disk space and rerun") from None
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
