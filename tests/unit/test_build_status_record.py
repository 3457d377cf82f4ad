"""build/status.json stays valid whatever happens to the writer."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from imagematrix.core import status
from imagematrix.core.records import CellRecord
from imagematrix.core.status import StatusError, read_raw, update_cell
from imagematrix.reports.status_view import section_text, status_table


def _writer(build_dir, n):
    for i in range(25):
        update_cell(build_dir, f"cell-{n}", "build", {"state": "built", "i": i})
        update_cell(build_dir, f"cell-{n}", "test", {"state": "passed", "i": i})


def test_concurrent_writers_lose_nothing_and_never_leave_partial_json(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, n)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cells = read_raw(tmp_path)
    assert sorted(cells) == [f"cell-{n}" for n in range(4)]
    assert all(c["build"]["i"] == 24 and c["test"]["i"] == 24 for c in cells.values())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_keeps_the_previous_record(tmp_path, monkeypatch):
    update_cell(tmp_path, "a", "build", {"state": "built"})
    before = (tmp_path / "status.json").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(status.os, "replace", disk_full)
    with pytest.raises(StatusError, match="previous record is intact"):
        update_cell(tmp_path, "a", "build", {"state": "failed"})
    assert (tmp_path / "status.json").read_bytes() == before
    assert json.loads(before)["cells"]["a"]["build"]["state"] == "built"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sections_of_other_writers_show_their_summary_or_state(tmp_path):
    digest = "sha256:" + "b" * 64
    rec = CellRecord.from_json(
        {
            "test": {"summary": "12 passed, 1 skipped", "state": "passed"},
            "suites": {"smoke": {"state": "passed", "require_gpu": True}, "full": {"state": "failed"}},
            "publish": {"repository": "reg/team/x", "digest": digest, "tags": ["t"]},
            "newer": {"state": "made by a newer release"},
        },
        "c",
    )
    assert section_text(rec, "test") == "12 passed, 1 skipped"
    assert section_text(rec, "suites") == "full failed, smoke passed (GPU)"
    assert section_text(rec, "publish") == f"reg/team/x@{digest[:19]}"
    assert section_text(rec, "newer") == "made by a newer release"
    assert section_text(CellRecord(), "sizes") == "-"
    update_cell(tmp_path, "a", "build", {"state": "built", "duration_s": 75.0, "size_bytes": 5_940_000_000})
    update_cell(tmp_path, "a", "test", {"state": "passed", "summary": "30 passed"})
    update_cell(tmp_path, "b", "build", {"state": "blocked", "blocked_by": "a"})
    table, rows, warning = status_table(tmp_path)
    assert rows == 2 and warning is None
    assert [c.header for c in table.columns][-1] == "test"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "the top level is a JSON list"),
        ('{"schema": 1, "cells": []}', "'cells' is a JSON list"),
        ("{not json", "not valid JSON"),
        ('{"schema": 1, "cells": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}", "RecursionError"),
        ('{"schema": 1, "cells": {"x": {"build": {"size_bytes": ' + "9" * 5000 + "}}}}", "not valid JSON"),
        ('{"schema": 2, "cells": {}}', "schema is '2'"),
    ],
)
def test_a_record_of_the_wrong_shape_is_reported_damaged_with_its_backup(tmp_path, text, why):
    update_cell(tmp_path, "a", "build", {"state": "built"})
    update_cell(tmp_path, "a", "build", {"state": "skipped"})
    good = status.backup_path(tmp_path).read_text()
    status.status_path(tmp_path).write_text(text)
    with pytest.raises(StatusError) as err:
        read_raw(tmp_path)
    msg = str(err.value)
    assert "is damaged" in msg and why in msg
    assert f"cp {status.backup_path(tmp_path)} {status.status_path(tmp_path)}" in msg
    # The backup is the record before the last write: valid, and readable once restored.
    status.status_path(tmp_path).write_text(good)
    assert read_raw(tmp_path)["a"]["build"]["state"] == "built"


def test_the_record_keeps_its_mode_and_starts_world_readable(tmp_path):
    update_cell(tmp_path, "a", "build", {"state": "built"})
    path = status.status_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    update_cell(tmp_path, "a", "build", {"state": "skipped"})
    assert path.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".status.json.*"))  # no temporary files left behind
