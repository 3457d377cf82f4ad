"""Area 3: torch.utils.cpp_extension: toolchain preflight and real load_inline builds."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import gpu_host
import gpu_policy
import pytest
from gpu_support import ensure, expect, require

pytestmark = pytest.mark.cpp_extension


def _include_paths(device: str) -> list[str]:
    from torch.utils import cpp_extension

    try:
        return cpp_extension.include_paths(device_type=device)
    except TypeError:  # torch < 2.6: include_paths(cuda: bool)
        return cpp_extension.include_paths(device == "cuda")
    except OSError:  # no CUDA_HOME: reported on its own
        return []


def _cxx() -> str | None:
    name = os.environ.get("CXX", "c++")
    return shutil.which(name) or (shutil.which("g++") if "CXX" not in os.environ else None)


@pytest.mark.smoke
def test_cpp_toolchain_preflight():
    from torch.utils import cpp_extension

    problems = []
    if not _cxx():
        problems.append(
            f"no C++ compiler ({os.environ.get('CXX', 'c++')} is not on PATH): load_inline and every source "
            "build fail. Fix: install g++ (apt-get install g++) or set CXX"
        )
    if not cpp_extension.is_ninja_available():
        problems.append(
            "ninja is not on PATH: 'Ninja is required to load C++ extensions'. Fix: pip install ninja "
            "(and put the environment's bin/ on PATH)"
        )
    python_h = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not python_h.exists():
        problems.append(
            f"{python_h} is missing: 'Python.h: No such file or directory'. Fix: install the "
            "interpreter's headers (python3.X-dev), or keep include/ in the image"
        )
    missing = [p for p in _include_paths("cpu") if not os.path.isdir(p)]
    if missing:
        problems.append(
            f"torch's include dirs are missing: {', '.join(missing)}. Fix: keep torch/include in the "
            "image (a slimmed runtime image must not delete it)"
        )
    ensure(not problems, "\n".join(problems))


@pytest.mark.smoke
@pytest.mark.cuda
@pytest.mark.cuda_extension
def test_cuda_toolchain_preflight(cell):
    import torch
    from torch.utils import cpp_extension

    problems = []
    home = cpp_extension.CUDA_HOME
    if not home or not os.path.isdir(home):
        problems.append(
            f"CUDA_HOME is {home!r}: 'CUDA_HOME environment variable is not set'. Fix: set "
            "CUDA_HOME=/usr/local/cuda in the image (and put $CUDA_HOME/bin on PATH)"
        )
    nvcc = os.path.join(home or "/usr/local/cuda", "bin", "nvcc")
    if not os.path.exists(nvcc):
        nvcc = shutil.which("nvcc") or ""
    version = None
    if nvcc:
        rc, out, _ = gpu_host.run_command([nvcc, "--version"], timeout=60)
        version = gpu_policy.parse_nvcc_version(out) if rc == 0 else None
    torch_mm = gpu_policy.major_minor(torch.version.cuda) if torch.version.cuda else None
    problem = gpu_policy.nvcc_problem(version, cell.cuda_mm, torch_mm)
    if problem:
        problems.append(problem)
    missing = [p for p in _include_paths("cuda") if not os.path.isdir(p)]
    if missing:
        problems.append(
            f"CUDA include dirs are missing: {', '.join(missing)}. Fix: install the toolkit headers (cuda-cudart-dev)"
        )
    ensure(not problems, "\n".join(problems))
    print(f"nvcc {gpu_policy.fmt_mm(version)} at {nvcc}; CUDA_HOME={home}")


# --------------------------------------------------------------------------
# Builds: one C++ (smoke) and one C++ + CUDA (full), unprivileged where possible
# --------------------------------------------------------------------------


def _build(identity, nonroot_env, build_tag, name, cuda):
    uid = identity.uid if identity.uid is not None else os.geteuid()
    root = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    home = gpu_host.private_dir(root, f"{build_tag}-uid{uid}", identity.uid)
    args = ["--build-dir", str(home / name), "--name", name] + (["--cuda"] if cuda else [])
    return gpu_host.run_python("inline", args, timeout=900, env=nonroot_env(), uid=identity.uid, cwd=str(home))


@pytest.fixture(scope="module")
def cpp_build(identity, nonroot_env, build_tag):
    return _build(identity, nonroot_env, build_tag, "imagematrix_cpp_probe", cuda=False)


@pytest.fixture(scope="module")
def cuda_build(identity, nonroot_env, build_tag):
    return _build(identity, nonroot_env, build_tag, "imagematrix_cuda_probe", cuda=True)


BUILD_FIX = (
    "Fix: read the compiler output above; run test_cpp_toolchain_preflight / test_cuda_toolchain_preflight "
    "for the usual causes (compiler, ninja, Python.h, CUDA_HOME, nvcc). A slim runtime needs g++, ninja and "
    "Python.h from its os-*-runtime fragment and torch/include kept by prune-env"
)


@pytest.mark.smoke
def test_load_inline_cpp(cpp_build, identity):
    print(expect(cpp_build, "build", BUILD_FIX))
    expect(cpp_build, "cpp")
    print(f"built as {identity.label}")


@pytest.mark.xdist_group("cuda_build")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.cuda
@pytest.mark.cuda_extension
def test_load_inline_cuda(cuda_build, identity):
    print(expect(cuda_build, "build", BUILD_FIX))
    expect(cuda_build, "cpp")
    detail = require(cuda_build)["checks"].get("cuda", {}).get("detail", "")
    hint = gpu_policy.failure_hint(detail)
    expect(cuda_build, "cuda", f"Fix: {hint}" if hint else "")


@pytest.mark.xdist_group("cuda_build")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.cuda
@pytest.mark.cuda_extension
def test_cuda_extension_has_sass_for_gpu(cuda_build):
    expect(cuda_build, "build", BUILD_FIX)
    expect(cuda_build, "sass")
    info = cuda_build.data["info"]
    if info.get("cuobjdump") is None:
        pytest.skip("cuobjdump is not in $CUDA_HOME/bin nor on PATH")
    cc = tuple(info["capability"])
    arches = gpu_policy.elf_arches(info["cuobjdump"])
    cov = gpu_policy.arch_coverage(
        cc, arches, ptx_jit=False, who=f"the built extension ({os.path.basename(info['library'])})"
    )
    ensure(
        cov.ok,
        cov.message + f"\nTORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(unset: the visible GPU)')}",
    )
    print(f"SASS {' '.join(arches)} for compute capability {cc[0]}.{cc[1]}")


@pytest.mark.xdist_group("cuda_build")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.cuda
@pytest.mark.cuda_extension
def test_extension_built_unprivileged(cuda_build, identity):
    data = require(cuda_build)
    if identity.uid is None and os.geteuid() == 0:
        pytest.skip(f"could not drop privileges: {identity.note}")
    uid = data["info"]["uid"]
    ensure(uid != 0, f"the build ran as uid {uid}")
    expect(
        cuda_build,
        "build",
        f"{identity.label} with HOME=/ could not build into {data['info'].get('build_dir')}: users running "
        "the image with --user hit this. " + BUILD_FIX,
    )
