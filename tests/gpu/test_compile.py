"""Area 4: torch.compile (inductor + triton): preflight, CPU and CUDA against eager, non-root."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
import uuid
import warnings
from pathlib import Path

import gpu_host
import gpu_policy
import pytest
from gpu_support import ensure, expect, require

pytestmark = pytest.mark.torch_compile

COMPILE_FIX = {
    "Failed to find C compiler": "install gcc (apt-get install gcc) or set CC",
    "Python.h": "install the interpreter's headers (python3.X-dev)",
    "libcuda.so cannot found": "make libcuda.so.1 findable: `ldconfig`, or set TRITON_LIBCUDA_PATH to its directory",
    "cannot find -lcuda": "make libcuda.so findable by the linker: `ldconfig`, or set TRITON_LIBCUDA_PATH",
    "uid not found": "set ENV USER=<name> in the image (getpass.getuser() reads $USER before "
    "/etc/passwd; torch's inductor calls it on import), or run with a uid /etc/passwd knows",
    "Permission denied": "point TRITON_CACHE_DIR and TORCHINDUCTOR_CACHE_DIR at writable dirs (e.g. under /tmp) in "
    "the image's ENV",
}


def _compile_fix(detail: str) -> str:
    for needle, fix in COMPILE_FIX.items():
        if needle in detail:
            return f"Fix: {fix}"
    hint = gpu_policy.failure_hint(detail)
    return f"Fix: {hint}" if hint else ""


def _c_compiler() -> str | None:
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


@pytest.mark.smoke
def test_compile_toolchain_preflight():
    problems = []
    if not _c_compiler():
        problems.append(
            "no C compiler (CC, cc, gcc, clang): triton builds its launcher and inductor its CPU kernels "
            "with one: 'Failed to find C compiler'. Fix: install gcc, or set CC"
        )
    python_h = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not python_h.exists():
        problems.append(f"{python_h} is missing: triton's launcher build fails. Fix: install python3.X-dev headers")
    ensure(not problems, "\n".join(problems))


@pytest.mark.smoke
@pytest.mark.cuda
def test_triton_importable():
    if importlib.util.find_spec("triton") is None:
        pytest.fail(
            "triton is not installed: torch.compile on CUDA (inductor) needs it. Fix: install the "
            "triton version torch pins (pip install torch pulls it for Linux x86_64)",
            pytrace=False,
        )
    import triton

    print(f"triton {triton.__version__}")


@pytest.mark.smoke
def test_compile_caches_writable():
    problems = []
    for var in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        path = Path(os.environ[var])
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".imagematrix-write-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            problems.append(f"{var}={path} is not writable ({exc}). Fix: point {var} at a writable dir")
    ensure(not problems, "\n".join(problems))


@pytest.mark.smoke
@pytest.mark.gpu
def test_triton_finds_libcuda():
    try:
        from triton.backends.nvidia.driver import libcuda_dirs
    except ImportError as exc:
        pytest.skip(f"this triton has no nvidia backend module to ask ({exc})")
    try:
        dirs = libcuda_dirs()
    except Exception as exc:
        pytest.fail(
            f"triton cannot locate libcuda: {exc}. This is 'libcuda.so cannot found!' at the first "
            "torch.compile. Fix: run `ldconfig` in the image (the NVIDIA container runtime mounts the "
            "driver libraries), or set TRITON_LIBCUDA_PATH",
            pytrace=False,
        )
    found = [d for d in dirs if any(Path(d).glob("libcuda.so*"))]
    ensure(
        found,
        f"triton's libcuda_dirs() returned {dirs} but none holds libcuda.so*. Fix: ldconfig or TRITON_LIBCUDA_PATH",
    )
    print(f"triton finds libcuda in {found}")


# --------------------------------------------------------------------------
# Compiles (each in a subprocess under a timeout)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compile_cpu():
    return gpu_host.run_python("compile", ["--device", "cpu"], timeout=600)


@pytest.fixture(scope="module")
def compile_cuda():
    return gpu_host.run_python(*gpu_policy.COMPILE_CUDA_PROBE, timeout=600)


@pytest.mark.full  # 65 s on the H100 host's CPU even warm: too slow for smoke
def test_compile_cpu_matches_eager(compile_cpu):
    detail = require(compile_cpu)["checks"].get("cpu_fp32", {}).get("detail", "")
    print(expect(compile_cpu, "cpu_fp32", _compile_fix(detail)))


@pytest.mark.xdist_group("compile_cuda")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_compile_cuda_matches_eager(compile_cuda, dtype):
    check = f"cuda_{dtype}"
    detail = require(compile_cuda)["checks"].get(check, {}).get("detail", "")
    print(expect(compile_cuda, check, _compile_fix(detail)))


@pytest.mark.full
@pytest.mark.gpu
def test_compile_unprivileged_readonly_home(identity, nonroot_env, suite_set_vars):
    if identity.uid is None and os.geteuid() == 0:
        pytest.skip(f"could not drop privileges: {identity.note}")
    env = nonroot_env(keep_suite_vars=False)
    result = gpu_host.run_python("compile", ["--device", "cuda"], timeout=600, env=env, uid=identity.uid)
    defaults = sorted(v for v in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR") if v in suite_set_vars)
    how = (
        f"with HOME=/ and {', '.join(defaults)} unset (the image's defaults)"
        if defaults
        else "with HOME=/ and per-user cache dirs under the given TRITON_CACHE_DIR/TORCHINDUCTOR_CACHE_DIR"
    )
    detail = require(result)["checks"].get("cuda_fp32", {}).get("detail", "")
    fix = _compile_fix(detail) or COMPILE_FIX["Permission denied"]
    print(
        expect(
            result,
            "cuda_fp32",
            f"{identity.label} {how} cannot torch.compile (e.g. \"Permission denied: '/.triton'\"). {fix}",
        )
    )
    print(f"compiled as {identity.label} {how}")


@pytest.mark.full
@pytest.mark.gpu
def test_compile_max_autotune_conv_net():
    result = gpu_host.run_python("autotune", [], timeout=600)
    detail = require(result)["checks"].get("max_autotune", {}).get("detail", "")
    print(expect(result, "max_autotune", _compile_fix(detail)))


@pytest.mark.full
def test_dev_shm_size():
    """Small /dev/shm is a warning, not a failure: it depends on how the container is started."""
    message = gpu_policy.shm_warning(gpu_host.shm_bytes())
    if message:
        warnings.warn(message, stacklevel=1)
    print(f"/dev/shm: {gpu_host.shm_bytes()} bytes")
