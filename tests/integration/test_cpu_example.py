"""examples/cpu.yaml for real: a cpu family (torch 2.13.0+cpu from the example's wheelhouse on bookworm)
builds, and the suite passes in both images with every GPU and CUDA check skipped for that reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "examples" / "cpu.yaml"


@pytest.fixture(scope="module")
def cpu_build(docker_client, invoke, tmp_path_factory) -> Path:
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get("debian:bookworm-slim")
    except ImageNotFound:
        pytest.fail(
            "debian:bookworm-slim is missing: IMAGEMATRIX_BASE_SUITES=bookworm bash scripts/bootstrap-host.sh",
            pytrace=False,
        )
    if not list((ROOT / "examples" / "cpu.wheelhouse").glob("torch-2.13.0+cpu-*.whl")):
        pytest.fail("examples/cpu.wheelhouse has no CPU torch: bash scripts/example-wheelhouse.sh", pytrace=False)
    out = tmp_path_factory.mktemp("cpu-build")
    done = invoke("build", "--matrix", str(CPU), "--out", str(out), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_cpu_cells_are_labelled_cpu_only(cpu_build, docker_client):
    image = docker_client.images.get("imagematrix/cpu-example:cpu-py3.11-runtime")
    assert image.labels["imagematrix.cell"] == "cpu-py3.11-runtime"
    assert image.labels["imagematrix.cuda"] == "" and image.labels["imagematrix.torch-cuda"] == ""
    assert image.labels["org.opencontainers.image.description"].startswith("runtime image: CPU only, Python 3.11")


def test_the_full_suite_passes_with_gpu_checks_skipped_as_cpu_only(cpu_build):
    done = subprocess.run(
        [sys.executable, "-m", "imagematrix.testing", "--matrix", str(CPU), "--suite", "full", "--out", str(cpu_build)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "is CPU-only (cuda: null): no GPU checks" in done.stdout
    record = json.loads((cpu_build / "status.json").read_text())["cells"]
    for cid in ("cpu-py3.11-devel", "cpu-py3.11-runtime"):
        assert record[cid]["test"]["state"] == "passed" and record[cid]["test"]["failed"] == 0
        assert record[cid]["test"]["passed"] >= 10
