"""`invoke report`: the sheet's sections, written from status.json and the history alone, checked as
GitHub shows them (cmark-gfm renders the Markdown; the tests read the tables and the text)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from rendered import render

from imagematrix.core import history, status
from imagematrix.core.records import CellRecord, SuiteRun
from imagematrix.matrix.plan import Selection, make_plan
from imagematrix.reports import sheet as report

DEVEL, RUNTIME = "cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"
H200 = {
    "driver": "580.159.04",
    "driver_cuda": "13.0",
    "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}],
}


def _record(build_dir, plan, monkeypatch):
    """The example's devel built twice (cold, then cached) and passed on an H200; runtime failed to build."""
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    devel = next(s for s in plan.steps if s.cell.id == DEVEL)
    cold = {
        "state": "built",
        "ended": "2026-11-02T17:30:00Z",
        "duration_s": 600.0,
        "steps_run": 6,
        "steps_cached": 0,
        "image_id": "sha256:" + "a" * 64,
        "size_bytes": 5_000_000_000,
        "input_hash": devel.rendered.input_hash,
        "bases": {"debian:trixie-slim": "sha256:" + "b" * 64},
    }
    cached = {**cold, "ended": "2026-11-04T17:10:00Z", "duration_s": 90.0, "steps_run": 1, "steps_cached": 5}
    test = {
        "state": "passed",
        "suite": "smoke",
        "passed": 33,
        "failed": 0,
        "skipped": 36,
        "gpu": "cdi gpu 0",
        "finished": "2026-11-04T17:12:00Z",
        "image_id": cached["image_id"],
        "gpu_info": H200,
        "require_gpu": True,
    }
    failed = {
        "state": "failed",
        "ended": "2026-11-04T17:20:00Z",
        "duration_s": 30.0,
        "step": "#9 [runtime 2/3] RUN apt-get install",
        "error": "E: Unable to locate package libfoo\nmore",
        "log": "build/logs/cu13.2-py3.13-runtime.log",
    }
    for cid, kind, rec in (
        (DEVEL, "build", cold),
        (DEVEL, "build", cached),
        (DEVEL, "test", test),
        (RUNTIME, "build", failed),
    ):
        status.update_cell(build_dir, cid, kind, rec, replace=True)
        history.append(build_dir, kind, cid, rec)


