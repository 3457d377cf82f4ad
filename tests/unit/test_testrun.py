"""The GPU-suite runner's pure parts: JUnit counts, verdicts, the grid, GPU access, the container spec.

JUnit files come from real pytest runs of a tiny test file; the suite's
selection per target is checked by collecting tests/gpu with each cell's real
manifest. No Docker engine is needed here (tests/integration runs containers).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagematrix.core import options as table
from imagematrix.core import status
from imagematrix.core.errors import UsageError
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import render_cell
from imagematrix.reports import status_view
from imagematrix.testing import containers as testrun_docker
from imagematrix.testing import grid as testgrid
from imagematrix.testing import host as testrun_host
from imagematrix.testing import run as testrun
from imagematrix.testing import suite
from imagematrix.testing.grid import CellResult, Summary

ROOT = Path(__file__).resolve().parents[2]
GPU_SUITE = ROOT / "tests" / "gpu"


# --- JUnit from a real pytest run --------------------------------------------------------

SAMPLE = """
import pytest

def test_ok():
    pass

def test_bad():
    assert 1 == 2, "one is not two"

@pytest.mark.skip(reason="no GPU visible: libcuda.so.1 could not be loaded")
def test_gpu():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_error(broken):
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False
"""


@pytest.fixture(scope="module")
def sample_junit(tmp_path_factory) -> tuple[Path, int]:
    d = tmp_path_factory.mktemp("junit")
    (d / "test_sample.py").write_text(SAMPLE)
    (d / "pytest.ini").write_text("[pytest]\n")
    xml = d / "out.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={xml}", str(d)],
        cwd=d,
        capture_output=True,
        text=True,
        check=False,
    )
    return xml, proc.returncode


def test_parse_junit_counts_every_outcome(sample_junit):
    xml, code = sample_junit
    s = testgrid.parse_junit(xml)
    assert code == 1
    assert (s.passed, s.failed, s.skipped, s.errors) == (1, 1, 2, 1)  # xfail is a skip in JUnit
    assert s.total == 5
    assert s.seconds >= 0
    kinds = {f.test.rsplit("::", 1)[-1]: (f.kind, f.message) for f in s.failures}
    assert kinds["test_bad"][0] == "failure" and "one is not two" in kinds["test_bad"][1]
    assert kinds["test_error"][0] == "error" and "fixture exploded" in kinds["test_error"][1]
    assert s.skip_reasons["no GPU visible: libcuda.so.1 could not be loaded"] == 1


def test_parse_junit_names_a_grouped_check_without_its_xdist_group(tmp_path):
    xml = tmp_path / "out.xml"
    xml.write_text(
        '<testsuites><testsuite name="c">'
        '<testcase classname="test_ray" name="test_ray_runs_a_task@ray"><failure message="no ray"/></testcase>'
        '<testcase classname="test_cuda" name="test_kernel_runs_on_gpu[sum]@kernels"/>'
        '<testcase classname="test_x" name="test_at[a@b]"><failure message="m"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert [f.test for f in testgrid.parse_junit(xml).failures] == [
        "test_ray::test_ray_runs_a_task",
        "test_x::test_at[a@b]",
    ]


def test_judge_states():
    ok = Summary(passed=3, skipped=2)
    assert testgrid.judge(0, ok) == ("passed", "")
    assert testgrid.judge(1, Summary(passed=3, failed=1))[0] == "failed"
    assert testgrid.judge(1, Summary(passed=3, errors=1))[0] == "failed"
    state, note = testgrid.judge(0, Summary(skipped=7))
    assert state == "error" and "nothing was verified" in note  # never passes vacuously
    assert testgrid.judge(5, Summary())[0] == "error"
    assert testgrid.judge(4, None) == ("error", "pytest wrote no JUnit file (usage error)")
    assert testgrid.judge(None, None) == ("error", "pytest wrote no JUnit file (it did not run)")
    assert testgrid.judge(None, ok, timed_out=True)[0] == "timeout"


def _result(cell, state, **kw):
    return CellResult(cell, state, "smoke", "docker", **kw)


def test_grid_rows_exit_code_and_plain_text():
    results = [
        _result("cu13.2-py3.13-devel", "passed", summary=Summary(18, 0, 44, 0, 60.0), seconds=65.2),
        _result(
            "cu13.2-py3.13-runtime",
            "failed",
            summary=Summary(25, 1, 37, 0),
            seconds=138,
            log="build/test-results/cu13.2-py3.13-runtime.log",
        ),
        _result("cu12.8.1-py3.13-ray-runtime", "missing", note="image x:y was never built; build it: invoke build ..."),
    ]
    assert testgrid.rows(results)[0] == ("cu13.2-py3.13-devel", "passed", "18", "0", "44", "0", "65s", "")
    assert testgrid.rows(results)[2][2:7] == ("-", "-", "-", "-", "-")
    assert testgrid.exit_code(results) == 1
    assert testgrid.exit_code(results[:1]) == 0
    assert testgrid.exit_code([]) == 1  # nothing tested is not a pass
    text = testgrid.render_plain(results, "smoke")
    assert text.splitlines()[0] == "gpu_smoke: 3 cell(s): 1 passed, 1 failed, 1 missing"
    assert "cu13.2-py3.13-runtime: failed (log: build/test-results/cu13.2-py3.13-runtime.log)" in text
    assert "invoke build" in text
    many = Summary(
        0,
        3,
        0,
        0,
        failures=tuple(testgrid.Failure(f"t::g{i}", "failure", "no GPU visible [--require-gpu]") for i in range(5)),
    )
    lines = testgrid.details([_result("c", "failed", summary=many)])
    assert lines[1] == "  failure: t::g0, t::g1, t::g2 and 2 more: no GPU visible [--require-gpu]" and len(lines) == 2
    same = [
        _result(c, "passed", summary=Summary(1, 0, 2, 0, skip_reasons={f"cell {c} declares no 'pyg' feature": 2}))
        for c in ("a-devel", "a-runtime")
    ]
    assert testgrid.skip_lines(same) == ["skipped 4x: cell <cell> declares no 'pyg' feature"]
    varied = [
        _result("c", "passed", summary=Summary(1, 0, 8, 0, skip_reasons={f"reason {i}": 8 - i for i in range(8)}))
    ]
    lines = testgrid.skip_lines(varied, limit=6)
    assert lines[:2] == ["skipped 8x: reason 0", "skipped 7x: reason 1"]
    assert lines[-1] == "skipped 3x more for 2 other reason(s): reason 6; reason 7"  # none unmentioned


def test_record_feeds_invoke_status(tmp_path):
    r = _result("cu13.2-py3.13-devel", "passed", summary=Summary(18, 0, 44, 0), seconds=65.24, junit="a.xml")
    rec = r.record()
    assert rec["state"] == "passed" and rec["duration_s"] == 65.2 and rec["junit"] == "a.xml"
    assert "note" not in rec  # empty fields are left out
    status.update_cell(tmp_path, r.cell, "test", rec, replace=True)
    assert status.read_raw(tmp_path)[r.cell]["test"]["passed"] == 18
    # invoke status's "test" column shows the summary string.
    assert (
        status_view.section_text(status.read_status(tmp_path).get(r.cell), "test") == "passed (smoke: 18 ok, 44 skip)"
    )
    table, n, _ = status_view.status_table(tmp_path)
    assert n == 1 and [c.header for c in table.columns][-1] == "test"


# --- GPU access from docker info ---------------------------------------------------------

RUNC = {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}


def test_gpu_access_nvidia_runtime():
    g = testrun_docker.gpu_access({"Runtimes": {**RUNC, "nvidia": {"path": "nvidia-container-runtime"}}}, {})
    assert g.requested and g.device_requests == ({"count": -1, "capabilities": [["gpu"]]},)
    assert g.label == "nvidia runtime"
    assert testrun_docker.gpu_access({"Runtimes": RUNC, "DefaultRuntime": "nvidia"}, {}).requested


def test_gpu_access_cdi_only_when_the_engine_reads_specs():
    spec = {"/etc/cdi/nvidia.yaml": "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n"}
    g = testrun_docker.gpu_access({"Runtimes": RUNC, "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, spec)
    assert g.device_requests == ({"driver": "cdi", "device_ids": ["nvidia.com/gpu=all"]},)
    off = testrun_docker.gpu_access({"Runtimes": RUNC}, spec)  # Docker 20.10: no CDI
    assert not off.requested and "CDI off" in off.how and "/etc/cdi/nvidia.yaml" in off.how


def test_gpu_access_none_says_why_and_how_to_fix():
    g = testrun_docker.gpu_access({"Runtimes": RUNC}, {"/etc/cdi/other.yaml": "kind: vendor.com/fpga"})
    assert not g.requested and g.label == "none"
    assert "io.containerd.runc.v2, runc" in g.how and "/etc/cdi, /var/run/cdi" in g.how
    assert "skip" in g.how and "--require-gpu" in g.how and "nvidia-ctk" in g.how


# --- what a container gets ---------------------------------------------------------------


def _opts(**kw) -> suite.Options:
    return suite.Options(suite=suite.SUITES["smoke"], **kw)


def test_container_spec(tmp_path):
    paths = suite.CellPaths.of(tmp_path, "cu13.2-py3.13-runtime")
    gpu = testrun_docker.gpu_access({"Runtimes": {"nvidia": {}}}, {})
    spec = testrun_docker.container_spec(
        "sha256:abc",
        ["PATH=/opt/venv/bin:/usr/bin", "PYTHONPATH=/opt/extra"],
        _opts(require_gpu=True, tests_dir=GPU_SUITE),
        "cu13.2-py3.13-runtime",
        paths,
        tmp_path / "site",
        gpu,
        "10001:10001",
        "imagematrix-test-x",
    )
    vols = {m["bind"]: (host, m["mode"]) for host, m in spec["volumes"].items()}
    assert vols[testrun_docker.TESTS_IN] == (str(GPU_SUITE), "ro")
    assert vols[testrun_docker.TOOLS_IN] == (str(tmp_path / "site"), "ro")
    assert vols[suite.CACHE_IN] == (str(paths.cache.resolve()), "rw")
    assert vols[testrun_docker.RESULTS_IN] == (str(paths.results.resolve()), "rw")
    env = spec["environment"]
    for var in ("TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        assert env[var].startswith(suite.CACHE_IN + "/")
    assert (
        env["PYTHONPATH"] == f"{testrun_docker.TOOLS_IN}:{testrun_docker.PACKAGE_IN}:/opt/extra"
    )  # the image's own path is kept
    # The suite imports the image contract from this very package, mounted read-only.
    assert vols[f"{testrun_docker.PACKAGE_IN}/imagematrix"] == (str(suite.PACKAGE_ROOT / "imagematrix"), "ro")
    cmd = spec["command"]
    assert cmd[:3] == ["python", "-m", "pytest"] and "--require-gpu" in cmd
    assert f"--junitxml={testrun_docker.RESULTS_IN}/junit.xml" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "smoke"
    assert spec["device_requests"] == [{"count": -1, "capabilities": [["gpu"]]}]
    assert spec["user"] == "10001:10001" and spec["detach"] is True
    line = shlex.split(testrun_docker.docker_run_line(spec))
    assert line[:3] == ["docker", "run", "--rm"] and "--gpus" in line and line[-len(cmd) :] == cmd


def test_container_spec_without_gpu_requests_none(tmp_path):
    paths = suite.CellPaths.of(tmp_path, "c")
    none = testrun_docker.gpu_access({"Runtimes": RUNC}, {})
    spec = testrun_docker.container_spec("img", [], _opts(), "c", paths, tmp_path, none, "1000:1000", "n")
    assert spec["device_requests"] == [] and "--require-gpu" not in spec["command"]
    assert spec["environment"]["PYTHONPATH"] == f"{testrun_docker.TOOLS_IN}:{testrun_docker.PACKAGE_IN}"
    assert "--gpus" not in testrun_docker.docker_run_line(spec)


def test_container_user_is_never_root():
    assert testrun_docker.container_user(0, 0) == f"{testrun_docker.CONTAINER_UID}:{testrun_docker.CONTAINER_UID}"
    assert testrun_docker.container_user(1000, 1000) == "1000:1000"


def test_pytest_args_suites_workers_and_passthrough():
    full = suite.pytest_args(_opts(workers="auto", pytest_extra=("-k", "abi")), "T", "J", "c")
    assert full[full.index("-m") + 1] == "smoke"
    assert full[-6:] == ["-n", suite.resolve_workers("auto"), "--dist", "loadgroup", "-k", "abi"]
    f = suite.pytest_args(suite.Options(suite=suite.SUITES["full"], workers="0"), "T", "J", "c", cell_file="cell.json")
    assert f[f.index("-m") + 1] == "smoke or full" and f[f.index("--cell") + 1] == "cell.json" and "-n" not in f


def test_a_tools_site_is_judged_by_what_it_holds(tmp_path):
    def site(**versions):
        d = tmp_path / "-".join(f"{k}{v}" for k, v in versions.items())
        for name, version in versions.items():
            (d / f"{name}-{version}.dist-info").mkdir(parents=True)
        return d

    assert suite.tools_missing(site(pytest="9.1.1", pytest_xdist="3.8.0")) == []
    assert suite.tools_missing(site(pytest="9.2.0", pytest_xdist="3.8.0")) == ["pytest>=8,<9.2 (found 9.2.0)"]
    assert suite.tools_missing(site(pytest="8.4.2")) == ["pytest-xdist>=3.6 (found none)"]


def test_auto_workers_share_the_cpus_and_stop_at_the_cap(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert suite.resolve_workers("auto") == str(suite.MAX_AUTO_WORKERS) == "16"
    assert suite.resolve_workers("auto", jobs=3) == "5"  # half of 32 // 3: containers start together
    assert suite.resolve_workers("auto", jobs=2) == "8"
    assert suite.resolve_workers("auto", jobs=64) == "1"
    assert suite.resolve_workers("4", jobs=3) == "4"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert suite.resolve_workers("auto") == "2"


def test_build_command_for_a_missing_image():
    assert table.build_command("matrix.yaml", "12.8.1", "3.13", "ray-runtime") == (
        "imagematrix build --cuda 12.8.1 --python 3.13 --target ray-runtime"
    )
    assert table.build_command("examples/matrix.yaml", "13.2", "3.13", "devel").startswith(
        "imagematrix build --matrix examples/matrix.yaml --cuda 13.2"
    )


def test_options(monkeypatch):
    monkeypatch.setenv(table.MATRIX_ENV, "examples/matrix.yaml")
    o = testrun.options(["--suite", "full", "--python", "3.13", "--target", "runtime", "--", "-k", "abi"])
    assert o.matrix == "examples/matrix.yaml" and o.suite.name == "full" and o.limit == suite.SUITES["full"].timeout
    assert o.pythons == ("3.13",) and o.targets == ("runtime",) and o.pytest_extra == ("-k", "abi")
    assert testrun.options(["--timeout", "30"]).limit == 30
    with pytest.raises(UsageError, match="after `--`"):
        testrun.options(["stray"])
    with pytest.raises(UsageError, match=r"--timeout takes a number >= 1, not '0'"):
        testrun.options(["--timeout", "0"])
    assert testrun.options(["--out", "b2"]).build_dir == Path("b2") == testrun.options(["--build-dir", "b2"]).build_dir


def test_main_reports_a_usage_error_without_traceback(capsys):
    code = testrun.main(["--matrix", str(ROOT / "examples" / "matrix.yaml"), "--python", "2.7"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown Python version '2.7'") and "Traceback" not in err


def test_host_mode_needs_only_the_stdlib():
    """The GPU machine has torch and pytest but no rich, pydantic, docker, yaml or jinja2."""
    code = textwrap.dedent("""
        import sys
        for mod in ("rich", "pydantic", "docker", "yaml", "jinja2", "requests"):
            sys.modules[mod] = None
        from imagematrix.testing import run as testrun
        from imagematrix.testing import grid as testgrid
        from imagematrix.testing import host as testrun_host
        r = testgrid.CellResult("host-cu13.0.0-py3.12", "passed", "smoke", "host", testgrid.Summary(3, 0, 1, 0))
        testgrid.print_grid([r], "smoke")
        print(testrun_host.host_interpreter(testrun.options(["--backend", "host"])) == sys.executable)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "gpu_smoke: 1 cell(s): 1 passed"
    assert "host-cu13.0.0-py3.12  passed  3" in proc.stdout and proc.stdout.rstrip().endswith("True")


