"""Slim runtime images still work: every shared library resolves, torch imports, what C++ builds need is kept.

The C++ load_inline build itself runs in every cell that declares cpp_extension (test_cpp_extension.py).

Runs inside a runtime image (manifest kind "runtime"); other kinds skip. What the
prune stage (dockerfiles/prune-env.Dockerfile) removed must not be something the
environment needs, and what the sheet says runtime keeps must still be there.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gpu_host
import pytest

pytestmark = pytest.mark.smoke

# Interpreter prefixes that belong to the OS, not to the environment the runtime copied.
SYSTEM_PREFIXES = frozenset({"/usr", "/usr/local"})

# Libraries the image must NOT carry: the host provides them. (library glob, missing soname glob, why)
HOST_PROVIDED = (
    ("*", "libcuda.so.1", "the NVIDIA driver, mounted by the NVIDIA container runtime"),
    ("*", "libnvidia-ml.so.1", "the NVIDIA driver (NVML), mounted by the NVIDIA container runtime"),
    (
        "*/nvidia/nvshmem/lib/nvshmem_transport_*.so*",
        "lib*",
        "NVSHMEM network transports (UCX, libfabric, mlx5, GPUNetIO): dlopen()ed only when "
        "NVSHMEM_REMOTE_TRANSPORT selects one; the host's fabric stack provides its libraries",
    ),
    (
        "*/nvidia/nvshmem/lib/nvshmem_bootstrap_*.so*",
        "lib*",
        "NVSHMEM bootstraps (MPI, OpenSHMEM, PMIx): dlopen()ed only when NVSHMEM_BOOTSTRAP selects one",
    ),
    (
        "*/nvidia/*/lib/libcufile_rdma.so*",
        "lib*",
        "GPUDirect Storage over RDMA: needs rdma-core (libibverbs, librdmacm, libmlx5) on the host",
    ),
)
# A second copy of what the torch wheels ship, in the OS (a CUDA base image left in by mistake).
CUDA_LIB_GLOBS = (
    "libcudart.so*",
    "libcublas*.so*",
    "libcudnn*.so*",
    "libnccl.so*",
    "libcusparse.so*",
)
OS_LIB_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local", "/lib", "/lib64")
CONDA_MARKERS = (
    "/opt/conda",
    "/opt/miniforge3",
    "/opt/miniconda3",
    "/root/miniforge3",
    "/root/miniconda3",
)
# prune-env drops these (and __pycache__, which a running interpreter may write again: not checked).
PRUNED_TEST_DIRS = ("tests", "test")


@pytest.fixture(scope="module", autouse=True)
def _runtime_only(cell):
    if cell.kind != "runtime":
        pytest.skip(f"cell {cell.id} is a {cell.kind!r} image; slim checks apply to runtime images only")


@pytest.fixture(scope="module")
def env_roots() -> list[Path]:
    """The trees a runtime stage copies: the venv, and the interpreter when it is not the OS's."""
    roots = {sys.prefix, sys.base_prefix} - SYSTEM_PREFIXES
    return [Path(r) for r in sorted(roots)]


def _walk(roots: list[Path]):
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            yield Path(dirpath), dirnames, filenames


@pytest.fixture(scope="module")
def env_files(env_roots) -> list[Path]:
    return [d / f for d, _, files in _walk(env_roots) for f in files]


def _shared_libraries(files: list[Path]) -> list[Path]:
    return [p for p in files if (p.name.endswith(".so") or ".so." in p.name) and p.is_file() and not p.is_symlink()]


def missing_from_ldd(output: str) -> list[str]:
    """Sonames ldd could not find ('libfoo.so.1 => not found')."""
    return [line.split("=>")[0].strip() for line in output.splitlines() if line.rstrip().endswith("=> not found")]


def host_provided(library: str, soname: str, declared=()) -> str | None:
    """Why ``soname`` may stay unresolved for ``library``: the host's, or the matrix's optional_libraries."""
    for lib_glob, name_glob, why in (*HOST_PROVIDED, *declared):
        if fnmatch.fnmatch(library, lib_glob) and fnmatch.fnmatch(soname, name_glob):
            return why
    return None


def test_test_suites_were_pruned(env_roots, cell):
    if cell.keep_tests:
        pytest.skip(f"cell {cell.id} keeps test directories on purpose (targets.{cell.target}.options.keep_tests)")
    left = [
        str(d / name)
        for d, dirnames, _ in _walk(env_roots)
        for name in list(dirnames)
        if name in PRUNED_TEST_DIRS and "include" not in (d / name).parts
    ]
    assert not left, (
        f"{len(left)} test-suite directories are still in the environment, e.g. {', '.join(left[:5])}. "
        "Fix: list prune-env in the target's 'prune' (matrix.yaml), which drops them in the throw-away prune stage, "
        f"or set targets.{cell.target}.options.keep_tests: true if they stay on purpose"
    )


