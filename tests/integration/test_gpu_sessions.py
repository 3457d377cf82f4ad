"""`nox -s gpu_smoke-<python>` against the example matrix's real images on a host without a GPU.

The CPU-side checks (ABI, versions, C++ cpp_extension, torch.compile on CPU)
must pass inside the real containers, the GPU checks must skip with their
reason, and --require-gpu must turn the run into a failure. Ctrl-C and
SIGTERM must leave no container behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from imagematrix.core import options as table
from imagematrix.core import status

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "matrix.yaml"
# The suite's module for each cell feature whose checks run on a CPU.
CPU_CHECKS = {"cpp_extension": "test_cpp_extension", "torch_compile": "test_compile"}


def nox(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != table.MATRIX_ENV}
    return subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """classname::name -> (outcome, message) from a JUnit file."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag: child for child in case}
        kind = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        message = kinds[kind].get("message", "") if kind in kinds else ""
        out[f"{case.get('classname')}::{case.get('name')}"] = (kind, message)
    return out


def leftover_containers(docker_client, cell_id: str, build_dir: Path) -> list[str]:
    from imagematrix.testing.containers import BUILD_DIR_LABEL, TESTRUN_LABEL

    labels = [f"{TESTRUN_LABEL}={cell_id}", f"{BUILD_DIR_LABEL}={build_dir.resolve()}"]
    return [c.name for c in docker_client.containers.list(all=True, filters={"label": labels})]


@pytest.fixture(scope="module")
def session_name(example_images) -> str:
    return f"gpu_smoke-{example_images['matrix'].pythons[0]}"


