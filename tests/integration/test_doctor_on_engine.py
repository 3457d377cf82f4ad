"""`invoke doctor` against the real engine: the build side passes here, the GPU side says plainly
that this host cannot run GPU tests, and the probe runs in images that are really here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagematrix.cli import doctor
from imagematrix.testing.containers import detect_gpu

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "matrix.yaml")
NO_PYTHON_IMAGE = "debian:trixie-slim"  # the integration tests' base image


def test_doctor_names_what_gpu_tests_lack_and_no_gpu_checks_the_build_side(invoke, docker_client):
    if detect_gpu(docker_client.info()).requested:
        pytest.skip("this engine hands GPUs to containers: the CPU-host answer does not apply")
    done = invoke("doctor", "--matrix", EXAMPLE)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "doctor ok   engine: Docker" in out and "doctor ok   BuildKit" in out
    assert "GPU tests cannot run on this host" in out and "--build-only" in out
    assert "doctor: 1 problem(s) for 2 cell(s)" in out and ": GPU" in out
    done = invoke("doctor", "--matrix", EXAMPLE, "--build-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "doctor warn GPU" in done.stdout and "can build (GPU tests not checked: --build-only)" in done.stdout


def test_the_probe_runs_in_an_image_with_python_and_skips_one_without(docker_client, example_images):
    code, out = doctor.run_probe(docker_client, NO_PYTHON_IMAGE, [])
    assert code == 127 and "no python" in out, out
    code, out = doctor.run_probe(docker_client, example_images["refs"]["devel"], [])
    assert code == 0, out
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["libcuda"] is None and "libcuda.so.1 cannot be loaded" in seen["error"], seen
    assert not docker_client.containers.list(all=True, filters={"label": "imagematrix.cli.doctor"})