def test_host_backend_refuses_image_filters():
    with pytest.raises(UsageError, match="select images"):
        testrun_host.run_host(_opts(backend="host", targets=("runtime",)))


# --- a target runs its ancestors' checks -------------------------------------------------

COLLECTOR = """
import json, os

def pytest_collection_finish(session):
    out = {}
    for item in session.items:
        mark = item.get_closest_marker("skip")
        out[item.nodeid] = mark.kwargs.get("reason") if mark else None
    with open(os.environ["IMAGEMATRIX_COLLECTED"], "w") as f:
        json.dump(out, f)
"""


# The suite's module for each feature (cuda_extension's checks are spread over several).
FEATURE_MODULES = {
    "cpp_extension": "test_cpp_extension.py",
    "torch_compile": "test_compile.py",
    "pyg": "test_pyg.py",
    "ray": "test_ray.py",
    "marimo": "test_marimo.py",
}


def _selected_checks(manifest: dict, tmp: Path) -> set[str]:
    """Test ids the suite keeps for this cell (a skip that names the cell means "not for this cell")."""
    cell_file, out = tmp / f"{manifest['id']}.json", tmp / f"{manifest['id']}.collected.json"
    cell_file.write_text(json.dumps(manifest))
    (tmp / "pytest.ini").write_text("[pytest]\n")
    (tmp / "imagematrix_collector.py").write_text(COLLECTOR)
    env = {**os.environ, "PYTHONPATH": str(tmp), "IMAGEMATRIX_COLLECTED": str(out)}
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(GPU_SUITE),
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "imagematrix_collector",
        "--cell",
        str(cell_file),
        "-c",
        str(tmp / "pytest.ini"),
        "--rootdir",
        str(GPU_SUITE),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    items = json.loads(out.read_text())
    return {node for node, reason in items.items() if not (reason and manifest["id"] in reason)}


