"""The JIT toolchains' verdicts: code an image compiles at run time, beside what it ships compiled.

``predict`` judges the device code in the image's files. Three toolchains make more at run time, and each
can fail where the shipped code runs:

- **torch.compile** compiles its kernels with Triton, which hands PTX to the ``ptxas`` it bundles (or
  ``TRITON_PTXAS_PATH``): a ptxas that predates the GPU fails on the first kernel ("Value 'sm_90a' is not
  defined for option 'gpu-name'"); the cubins it makes need a driver of its CUDA major.
- **NVRTC** (torch's jiterator, CuPy, custom kernels) compiles CUDA C++ at run time: to SASS when it knows
  the GPU, else to PTX of its own ISA, which only a driver of its CUDA version or newer JIT-compiles ("the
  provided PTX was compiled with an unsupported toolchain").
- **cpp_extension** builds with the image's ``nvcc``: torch refuses an nvcc of another CUDA major than its
  own, and an nvcc that predates the GPU cannot target it.

The facts come from the scan (``toolchains``: Triton's version and its ptxas's release, NVRTC's, nvcc's,
torch's CUDA); which toolkit targets which GPU and which driver runs which CUDA come from NVIDIA's data
(``core.nvidia``). Absent toolchain: no verdict (``None``); a fact the scan could not read: ``?``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from imagematrix.core.cuda_compat import branch_cuda, fmt_mm, native_driver
from imagematrix.core.nvidia import ARCHES, toolkit_targets
from imagematrix.core.verdict import Mark, Verdict
from imagematrix.oracle.gpus import Gpu

TOOLS = ("torch.compile", "nvrtc", "cpp_extension")


def _mm(text: object) -> tuple[int, int] | None:
    m = re.match(r"^\s*(\d+)\.(\d+)", str(text or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _since(gpu: Gpu) -> str:
    support = ARCHES.get(gpu.sm)
    return f"CUDA {fmt_mm(support.since)}" if support else "a toolkit that knows it"


def _unknown(why: str) -> Verdict:
    return Verdict(Mark.UNKNOWN, (why,), "")


def torch_compile(tools: Mapping[str, Any], gpu: Gpu, driver: str) -> Verdict | None:
    triton = tools.get("triton")
    if not isinstance(triton, dict):
        return None
    release = _mm(triton.get("ptxas_release"))
    where = f"Triton {triton.get('version')}'s ptxas ({triton.get('ptxas_from') or 'not found'})"
    if release is None:
        return _unknown(f"{where}: its release could not be read")
    knows = toolkit_targets(release, gpu.cc)
    if knows is None:
        return _unknown(f"{gpu.sm} is not in NVIDIA's data: whether ptxas {fmt_mm(release)} targets it is unknown")
    if not knows:
        return Verdict(
            Mark.FAILS,
            (
                f"{where} is CUDA {fmt_mm(release)}, which does not target {gpu.name} ({gpu.sm}): torch.compile "
                f"fails at its first kernel ('ptxas fatal: Value '{gpu.sm}a' is not defined')",
            ),
            f"a Triton whose ptxas targets {gpu.sm} ({_since(gpu)} or newer), or TRITON_PTXAS_PATH to such a ptxas",
        )
    driver_cuda = branch_cuda(driver)
    if driver_cuda is not None and release[0] > driver_cuda[0]:
        return Verdict(
            Mark.FAILS,
            (
                f"{where} makes CUDA {release[0]} cubins; driver R{driver.split('.')[0]} runs CUDA "
                f"{fmt_mm(driver_cuda)}",
            ),
            f"a driver of the CUDA {release[0]} branch ({native_driver((release[0], 0)) or 'newer'} or newer)",
        )
    return Verdict(Mark.RUNS, (f"{where} is CUDA {fmt_mm(release)} and targets {gpu.sm}",))


def nvrtc(tools: Mapping[str, Any], gpu: Gpu, driver: str) -> Verdict | None:
    found = tools.get("nvrtc")
    if not isinstance(found, dict):
        return None
    versions = sorted(filter(None, (_mm(v) for v in found.get("versions") or [])))
    if not versions:
        return _unknown("NVRTC's minor version could not be read (a library named by its major only)")
    release = versions[-1]
    driver_cuda = branch_cuda(driver)
    branch = driver.split(".")[0]
    if driver_cuda is None:
        return _unknown(f"the CUDA driver R{branch} runs is not in NVIDIA's data")
    knows = toolkit_targets(release, gpu.cc)
    if driver_cuda >= release:
        return Verdict(Mark.RUNS, (f"NVRTC {fmt_mm(release)}'s PTX is JIT-compiled by R{branch}",))
    if knows and driver_cuda[0] == release[0]:
        return Verdict(
            Mark.WARNS,
            (
                f"NVRTC {fmt_mm(release)} compiles SASS for {gpu.sm} (torch's jiterator asks for it), but PTX it "
                f"makes is newer than R{branch} (CUDA {fmt_mm(driver_cuda)}) can JIT: code that asks NVRTC for PTX "
                "fails with 'the provided PTX was compiled with an unsupported toolchain'",
            ),
            f"a driver of {native_driver(release) or 'a newer branch'} or newer",
        )
    return Verdict(
        Mark.FAILS,
        (
            f"NVRTC {fmt_mm(release)} "
            + ("does not target " + gpu.sm if not knows else f"makes CUDA {release[0]} code")
            + f" and R{branch} (CUDA {fmt_mm(driver_cuda)}) cannot JIT its PTX",
        ),
        f"a driver of {native_driver(release) or 'a newer branch'} or newer",
    )


def cpp_extension(tools: Mapping[str, Any], gpu: Gpu, driver: str) -> Verdict | None:
    nvcc = tools.get("nvcc")
    if not isinstance(nvcc, dict):
        return None
    release = _mm(nvcc.get("release"))
    if release is None:
        return _unknown(f"the release of {nvcc.get('path')} could not be read")
    torch_cuda = _mm(tools.get("torch_cuda"))
    if torch_cuda is not None and torch_cuda[0] != release[0]:
        return Verdict(
            Mark.FAILS,
            (
                f"nvcc {fmt_mm(release)} ({nvcc.get('path')}) and torch's CUDA {fmt_mm(torch_cuda)}: torch refuses "
                f"to build ('The detected CUDA version ({fmt_mm(release)}) mismatches the version that was used "
                f"to compile PyTorch ({fmt_mm(torch_cuda)})')",
            ),
            f"an nvcc of CUDA {torch_cuda[0]}.x in the image (CUDA_HOME)",
        )
    knows = toolkit_targets(release, gpu.cc)
    if knows is None:
        return _unknown(f"{gpu.sm} is not in NVIDIA's data: whether nvcc {fmt_mm(release)} targets it is unknown")
    if not knows:
        return Verdict(
            Mark.FAILS,
            (f"nvcc {fmt_mm(release)} does not target {gpu.name} ({gpu.sm}): 'Unsupported gpu architecture'",),
            f"an nvcc of {_since(gpu)} or newer",
        )
    driver_cuda = branch_cuda(driver)
    if driver_cuda is not None and release[0] > driver_cuda[0]:
        return Verdict(
            Mark.FAILS,
            (
                f"extensions built by nvcc {fmt_mm(release)} need a CUDA {release[0]} driver; R{driver.split('.')[0]} "
                f"runs CUDA {fmt_mm(driver_cuda)}",
            ),
            f"a driver of the CUDA {release[0]} branch",
        )
    return Verdict(Mark.RUNS, (f"nvcc {fmt_mm(release)} matches torch's CUDA and targets {gpu.sm}",))


def verdicts(audit: Mapping[str, Any], gpu: Gpu, driver: str) -> dict[str, Verdict]:
    """Each JIT toolchain the image has, judged for ``gpu`` and ``driver`` (absent ones left out)."""
    found = audit.get("toolchains")
    tools: Mapping[str, Any] = found if isinstance(found, dict) else {}
    out = {
        "torch.compile": torch_compile(tools, gpu, driver),
        "nvrtc": nvrtc(tools, gpu, driver),
        "cpp_extension": cpp_extension(tools, gpu, driver),
    }
    return {k: v for k, v in out.items() if v is not None}
