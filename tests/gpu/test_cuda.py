"""Area 2: the CUDA runtime against the driver, loaded libraries, the GPU's architecture, real kernels."""

from __future__ import annotations

import ctypes

import gpu_host
import gpu_policy
import pytest
from gpu_support import ensure, expect, require

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def kernels():
    return gpu_host.run_python(*gpu_policy.KERNELS_PROBE, timeout=240)


def torch_cuda_mm() -> tuple[int, int]:
    import torch

    ensure(
        torch.version.cuda is not None,
        "torch is a CPU-only build (torch.version.cuda is None): no CUDA libraries to check; "
        "see test_torch_cuda_build_matches_cell",
    )
    return gpu_policy.major_minor(torch.version.cuda)


# --------------------------------------------------------------------------
# smoke: driver
# --------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.gpu
def test_cuinit_succeeds(driver):
    ensure(
        driver.init_code == 0,
        gpu_policy.cuinit_hint(driver.init_code, driver.init_name, driver.init_text),
    )
    print(f"libcuda {driver.path}, driver {driver.driver_version}, CUDA {gpu_policy.fmt_mm(driver.driver_cuda)}")


@pytest.mark.xdist_group("kernels")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.torch
def test_torch_sees_gpu(kernels):
    info = require(kernels)["info"]
    ensure(
        info["is_available"] and info["device_count"] >= 1,
        (
            f"in a fresh process torch.cuda.is_available() is {info['is_available']} with "
            f"{info['device_count']} device(s) although cuInit succeeded here: {'; '.join(info['init_warnings'])}"
        ),
    )
    ensure(
        not info["init_warnings"],
        (
            "torch warned while initialising CUDA (e.g. 'The NVIDIA driver on your system is too old'): "
            + " | ".join(info["init_warnings"])
        ),
    )


@pytest.mark.xdist_group("kernels")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.torch
def test_driver_supports_torch_cuda(driver, kernels):
    info = require(kernels)["info"]
    compiled = gpu_policy.cuda_int(info["compiled_cuda"])
    decision = gpu_policy.driver_policy(driver.driver_cuda, compiled, driver.driver_version, "this image's torch")
    if driver.compat:
        print(f"forward compatibility: libcuda from {driver.path} (datacenter GPUs only)")
    print(decision.message)
    ensure(decision.ok, decision.message)


@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.cuda_extension
def test_driver_supports_cell_toolkit(cell, driver):
    """Extensions nvcc builds in a devel image need the driver to accept the toolkit's CUDA too."""
    decision = gpu_policy.driver_policy(driver.driver_cuda, cell.cuda_mm, driver.driver_version, f"nvcc {cell.cuda}")
    print(decision.message)
    ensure(decision.ok, decision.message)


# --------------------------------------------------------------------------
# smoke: libraries actually loaded (no GPU needed: they load at import)
# --------------------------------------------------------------------------


def _loaded(stem):
    import torch  # noqa: F401  (loads torch's CUDA libraries)

    return gpu_policy.loaded_library(gpu_policy.mapped_paths(gpu_host.self_maps()), stem)


@pytest.mark.smoke
@pytest.mark.torch
def test_loaded_cudart_matches_torch():
    cuda_mm = torch_cuda_mm()
    libs = _loaded("libcudart")
    if not libs:
        pytest.skip("no libcudart in /proc/self/maps: torch links the CUDA runtime statically")
    wrong = [(p, n) for p, n in libs if n is not None and n != cuda_mm[0]]
    ensure(
        not wrong,
        (
            f"torch was built with CUDA {gpu_policy.fmt_mm(cuda_mm)} but the process loaded "
            + ", ".join(f"{p} (CUDA {n})" for p, n in wrong)
            + ": another toolkit's runtime shadows torch's. Fix: remove that directory from LD_LIBRARY_PATH / "
            "ld.so.conf"
        ),
    )
    print(", ".join(p for p, _ in libs))