@pytest.fixture(scope="module")
def smoke(example_images, session_name, tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("gpu-smoke")
    started = time.monotonic()
    proc = nox("-s", session_name, "--", "--matrix", str(EXAMPLE), "--out", str(build_dir))
    print(f"{session_name}: {time.monotonic() - started:.0f}s")
    return proc, build_dir, example_images["matrix"]


def test_cpu_checks_pass_and_gpu_checks_skip_in_every_image(smoke, docker_client):
    proc, build_dir, m = smoke
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert f"gpu_smoke: {len(m.cells)} cell(s): {len(m.cells)} passed" in proc.stdout
    records = status.read_raw(build_dir)
    for cell in m.cells:
        junit = build_dir / "test-results" / f"{cell.id}.xml"
        log = build_dir / "test-results" / f"{cell.id}.log"
        assert junit.is_file() and log.is_file(), cell.id
        assert f"imagematrix cell: {cell.id}" in log.read_text()
        results = outcomes(junit)
        bad = {k: v for k, v in results.items() if v[0] in ("failure", "error")}
        assert not bad, f"{cell.id}: {bad}"
        passed = [k for k, (kind, _) in results.items() if kind == "passed"]
        assert any(k.startswith("test_abi::") for k in passed), f"{cell.id}: no ABI check passed"
        # A runtime target runs its devel parent's checks too (its features come from the parent).
        for feature in cell.target.features:
            module = CPU_CHECKS.get(feature)
            assert module is None or any(k.startswith(f"{module}::") for k in passed), f"{cell.id}: {feature}"
        gpu_skips = [msg for kind, msg in results.values() if kind == "skipped" and "no GPU visible" in msg]
        assert gpu_skips, f"{cell.id}: no GPU check skipped with its reason"
        test = records[cell.id]["test"]
        assert test["state"] == "passed" and test["suite"] == "smoke" and test["gpu"] == "none"
        assert test["passed"] == len(passed) and test["junit"] == str(junit)
        assert not leftover_containers(docker_client, cell.id, build_dir)


def test_cpu_torch_compile_passes_in_the_full_suite(smoke, example_images, docker_client):
    """The suite keeps CPU torch.compile in `full` (slow): run just that check, in the slim image."""
    _, build_dir, m = smoke
    cell = next(c for c in m.cells if c.target.kind == "runtime" and "torch_compile" in c.target.features)
    proc = nox(
        "-s",
        f"gpu_full-{cell.python}",
        "--",
        "--matrix",
        str(EXAMPLE),
        "--out",
        str(build_dir),
        "--target",
        cell.target.name,
        "--",
        "-k",
        "compile_cpu",
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = outcomes(build_dir / "test-results" / f"{cell.id}.xml")
    assert results and all(kind == "passed" for kind, _ in results.values()), results
    assert any("compile_cpu" in k for k in results)
    assert not leftover_containers(docker_client, cell.id, build_dir)


def test_require_gpu_turns_the_run_into_a_failure(smoke, session_name, docker_client):
    """The same session with --require-gpu, on one image to keep CI short (the caches are warm)."""
    _, build_dir, m = smoke
    cell = next(c for c in m.cells if c.target.kind == "devel")
    junit = build_dir / "test-results" / f"{cell.id}.xml"
    skipped = {k for k, (kind, msg) in outcomes(junit).items() if kind == "skipped" and "no GPU visible" in msg}
    assert skipped
    proc = nox(
        "-s",
        session_name,
        "--",
        "--matrix",
        str(EXAMPLE),
        "--out",
        str(build_dir),
        "--target",
        cell.target.name,
        "--require-gpu",
    )
    assert proc.returncode != 0
    assert "gpu_smoke: 1 cell(s): 1 failed" in proc.stdout
    results = outcomes(junit)
    # Every GPU check that skipped without a GPU now fails, saying why.
    for test_id in skipped:
        kind, msg = results[test_id]
        assert kind == "failure" and "no GPU visible" in msg and "--require-gpu" in msg, (test_id, kind, msg)
    test = status.read_raw(build_dir)[cell.id]["test"]
    assert test["state"] == "failed" and test["failed"] >= len(skipped) and test["failures"]
    assert not leftover_containers(docker_client, cell.id, build_dir)


def test_an_image_never_built_is_missing_with_its_build_command(example_images, tmp_path, docker_client):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["image"] = f"imagematrix-test-{uuid.uuid4().hex[:8]}/never-built"
    data["build"]["fragments_dir"] = str((EXAMPLE.parent / data["build"]["fragments_dir"]).resolve())
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "imagematrix.testing", "--matrix", str(matrix), "--out", str(tmp_path / "b")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    cells = example_images["matrix"].cells
    assert f"{len(cells)} cell(s): {len(cells)} missing" in done.stdout
    assert f"imagematrix build --matrix {matrix} --cuda {cells[0].cuda.version}" in done.stdout.replace("\n", "")
    assert not (tmp_path / "b" / "test-tools").exists()  # nothing to test, so nothing installed


def test_an_image_labelled_as_another_cell_is_an_error(example_images, image_namespace, tmp_path, docker_client):
    m = example_images["matrix"]
    runtime = next(c for c in m.cells if c.target.kind == "runtime")
    devel = next(c for c in m.cells if c.target.kind == "devel")
    data = yaml.safe_load(EXAMPLE.read_text())
    data["image"] = f"{image_namespace}/relabelled"
    data["build"]["fragments_dir"] = str((EXAMPLE.parent / data["build"]["fragments_dir"]).resolve())
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(data))
    # The runtime image under the devel cell's tag (removed with the namespace afterwards).
    docker_client.images.get(runtime.ref).tag(data["image"], devel.tag)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagematrix.testing",
            "--matrix",
            str(matrix),
            "--out",
            str(tmp_path / "b"),
            "--target",
            devel.target.name,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    record = status.read_raw(tmp_path / "b")[devel.id]["test"]
    assert record["state"] == "error"
    assert f"labelled imagematrix.cell='{runtime.id}', not {devel.id}" in record["note"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_removes_the_container(smoke, example_images, tmp_path, docker_client, sig, code):
    _, smoke_dir, m = smoke
    cell = m.cells[-1]
    shutil.copytree(smoke_dir / "test-tools", tmp_path / "test-tools")  # no second pip install
    argv = [
        sys.executable,
        "-m",
        "imagematrix.testing",
        "--matrix",
        str(EXAMPLE),
        "--out",
        str(tmp_path),
        "--target",
        cell.target.name,
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not leftover_containers(docker_client, cell.id, tmp_path):
            assert proc.poll() is None and time.monotonic() < deadline, "the test container never started"
            time.sleep(0.5)
        time.sleep(2)  # pytest is running inside it now
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, out[-3000:]
    assert not leftover_containers(docker_client, cell.id, tmp_path), out[-3000:]
    assert cell.id not in status.read_raw(tmp_path)  # an interrupted run records nothing
