"""The append-only history: one line per finished build or test run, merged across runners,
kept by `invoke clean` unless asked."""

from __future__ import annotations

import json

from imagematrix.build.clean import clean
from imagematrix.core import builddir, history


def test_events_append_read_back_in_time_order_and_merge_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    history.append(
        a, "build", "c1", {"state": "built", "ended": "2026-11-30T02:00:00Z", "duration_s": 60.0, "command": "docker …"}
    )
    history.append(a, "test", "c1", {"state": "passed", "finished": "2026-11-30T02:05:00Z"})
    history.append(b, "build", "c2", {"state": "failed", "ended": "2026-11-30T01:00:00Z"})
    (b / history.HISTORY_FILE).write_text(
        (b / history.HISTORY_FILE).read_text() + (a / history.HISTORY_FILE).read_text()
    )
    events, notes = history.read([a / history.HISTORY_FILE, b / history.HISTORY_FILE])
    assert notes == []
    assert [(e.cell, e.kind) for e in events] == [("c2", "build"), ("c1", "build"), ("c1", "test")]
    assert events[1].build.command is None and events[1].runner and events[1].build.duration_s == 60.0


def test_a_partial_last_line_is_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    history.append(tmp_path, "build", "c1", {"state": "built", "ended": "2026-11-30T02:00:00Z"})
    path = tmp_path / history.HISTORY_FILE
    path.write_text(path.read_text() + '{"kind": "test", "cell": "c1", "sta')
    events, notes = history.read([path])
    assert len(events) == 1 and len(notes) == 1
    assert notes[0].startswith(f"{path}: 1 damaged line(s) skipped, the first at line 2 (")


def test_the_state_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(history.STATE_ENV, str(tmp_path / "state"))
    history.append(tmp_path / "build", "test", "c1", {"state": "passed", "finished": "x"})
    assert json.loads((tmp_path / "state" / history.HISTORY_FILE).read_text())["cell"] == "c1"
    assert not (tmp_path / "build").exists()


def test_clean_keeps_the_history_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    out = tmp_path / "build"
    (out / "logs").mkdir(parents=True)
    (out / "status.json").write_text("{}")
    builddir.mark(out)
    history.append(out, "build", "c1", {"state": "built", "ended": "x"})
    clean(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [history.HISTORY_LOCK, history.HISTORY_FILE, builddir.MARKER]
    )
    clean(out, history=True)
    assert not out.exists()