@pytest.mark.slow
def test_each_target_runs_its_ancestors_checks(tmp_path):
    m = load_matrix(ROOT / "matrix.yaml")
    family = [c for c in m.cells if c.family == m.cells[0].family]
    selected = {c.target.name: _selected_checks(render_cell(m, c).manifest, tmp_path) for c in family}
    kinds = {c.target.name: c.target.kind for c in family}
    # What each target adds on top of its own kind's ancestors: extends-chains, compared within a kind.
    chain = {c.target.name: {t for t in c.target.lineage if m.targets[t].relation != "slim"} for c in family}
    pairs = [(a, b) for a in chain for b in chain if a != b and kinds[a] == kinds[b] and chain[a] < chain[b]]
    assert pairs, "the matrix has no target built on another of its kind"
    for a, b in pairs:
        missing = selected[a] - selected[b]
        assert not missing, f"{b} does not run {a}'s checks: {sorted(missing)[:5]}"
    for c in family:  # and each runs the checks of every feature it declares
        for feature in c.target.features:
            module = FEATURE_MODULES.get(feature)
            assert module is None or any(module in n for n in selected[c.target.name]), (
                f"{c.target.name} declares {feature} but runs none of {module}'s checks"
            )
    if "ray-runtime" in selected and "runtime" in selected:  # the issue's own example
        assert selected["runtime"] < selected["ray-runtime"]
        assert any("test_ray.py" in n for n in selected["ray-runtime"] - selected["runtime"])


