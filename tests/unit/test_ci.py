"""`invoke ci`: the workflow generated from matrix.yaml is the committed one, lints clean with
actionlint and zizmor, and its gate plans the jobs the schedule and the dispatch inputs ask for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from imagematrix import ci, cron, lint
from imagematrix.model import ScheduleRun


def test_the_committed_workflow_matches_matrix_yaml(sheet_matrix):
    path, diff = ci.write_or_check(sheet_matrix, check=True)
    assert diff is None, f"{path} is out of date; run `invoke ci`:\n{diff}"


def test_check_names_the_difference_when_the_schedule_changes(sheet_matrix):
    changed = replace(sheet_matrix, schedule=(*sheet_matrix.schedule, ScheduleRun("30 4 * * 6", (4,))))
    _, diff = ci.write_or_check(changed, check=True)
    assert diff and "+  - cron: 30 19 * * 5" in diff  # Saturday 04:30 in Tokyo is Friday 19:30 UTC


def test_the_workflow_has_what_a_gpu_runner_needs(sheet_matrix):
    wf = yaml.safe_load(ci.render_workflow(sheet_matrix))
    assert [s["cron"] for s in wf["on"]["schedule"]] == ["0 17 * * 0", "0 17 * * 2", "0 17 * * 4", "0 17 28,29,30,31 * *"]
    assert set(wf["on"]["workflow_dispatch"]["inputs"]) == {"phase", "cuda", "python", "target"}
    assert wf["permissions"] == {} and wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["build-test"]
    assert job["runs-on"] == ["self-hosted", "linux", "x64", "gpu"] and job["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for s in job["steps"]]
    for want in ("invoke doctor $BUILD_ARGS", "invoke build $BUILD_ARGS", '-- --require-gpu $TEST_ARGS', "invoke report $BUILD_ARGS"):
        assert any(want in r for r in runs), want
    assert any("GITHUB_STEP_SUMMARY" in r for r in runs)
    upload = job["steps"][-1]
    assert upload["uses"].startswith("actions/upload-artifact@") and "history.jsonl" in upload["with"]["path"]
    assert all("${{" not in r for r in runs), "the selection reaches run: only through env"


def test_actionlint_and_zizmor_find_nothing_in_the_workflow_and_something_in_a_bad_one(sheet_matrix, tmp_path):
    m = sheet_matrix
    assert lint.actionlint(m.ci.workflow, m.ci.runs_on) == []
    assert lint.zizmor(m.ci.workflow) == []
    bad = tmp_path / "bad.yml"
    wf = yaml.safe_load(m.ci.workflow.read_text())
    wf["jobs"]["plan"]["steps"][1]["run"] = "echo ${{ inputs.phase }}; echo ${{ steps.nope.outputs.x }}"
    wf["jobs"]["plan"]["steps"][0]["uses"] = "actions/checkout@v7"
    bad.write_text(yaml.safe_dump(wf, sort_keys=False))
    assert {f.code for f in lint.zizmor(bad)} >= {"template-injection", "unpinned-uses"}
    assert any("nope" in f.message for f in lint.actionlint(bad, m.ci.runs_on))


def _gate(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagematrix.cron", "plan"], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)


def test_the_gate_plans_one_job_per_family_from_the_dispatch_inputs(sheet_matrix):
    wf = yaml.safe_load(sheet_matrix.ci.workflow.read_text())
    schedule = wf["jobs"]["plan"]["steps"][1]["env"]["IMAGEMATRIX_SCHEDULE"]
    done = _gate({"IMAGEMATRIX_SCHEDULE": schedule, "FIRED": "", "PHASE": "5", "CUDA": "all", "PYTHON": "all", "TARGET": "all"})
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout.removeprefix("jobs="))
    assert [(j["build"], j["session"], j["test"]) for j in jobs] == [
        ("--phase 5 --cuda 13.1.1 --python 3.14", "gpu_smoke-3.14", "--phase 5 --cuda 13.1.1"),
        ("--phase 5 --cuda 12.8.1 --python 3.14", "gpu_smoke-3.14", "--phase 5 --cuda 12.8.1"),
    ]
    done = _gate({"IMAGEMATRIX_SCHEDULE": schedule, "FIRED": "", "PHASE": "9"})
    assert done.returncode == 2 and "phase '9' is not in the matrix" in done.stderr


def test_the_first_of_the_month_runs_every_phase_once_per_family(sheet_matrix):
    fam = ci.families(sheet_matrix)
    jobs = cron.plan_jobs(fam, [1, 2, 3, 4, 5])
    assert len(jobs) == len(fam["*"]) == 3  # cells of several phases are built by one job, once
    assert jobs[0]["build"] == "--phase 1 --phase 2 --cuda 12.8.1 --python 3.13"


@pytest.mark.parametrize("late_minutes", [0, 50])
def test_scheduled_plan_for_a_monday_in_tokyo(sheet_matrix, late_minutes):
    from datetime import datetime, timedelta, timezone

    g = ci.gate_config(sheet_matrix)
    now = datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc) + timedelta(minutes=late_minutes)  # Mon 02:00 JST
    phases = cron.due(g["runs"], g["timezone"], "0 17 * * 0", now)
    assert phases == [1]
    assert [j["build"] for j in cron.plan_jobs(g["families"], phases)] == ["--phase 1 --cuda 12.8.1 --python 3.13"]
