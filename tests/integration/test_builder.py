"""`invoke build --builder NAME` on a second engine: the build runs on that builder, its images land
in that engine, and the skip check looks there (the first engine never sees them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imagematrix.core import status

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CELL = "cu1.0-py3.13-plain"


@pytest.fixture
def context(second_engine):
    """A docker context for the second engine: buildx's docker-driver builder of the same name."""
    name = f"im-e2-{os.getpid()}"
    host = second_engine["env"]["DOCKER_HOST"]
    subprocess.run(["docker", "context", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(["docker", "context", "create", name, "--docker", f"host={host}"], capture_output=True, check=True)
    yield name, host
    subprocess.run(["docker", "context", "rm", "-f", name], capture_output=True, check=False)


def test_a_named_builder_builds_into_its_own_engine_and_skips_there(
    context, invoke, image_namespace, tmp_path, docker_client, hardening_matrix
):
    import docker

    name, host = context
    image = f"{image_namespace}-builder/tiny"
    matrix = hardening_matrix(tmp_path, image)
    out = tmp_path / "build"
    args = ("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain", "--builder", name)

    done = invoke(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"builder {name}: buildx" in done.stdout and f"images into {host}" in done.stdout
    rec = status.read_raw(out)[CELL]["build"]
    assert rec["state"] == "built" and rec["command"].startswith(f"docker --context {name} buildx build")
    ref = f"{image}:{CELL}"
    second = docker.DockerClient(base_url=host)
    assert second.images.get(ref).id == rec["image_id"]
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(ref)  # the default engine never saw it

    done = invoke(*args)
    assert done.returncode == 0, done.stdout[-3000:]
    assert status.read_raw(out)[CELL]["build"]["state"] == "skipped"