def test_host_interpreter_must_run_and_be_the_sessions_python(tmp_path):
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert testrun_host._interpreter_problem(sys.executable, running) is None
    assert testrun_host._interpreter_problem(sys.executable, "2.7") == f"({sys.executable}) is Python {running}"
    shim = tmp_path / "python9.9"  # like a pyenv shim for a version that is not installed
    shim.write_text("#!/bin/sh\necho 'pyenv: python9.9: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    assert (
        testrun_host._interpreter_problem(str(shim), "9.9")
        == f"({shim}) does not run: pyenv: python9.9: command not found"
    )


def test_a_test_container_is_stale_only_when_its_run_on_this_host_is_gone():
    import subprocess as sp

    from imagematrix.testing.containers import OWNER_HOST_LABEL, OWNER_PID_LABEL, _owner_gone

    done = sp.Popen(["true"])
    done.wait()  # a pid that existed and is gone
    here = "host-a"
    assert _owner_gone({OWNER_PID_LABEL: str(done.pid), OWNER_HOST_LABEL: here}, here)
    assert not _owner_gone({OWNER_PID_LABEL: str(os.getpid()), OWNER_HOST_LABEL: here}, here)  # alive
    assert not _owner_gone({OWNER_PID_LABEL: str(done.pid), OWNER_HOST_LABEL: "host-b"}, here)  # another runner's
    assert not _owner_gone({}, here)  # a container from before the owner labels


