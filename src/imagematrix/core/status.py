"""The record of every cell: ``build/status.json``.

One JSON document, ``{"schema": 1, "cells": {cell_id: {section: {...}}}}``. Each writer owns one
section of a cell ("build", "test", "suites", "sizes", "candidate", "publish"), so builds, test runs,
size reports and publishing never overwrite each other's facts. Sections are typed (``records``):
a writer's section is checked before it is written, and a reader gets types, never guessed keys.

Writes are read-modify-write under an exclusive ``flock`` and land with an atomic rename of a fsynced
temporary file: an interrupted process, a killed one or a full disk leaves the previous complete
record in place. Reading assumes nothing of the file: a FIFO, a huge file, JSON too deep or with an
absurd number, a section of the wrong shape are each a message, never a traceback or a hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagematrix.core import files
from imagematrix.core.builddir import flocked, mark
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.records import SUITES, CellRecord, RecordError, parse_section

SCHEMA = 1
STATUS_FILE = "status.json"
BACKUP_SUFFIX = ".bak"  # the record before the last write: what a damaged record is recovered from
FILE_MODE = 0o644
STATUS_LOCK_FILE = ".status.lock"
MAX_STATUS_BYTES = 64 * 1024 * 1024  # an 18-cell matrix's record is a few hundred KB


class StatusError(ImagematrixError):
    pass


def status_path(build_dir: Path) -> Path:
    return Path(build_dir) / STATUS_FILE


def backup_path(build_dir: Path) -> Path:
    return status_path(build_dir).with_name(STATUS_FILE + BACKUP_SUFFIX)


@dataclass(frozen=True)
class Records:
    """Every cell's typed record, and a note for each damaged cell or section (read as absent)."""

    path: Path
    cells: dict[str, CellRecord] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def get(self, cell_id: str) -> CellRecord:
        return self.cells.get(cell_id) or CellRecord()

    def __contains__(self, cell_id: str) -> bool:
        return cell_id in self.cells

    def __len__(self) -> int:
        return len(self.cells)

    def warning(self) -> str | None:
        """One line for everything damaged in the record, or None."""
        if not self.notes:
            return None
        more = f" (and {len(self.notes) - 1} more)" if len(self.notes) > 1 else ""
        return (
            f"{self.path}: {len(self.notes)} damaged section(s) read as absent, so not tested or published: "
            f"{self.notes[0]}{more}"
        )


def _damaged(path: Path, why: str) -> StatusError:
    bak = path.with_name(path.name + BACKUP_SUFFIX)
    if bak.is_file():
        fix = (
            f"The record before the last write is kept in {bak}: `cp {bak} {path}` restores it "
            f"(or move {path} aside to start a new record; images are not affected)."
        )
    else:
        fix = f"Move {path} aside and rerun: nothing is lost but the record (images are not affected)."
    return StatusError(f"{path} is damaged: {why}. It was not written by imagematrix as it is. {fix}")


def read_json_file(path: Path, limit: int, what: str) -> Any:
    """A JSON file imagematrix wrote earlier, read without trusting it (``files.read_json``): a regular file
    within ``limit`` bytes, decoded and parsed with every failure a ValueError (``files.Unreadable``)."""
    return files.read_json(path, "record", what, limit)


def _read_doc(build_dir: Path) -> dict[str, Any]:
    """The raw document (``{}`` cells when nothing was recorded yet); a damaged whole is a StatusError."""
    path = status_path(build_dir)
    try:
        doc = read_json_file(path, MAX_STATUS_BYTES, str(path))
    except FileNotFoundError:
        return {"schema": SCHEMA, "cells": {}}
    except ValueError as exc:
        raise _damaged(path, str(exc)) from None
    except OSError as exc:
        raise StatusError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(doc, dict):
        raise _damaged(path, f"the top level is a JSON {type(doc).__name__}, not an object")
    if doc.get("schema") != SCHEMA:
        raise _damaged(path, f"schema is {str(doc.get('schema'))[:40]!r}; this imagematrix reads schema {SCHEMA}")
    if not isinstance(doc.get("cells", {}), dict):
        raise _damaged(path, f"'cells' is a JSON {type(doc['cells']).__name__}, not an object")
    doc.setdefault("cells", {})
    return doc


def read_raw(build_dir: Path) -> dict[str, dict[str, Any]]:
    """Every cell's record as the file holds it (untyped): for inspecting what was written, never for deciding."""
    return _read_doc(build_dir)["cells"]


def read_status(build_dir: Path) -> Records:
    """Every cell's typed record (none when nothing was recorded yet)."""
    path = status_path(build_dir)
    cells: dict[str, CellRecord] = {}
    notes: list[str] = []
    for cid, raw in _read_doc(build_dir)["cells"].items():
        rec = CellRecord.from_json(raw, f"cell {cid}")
        cells[cid] = rec
        notes += rec.damaged
    return Records(path, cells, tuple(notes))


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


def _checked(section: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    """The section as its type writes it; a writer that hands over an ill-typed section is a bug, said so."""
    try:
        if section == SUITES:
            return {name: parse_section("test", run, f"{where}.{name}").to_json() for name, run in data.items()}
        return parse_section(section, data, where).to_json()
    except RecordError as exc:
        raise StatusError(f"refusing to record an ill-typed section ({exc}); nothing was written") from None
    except KeyError:
        return dict(data)  # a section this release does not type (a newer writer's): kept as given


def _usable(section: str, previous: dict[str, Any], where: str) -> dict[str, Any]:
    """What of a section's earlier content can be merged into: a damaged section (or suite) is dropped."""
    if section == SUITES:
        return {k: v for k, v in previous.items() if _valid("test", v, where)}
    return previous if _valid(section, previous, where) else {}


def _valid(section: str, data: Any, where: str) -> bool:
    try:
        parse_section(section, data if isinstance(data, dict) else {}, where)
    except RecordError:
        return False
    except KeyError:
        return True
    return isinstance(data, dict)


def update_cell(build_dir: Path, cell_id: str, section: str, data: dict[str, Any], replace: bool = False) -> dict:
    """Merge ``data`` into one section of one cell's record (or replace the section); returns the cell's
    record as written. A damaged section that is merged into is replaced, not kept."""
    # Its own short-lived lock: test runs record beside a running build (which holds the build lock).
    with flocked(Path(build_dir) / STATUS_LOCK_FILE):
        try:
            mark(build_dir)
        except OSError as exc:
            raise StatusError(f"could not write into {build_dir}: {exc.strerror}; free disk space and rerun") from None
        doc = _read_doc(build_dir)
        cells = doc["cells"]
        record = cells.get(cell_id) if isinstance(cells.get(cell_id), dict) else {}
        previous: dict = record[section] if isinstance(record.get(section), dict) and not replace else {}
        previous = _usable(section, previous, f"cell {cell_id}.{section}")
        record[section] = _checked(section, {**previous, **data}, f"cell {cell_id}.{section}")
        cells[cell_id] = record
        out = {"schema": SCHEMA, "cells": dict(sorted(cells.items()))}
        try:
            _write_atomic(status_path(build_dir), json.dumps(out, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise StatusError(
                f"could not write {status_path(build_dir)}: {exc.strerror}. The previous record is intact; "
                "free disk space (docker system df; invoke clean) and rerun."
            ) from None
        return record
