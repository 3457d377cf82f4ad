"""Ray targets: a local Ray runtime starts, runs a task and detects the GPU; with torch, a task that asks
Ray for a GPU runs a CUDA kernel."""

from __future__ import annotations

import gpu_host
import pytest
from gpu_support import ensure, expect, require

pytestmark = [pytest.mark.ray, pytest.mark.smoke, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def ray_report():
    return gpu_host.run_python("ray", [], timeout=420)


@pytest.fixture(scope="module")
def ray_gpu_report():
    return gpu_host.run_python("ray_gpu", [], timeout=420)


def test_ray_runs_a_task(ray_report):
    require(ray_report)
    print(
        expect(
            ray_report,
            "cpu_task",
            "Fix: see the Ray output above (ray.init needs /tmp writable and /dev/shm)",
        )
    )


@pytest.mark.gpu
def test_ray_sees_the_gpu(ray_report):
    info = require(ray_report)["info"]
    gpus = (info.get("resources") or {}).get("GPU", 0)
    print(f"ray {info.get('ray')} resources {info.get('resources')}")
    ensure(
        gpus >= 1,
        f"ray.cluster_resources() has GPU={gpus}: Ray detects GPUs itself (CUDA_VISIBLE_DEVICES / NVML); a "
        "GPU-less view means the container got no GPU or Ray cannot load libnvidia-ml.so.1. Fix: start it "
        "with the GPUs (--gpus all, or a CDI device)",
    )


@pytest.mark.gpu
@pytest.mark.torch
def test_ray_runs_a_gpu_task(ray_gpu_report):
    info = require(ray_gpu_report)["info"]
    print(f"ray {info.get('ray')} resources {info.get('resources')}")
    print(
        expect(
            ray_gpu_report,
            "gpu_task",
            "a task with num_gpus=1 must run a CUDA kernel on the GPU Ray gave it. Fix: start the container "
            "with the GPUs (--gpus all, or a CDI device)",
        )
    )
