"""NVIDIA's CUDA compatibility rules (Linux x86_64): which driver runs which CUDA build.

One home for the tables and the decision, used by the GPU suite inside images
(tests/gpu/gpu_policy.py re-exports them) and by `invoke doctor` on the host.
Stdlib only: it is mounted into images with the image contract.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from imagematrix.core import nvidia


def cuda_int(value: int) -> tuple[int, int] | None:
    """CUDA's integer versions (12080, 13000) -> (12, 8); -1/0/None -> None."""
    if value is None or value <= 0:
        return None
    return value // 1000, (value % 1000) // 10


def fmt_mm(mm: Sequence[int] | None) -> str:
    return "none" if mm is None else f"{mm[0]}.{mm[1]}"


def version_tuple(version: str) -> tuple[int, ...]:
    """'580.159.04' -> (580, 159, 4); ignores anything after the numbers."""
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", str(version))
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(p) for p in m.group(1).split("."))


# The Linux x86_64 driver each toolkit release requires, and the oldest driver of each major's branch
# (minor-version compatibility, no PTX JIT): NVIDIA's data, kept in ``core/data/nvidia.json``.
NATIVE_DRIVER = nvidia.NATIVE_DRIVER
MINOR_COMPAT_DRIVER = nvidia.MINOR_COMPAT_DRIVER


def native_driver(cuda: tuple[int, int]) -> str | None:
    """Driver needed to run CUDA X.Y natively (the next known toolkit's if X.Y was never released, e.g.
    12.7); None when the data does not have it (an unknown floor, never assumed native)."""
    if cuda in nvidia.TOOLKITS and nvidia.TOOLKITS[cuda] is None:
        return None
    if cuda in NATIVE_DRIVER:
        return NATIVE_DRIVER[cuda]
    newer = sorted(k for k in NATIVE_DRIVER if k > cuda and k[0] == cuda[0])
    return NATIVE_DRIVER[newer[0]] if newer else None


def branch_cuda(driver: str) -> tuple[int, int] | None:
    """The newest CUDA a driver (``580.65.06``, or a branch ``580``) supports natively, from the table."""
    v = version_tuple(driver)
    fits = [
        cuda
        for cuda, native in NATIVE_DRIVER.items()
        if version_tuple(native)[: len(v)] <= v or (len(v) == 1 and version_tuple(native)[0] == v[0])
    ]
    return max(fits) if fits else None


@dataclass(frozen=True)
class DriverDecision:
    ok: bool
    mode: str  # "native" | "minor-compat" | "unsupported"
    ptx_jit: bool
    message: str


def driver_policy(
    driver_cuda: tuple[int, int],
    image_cuda: tuple[int, int],
    driver_version: str | None = None,
    subject: str = "this image",
) -> DriverDecision:
    """Can a driver that reports CUDA `driver_cuda` run code built with CUDA `image_cuda`?"""
    dv = driver_version or "(version unknown)"
    head = f"driver {dv} supports CUDA <= {fmt_mm(driver_cuda)}"
    native = native_driver(image_cuda)
    branch_min = MINOR_COMPAT_DRIVER.get(image_cuda[0])
    need = (
        f"{subject} needs >= {native or 'a driver for'} for CUDA {fmt_mm(image_cuda)} native"
        if native
        else f"{subject} needs a driver that supports CUDA {fmt_mm(image_cuda)} natively"
    )
    if branch_min:
        need += f", or >= {branch_min} with minor-version compatibility and no PTX JIT"

    if tuple(driver_cuda) >= tuple(image_cuda):
        return DriverDecision(
            True,
            "native",
            True,
            f"{head}; {subject} is built for CUDA {fmt_mm(image_cuda)}: supported natively (PTX JIT works)",
        )

    same_major = driver_cuda[0] == image_cuda[0]
    branch_ok = branch_min is not None and (
        driver_version is None or version_tuple(driver_version) >= version_tuple(branch_min)
    )
    if same_major and branch_ok:
        return DriverDecision(
            True,
            "minor-compat",
            False,
            f"{head}; {need}. Running under minor-version compatibility: kernels must ship as SASS "
            "for this GPU, PTX cannot be JIT-compiled ('the provided PTX was compiled with an "
            f"unsupported toolchain'). For full support upgrade the driver to >= {native or 'a newer branch'}.",
        )
    fix = f"upgrade the host driver to >= {native}" if native else "upgrade the host driver"
    if branch_min:
        fix += f" (any {image_cuda[0]}.x driver >= {branch_min} works without PTX JIT)"
    fix += f", or use an image built for CUDA <= {fmt_mm(driver_cuda)}"
    M, m = image_cuda
    return DriverDecision(
        False,
        "unsupported",
        False,
        f"{head}; {need}. This is 'CUDA driver version is insufficient for CUDA runtime version'. "
        f"Fix: {fix}. Forward compatibility (package cuda-compat-{M}-{m}, libs in "
        f"/usr/local/cuda-{M}.{m}/compat on LD_LIBRARY_PATH) works on datacenter GPUs only.",
    )