def test_the_report_has_the_sheets_sections_and_is_the_same_for_the_same_inputs(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    status.update_cell(
        build_dir,
        DEVEL,
        "publish",
        {
            "repository": "reg/team/x",
            "digest": "sha256:" + "d" * 64,
            "tags": ["t", "t-123"],
            "published": "2026-11-04T18:00:00Z",
        },
    )
    first = report.write_report(plan, check_bases=False).read_text()
    assert report.write_report(plan, check_bases=False).read_text() == first
    page = render(first)
    assert page.headings == [
        "Build matrix: imagematrix/example",
        "Summary",
        "Phases",
        "Phase 1 — example (1/2 done)",
        "Compatibility (from test runs on GPUs)",
        "Predicted compatibility (from each image's audit; not measured)",
        "Trouble log",
        "Published",
        "Base images",
        "Sizes",
    ]
    summary, compat, trouble, published, bases = page.tables
    assert summary[1][:8] == [
        "13.2",
        "3.13",
        "devel",
        "✅",
        "2026-11-04 17:10",
        "5.00 GB (≤ 8 GB)",
        "1.5 min cached",
        "smoke passed 33/0/36 · 2026-11-04 17:12",
    ]
    assert summary[1][8] == "1 x NVIDIA H200 (sm_90) · driver 580.159.04"
    assert (
        summary[2][2:4] == ["runtime", "❌"] and summary[2][9] == "build failed at #9 [runtime 2/3] RUN apt-get install"
    )
    assert (
        f"{DEVEL} ✅; 1.5 min cached; expected cached 1.5 min (median of 1), cold 10.0 min (median of 1)" in page.text
    )
    assert compat[1][:8] == [DEVEL, "a" * 12, "NVIDIA H200", "9.0", "580.159.04", "13.0", "smoke", "passed (33/0/36)"]
    assert (
        trouble[1][4] == "E: Unable to locate package libfoo"
        and trouble[1][5] == "build/logs/cu13.2-py3.13-runtime.log"
    )
    assert bases[1] == ["debian:trixie-slim", "bbbbbbbbbbbb", "-", "not checked (no engine)"]
    assert published[1] == [DEVEL, f"reg/team/x@sha256:{'d' * 64}", "t, t-123", "2026-11-04 18:00", "-", "unsigned"]


def test_a_signed_release_shows_its_sbom_as_a_link_and_a_package_count(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    status.update_cell(
        build_dir,
        DEVEL,
        "publish",
        {
            "repository": "reg/team/x",
            "digest": "sha256:" + "d" * 64,
            "tags": ["t"],
            "published": "2026-11-04T18:00:00Z",
            "sbom": "javascript:alert(1)",
            "sbom_packages": 412,
            "attestations": ["reg/team/x:sha256-dd.att, layer 1", "reg/team/x:sha256-dd.att, layer 2"],
        },
    )
    page = render(report.write_report(plan, check_bases=False).read_text())
    published = page.tables[3]
    assert published[0][4:] == ["SBOM", "attestations"] and published[1][4:] == ["412 packages", "2 signed"]
    assert f"../sbom/{DEVEL}.cdx.json" in page.links  # the sheet's own path, never the record's text
    assert not any("javascript" in link for link in page.links)


def test_a_link_destination_cannot_leave_its_parentheses_or_name_a_scheme():
    from imagematrix.reports.markdown import link

    page = render(link("x](javascript:y) [z", "../a b)(c<d>:e.json") + "\n")
    assert page.links == ["../a%20b%29%28c%3Cd%3E%3Ae.json"]
    assert page.text.strip() == "x](javascript:y) [z"


def test_drift_a_stale_render_and_an_untested_image_are_named(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    cells = dict(status.read_status(build_dir).cells)
    devel = cells[DEVEL]
    cells[DEVEL] = replace(devel, build=replace(devel.build, input_hash="sha256:old"))
    page = render(report.render_report(plan, cells, [], [], {"debian:trixie-slim": "sha256:" + "c" * 64}, None))
    assert page.tables[0][1][3] == "⚠️" and "changed since this build: rebuild" in page.tables[0][1][9]
    assert "the tag now names another image: rebuild to pick it up" in page.text
    cells[DEVEL] = replace(devel, test=replace(devel.test, image_id="sha256:other"))
    page = render(report.render_report(plan, cells, [], [], None, None))
    assert page.tables[0][1][3] == "⏳" and page.tables[0][1][9] == "not tested since the last build"
    cells[DEVEL] = replace(devel, test=replace(devel.test, require_gpu=None))  # one predicate: on_gpu
    page = render(report.render_report(plan, cells, [], [], None, None))
    assert page.tables[0][1][3] == "⚠️" and "tested without a GPU" in page.tables[0][1][9]


def test_an_empty_record_gives_a_report_of_waiting_cells(example_matrix, build_dir, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    plan = make_plan(example_matrix, Selection(), build_dir)
    text = render(report.write_report(plan, check_bases=False).read_text()).text
    assert "✅ 0 · ⏳ 2 · ❌ 0 · ⚠️ 0 of 2 cells" in text
    assert "No test run has seen a GPU yet" in text and "No failed build or test run" in text
    assert "Nothing published yet" in text


def test_a_record_without_gpu_info_still_names_how_the_gpu_was_given():
    assert report._gpu(SuiteRun(state="passed", gpu="cdi gpu 0")) == "cdi gpu 0"
    assert report._gpu(SuiteRun(state="passed", gpu="none")) == "no GPU"


def test_the_record_of_the_previous_release_still_makes_a_sheet(example_matrix, build_dir, repo_root):
    """Records written by the release before typed records (tests/unit/data/records/previous) still read."""
    raw = json.loads((repo_root / "tests/unit/data/records/previous/status.json").read_text())
    cells = {cid: CellRecord.from_json(r, cid) for cid, r in raw["cells"].items()}
    assert all(not c.damaged for c in cells.values())
    events, notes = history.read([repo_root / "tests/unit/data/records/previous/history.jsonl"])
    assert notes == [] and len(events) == 6
    plan = make_plan(example_matrix, Selection(), build_dir)
    page = render(report.render_report(plan, cells, events, notes, None, None))
    assert len(page.tables) == 2 and page.tables[1][1][1] == "cu1.0-py3.13-devel"  # the trouble log's newest row


def _audited(build_dir, image_id: str, **prediction_changes):
    from pathlib import Path

    from imagematrix.oracle.audit import Audit

    doc = json.loads((Path(__file__).parent / "data" / "audits" / "example-torch-2.15-cu132.json").read_text())
    summary = Audit("x", image_id, doc, "container", 81.0).summary()
    for gpu, branches in prediction_changes.items():
        summary["prediction"][gpu].update(branches)
    status.update_cell(build_dir, DEVEL, "audit", summary, replace=True)


def test_each_audited_image_shows_its_predicted_reach_beside_what_was_measured(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    _audited(build_dir, "sha256:" + "a" * 64)
    page = render(report.write_report(plan, check_bases=False).read_text())
    predicted = page.tables[2]
    head = predicted[0]
    assert head[:3] == ["cell", "V100 (7.0)", "T4 (7.5)"] and "H100 (9.0)" in head and "Thor (11.0)" in head
    row = dict(zip(head, predicted[1], strict=True))
    assert row["V100 (7.0)"] == "❌ no kernel image" and row["Thor (11.0)"] == "❌ no kernel image"  # torch 2.15 cu13.2
    # CUDA 13.2 on R580: minor-version compatibility (⚠️); natively from R595; measured on an H200 with R580.
    assert row["H100 (9.0)"] == "⚠️ from R580 · ✅ from R595 · measured R580 passed"
    assert (
        f"{DEVEL}: SASS sm_70 sm_75 sm_80 " in page.text and " · floor CUDA 13.4 (PTX 9.4 (compute_75) in " in page.text
    )
    assert "No failed build or test run" not in page.text and "prediction" not in [r[2] for r in page.tables[3][1:]]


def test_a_run_the_prediction_got_wrong_is_a_trouble_log_entry(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    wrong = {"mark": "❌", "reasons": ["no kernel image"], "code": "no-kernel"}
    _audited(build_dir, "sha256:" + "a" * 64, H100={"R580": wrong})
    trouble = render(report.write_report(plan, check_bases=False).read_text()).tables[3]
    assert trouble[1][1:5] == [DEVEL, "prediction", "-", "predicted ❌ on H100 with R580, measured passed"]


def test_a_stale_audit_predicts_nothing_for_a_newer_image(example_matrix, build_dir, monkeypatch):
    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    _audited(build_dir, "sha256:" + "9" * 64, H100={"R580": {"mark": "❌", "reasons": ["x"]}})
    page = render(report.write_report(plan, check_bases=False).read_text())
    assert "measured" not in " ".join(page.tables[2][1]) and "prediction" not in [r[2] for r in page.tables[3][1:]]


def test_an_image_without_device_code_says_so_in_one_line_not_a_row_of_checks(example_matrix, build_dir, monkeypatch):
    from imagematrix.oracle.audit import Audit

    plan = make_plan(example_matrix, Selection(), build_dir)
    _record(build_dir, plan, monkeypatch)
    doc = {"objects": [], "libraries": {}, "counts": {"files": 4120, "objects": 0}}
    status.update_cell(
        build_dir, DEVEL, "audit", Audit("x", "sha256:" + "a" * 64, doc, "export", 1.0).summary(), replace=True
    )
    text = report.write_report(plan, check_bases=False).read_text()
    section = text.split("## Predicted compatibility")[1].split("\n## ")[0]
    assert "no device code (4120 files read)" in section
    assert "✅" not in section.split("\n\n", 2)[-1] and "H100 (9.0)" not in section  # no table of GPUs


def _over_escaped(text: str) -> list[str]:
    """Backslashes before characters that never change Markdown's structure in running text."""
    import re

    return sorted({m.group() for m in re.finditer(r"\\[.\-:/()]", text)})


@pytest.mark.parametrize("example", ["matrix.yaml", "platform.yaml", "notebooks.yaml"])
def test_an_ordinary_sheet_reads_like_hand_written_markdown(example, build_dir, monkeypatch, repo_root):
    """Dates, versions, cell ids, paths and sizes are written as they are: no `2026\\-12\\-07 20\\:52`,
    no `cu12\\.9\\-py3\\.11`, no `acme\\/notebooks`, no `0\\.31 GB \\(≤ 0\\.6 GB\\)`."""
    from imagematrix.matrix.load import load_matrix

    m = load_matrix(repo_root / "examples" / example)
    plan = make_plan(m, Selection(), build_dir)
    if example == "matrix.yaml":
        _record(build_dir, plan, monkeypatch)
        _audited(build_dir, "sha256:" + "a" * 64)
    monkeypatch.setenv("IMAGEMATRIX_PROGRAM", "imagematrix")
    text = report.write_report(plan, check_bases=False).read_text()
    assert _over_escaped(text) == []
    assert "Written by `imagematrix report`" in text
    if example == "matrix.yaml":
        assert "2026-11-04 17:12" in text or "2026-11-04" in text