CDI_TWO_GPUS = """{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [
 {"name": "0", "containerEdits": {}}, {"name": "1", "containerEdits": {}}, {"name": "all", "containerEdits": {}}]}"""
CDI_YAML = 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: "0"\n  containerEdits: {}\n- name: all\n'


def test_cdi_specs_name_each_gpu_and_parallel_cells_get_one_each():
    info = {"Runtimes": RUNC, "CDISpecDirs": ["/etc/cdi"]}
    g = testrun_docker.gpu_access(info, {"/etc/cdi/nvidia.json": CDI_TWO_GPUS})
    assert g.devices == ("0", "1")
    assert testrun_docker.gpu_access(info, {"/etc/cdi/nvidia.yaml": CDI_YAML}).devices == ("0",)
    slots = testrun_docker.gpu_slots(g, 3)
    assert [s.device_requests[0]["device_ids"] for s in slots] == [
        ["nvidia.com/gpu=0"],
        ["nvidia.com/gpu=1"],
        ["nvidia.com/gpu=0"],
    ]
    assert slots[1].label == "cdi gpu 1"
    one_gpu = testrun_docker.gpu_access(info, {"/etc/cdi/nvidia.yaml": CDI_YAML})
    assert testrun_docker.gpu_slots(one_gpu, 2) == [one_gpu, one_gpu]  # one GPU: the cells share it


