"""The GPU suite's wiring, run as a user would: usage errors, skip reasons, --require-gpu.

Runs `pytest tests/gpu` in a subprocess from an empty folder with a bare ini,
like the read-only mount inside an image. Needs neither torch nor a GPU: the
selected checks stop before importing torch when no NVIDIA driver is loaded.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pytest in a subprocess per test

SUITE = Path(__file__).resolve().parents[1] / "gpu"
CELL = {
    "schema": 1,
    "id": "cu13.0.2-py3.12-devel",
    "kind": "devel",
    "python": "3.12",
    "cuda": "13.0.2",
    "torch_cuda": "13.0",
    "torch": "",
    "features": ["cpp_extension", "cuda_extension", "torch_compile"],
    "pyg_extensions": [],
}


def _has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def run_suite(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    full_env = {k: v for k, v in os.environ.items() if k != "IMAGEMATRIX_CELL"}
    full_env.update(env or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(SUITE),
            *args,
        ],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_cell(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "cell.json"
    path.write_text(json.dumps({**CELL, **changes}))
    return path


def test_missing_manifest_is_a_usage_error(tmp_path):
    if Path("/etc/imagematrix/cell.json").exists():
        pytest.skip("this machine is an imagematrix image: it has /etc/imagematrix/cell.json")
    out = run_suite(tmp_path, "-q")
    assert out.returncode == 4, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "no cell manifest" in text and "describe_host.py" in text
    assert "Traceback" not in text


def test_invalid_manifest_names_the_key(tmp_path):
    cell = write_cell(tmp_path, kind="dev")
    out = run_suite(tmp_path, "-q", "--cell", str(cell))
    assert out.returncode == 4
    assert "key 'kind': 'dev' is not one of devel, runtime, host" in out.stdout + out.stderr


def test_env_variable_names_the_manifest(tmp_path):
    out = run_suite(tmp_path, "-q", env={"IMAGEMATRIX_CELL": str(tmp_path / "nope.json")})
    assert out.returncode == 4 and "IMAGEMATRIX_CELL=" in out.stdout + out.stderr


@pytest.mark.skipif(_has_driver(), reason="this host has an NVIDIA driver: GPU checks would run")
def test_gpu_checks_skip_with_reason_without_gpu(tmp_path):
    cell = write_cell(tmp_path)
    out = run_suite(tmp_path, "-q", "-rs", "--cell", str(cell), "-k", "test_cuinit_succeeds")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout
    assert "no GPU visible: libcuda.so.1 could not be loaded" in out.stdout


@pytest.mark.skipif(_has_driver(), reason="this host has an NVIDIA driver: GPU checks would run")
def test_require_gpu_turns_the_skip_into_a_failure(tmp_path):
    cell = write_cell(tmp_path)
    out = run_suite(tmp_path, "-q", "--cell", str(cell), "-k", "test_cuinit_succeeds", "--require-gpu")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed" in out.stdout and "error" not in out.stdout.split("\n")[-2]
    assert "no GPU visible" in out.stdout and "[--require-gpu]" in out.stdout


def test_undeclared_features_skip_with_reason(tmp_path):
    cell = write_cell(tmp_path, features=[])
    out = run_suite(tmp_path, "-q", "-rs", "--cell", str(cell), "-k", "test_ray or test_marimo or toolchain")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "declares no 'ray' feature" in out.stdout
    assert "declares no 'marimo' feature" in out.stdout
    assert "declares no 'cpp_extension' feature" in out.stdout


def test_markers_are_registered_by_the_suite(tmp_path):
    cell = write_cell(tmp_path)
    out = run_suite(tmp_path, "--markers", "--cell", str(cell))
    assert out.returncode == 0, out.stderr
    for marker in (
        "smoke",
        "full",
        "gpu",
        "cuda_extension",
        "torch_compile",
        "pyg",
        "ray",
        "marimo",
    ):
        assert f"@pytest.mark.{marker}" in out.stdout


def test_without_torch_the_wheel_check_says_torch_is_not_installed(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed for this interpreter")
    cell = write_cell(tmp_path, torch="2.15.0")  # the cell pins torch: its absence is a failure
    out = run_suite(tmp_path, "-q", "--cell", str(cell), "-k", "test_torch_wheel_tag_matches_interpreter")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert f"torch is not installed for {sys.executable}" in text
    assert "importable" not in text


def test_a_cell_without_torch_skips_the_torch_checks_with_the_reason(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed for this interpreter")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    cell = write_cell(
        tmp_path, torch=None, cuda=None, torch_cuda=None, python=py, features=["team-notebook"], target="lab"
    )
    out = run_suite(tmp_path, "-rs", "--cell", str(cell), "-k", "test_abi or test_cuda")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "holds no torch (targets.lab.torch: false): no torch checks" in text
    assert "declares no CUDA toolkit" in text
    assert "failed" not in text
    assert "no checks for the features team-notebook" in text


def test_a_cell_that_claims_torch_and_lacks_it_fails_its_torch_checks(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed for this interpreter")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    cell = write_cell(tmp_path, torch="", cuda=None, torch_cuda=None, python=py, features=[])  # unpinned, expected
    out = run_suite(tmp_path, "-rs", "--cell", str(cell), "-k", "test_abi")
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "No module named 'torch'" in text, text
    assert "no torch checks" not in text


def test_groups_reach_one_worker_or_the_suite_says_they_do_not(tmp_path):
    """pytest 9.2 + pytest-xdist <= 3.8 drop xdist_group (pytest-xdist#1386): then each worker runs
    its own probe. Whichever pytest this is, the suite either groups or warns, never silently neither."""
    cell = write_cell(tmp_path)
    out = run_suite(
        tmp_path,
        "-v",
        "--cell",
        str(cell),
        "-k",
        "test_kernel_runs_on_gpu or test_torch_sees_gpu",
        "-p",
        "xdist.plugin",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    ids = [line.split()[-1] for line in out.stdout.splitlines() if " SKIPPED " in line]
    assert len(ids) == 5, text
    grouped = all(i.endswith("@kernels") for i in ids)
    warned = "--dist loadgroup is not grouping" in text
    assert grouped != warned, text
    if grouped:  # one group, one worker
        assert len({line.split()[0] for line in out.stdout.splitlines() if " SKIPPED " in line}) == 1, text


@pytest.mark.skipif(_has_driver(), reason="this host has an NVIDIA driver: GPU checks would run")
def test_a_check_failed_for_want_of_a_gpu_keeps_its_name_and_group(tmp_path):
    """--require-gpu swaps each GPU check for a stand-in that fails: same node id (JUnit name, group)
    as the check that skips without it, so runs with and without a GPU compare check by check."""
    cell = write_cell(tmp_path)
    args = (
        "-v",
        "--cell",
        str(cell),
        "-k",
        "test_kernel_runs_on_gpu or test_torch_sees_gpu",
        "-p",
        "xdist.plugin",
        "-n",
        "2",
        "--dist",
        "loadgroup",
    )
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    skipped = run_suite(tmp_path, *args, env=env)
    failed = run_suite(tmp_path, *args, "--require-gpu", env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    ids = {
        kind: sorted(line.split()[-1] for line in out.stdout.splitlines() if f" {kind} " in line)
        for kind, out in (("SKIPPED", skipped), ("FAILED", failed))
    }
    assert len(ids["FAILED"]) == 5 and ids["FAILED"] == ids["SKIPPED"], ids
    assert "not grouping" not in failed.stdout + failed.stderr or "not grouping" in skipped.stdout + skipped.stderr


def test_toolchain_fingerprint_changes_with_the_compiler(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SUITE))
    import gpu_host

    cxx = tmp_path / "c++"
    cxx.write_text("one")
    first = gpu_host.toolchain_fingerprint([str(cxx), None])
    assert gpu_host.toolchain_fingerprint([str(cxx), None]) == first
    os.utime(cxx, ns=(1, 1))  # a rebuilt image: same path, another file
    assert gpu_host.toolchain_fingerprint([str(cxx), None]) != first
    cxx.unlink()  # the compiler is gone: a fresh build, which then fails
    assert gpu_host.toolchain_fingerprint([str(cxx), None]) not in (first, gpu_host.toolchain_fingerprint([None, None]))


FAKE_PROBE = """
import json, os, sys, time
time.sleep(float(os.environ["FAKE_PROBE_SLEEP"]))
print("IMAGEMATRIX-PROBE-RESULT " + json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "at": time.time()}))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_probe_the_session_started_is_taken_once_by_the_test_that_asks_for_it(tmp_path, monkeypatch):
    """Real processes: a started probe's result goes to the first caller with the same probe and
    arguments; anyone else runs a fresh one; a hung one is killed; stop_probes ends the rest."""
    monkeypatch.syspath_prepend(str(SUITE))
    import gpu_host

    (tmp_path / "probe.py").write_text(FAKE_PROBE)
    monkeypatch.setattr(gpu_host, "PROBE_SOURCE", tmp_path / "probe.py")
    folder = tmp_path / "started"
    folder.mkdir()
    monkeypatch.setenv(gpu_host.STARTED_ENV, str(folder))
    monkeypatch.setenv("FAKE_PROBE_SLEEP", "0.2")
    gpu_host.start_probes(folder, [("kernels", ()), ("pyg", ("--gpu",))])
    monkeypatch.setenv("FAKE_PROBE_SLEEP", "60")
    gpu_host.start_probes(folder, [("hang", ()), ("unused", ())])
    unused_pid = int(next(folder.glob("unused-*.pid")).read_text())
    time.sleep(1.0)
    monkeypatch.setenv("FAKE_PROBE_SLEEP", "0")

    asked = time.time()
    taken = gpu_host.run_python("kernels", [], timeout=30)
    assert taken.returncode == 0 and taken.data["argv"] == ["kernels"] and taken.data["at"] < asked, taken
    fresh = gpu_host.run_python("kernels", [], timeout=30)  # taken already: its own run
    assert fresh.data["at"] > asked and fresh.data["pid"] != taken.data["pid"], fresh
    other = gpu_host.run_python("pyg", [], timeout=30)  # other arguments: not the started one
    assert other.data["argv"] == ["pyg"] and other.data["at"] > asked, other
    assert gpu_host.run_python("pyg", ["--gpu"], timeout=30).data["at"] < asked

    hung = gpu_host.run_python("hang", [], timeout=0.5)
    assert hung.timed_out and hung.crashed and "hung" in hung.why(), hung
    assert _alive(unused_pid)
    gpu_host.stop_probes(folder)
    deadline = time.monotonic() + 10
    while _alive(unused_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(unused_pid) and not folder.exists()