@pytest.mark.smoke
@pytest.mark.torch
def test_loaded_cudnn_matches_torch():
    cuda_mm = torch_cuda_mm()
    import torch

    if not torch.backends.cudnn.is_available():
        pytest.fail(
            "torch.backends.cudnn.is_available() is False: libcudnn could not be loaded, convolutions "
            "will be slow or fail. Fix: install the nvidia-cudnn wheel torch requires",
            pytrace=False,
        )
    runtime = gpu_policy.cudnn_int(torch.backends.cudnn.version())
    compiled = tuple(torch._C._cudnn.getCompileVersion())
    problem = gpu_policy.cudnn_problem(runtime, compiled)
    ensure(problem is None, problem)
    libs = _loaded("libcudnn")
    ensure(libs, "torch reports cuDNN but no libcudnn is in /proc/self/maps")
    lib = ctypes.CDLL(libs[0][0])
    lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
    built_for = gpu_policy.cuda_int(int(lib.cudnnGetCudartVersion()))
    ensure(
        built_for and built_for[0] == cuda_mm[0],
        (
            f"{libs[0][0]} was built for CUDA {gpu_policy.fmt_mm(built_for)} but torch for "
            f"{gpu_policy.fmt_mm(cuda_mm)}: a cuDNN of another CUDA major is loaded. Fix: install "
            f"nvidia-cudnn-cu{cuda_mm[0]} and drop other libcudnn from LD_LIBRARY_PATH"
        ),
    )
    print(f"cuDNN {runtime} (compiled {compiled}) for CUDA {gpu_policy.fmt_mm(built_for)}: {libs[0][0]}")


@pytest.mark.smoke
@pytest.mark.torch
def test_loaded_nccl_matches_torch():
    cuda_mm = torch_cuda_mm()
    import torch

    config = gpu_policy.parse_torch_config(torch.__config__.show())
    if config.settings.get("USE_NCCL", "").upper() not in ("ON", "1"):
        pytest.skip(f"torch was built without NCCL (USE_NCCL={config.settings.get('USE_NCCL')})")
    version = torch.cuda.nccl.version()
    libs = _loaded("libnccl")
    if not libs:
        pytest.skip(f"NCCL {version} is linked statically into torch (no libnccl in /proc/self/maps)")
    owner = gpu_host.dist_owning(libs[0][0])
    major = gpu_policy.dist_cuda_major(owner) if owner else None
    if major is None:
        pytest.skip(
            f"NCCL {version} from {libs[0][0]} ({owner or 'not pip-installed'}): its CUDA major is not recorded"
        )
    ensure(
        major == cuda_mm[0],
        (
            f"NCCL {version} comes from {owner} ({libs[0][0]}), built for CUDA {major}, but torch uses CUDA "
            f"{gpu_policy.fmt_mm(cuda_mm)}: collectives fail. Fix: pip install nvidia-nccl-cu{cuda_mm[0]}"
        ),
    )
    print(f"NCCL {version} from {owner}: {libs[0][0]}")


# --------------------------------------------------------------------------
# smoke: architecture and kernels
# --------------------------------------------------------------------------


@pytest.mark.xdist_group("kernels")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.torch
def test_arch_list_covers_device(driver, kernels):
    info = require(kernels)["info"]
    compiled = gpu_policy.cuda_int(info["compiled_cuda"])
    ptx_jit = gpu_policy.driver_policy(driver.driver_cuda, compiled, driver.driver_version).ptx_jit
    cov = gpu_policy.arch_coverage(
        tuple(info["capability"]),
        info["arch_list"],
        ptx_jit,
        device=info["name"],
        who=f"torch {info['torch']}",
    )
    print(cov.message)
    ensure(cov.ok, cov.message)


@pytest.mark.xdist_group("kernels")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.parametrize("check", ["sum", "matmul_fp16", "matmul_bf16", "conv_cudnn"])
@pytest.mark.torch
def test_kernel_runs_on_gpu(kernels, check):
    data = require(kernels)
    if check == "matmul_bf16" and not data["info"].get("bf16_supported"):
        pytest.skip(f"{data['info'].get('name')} does not support bfloat16 (compute capability < 8.0)")
    detail = data["checks"].get(check, {}).get("detail", "")
    hint = gpu_policy.failure_hint(detail)
    expect(kernels, check, f"Fix: {hint}" if hint else "")


# --------------------------------------------------------------------------
# full: NVRTC, and errors that must raise
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nvrtc():
    return gpu_host.run_python("nvrtc", [], timeout=240)


@pytest.mark.xdist_group("nvrtc")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.torch
def test_nvrtc_jiterator_kernel(nvrtc):
    expect(
        nvrtc,
        "jiterator",
        "NVRTC compiles kernels at run time (jiterator, torch.compile's fallbacks): libnvrtc must be "
        "present and of torch's CUDA. Fix: install nvidia-cuda-nvrtc for torch's CUDA",
    )


@pytest.mark.xdist_group("nvrtc")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.torch
def test_bad_device_index_raises(nvrtc):
    expect(
        nvrtc,
        "bad_device_index",
        "Selecting a device that does not exist must raise, never fall back to another device",
    )


@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.torch
def test_device_side_assert_raises():
    result = gpu_host.run_python("device_assert", [], timeout=180)
    expect(
        result,
        "device_assert",
        "Errors inside kernels must surface as exceptions, or wrong results pass silently",
    )
