"""A check of the PTX verdicts for GPUs we do not own: the driver's JIT is NVIDIA's compiler, and the same
compiler ships on PyPI (``ptxas`` in ``nvidia-cuda-nvcc`` for 13.x, ``nvidia-cuda-nvcc-cu12``/``-cu11``
before). A driver branch JIT-compiles PTX as the ptxas of the CUDA version it runs natively does, so for
a cell the prediction says runs by PTX JIT (⚠️) or fails for PTX too new (❌, CUDA error 222), the
image's own PTX is compiled with that ptxas for that GPU's architecture:

- it compiles ⇔ ⚠️ (the driver will JIT it);
- "Unsupported .version" ⇔ ❌ 222 (the driver refuses it: "the provided PTX was compiled with an
  unsupported toolchain").

Anything else (a ptxas that does not know the GPU, a crash) is "?": not a check. Calibrated on the GPU
machine against the real ``cuModuleLoadData`` (docs/compatibility.md). The ptxas binaries are fetched once
into ``$IMAGEMATRIX_PTXAS_CACHE`` (default ``~/.cache/imagematrix/ptxas``) with pip.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagematrix.core.arch import parse_arch, ptx_jits_on, sass_runs_on
from imagematrix.core.cuda_compat import branch_cuda, fmt_mm
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.verdict import Mark
from imagematrix.oracle.gpus import Gpu
from imagematrix.oracle.predict import UNSUPPORTED_PTX, kernel_objects, predict

CACHE_ENV = "IMAGEMATRIX_PTXAS_CACHE"
# The wheel that carries each CUDA minor's ptxas, and the version pin pip is given (the minor's newest).
WHEELS = {11: "nvidia-cuda-nvcc-cu11", 12: "nvidia-cuda-nvcc-cu12", 13: "nvidia-cuda-nvcc"}


class EmulateError(ImagematrixError):
    pass


def cache_dir() -> Path:
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path.home() / ".cache" / "imagematrix" / "ptxas"


def ptxas(cuda: tuple[int, int], cache: Path | None = None) -> Path:
    """The ptxas of CUDA ``cuda`` (major.minor), fetched from PyPI once (pip download, no dependencies)."""
    cache = cache or cache_dir()
    exe = cache / fmt_mm(cuda) / "ptxas"
    if exe.is_file():
        return exe
    wheel = WHEELS.get(cuda[0])
    if wheel is None:
        raise EmulateError(f"no PyPI wheel carries the ptxas of CUDA {fmt_mm(cuda)}")
    with tempfile.TemporaryDirectory(prefix="imagematrix-ptxas-") as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                f"{wheel}=={cuda[0]}.{cuda[1]}.*",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise EmulateError(f"pip could not fetch {wheel}=={fmt_mm(cuda)}.*: {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[-1]) as z:
            member = next((n for n in z.namelist() if n.endswith("/bin/ptxas")), None)
            if member is None:
                raise EmulateError(f"{wheels[-1].name} holds no ptxas")
            exe.parent.mkdir(parents=True, exist_ok=True)
            part = exe.with_name("ptxas.part")
            part.write_bytes(z.read(member))
            part.chmod(0o755)
            part.replace(exe)
    return exe


@dataclass(frozen=True)
class Outcome:
    verdict: Mark  # WARNS: it compiles (the driver JITs it); FAILS: PTX too new; UNKNOWN: not a check
    detail: str


def compile_ptx(exe: Path, ptx: str, gpu: Gpu) -> Outcome:
    """``ptx`` compiled by ``exe`` for ``gpu``'s architecture, as the driver's JIT would."""
    with tempfile.TemporaryDirectory(prefix="imagematrix-emulate-") as tmp:
        src = Path(tmp) / "in.ptx"
        src.write_text(ptx)
        done = subprocess.run(
            [str(exe), f"-arch={gpu.sm}", str(src), "-o", str(Path(tmp) / "out.cubin")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    said = (done.stderr or done.stdout).strip().splitlines()
    if done.returncode == 0:
        return Outcome(Mark.WARNS, "compiles")
    first = said[0][:300] if said else f"exit {done.returncode}"
    if re.search(r"Unsupported \.version", first):
        return Outcome(Mark.FAILS, first)
    return Outcome(Mark.UNKNOWN, first)


def lz4_block(src: bytes, size: int) -> bytes:
    """LZ4's block format, which fat binaries of older toolkits compress PTX with (entry flag 0x2000)."""
    out = bytearray()
    i = 0
    while i < len(src) and len(out) < size:
        token = src[i]
        i += 1
        literal = token >> 4
        if literal == 15:
            while i < len(src):
                literal += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        out += src[i : i + literal]
        i += literal
        if i + 2 > len(src) or len(out) >= size:
            break
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        match = (token & 15) + 4
        if match == 19:
            while i < len(src):
                match += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        if offset == 0 or offset > len(out):
            raise ValueError("not an LZ4 block")
        for _ in range(match):
            out.append(out[-offset])
    return bytes(out[:size])


FATBIN_FLAG_LZ4 = 0x2000


