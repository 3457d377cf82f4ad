"""The catalogue the prediction is made against: GPUs (name -> compute capability) and driver branches.

Data, kept here only; docs/compatibility.md lists it. Compute capabilities from NVIDIA's "CUDA GPUs"
table (developer.nvidia.com/cuda-gpus); Thor is 11.0 from CUDA 13.0 on (10.1 before). A GPU's
``min_branch`` is the first driver branch that knows it (Blackwell: R570 with CUDA 12.8; GB10 and
Thor: R580 with CUDA 13.0); ``max_branch`` the last one that supports it (R580 is the last branch
for Maxwell, Pascal and Volta, as NVIDIA announced with CUDA 13.0). Driver branches are named by
their major version; the CUDA each supports natively comes from ``cuda_compat.NATIVE_DRIVER``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagematrix.core import nvidia
from imagematrix.core.errors import UsageError


@dataclass(frozen=True)
class Gpu:
    name: str
    cc: tuple[int, int]
    min_branch: int = 0
    max_branch: int | None = None

    @property
    def sm(self) -> str:
        return f"sm_{self.cc[0]}{self.cc[1]}"


GPUS: tuple[Gpu, ...] = (
    Gpu("V100", (7, 0), max_branch=580),
    Gpu("T4", (7, 5)),
    Gpu("A100", (8, 0)),
    Gpu("A10", (8, 6)),
    Gpu("RTX 3090", (8, 6)),
    Gpu("L4", (8, 9)),
    Gpu("RTX 4090", (8, 9)),
    Gpu("H100", (9, 0)),
    Gpu("H200", (9, 0)),
    Gpu("B200", (10, 0), min_branch=570),
    Gpu("Thor", (11, 0), min_branch=580),
    Gpu("RTX 5090", (12, 0), min_branch=570),
    Gpu("GB10", (12, 1), min_branch=580),
)
# Driver branches the prediction is made for: every branch of NVIDIA's data whose native CUDA is known.
BRANCHES: tuple[int, ...] = tuple(b.branch for b in nvidia.BRANCH_DATA if b.cuda is not None)


def gpu(name_or_cc: str) -> Gpu:
    """A GPU by name (``H100``, case and spaces ignored) or by compute capability (``9.0``)."""
    key = name_or_cc.replace(" ", "").lower()
    for g in GPUS:
        if g.name.replace(" ", "").lower() == key or f"{g.cc[0]}.{g.cc[1]}" == name_or_cc:
            return g
    major, _, minor = name_or_cc.partition(".")
    if major.isdigit() and minor.isdigit():
        return Gpu(f"sm_{major}{minor}", (int(major), int(minor)))
    raise KeyError(name_or_cc)


def nearest_branch(driver: str) -> int:
    """The catalogue's branch for a driver version (``580.159.04`` -> 580)."""
    return int(driver.split(".")[0])


def asked(name: str | None, driver: str | None) -> tuple[Gpu | None, str | None]:
    """``--gpu`` and ``--driver`` as a command was given them: both or neither, a GPU of the catalogue or a
    compute capability, a driver version or branch (UsageError otherwise)."""
    if bool(name) != bool(driver):
        raise UsageError("--gpu and --driver go together (e.g. --gpu H100 --driver 580.159.04)")
    if driver and not re.fullmatch(r"\d{3}(\.\d{1,3}){0,2}", driver):
        raise UsageError(f"--driver {driver!r}: a driver version such as 580.159.04, or a branch such as 580")
    if not name:
        return None, None
    try:
        return gpu(name), driver
    except KeyError:
        raise UsageError(
            f"--gpu {name!r}: not in the catalogue ({', '.join(g.name for g in GPUS)}) and not a "
            "compute capability such as 9.0"
        ) from None
