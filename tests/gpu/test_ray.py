"""Ray targets: a local Ray runtime starts, runs a task, sees the GPU and runs a GPU task."""

from __future__ import annotations

import gpu_host
import pytest
from gpu_support import expect, require

pytestmark = [pytest.mark.ray, pytest.mark.smoke, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def ray_report(gpu):
    return gpu_host.run_python("ray", ["--gpu"] if gpu.ok else [], timeout=420)


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
def test_ray_sees_gpu_and_runs_gpu_task(ray_report):
    info = require(ray_report)["info"]
    print(f"ray {info.get('ray')} resources {info.get('resources')}")
    print(
        expect(
            ray_report,
            "gpu_task",
            "Ray detects GPUs itself (CUDA_VISIBLE_DEVICES / NVML): a GPU-less resource view means the "
            "container got no GPU or Ray cannot load libnvidia-ml.so.1. Fix: start with --gpus all",
        )
    )