def test_the_nvidia_runtime_gives_each_parallel_cell_a_device_id_when_the_count_is_known():
    g = testrun_docker.gpu_access({"Runtimes": {**RUNC, "nvidia": {}}}, {}, gpu_count=2)
    assert [s.device_requests[0] for s in testrun_docker.gpu_slots(g, 2)] == [
        {"driver": "nvidia", "device_ids": ["0"], "capabilities": [["gpu"]]},
        {"driver": "nvidia", "device_ids": ["1"], "capabilities": [["gpu"]]},
    ]
    unknown = testrun_docker.gpu_access({"Runtimes": {**RUNC, "nvidia": {}}}, {})
    assert testrun_docker.gpu_slots(unknown, 2)[0].device_requests[0]["count"] == -1


def test_the_progress_tally_counts_pytest_lines_however_the_stream_splits_them():
    from imagematrix.testing.grid import Tally

    log = (
        b"$ docker run --rm img python -m pytest\n"
        b"created: 2/2 workers\n"
        b"[gw0] [ 10%] PASSED ../opt/imagematrix/tests/test_abi.py::test_one \n"
        b"[gw1] [ 20%] SKIPPED ../opt/imagematrix/tests/test_cuda.py::test_gpu \n"
        b"../opt/imagematrix/tests/test_x.py::test_y SKIPPED (no GPU: a PASSED check elsewhere) [ 30%]\n"
        b"../opt/imagematrix/tests/test_x.py::test_z FAILED                     [ 40%]\n"
        b"FAILED ../opt/imagematrix/tests/test_x.py::test_z - AssertionError: PASSED\n"
        b"=== 1 failed, 1 passed, 2 skipped in 3s ===\n"
    )
    whole = Tally()
    whole.feed(log)
    for size in (1, 3, 7, 64):
        split = Tally()
        for i in range(0, len(log), size):
            split.feed(log[i : i + size])
        assert split.counts == whole.counts and split.percent == whole.percent
    assert whole.counts == {"passed": 1, "skipped": 2, "failed": 1}  # -ra's summary line is not counted again
    assert whole.line() == "40%: 1 passed, 1 failed, 2 skipped"
    assert Tally().line() == "starting"


def test_a_line_without_an_end_does_not_grow_without_bound():
    from imagematrix.testing.grid import Tally

    t = Tally()
    for _ in range(1000):
        t.feed(b"x" * 10_000)
    assert len(t._partial) <= 4096 and t.counts == {}


def test_a_failure_that_introduces_a_list_keeps_the_list_in_its_one_line(tmp_path):
    xml = tmp_path / "out.xml"
    message = (
        "Failed: 2 distribution(s) of /opt/venv differ from the lock:&#10;  rogue: installed 1.0, not in the lock"
        "&#10;  attrs: 25.4.0, the lock says 25.3.0"
    )
    xml.write_text(
        '<testsuites><testsuite name="c" tests="2">'
        f'<testcase classname="test_environment" name="test_lock"><failure message="{message}"/></testcase>'
        '<testcase classname="test_x" name="test_y"><failure message="assert 1 == 2&#10;+  where 1 = f()"/></testcase>'
        "</testsuite></testsuites>"
    )
    got = {f.test: f.message for f in testgrid.parse_junit(xml).failures}
    assert got["test_environment::test_lock"] == (
        "Failed: 2 distribution(s) of /opt/venv differ from the lock: rogue: installed 1.0, not in the lock; "
        "attrs: 25.4.0, the lock says 25.3.0"
    )
    assert got["test_x::test_y"] == "assert 1 == 2"  # pytest's own detail stays in the log
