"""SASS and PTX against a GPU: which compiled code runs on which compute capability, and which driver
can JIT-compile which PTX. One home for these rules: the GPU suite (inside images), `invoke doctor`,
the audit of an image's binaries and its prediction all ask here. Stdlib only.

- SASS ``sm_XY`` runs on compute capability X.Z for Z >= Y (same major); ``sm_XYa`` only on exactly X.Y.
- PTX ``compute_XY`` JIT-compiles for any GPU of X.Y or newer, if the driver knows the PTX ISA version
  it was written in (``PTX_ISA_CUDA``); arch-specific PTX (``a``) only for its own GPU, family PTX
  (``f``) within its major.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from imagematrix.core import nvidia

# PTX ISA version -> the CUDA release that introduced it: a driver JIT-compiles PTX up to the ISA of the
# CUDA version it supports (nvidia-smi's "CUDA Version"). NVIDIA's data, in ``core/data/nvidia.json``.
PTX_ISA_CUDA = nvidia.PTX_ISA_CUDA


def ptx_isa_cuda(isa: tuple[int, int]) -> tuple[int, int] | None:
    """The CUDA version whose driver first JIT-compiles PTX ISA ``isa`` (None: an ISA this table lacks)."""
    return PTX_ISA_CUDA.get(tuple(isa))  # type: ignore[arg-type]


_ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")


@dataclass(frozen=True)
class Arch:
    kind: str  # "sm" (SASS) or "compute" (PTX)
    major: int
    minor: int
    suffix: str  # "", "a" (arch-specific: exact match only) or "f" (family)

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.major}{self.minor}{self.suffix}"


def parse_arch(entry: str) -> Arch | None:
    m = _ARCH.match(entry.strip())
    if not m:
        return None
    return Arch(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4))


def sass_runs_on(arch: Arch, cc: tuple[int, int]) -> bool:
    """SASS sm_XY runs on the same major with minor >= Y; sm_XYa only on exactly X.Y."""
    if arch.kind != "sm":
        return False
    if arch.suffix == "a":
        return (arch.major, arch.minor) == tuple(cc)
    return arch.major == cc[0] and arch.minor <= cc[1]


def ptx_jits_on(arch: Arch, cc: tuple[int, int]) -> bool:
    """PTX compute_XY JIT-compiles for any newer GPU (arch-specific PTX only for its own)."""
    if arch.kind != "compute":
        return False
    if arch.suffix == "a":
        return (arch.major, arch.minor) == tuple(cc)
    if arch.suffix == "f":
        return arch.major == cc[0] and arch.minor <= cc[1]
    return (arch.major, arch.minor) <= tuple(cc)


@dataclass(frozen=True)
class Coverage:
    ok: bool
    via: str  # "sass:sm_90", "ptx:compute_90" or ""
    message: str


def arch_coverage(
    cc: tuple[int, int],
    arch_list: Iterable[str],
    ptx_jit: bool = True,
    device: str = "this GPU",
    who: str = "torch",
) -> Coverage:
    arches = [a for a in (parse_arch(e) for e in arch_list) if a]
    sm = f"sm_{cc[0]}{cc[1]}"
    shipped = " ".join(a.name for a in arches) or "nothing"
    for a in arches:
        if sass_runs_on(a, cc):
            return Coverage(True, f"sass:{a.name}", f"{device} ({sm}) runs {who}'s SASS {a.name}")
    ptx = [a for a in arches if ptx_jits_on(a, cc)]
    if ptx and ptx_jit:
        return Coverage(
            True,
            f"ptx:{ptx[-1].name}",
            f"{device} ({sm}) has no SASS in {who}; its PTX {ptx[-1].name} is JIT-compiled at first "
            "use (slow start, needs a driver that supports the image's CUDA natively)",
        )
    why = (
        f"its PTX ({' '.join(a.name for a in ptx)}) cannot be JIT-compiled because the driver runs this "
        "CUDA only under minor-version compatibility"
        if ptx
        else "and no PTX it could JIT-compile"
    )
    return Coverage(
        False,
        "",
        f"{device} is {sm} (compute capability {cc[0]}.{cc[1]}) but {who} ships only {shipped}: no "
        f"SASS for the {sm} family {why}. This is 'no kernel image is available for execution on the "
        f"device' / '{sm} is not compatible with the current PyTorch installation'. Fix: use a build "
        f"whose arch list includes {sm} (TORCH_CUDA_ARCH_LIST='{cc[0]}.{cc[1]}' for source builds; "
        "newer CUDA wheels for new GPUs, e.g. cu128+ for sm_120, while cu13 wheels start at sm_75)",
    )


def elf_arches(cuobjdump_list_elf: str) -> list[str]:
    """`cuobjdump --list-elf x.so` lines like 'ELF file 1: x.1.sm_90.cubin' -> ['sm_90']."""
    return sorted(set(re.findall(r"\.(sm_\d+[af]?)\.cubin", cuobjdump_list_elf)))


def ptx_arches(cuobjdump_list_ptx: str) -> list[str]:
    """`cuobjdump --list-ptx x.so` lines like 'PTX file 1: x.1.sm_80.ptx' -> ['compute_80']."""
    return sorted({"compute_" + a for a in re.findall(r"\.sm_(\d+[af]?)\.ptx", cuobjdump_list_ptx)})


def ptx_versions(cuobjdump_ptx: str) -> list[tuple[str, tuple[int, int]]]:
    """`cuobjdump -ptx x.so` -> [(compute_80, (9, 0)), ...]: each PTX's arch and its ISA version, read from
    the fat binary's header lines ('arch = sm_80', 'code version = [9,0]'), not from the PTX text."""
    out, arch = [], None
    for line in cuobjdump_ptx.splitlines():
        m = re.match(r"\s*arch = sm_(\d+[af]?)\s*$", line)
        if m:
            arch = "compute_" + m.group(1)
            continue
        m = re.match(r"\s*code version = \[(\d+),(\d+)\]\s*$", line)
        if m and arch:
            out.append((arch, (int(m.group(1)), int(m.group(2)))))
            arch = None
    return out
