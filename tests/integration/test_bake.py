"""`invoke bake` against the real engine: buildx accepts the file, a real `docker buildx bake`
builds the cells, and imagematrix then sees them as up to date."""

from __future__ import annotations

import json
import subprocess

import pytest

from imagematrix.core import status

pytestmark = pytest.mark.docker


def test_a_bake_build_is_what_invoke_build_would_have_built(
    invoke, image_namespace, tmp_path, docker_client, hardening_matrix
):
    image = f"{image_namespace}-bake/tiny"
    matrix = hardening_matrix(
        tmp_path,
        image,
        phases={1: {"name": "tiny", "cells": [{"cuda": "1.0", "python": "3.13", "targets": ["plain", "nonroot"]}]}},
    )
    out = tmp_path / "build"
    done = invoke("bake", "--matrix", str(matrix), "--out", str(out), "--phase", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    bake = out / "docker-bake.json"
    printed = subprocess.run(
        ["docker", "buildx", "bake", "-f", str(bake), "--print", "phase-1"], capture_output=True, text=True, check=False
    )
    assert printed.returncode == 0, printed.stderr
    assert set(json.loads(printed.stdout)["target"]) == {"cu1_0-py3_13-plain", "cu1_0-py3_13-nonroot"}

    built = subprocess.run(
        ["docker", "buildx", "bake", "-f", str(bake), "phase-1"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    for cell in ("cu1.0-py3.13-plain", "cu1.0-py3.13-nonroot"):
        built_image = docker_client.images.get(f"{image}:{cell}")
        assert built_image.labels["imagematrix.cell"] == cell and built_image.labels[
            "imagematrix.build-hash"
        ].startswith("sha256:")

    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--phase", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    states = {cid: rec["build"]["state"] for cid, rec in status.read_raw(out).items()}
    assert states == {"cu1.0-py3.13-plain": "skipped", "cu1.0-py3.13-nonroot": "skipped"}, done.stdout
