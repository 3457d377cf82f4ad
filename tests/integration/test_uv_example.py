"""examples/uv.yaml for real: the environment is synced from the team's uv.lock, labelled from it, and the
suite proves the installed distributions equal the lock — and fails, naming the package, when they do not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "uv.yaml"


@pytest.fixture(scope="module")
def locked(docker_client, invoke, image_namespace, tmp_path_factory) -> tuple[Path, Path, str]:
    """The example under a test image name: (matrix, build dir, devel ref)."""
    work = tmp_path_factory.mktemp("uv")
    text = EXAMPLE.read_text().replace("image: imagematrix/uv-example", f"image: {image_namespace}-uv/example")
    text = text.replace("fragments_dir: ../dockerfiles", f"fragments_dir: {ROOT / 'dockerfiles'}")
    text = text.replace("uv_project: uv.project", f"uv_project: {ROOT / 'examples' / 'uv.project'}")
    matrix = work / "uv.yaml"
    matrix.write_text(text)
    done = invoke("build", "--matrix", str(matrix), "--out", str(work / "build"), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return matrix, work / "build", f"{image_namespace}-uv/example:cu13.2-py3.13-devel"


def suite(matrix: Path, build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "imagematrix.testing",
            "--matrix",
            str(matrix),
            "--out",
            str(build),
            "--target",
            "devel",
            "--",
            "-k",
            "test_environment or test_abi",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_labels_come_from_the_lock(locked, docker_client):
    _, _, ref = locked
    labels = docker_client.images.get(ref).labels
    assert labels["imagematrix.torch"] == "2.15.0" and labels["imagematrix.torch-cuda"] == "13.2"
    manifest = json.loads(docker_client.containers.run(ref, ["cat", "/etc/imagematrix/cell.json"], remove=True))
    assert manifest["environment"]["lock"] == "/etc/imagematrix/uv.lock"


def test_the_installed_environment_equals_the_lock(locked):
    matrix, build, _ = locked
    done = suite(matrix, build)
    assert done.returncode == 0, done.stdout[-4000:]
    record = json.loads((build / "status.json").read_text())["cells"]["cu13.2-py3.13-devel"]["test"]
    assert record["state"] == "passed"


def test_a_distribution_the_lock_does_not_name_fails_the_suite(locked, docker_client, tmp_path):
    """A pip install behind the lock's back (here: a distribution's metadata put in by hand) is drift."""
    matrix, build, ref = locked
    site = "/opt/venv/lib/python3.13/site-packages/rogue-1.0.dist-info"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {ref}\nRUN mkdir -p {site} && printf 'Metadata-Version: 2.1\\nName: rogue\\nVersion: 1.0\\n' > "
        f"{site}/METADATA\n"
    )
    subprocess.run(["docker", "build", "-q", "-t", ref, str(tmp_path)], check=True, capture_output=True, timeout=300)
    done = suite(matrix, build)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "rogue: installed 1.0, not in the lock" in done.stdout
