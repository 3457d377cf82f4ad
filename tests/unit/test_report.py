"""`invoke report`: the sheet's sections, written from status.json and the history alone."""

from __future__ import annotations

from imagematrix.core import history, status
from imagematrix.matrix.plan import Selection, make_plan
from imagematrix.reports import sheet as report

DEVEL, RUNTIME = "cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"
H200 = {"driver": "580.159.04", "driver_cuda": "13.0", "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}]}


def _record(build_dir, plan, monkeypatch):
    """The example's devel built twice (cold, then cached) and passed on an H200; runtime failed to build."""
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    devel = next(s for s in plan.steps if s.cell.id == DEVEL)
    cold = {"state": "built", "ended": "2026-11-02T17:30:00Z", "duration_s": 600.0, "steps_run": 6, "steps_cached": 0,
            "image_id": "sha256:" + "a" * 64, "size_bytes": 5_000_000_000, "input_hash": devel.rendered.input_hash,
            "bases": {"debian:trixie-slim": "sha256:" + "b" * 64}}
    cached = {**cold, "ended": "2026-11-04T17:10:00Z", "duration_s": 90.0, "steps_run": 1, "steps_cached": 5}
    test = {"state": "passed", "suite": "smoke", "passed": 33, "failed": 0, "skipped": 36, "gpu": "cdi gpu 0",
            "finished": "2026-11-04T17:12:00Z", "image_id": cached["image_id"], "gpu_info": H200}
    failed = {"state": "failed", "ended": "2026-11-04T17:20:00Z", "duration_s": 30.0, "step": "#9 [runtime 2/3] RUN apt-get install",
              "error": "E: Unable to locate package libfoo\nmore", "log": "build/logs/cu13.2-py3.13-runtime.log"}
    for cid, kind, rec in ((DEVEL, "build", cold), (DEVEL, "build", cached), (DEVEL, "test", test), (RUNTIME, "build", failed)):
        status.update_cell(build_dir, cid, kind, rec, replace=True)
        history.append(build_dir, kind, cid, rec)


def test_the_report_has_the_sheets_sections_and_is_the_same_for_the_same_inputs(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    status.update_cell(build_dir, DEVEL, "publish", {"repository": "reg/team/x", "digest": "sha256:" + "d" * 64,
                                                      "tags": ["t", "t-123"], "published": "2026-11-04T18:00:00Z"})
    first = report.write_report(plan, check_bases=False).read_text()
    assert report.write_report(plan, check_bases=False).read_text() == first
    for heading in ("## Summary", "## Phases", "### Phase 1", "## Compatibility (from test runs on GPUs)",
                    "## Trouble log", "## Published", "## Base images", "## Sizes"):
        assert f"\n{heading}" in first, heading
    summary = first.split("## Summary")[1].split("## Phases")[0]
    assert "| 13.2 | 3.13 | devel | ✅ | 2026-11-04 17:10 | 5.00 GB (≤ 8 GB) | 1.5 min cached | smoke passed 33/0/36" in summary
    assert "1 x NVIDIA H200 (sm_90) · driver 580.159.04" in summary
    assert "| runtime | ❌ |" in summary and "build failed at #9 [runtime 2/3] RUN apt-get install" in summary
    phases = first.split("## Phases")[1].split("## Compatibility")[0]
    assert f"- [x] {DEVEL} ✅; 1.5 min cached; expected cached 1.5 min (median of 1), cold 10.0 min (median of 1)" in phases
    assert f"- [ ] {RUNTIME} ❌" in phases
    compat = first.split("## Compatibility")[1].split("## Trouble")[0]
    assert f"| {DEVEL} | {'a' * 12} | NVIDIA H200 | 9.0 | 580.159.04 | 13.0 | smoke | passed (33/0/36) |" in compat
    trouble = first.split("## Trouble log")[1].split("## Base images")[0]
    assert "E: Unable to locate package libfoo" in trouble and "more" not in trouble
    assert "build/logs/cu13.2-py3.13-runtime.log" in trouble
    assert "| debian:trixie-slim | bbbbbbbbbbbb | - | not checked (no engine) |" in first
    assert f"| {DEVEL} | reg/team/x@sha256:{'d' * 64} | t, t-123 | 2026-11-04 18:00 |" in first


def test_drift_a_stale_render_and_an_untested_image_are_named(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    records = status.read_status(build_dir)
    records[DEVEL]["build"]["input_hash"] = "sha256:old"
    text = report.render_report(plan, records, [], [], {"debian:trixie-slim": "sha256:" + "c" * 64}, None)
    assert "| devel | ⚠️ |" in text and "changed since this build: rebuild" in text
    assert "the tag now names another image: rebuild to pick it up" in text
    records[DEVEL]["build"]["input_hash"] = next(s for s in plan.steps if s.cell.id == DEVEL).rendered.input_hash
    records[DEVEL]["test"]["image_id"] = "sha256:other"
    text = report.render_report(plan, records, [], [], None, None)
    assert "| devel | ⏳ |" in text and "not tested since the last build" in text


def test_an_empty_record_gives_a_report_of_waiting_cells(example_matrix, build_dir, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    plan = make_plan(example_matrix, Selection(), build_dir)
    text = report.write_report(plan, check_bases=False).read_text()
    assert "✅ 0 · ⏳ 2 · ❌ 0 · ⚠️ 0 of 2 cells" in text
    assert "No test run has seen a GPU yet" in text and "No failed build or test run" in text
    assert "Nothing published yet" in text


def test_a_record_without_gpu_info_still_names_how_the_gpu_was_given():
    assert report._gpu({"gpu": "cdi gpu 0", "state": "passed"}) == "cdi gpu 0"
    assert report._gpu({"gpu": "none", "state": "passed"}) == "no GPU"
    assert report._gpu({}) == "-"