@pytest.mark.torch
def test_kept_what_cpp_extension_needs(env_roots):
    import torch

    tdir = Path(torch.__file__).parent
    needed = {
        "torch/include (C++ headers)": tdir / "include" / "torch" / "extension.h",
        "torch/share (CMake config)": tdir / "share" / "cmake" / "Torch" / "TorchConfig.cmake",
        "functorch (torch.compile, vmap)": tdir.parent / "functorch",
    }
    nvidia = tdir.parent / "nvidia"
    if nvidia.is_dir():  # CUDA wheels: their headers let CUDA extensions build against them
        headers = sorted(nvidia.glob("*/include/*.h"))
        needed["nvidia/*/include (NVIDIA headers)"] = headers[0] if headers else nvidia / "*" / "include"
    gone = [f"{what}: {path}" for what, path in needed.items() if not path.exists()]
    assert not gone, (
        "the runtime lost what the sheet says it keeps:\n  "
        + "\n  ".join(gone)
        + "\nFix: do not remove include/, share/ or functorch in dockerfiles/prune-env.Dockerfile"
    )


def test_no_second_copy_of_cuda_or_conda(env_roots):
    dupes = []
    for top in OS_LIB_DIRS:
        if not os.path.isdir(top) or any(str(r).startswith(top + "/") for r in env_roots):
            continue
        for d, _, files in os.walk(top):
            dupes += [str(Path(d) / f) for f in files if any(fnmatch.fnmatch(f, g) for g in CUDA_LIB_GLOBS)]
    conda = [m for m in CONDA_MARKERS if os.path.exists(m)]
    conda += [str(r / "conda-meta") for r in env_roots if (r / "conda-meta").exists()]
    assert not dupes, (
        f"CUDA libraries outside the environment ({len(dupes)}), e.g. {', '.join(dupes[:5])}: the torch wheels "
        "already carry them. Fix: use a plain base (cuda.*.bases.runtime in matrix.yaml), not a CUDA image"
    )
    assert not conda, f"a conda installation is in the runtime image: {', '.join(conda)}. Fix: copy only the env"


def test_symlinks_resolve(env_roots):
    dangling = []
    for d, dirnames, files in _walk(env_roots):
        for name in (*dirnames, *files):
            p = d / name
            if p.is_symlink() and not p.exists():
                dangling.append(f"{p} -> {os.readlink(p)}")
    assert not dangling, (
        f"{len(dangling)} dangling symlinks, e.g.\n  "
        + "\n  ".join(dangling[:10])
        + "\nFix: the runtime base must provide what they point at (the venv's python points at its "
        "interpreter: install it in the os-*-runtime fragment, or copy it with copy-python)"
    )


def test_every_shared_library_resolves(env_files, cell):
    libs = _shared_libraries(env_files)
    if not libs and not cell.holds_torch:
        pytest.skip(f"the environment under {sys.prefix} holds no shared libraries: nothing to resolve")
    assert libs, f"no shared libraries under {sys.prefix}: is torch installed in this environment?"
    in_env = {p.name for p in env_files}  # sonames the environment itself supplies
    env = {**os.environ, "LC_ALL": "C"}

    def ldd(lib: Path):
        return lib, gpu_host.run_command(["ldd", str(lib)], timeout=120, env=env)

    broken, tolerated, by_env = [], {}, 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for lib, (rc, out, timed_out) in pool.map(ldd, libs):
            if rc is None or timed_out:
                broken.append(f"{lib}: ldd did not run ({out.strip()[:200]})")
                continue
            for soname in missing_from_ldd(out):
                why = host_provided(str(lib), soname, cell.optional_libraries)
                if why:
                    tolerated.setdefault(why, set()).add(soname)
                elif soname in in_env:
                    by_env += 1  # no RUNPATH to it, but its owner (torch, triton) loads it first
                else:
                    broken.append(f"{lib}: {soname} => not found")
    print(f"{len(libs)} shared libraries checked; {by_env} needs met by libraries their owners load first")
    for why, names in tolerated.items():
        print(f"tolerated ({why}): {', '.join(sorted(names))}")
    assert not broken, (
        f"{len(broken)} unresolved dependencies:\n  "
        + "\n  ".join(broken[:30])
        + "\nFix: the prune stage removed a library, or the runtime base lacks an OS library (add its package "
        "to the os-*-runtime fragment). If the host provides it, or the environment loads it only on request, "
        "list it under the target's optional_libraries in matrix.yaml with the reason"
    )


@pytest.mark.torch
def test_torch_imports_in_a_fresh_interpreter():
    code = "import torch, functorch, torch.utils.cpp_extension; print(torch.__version__, torch.version.cuda)"
    rc, out, timed_out = gpu_host.run_command([sys.executable, "-c", code], timeout=300)
    assert rc == 0 and not timed_out, f"`python -c 'import torch'` failed (rc {rc}):\n{out[-3000:]}"
    print(out.strip())
