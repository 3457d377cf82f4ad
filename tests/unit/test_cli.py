"""The invoke CLI as a user runs it: exit codes, messages, never a traceback.

Most tests start `python -m invoke ...` in the project's top directory. The
error corpus (data/bad/) and the bad-option cases go through the CLI too: a few
in a process each, and all of them through invoke's own Program in one process
(one interpreter start instead of forty; the exit code is the SystemExit invoke
raises, which is what the process would exit with).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
BAD = sorted((DATA / "bad").glob("*.yaml"))


def invoke(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def expected(path: Path, kind: str = "error") -> list[str]:
    fragments = str((DATA / "fragments").resolve())
    return [
        line[len(f"# {kind}: ") :].replace("{file}", str(path)).replace("{fragments}", fragments)
        for line in path.read_text().splitlines()
        if line.startswith(f"# {kind}: ")
    ]


def assert_clean_failure(proc: subprocess.CompletedProcess, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("error: ")


# --- listing and tables ---------------------------------------------------------------------


def test_list_shows_every_task_with_a_one_line_description():
    proc = invoke("--list")
    assert proc.returncode == 0
    listed = set(re.findall(r"^  ([a-z][\w-]*)\s", proc.stdout, flags=re.M))
    assert {"matrix", "render", "build", "lint", "schema"} <= listed
    from imagematrix.cli import tasks  # the same docstrings, checked where they are written

    for name in listed:
        doc = getattr(tasks, name.replace("-", "_")).__doc__.strip()
        assert "\n" not in doc and len(doc) <= 100, f"{name}: the --list line must be one short line"


def test_matrix_shows_all_18_cells_and_the_excluded_family():
    proc = invoke("matrix")
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(
        r"^│ (cu\S+)\s+│ (\S+)\s+│ (\S+)\s+│ (\S+)\s+│ (.+?)\s+│ (\S+)\s+│ (\S+)\s+│$", proc.stdout, flags=re.M
    )
    assert len(rows) == 18
    assert rows[0] == ("cu12.8.1-py3.13-devel", "12.8.1", "3.13", "devel", "-", "2", "cu12.8.1-py3.13-devel")
    assert (
        "cu12.8.1-py3.13-ray-runtime",
        "12.8.1",
        "3.13",
        "ray-runtime",
        "ray-devel (slim)",
        "1",
        "cu12.8.1-py3.13-ray-runtime",
    ) in rows
    assert re.search(
        r"^excluded: CUDA 13\.1\.1 \+ Python 3\.13 \(all targets\): not in the platform", proc.stdout, flags=re.M
    )
    assert proc.stderr == ""


def test_matrix_filters_narrow_the_table():
    proc = invoke("matrix", "--phase", "5", "--target", "ray-devel")
    assert proc.returncode == 0, proc.stderr
    assert re.findall(r"^│ (cu\S+)", proc.stdout, flags=re.M) == [
        "cu13.1.1-py3.14-ray-devel",
        "cu12.8.1-py3.14-ray-devel",
    ]


# --- build --dry-run and render --------------------------------------------------------------


def test_build_phase_2_dry_run_plans_the_sheets_phase_2_parents_first():
    proc = invoke("build", "--phase", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    steps = re.findall(r"^\s+\d+\. (\S+)  stages", proc.stdout, flags=re.M)
    assert steps == ["cu12.8.1-py3.13-devel", "cu12.8.1-py3.13-ray-devel", "cu12.8.1-py3.13-marimo-devel"]
    commands = [line for line in proc.stdout.splitlines() if " build " in line and "docker" in line]
    assert len(commands) == 3
    for cid, cmd in zip(steps, commands, strict=True):
        target = cid.split("-", 2)[2]
        assert f"--target {target} " in cmd
        assert f"plumiiume/cslr-exp-platform:{cid}" in cmd
        assert f"build/{cid}" in cmd


def test_render_writes_the_selected_cells_and_says_where(tmp_path):
    proc = invoke("render", "--target", "runtime", "--python", "3.13", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ctx = tmp_path / "cu12.8.1-py3.13-runtime"
    assert f"cu12.8.1-py3.13-runtime: {ctx / 'Dockerfile'}" in proc.stdout.replace("\n", "")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["cu12.8.1-py3.13-runtime"]
    assert json.loads((ctx / "cell.json").read_text())["id"] == "cu12.8.1-py3.13-runtime"
    assert (ctx / "Dockerfile").read_text().startswith("# Rendered by imagematrix from matrix.yaml")


# --- usage errors: exit 2, a message, no traceback ----------------------------------------


def test_a_filter_that_matches_nothing_says_so_and_exits_2():
    proc = invoke("matrix", "--cuda", "13.1.1", "--python", "3.13")
    assert_clean_failure(proc)
    assert (
        proc.stderr.splitlines()[0]
        == "error: no cell matches cuda 13.1.1; python 3.13 (`invoke matrix` lists every cell)"
    )
    assert proc.stderr.splitlines()[1].startswith("  excluded: CUDA 13.1.1 + Python 3.13 (all targets): ")
    assert proc.stdout == ""


def test_build_dry_run_with_an_empty_selection_exits_2():
    proc = invoke("build", "--phase", "2", "--python", "3.14", "--dry-run")
    assert_clean_failure(proc)
    assert "phase 2 holds CUDA 12.8.1 + Python 3.13: devel, ray-devel, marimo-devel" in proc.stderr


@pytest.mark.parametrize("name", ["unknown-key", "bad-yaml"])
def test_a_broken_matrix_exits_2_in_its_own_process(name):
    path = DATA / "bad" / f"{name}.yaml"
    proc = invoke("matrix", "--matrix", str(path))
    assert_clean_failure(proc)
    for line in expected(path):
        assert f"  {line}\n" in proc.stderr


_DRIVER = r"""
import contextlib, io, json, sys
from invoke.main import program
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            program.run(["invoke", *argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def invoke_many(*argvs: list[str]) -> list[dict]:
    """Run several invoke command lines through invoke's own Program in one interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argvs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(argvs)
    return results


def test_every_broken_matrix_in_the_corpus_fails_through_the_cli_with_its_messages():
    assert len(BAD) > 30
    for path, r in zip(BAD, invoke_many(*(["matrix", "--matrix", str(p)] for p in BAD)), strict=True):
        assert r["code"] == 2, (path.name, r)
        assert r["stdout"] == "" and "Traceback" not in r["stderr"], path.name
        n = len(expected(path))
        lines = r["stderr"].splitlines()
        assert lines[0] == f"error: {path}: {n} problem{'s' if n != 1 else ''} in the matrix file"
        assert lines[1:] == [f"  {e}" for e in expected(path)], path.name


def test_bad_options_exit_2_with_the_allowed_values():
    cases = {
        ("matrix", "--phase", "two"): "error: --phase takes a phase number, not 'two'\n",
        (
            "matrix",
            "--target",
            "slim",
        ): "error: unknown target 'slim' (the matrix has: devel, runtime, ray-devel, ray-runtime, marimo-devel, "
        "marimo-runtime)\n",
        ("matrix", "--python", "3.12"): "error: unknown Python version '3.12' (the matrix has: 3.13, 3.14)\n",
        ("render", "--cuda", "12.4"): "error: unknown CUDA version '12.4' (the matrix has: 12.8.1, 13.1.1)\n",
        ("build", "--phase", "7", "--dry-run"): "error: unknown phase 7 (the matrix has: 1, 2, 3, 4, 5)\n",
        ("lint", "--matrix", "no/such.yaml", "--no-code"): "error: no/such.yaml: 1 problem in the matrix file\n",
    }
    for (args, message), r in zip(cases.items(), invoke_many(*map(list, cases)), strict=True):
        assert (r["code"], r["stdout"]) == (2, ""), args
        assert r["stderr"].startswith(message), (args, r["stderr"])


def test_a_suspicious_matrix_warns_on_stderr_and_still_works():
    path = DATA / "warn" / "cell-in-no-phase.yaml"
    proc = invoke("matrix", "--matrix", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.replace("\n", " ").startswith(f"warning: {expected(path, 'warning')[0]}"[:60])
    assert "cu13.2-py3.13-runtime" in proc.stdout


# --- lint and schema -------------------------------------------------------------------------


def test_lint_hadolint_on_the_example_matrix_finds_nothing():
    proc = invoke("lint", "--matrix", "examples/matrix.yaml", "--no-code")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(
        r"^hadolint: 0 finding\(s\) in 2 rendered Dockerfile\(s\) \(config: .*\.hadolint\.yaml\)$", proc.stdout, re.M
    )
    assert "ruff:" not in proc.stdout


def test_schema_prints_a_json_schema_of_the_matrix_file():
    proc = invoke("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"image", "python", "cuda", "targets"} <= set(schema["required"])
    assert schema["additionalProperties"] is False


# --- the exit-code convention: 0 with --help, 2 for bad input, 1 for a failed build or test --------------


def _app(*argvs: list[str]) -> list[dict]:
    """Command lines of the `imagematrix` command (its own argv handling), in one interpreter."""
    driver = _DRIVER.replace(
        "from invoke.main import program", "from imagematrix.cli.app import program, argv_for_invoke"
    )
    driver = driver.replace('program.run(["invoke", *argv])', 'program.run(argv_for_invoke(["imagematrix", *argv]))')
    proc = subprocess.run(
        [sys.executable, "-c", driver, json.dumps(argvs)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_every_task_has_help_and_exits_0():
    from imagematrix.cli.app import program

    names = sorted(program.namespace.task_names)
    assert "verify" in names and len(names) > 15
    for name, r in zip(names, _app(*([n, "--help"] for n in names)), strict=True):
        assert r["code"] == 0 and name in r["stdout"], (name, r["stderr"][-300:])


def test_every_refusal_of_a_value_exits_2(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        ["audit", "--image", "a b;c"],
        ["audit", "--image", "../../containers"],
        ["audit", "--gpu", "H100"],
        ["audit", "--gpu", "Z9", "--driver", "580"],
        ["keygen", "--out", "/proc/self"],
        ["keygen", "--out", "x" * 5000],
        ["render", "--out", "/dev/null"],
        ["verify", "r/x:t", "--key", str(fifo)],
        ["verify", "r/x:t", "--key", "/dev/zero"],
        ["verify", str(fifo), "--key", "/dev/null"],
        ["test", "--workers", "lots"],
        ["test", "--suite", "huge"],
        ["publish", "--signing-key", "/dev/zero"],
    ]
    for argv, r in zip(cases, _app(*cases), strict=True):
        assert r["code"] == 2, (argv[:3], r)
        assert r["stderr"].startswith("error: ") and "Traceback" not in r["stderr"], (argv[:3], r["stderr"][-300:])