def fatbin_ptx(data: bytes) -> list[tuple[str, str, str]]:
    """(compute_XY, ISA, text) of every PTX entry in a file's fat binaries that is plain or LZ4-compressed
    (the zstd of newer toolkits is left to cuobjdump)."""
    from imagematrix.oracle.scan import containers

    found = []
    for offset, size in containers(data):
        p, end = offset + 16, offset + size
        while p + 64 <= end:
            kind, _, hsize, padded = struct.unpack_from("<HHIQ", data, p)
            packed, _ = struct.unpack_from("<II", data, p + 16)
            code, arch = struct.unpack_from("<II", data, p + 24)
            (flags,) = struct.unpack_from("<Q", data, p + 40)
            plain_size = struct.unpack_from("<I", data, p + 56)[0] if hsize >= 64 else 0
            payload = data[p + hsize : p + hsize + padded]
            if kind == 1:
                try:
                    text = lz4_block(payload[:packed], plain_size) if flags & FATBIN_FLAG_LZ4 else payload
                except ValueError:
                    text = b""
                text = text.rstrip(b"\0")  # stored NUL-terminated, as cuModuleLoadData takes it
                if text.lstrip().startswith((b"//", b".version")) or b".version" in text[:2048]:
                    found.append((f"compute_{arch}", f"{code >> 16}.{code & 0xFFFF}", text.decode("utf-8", "replace")))
            p += hsize + padded
    return found


def ptx_of(cuobjdump: str, path: Path) -> list[tuple[str, str, str]]:
    """(compute_XY, ISA, text) of every PTX in a file: a PTX text file as it is; a fat binary's (or an ELF
    object's) read from its entries where they are plain or LZ4, else as cuobjdump extracts it."""
    data = path.read_bytes()
    if b".version" in data[:4096] and b".target" in data[:4096] and not data.startswith(b"\x7fELF"):
        text = data.decode("utf-8", "replace")
        v = re.search(r"^\s*\.version\s+(\d+\.\d+)", text, re.M)
        t = re.search(r"^\s*\.target\s+sm_(\d+[af]?)", text, re.M)
        return [(f"compute_{t.group(1)}", v.group(1), text)] if v and t else []
    own = fatbin_ptx(data)
    if own:
        return own
    out = subprocess.run([cuobjdump, "-ptx", str(path)], capture_output=True, text=True, check=False).stdout
    found = []
    for block in re.split(r"^Fatbin ptx code:\n=+\n", out, flags=re.M)[1:]:
        arch = re.search(r"^arch = sm_(\d+[af]?)$", block, re.M)
        code = re.search(r"^code version = \[(\d+),(\d+)\]$", block, re.M)
        start = re.search(r"^(?://|\.version)", block, re.M)  # the PTX itself, after cuobjdump's header lines
        body = block[start.start() :] if start else ""
        body = re.split(r"^Fatbin (?:elf|ptx) code:", body, flags=re.M)[0]
        if arch and code and body:
            found.append((f"compute_{arch.group(1)}", f"{code.group(1)}.{code.group(2)}", body))
    return found


@dataclass(frozen=True)
class Cell:
    gpu: str
    branch: int
    predicted: Mark
    emulated: Mark
    detail: str

    @property
    def agrees(self) -> bool:
        return self.emulated is self.predicted


def deciding_ptx(audit: Mapping[str, Any], gpu: Gpu) -> list[Mapping[str, Any]]:
    """The objects whose verdict on ``gpu`` rests on PTX: no SASS that runs there, PTX that could JIT."""
    out = []
    for obj in kernel_objects(audit):
        sass = [a for a in (parse_arch(s) for s in obj.get("sass") or []) if a]
        if any(sass_runs_on(a, gpu.cc) for a in sass):
            continue
        if any((a := parse_arch(p)) and ptx_jits_on(a, gpu.cc) for p, _ in obj.get("ptx") or []):
            out.append(obj)
    return out


def check_cells(
    audit: Mapping[str, Any],
    gpus: Iterable[Gpu],
    branches: Iterable[int],
    ptx_texts: Callable[[Mapping[str, Any]], list[tuple[str, str, str]]],
    ptxas_for: Callable[[tuple[int, int]], Path] = ptxas,
) -> list[Cell]:
    """Every catalogue cell whose prediction rests on PTX (⚠️ by JIT, or ❌ 222), checked by compiling the
    image's own PTX with the ptxas of the CUDA the branch runs natively."""
    cells: list[Cell] = []
    for gpu in gpus:
        objects = deciding_ptx(audit, gpu)
        if not objects:
            continue
        for branch in branches:
            v = predict(audit, gpu, str(branch))
            by_jit = v.mark is Mark.WARNS and any("JIT" in r for r in v.reasons)
            if not (by_jit or v.code == UNSUPPORTED_PTX):
                continue
            cuda = branch_cuda(str(branch))
            if cuda is None:
                continue
            exe = ptxas_for(cuda)
            worst, detail, compiled = Mark.WARNS, "compiles", 0
            for obj in objects:
                for arch, _isa, text in ptx_texts(obj):
                    a = parse_arch(arch)
                    if a is None or not ptx_jits_on(a, gpu.cc):
                        continue
                    out = compile_ptx(exe, text, gpu)
                    compiled += 1
                    if out.verdict is not Mark.WARNS:
                        worst, detail = out.verdict, f"{obj['path']}: {out.detail}"
                        break
                if worst is not Mark.WARNS:
                    break
            if not compiled:  # no PTX text to compile: no check, never a pass
                worst, detail = Mark.UNKNOWN, "no PTX text could be extracted"
            predicted = Mark.FAILS if v.code == UNSUPPORTED_PTX else Mark.WARNS
            cells.append(Cell(gpu.name, branch, predicted, worst, f"ptxas {fmt_mm(cuda)}: {detail}"))
    return cells
