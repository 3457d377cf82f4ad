"""The record and the history as types: the previous release's files still read and round-trip, and a
reader assumes nothing of a file imagematrix wrote earlier: wrong types, absurd numbers, deep nesting,
a FIFO, a huge history are each a note or a message, never a traceback, a hang or a pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imagematrix.core import history, status
from imagematrix.core.records import CellRecord, HistoryEvent, RecordError, SuiteRun
from imagematrix.matrix.plan import Selection, make_plan
from imagematrix.reports import sheet

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = ROOT / "tests" / "unit" / "data" / "records" / "previous"
GPU_RUN = ROOT / "tests" / "unit" / "data" / "records" / "gpu"


def _without_nulls(x):
    if isinstance(x, dict):
        return {k: _without_nulls(v) for k, v in x.items() if v is not None and v != [] and v != {}}
    if isinstance(x, list):
        return [_without_nulls(v) for v in x]
    return x


@pytest.mark.parametrize("where", [PREVIOUS, GPU_RUN], ids=["previous-release", "gpu-run"])
def test_records_of_earlier_runs_load_and_round_trip(where):
    if not (where / "status.json").is_file():
        pytest.skip(f"{where} holds no record yet")
    raw = json.loads((where / "status.json").read_text())
    for cid, cell in raw["cells"].items():
        rec = CellRecord.from_json(cell, cid)
        assert rec.damaged == ()
        assert _without_nulls(rec.to_json()) == _without_nulls(cell)
        assert CellRecord.from_json(rec.to_json(), cid) == rec
    events, notes = history.read([where / "history.jsonl"])
    assert notes == [] and events
    for ev in events:
        assert HistoryEvent.from_json(ev.to_json(), "again") == ev


def test_the_previous_release_wrote_every_kind_of_section():
    cells = {
        cid: CellRecord.from_json(c, cid)
        for cid, c in json.loads((PREVIOUS / "status.json").read_text())["cells"].items()
    }
    states = {c.build.state for c in cells.values()}
    assert states == {"built", "skipped", "failed", "blocked"}
    assert any(c.candidate for c in cells.values()) and any(c.publish for c in cells.values())
    assert any(c.suites.get("smoke") and c.suites["smoke"].on_gpu for c in cells.values())


HOSTILE_SECTIONS = {
    "gpu_info is a string": {"test": {"state": "passed", "gpu_info": "H100"}},
    "a count that is text": {"test": {"state": "passed", "passed": "abc"}},
    "a list where a string belongs": {"test": {"state": ["passed"]}},
    "a number too big for a size": {"build": {"state": "built", "size_bytes": 10**30}},
    "NaN is not a duration": {"build": {"state": "built", "duration_s": float("nan")}},
    "a state that is not one": {"build": {"state": "exploded"}},
    "suites that are a list": {"suites": ["smoke"]},
    "a suite of the wrong shape": {"suites": {"smoke": {"state": "passed", "require_gpu": "yes"}}},
    "a candidate without a digest": {"candidate": {"repository": "r", "tag": "t"}},
    "a publish section that is a number": {"publish": 5},
}


@pytest.mark.parametrize("case", HOSTILE_SECTIONS)
def test_a_damaged_section_reads_as_absent_with_a_note(case):
    rec = CellRecord.from_json(HOSTILE_SECTIONS[case], "c1")
    assert rec.damaged and all(n.startswith("c1.") for n in rec.damaged)
    assert rec.test is None or not rec.test.on_gpu
    assert not any(r.on_gpu for r in rec.suites.values())


def test_a_damaged_suite_or_candidate_means_untested_and_publish_refuses(example_matrix, build_dir):
    from imagematrix.release.publish import decide

    plan = make_plan(example_matrix, Selection(targets=("devel",)), build_dir)
    step = plan.steps[0]

    from types import SimpleNamespace

    Image = SimpleNamespace(id="sha256:" + "a" * 64, labels={"imagematrix.input-hash": step.rendered.input_hash})
    forged = {"suites": {"smoke": {"state": "passed", "image_id": Image.id, "require_gpu": "true"}}}
    d = decide(step, Image, CellRecord.from_json(forged, "c"), ("smoke",))
    assert not d.ok and "untested" in d.reason
    good = {"suites": {"smoke": {"state": "passed", "image_id": Image.id, "require_gpu": True}}}
    assert decide(step, Image, CellRecord.from_json(good, "c"), ("smoke",)).ok


def test_status_json_of_the_wrong_shape_per_cell_is_noted_not_fatal(tmp_path):
    doc = {
        "schema": 1,
        "cells": {
            "ok": {"build": {"state": "built"}},
            "bad": "y",
            "worse": {"build": 3, "test": {"state": "passed", "gpu_info": []}},
        },
    }
    status.status_path(tmp_path).write_text(json.dumps(doc))
    records = status.read_status(tmp_path)
    assert records.get("ok").build.state == "built"
    assert records.get("bad").build is None and records.get("worse").test is None
    assert len(records.notes) == 3 and "3 damaged section(s)" in records.warning()


def test_a_writer_replaces_a_damaged_section_instead_of_merging_into_it(tmp_path):
    status.status_path(tmp_path).write_text(json.dumps({"schema": 1, "cells": {"c": {"build": {"state": 7}}}}))
    status.update_cell(tmp_path, "c", "build", {"state": "building", "started": "x"})
    assert status.read_status(tmp_path).get("c").build.state == "building"


def test_a_writer_never_writes_an_ill_typed_section(tmp_path):
    with pytest.raises(status.StatusError, match="ill-typed"):
        status.update_cell(tmp_path, "c", "test", {"state": "passed", "passed": "many"})
    assert not status.status_path(tmp_path).exists()


def test_a_status_json_that_is_a_fifo_does_not_hang(tmp_path):
    os.mkfifo(status.status_path(tmp_path))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("e", _catch(lambda: status.read_status(tmp_path))))
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO hung"
    assert "not a regular file" in str(result["e"])


def _catch(fn):
    try:
        fn()
    except Exception as exc:  # the test wants the exception itself
        return exc
    return None


HOSTILE_LINES = [
    '{"kind": "build", "cell": "c", "at": 5, "state": "built"}',
    '{"kind": "test", "cell": "c", "at": "x", "state": "passed", "duration_s": "abc"}',
    '{"kind": "test", "cell": "c", "at": "x", "state": "passed", "gpu_info": "H100"}',
    '{"kind": "test", "cell": ["c"], "at": "x", "state": "passed"}',
    '{"kind": "build", "cell": "c", "at": "x", "state": "built", "size_bytes": ' + "9" * 5000 + "}",
    '{"kind": "build", "cell": "c", "at": "x", "bases": ' + "[" * 50_000 + "]" * 50_000 + "}",
    '{"kind": "dance", "cell": "c"}',
    "\x00\x01\x02",
    '{"kind": "build", "cell": "c", "at": "x", "state": "built", "error": "' + "e" * 200_000 + '"}',
]


def test_damaged_history_lines_are_skipped_counted_and_named_once(tmp_path):
    path = tmp_path / "history.jsonl"
    good = json.dumps({"kind": "build", "cell": "c", "at": "2026-12-01T00:00:00Z", "runner": "r", "state": "built"})
    path.write_text("\n".join([good, *HOSTILE_LINES, good]) + "\n")
    events, notes = history.read([path])
    assert len(events) == 1
    assert notes == [notes[0]] and notes[0].startswith(
        f"{path}: {len(HOSTILE_LINES)} damaged line(s) skipped, the first at line 2"
    )


def test_a_history_that_is_a_fifo_is_not_read(tmp_path):
    path = tmp_path / "history.jsonl"
    os.mkfifo(path)
    events, notes = history.read([path])
    assert events == [] and "not a regular file" in notes[0]


@pytest.mark.slow
def test_a_hundred_thousand_runs_make_a_short_sheet(example_matrix, build_dir, tmp_path):
    path = tmp_path / "history.jsonl"
    with open(path, "w") as f:
        for i in range(100_000):
            f.write(
                json.dumps(
                    {
                        "kind": "test",
                        "cell": f"c{i % 5000}",
                        "at": f"2026-01-01T00:00:{i % 60:02d}Z",
                        "runner": f"r{i % 300}",
                        "state": "failed",
                        "image_id": f"sha256:{i:064x}",
                        "gpu_info": {"driver": "580", "devices": [{"name": "GPU", "compute_capability": "9.0"}]},
                    }
                )
                + "\n"
            )
    events, notes = history.read([path])
    plan = make_plan(example_matrix, Selection(), build_dir)
    text = sheet.render_report(plan, {}, events, notes, None, None)
    assert len(text.splitlines()) < 300 and "older combination(s) not shown" in text


def test_invoke_status_prints_no_escape_sequence_from_the_record(tmp_path):
    doc = {
        "schema": 1,
        "cells": {
            "c\x1b]0;pwned\x07": {
                "build": {"state": "failed", "ended": "\x1b[2J", "blocked_by": "x"},
                "test": {"state": "passed", "summary": "\x1b[31mred\x1b[0m"},
            }
        },
    }
    status.status_path(tmp_path).write_text(json.dumps(doc))
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "status", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout and "red" in done.stdout


def test_suite_runs_on_gpu_is_the_one_predicate():
    assert SuiteRun(state="passed", require_gpu=True).on_gpu
    assert not SuiteRun(state="passed").on_gpu and not SuiteRun(state="failed", require_gpu=True).on_gpu
    with pytest.raises(RecordError):
        SuiteRun.from_json({"passed": 3}, "no state")


def test_the_gpu_machines_record_holds_a_reused_run_and_its_key():
    """Written on the GPU machine (H200, driver 580): a passed run, the same run reused, then a re-run
    after a suite file changed; the reuse key's suite part differs between them."""
    if not (GPU_RUN / "history.jsonl").is_file():
        pytest.skip(f"{GPU_RUN} holds no record yet")
    events, _ = history.read([GPU_RUN / "history.jsonl"])
    runs = [e.test for e in events if e.test is not None and e.cell == "cu13.0-py3.12-devel"][-3:]
    assert [r.decision for r in runs] == ["ran", "reused", "ran"], [r.decision for r in runs]
    assert runs[1].reused_from and runs[0].key == runs[1].key and runs[2].key["suite"] != runs[0].key["suite"]
    assert all(r.on_gpu and r.gpu_info and r.gpu_info.devices[0].compute_capability == "9.0" for r in runs)
