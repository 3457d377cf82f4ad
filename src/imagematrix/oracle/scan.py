"""The audit's scan: every file under a root that can carry CUDA device code, what it carries, and the JIT
toolchains the environment brings. It runs inside a container of the image (its own Python, ``--network
none``), or on the host over files exported from the image when the image has no usable Python.

What counts as a carrier, by its bytes (never by its name):

- an ELF file of the host: a shared library, a Python extension module or an executable; its device code
  is every fat binary in it (``.nv_fatbin`` and, as in cuFFT, fat binaries kept in data sections);
- a fat binary file (``.fatbin``, by NVIDIA's magic 0xBA55ED50) and a cubin (an ELF for the CUDA machine),
  the files programs give ``cuModuleLoad``/``cuModuleLoadData`` at run time;
- a PTX text file (``.version`` and ``.target`` lines);
- a static archive with fat binaries in it: listed, but linked at build time, never loaded at run time, so
  no verdict rests on it.

A fat binary is read from its own headers (``fatbin``): each entry's kind (SASS or PTX), architecture, the
arch-specific (``a``) or family (``f``) flag, and a PTX entry's ISA version; nothing is decompressed.
NVIDIA's cuobjdump reads a standalone cubin (its ``a`` lives in a note), checks objects that may be a stub
(a few SASS entries and no PTX: cuFFTW's launches cuFFT's kernels and has none), and is the referee in the
tests (``referee``). Objects are keyed by sha256; what a wheel's RECORD states (path, size, sha256) is
trusted when the size matches, so only files no RECORD covers are hashed; an object whose key is in the
cache is not read again.

    python -m imagematrix.oracle.scan --root / --cuobjdump BIN --cache DIR --new DIR --out FILE --scratch DIR
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import csv
import hashlib
import io
import json
import mmap
import os
import re
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

SCAN_VERSION = 2  # the cache's key: entries of another reader are read again
SKIP = ("proc", "sys", "dev", "run", "opt/imagematrix")  # the kernel's, and what the audit mounts
LIBRARIES = {  # what the environment loads: soname stem -> the name the record uses
    "libcudart": "cudart",
    "libcublas": "cublas",
    "libcudnn": "cudnn",
    "libnccl": "nccl",
    "libnvrtc": "nvrtc",
    "libnvJitLink": "nvjitlink",
    "libcuda": "libcuda",
}
CUOBJDUMP_TIMEOUT = 1200
JOBS_ENV = "IMAGEMATRIX_SCAN_JOBS"  # how many objects are read at once (the audit sets it from its memory limit)
PROGRESS_ENV = "IMAGEMATRIX_SCAN_PROGRESS"  # seconds between progress lines on stderr (0: none)
STUB_ENTRIES = 4  # objects with this few SASS entries and no PTX are checked for kernels (a stub has none)
ELF, FATBIN, ARCHIVE = b"\x7fELF", struct.pack("<I", 0xBA55ED50), b"!<arch>\n"
EM_CUDA = 190
RELEASE = re.compile(rb"Cuda compilation tools, release (\d+\.\d+), V(\d+\.\d+\.\d+)")
KINDS = ("library", "extension", "executable", "cubin", "fatbin", "ptx", "archive")
LOADED = ("library", "extension", "executable", "cubin", "fatbin", "ptx")  # what a verdict covers


# --- fat binaries, read from their headers ------------------------------------------------------------------

FATBIN_FLAG_ARCH_SPECIFIC = 0x100000  # sm_90a, compute_100a: this GPU only
FATBIN_FLAG_FAMILY = 0x200000  # sm_100f, compute_120f: its family


def fatbin_entries(data, start: int = 0, end: int | None = None) -> tuple[list[str], list[list[str]], int]:
    """(SASS architectures, PTX [arch, ISA] pairs, fat binaries) of every fat binary in ``data[start:end]``,
    found by NVIDIA's magic and read from their headers: a container is 16 bytes (magic, version 1, header
    size 16, the size of what follows), then entries of a header (kind 1 PTX / 2 SASS, its size, the
    payload's padded size, at +24 the code version major << 16 | minor, at +28 the architecture, at +40 the
    flags) each followed by its payload. Bytes that only look like a header are passed over."""
    end = len(data) if end is None else end
    sass: set[str] = set()
    ptx: set[tuple[str, str]] = set()
    found, pos = 0, start
    while (i := data.find(FATBIN, pos, end)) >= 0 and i + 16 <= end:
        version, header, size = struct.unpack_from("<HHQ", data, i + 4)
        if version != 1 or header != 16 or not 0 < size <= end - i - 16:
            pos = i + 4
            continue
        entries = _container(data, i + 16, i + 16 + size)
        if entries is None:
            pos = i + 4
            continue
        found += 1
        for kind, name, isa in entries:
            if kind == 1:
                ptx.add(("compute_" + name, isa))
            else:
                sass.add("sm_" + name)
        pos = i + 16 + size
    return sorted(sass), sorted(map(list, ptx)), found


def _container(data, p: int, end: int) -> list[tuple[int, str, str]] | None:
    """The entries of one container ((kind, arch name, ISA)), or None when its headers do not hold."""
    out = []
    while p + 64 <= end:
        kind, _, hsize, padded = struct.unpack_from("<HHIQ", data, p)
        if kind not in (1, 2, 0x10, 0x40) or hsize < 64 or hsize > 4096 or p + hsize + padded > end:
            return None
        code, arch = struct.unpack_from("<II", data, p + 24)
        (flags,) = struct.unpack_from("<Q", data, p + 40)
        if kind in (1, 2, 0x10) and 10 <= arch <= 1000:
            suffix = "a" if flags & FATBIN_FLAG_ARCH_SPECIFIC else "f" if flags & FATBIN_FLAG_FAMILY else ""
            if kind != 1 and suffix == "f":
                suffix = ""  # family SASS is named as its base architecture (cuobjdump does the same)
            out.append((1 if kind == 1 else 2, f"{arch}{suffix}", f"{code >> 16}.{code & 0xFFFF}"))
        p += hsize + padded
    return out if out and p == end else None  # a real container ends exactly after its last entry


def ptx_text(head: bytes) -> tuple[str, str] | None:
    """(compute_XY, ISA) of a PTX text file, from its ``.version`` and ``.target`` lines; None if it is none."""
    version = re.search(rb"^\s*\.version\s+(\d+)\.(\d+)\s*$", head, re.M)
    target = re.search(rb"^\s*\.target\s+sm_(\d+[af]?)\b", head, re.M)
    if not version or not target:
        return None
    return "compute_" + target.group(1).decode(), f"{int(version.group(1))}.{int(version.group(2))}"


def classify(path: Path, head: bytes) -> str | None:
    """Which kind of carrier a file could be, from its first bytes (None: it cannot carry device code)."""
    if head.startswith(ELF) and len(head) >= 20:
        machine = struct.unpack_from("<H", head, 18)[0]
        if machine == EM_CUDA:
            return "cubin"
        e_type = struct.unpack_from("<H", head, 16)[0]
        if e_type == 2:
            return "executable"
        if e_type != 3:
            return None  # relocatable objects (.o) and cores: not loaded
        name = path.name
        if ".cpython-" in name or name.endswith(".abi3.so") or ".pypy" in name:
            return "extension"
        return "executable" if _has_interpreter(path) else "library"
    if head.startswith(FATBIN):
        return "fatbin"
    if head.startswith(ARCHIVE):
        return "archive"
    if b".version" in head and b".target" in head and ptx_text(head):
        return "ptx"
    return None


def _has_interpreter(path: Path) -> bool:
    """A position-independent executable: an ELF of type DYN with a PT_INTERP program header."""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if len(h) < 64 or h[4] != 2:
                return False
            (phoff,) = struct.unpack_from("<Q", h, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", h, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * min(phnum, 256))
    except OSError:
        return False
    return any(struct.unpack_from("<I", table, k * phentsize)[0] == 3 for k in range(len(table) // max(1, phentsize)))


def read_object(path: Path, kind: str, cuobjdump: str | None) -> dict:
    """What one carrier holds: SASS architectures, PTX [arch, ISA] pairs, its fat binaries; a cubin and
    a possible stub are asked of cuobjdump."""
    if kind == "ptx":
        with open(path, "rb") as f:
            found = ptx_text(f.read(1 << 16))
        return {"sass": [], "ptx": [list(found)] if found else [], "fatbins": 0, "kernels": None, "error": ""}
    if kind == "cubin":
        return _cuobjdump_cubin(path, cuobjdump)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        sass, ptx, fatbins = fatbin_entries(m)
        entries = _count_entries(m) if sass and not ptx else 0
    kernels = None
    if sass and not ptx and entries <= STUB_ENTRIES and cuobjdump and kind != "archive":
        kernels = _kernels(cuobjdump, path)
    return {"sass": sass, "ptx": ptx, "fatbins": fatbins, "kernels": kernels, "error": ""}


def _count_entries(data) -> int:
    count, pos = 0, 0
    while (i := data.find(FATBIN, pos)) >= 0 and i + 16 <= len(data):
        version, header, size = struct.unpack_from("<HHQ", data, i + 4)
        entries = _container(data, i + 16, i + 16 + size) if version == 1 and header == 16 else None
        if entries is None:
            pos = i + 4
            continue
        count += len(entries)
        pos = i + 16 + size
    return count


def _kernels(cuobjdump: str, path: Path) -> int | None:
    """How many kernels cuobjdump lists (a stub has none); None when it cannot tell."""
    done = subprocess.run(
        [cuobjdump, "-res-usage", str(path)], capture_output=True, text=True, timeout=CUOBJDUMP_TIMEOUT, check=False
    )
    return len(re.findall(r"^ Function ", done.stdout, re.M)) if done.returncode == 0 else None


def _cuobjdump_cubin(path: Path, cuobjdump: str | None) -> dict:
    if not cuobjdump:
        return {"sass": [], "ptx": [], "fatbins": 0, "kernels": None, "error": "no cuobjdump to read a cubin"}
    done = subprocess.run(
        [cuobjdump, "-lelf", str(path)], capture_output=True, text=True, timeout=CUOBJDUMP_TIMEOUT, check=False
    )
    sass = sorted(set(re.findall(r"\.(sm_\d+[af]?)\.cubin", done.stdout)))
    error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1][:300]
    return {"sass": sass, "ptx": [], "fatbins": 0, "kernels": None, "error": error}


def containers(data) -> list[tuple[int, int]]:
    """(offset, size) of every fat binary container in ``data`` whose headers hold."""
    out, pos = [], 0
    while (i := data.find(FATBIN, pos)) >= 0 and i + 16 <= len(data):
        version, header, size = struct.unpack_from("<HHQ", data, i + 4)
        if version == 1 and header == 16 and 0 < size <= len(data) - i - 16 and _container(data, i + 16, i + 16 + size):
            out.append((i, 16 + size))
            pos = i + 16 + size
        else:
            pos = i + 4
    return out


def referee(cuobjdump: str, path: Path, scratch: Path) -> dict:
    """What NVIDIA's cuobjdump lists for a file: SASS architectures and PTX [arch, ISA] pairs (the tests and
    benchmarks/audit.py compare ``read_object`` with it). cuobjdump reads an ELF's ``.nv_fatbin`` section
    only; fat binaries kept elsewhere (cuFFT's, CUPTI's in their data sections) are handed to it as a file
    of their own, as a loader hands them to the driver."""
    target = path
    if path.read_bytes()[:4] != ELF or classify(path, path.read_bytes()[:4096]) != "cubin":
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            blobs = [bytes(data[o : o + n]) for o, n in containers(data)]
        if blobs:
            target = scratch / "referee.fatbin"
            target.write_bytes(b"".join(blobs))
    listing = subprocess.run([cuobjdump, "-lelf", "-lptx", str(target)], capture_output=True, text=True, check=False)
    sass = sorted(set(re.findall(r"\.(sm_\d+[af]?)\.cubin", listing.stdout)))
    ptx: set[tuple[str, str]] = set()
    if "PTX file" in listing.stdout:
        full = subprocess.run([cuobjdump, "-ptx", str(target)], capture_output=True, text=True, check=False).stdout
        block = arch = None
        for line in full.splitlines():
            if m := re.match(r"Fatbin (\w+) code:", line):
                block, arch = m.group(1), None
            elif block == "ptx" and (m := re.match(r"\s*arch = sm_(\d+[af]?)\s*$", line)):
                arch = "compute_" + m.group(1)
            elif block == "ptx" and arch and (m := re.match(r"\s*code version = \[(\d+),(\d+)\]\s*$", line)):
                ptx.add((arch, f"{m.group(1)}.{m.group(2)}"))
                arch = None
    error = "" if listing.returncode == 0 else (listing.stderr.strip().splitlines() or ["?"])[-1][:300]
    return {"sass": sass, "ptx": sorted(map(list, ptx)), "error": error}


# --- the environment: wheels, libraries, JIT toolchains -------------------------------------------------------


def records(root: Path) -> tuple[dict[str, tuple[str, int, str, str]], dict[str, str], dict[str, Path]]:
    """Every file a wheel's RECORD states: path -> (sha256 hex, size, distribution, version); the
    distributions: name -> version; and where each is installed: name -> its site directory."""
    files: dict[str, tuple[str, int, str, str]] = {}
    dists: dict[str, str] = {}
    sites: dict[str, Path] = {}
    for record in _walk(root, lambda p: p.name == "RECORD" and p.parent.name.endswith(".dist-info")):
        info = record.parent
        name, version = _dist_name(info)
        dists[name] = version
        sites[name.lower().replace("-", "_")] = info.parent
        try:
            rows = list(csv.reader(io.StringIO(record.read_text(errors="replace"))))
        except (OSError, csv.Error):
            continue
        for row in rows:
            if len(row) < 3 or not row[1].startswith("sha256=") or not row[2].isdigit():
                continue
            digest = base64.urlsafe_b64decode(row[1][7:] + "=" * (-len(row[1][7:]) % 4)).hex()
            path = os.path.normpath(info.parent / row[0])
            files[path] = (digest, int(row[2]), name, version)
    return files, dists, sites


def _dist_name(info: Path) -> tuple[str, str]:
    try:
        head = (info / "METADATA").read_text(errors="replace").split("\n\n", 1)[0]
        found_name = re.search(r"^Name: (.+)$", head, re.M)
        found_version = re.search(r"^Version: (.+)$", head, re.M)
        if found_name and found_version:
            return found_name.group(1).strip(), found_version.group(1).strip()
    except OSError:
        pass
    stem = info.name[: -len(".dist-info")]
    name, _, version = stem.partition("-")
    return name, version


def _walk(root: Path, want):
    skip = {str(root / s) for s in SKIP}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for f in filenames:
            p = Path(dirpath) / f
            if want(p):
                yield p


def tool_release(path: Path) -> str | None:
    """The CUDA release a compiler binary (nvcc, ptxas) was built from, read from its own bytes
    ("Cuda compilation tools, release 13.0, V13.0.88" -> "13.0.88"); None when it says none."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            at = m.find(b"Cuda compilation tools, release ")
            found = RELEASE.match(m[at : at + 80]) if at >= 0 else None  # re cannot search an mmap everywhere
    except (OSError, ValueError):
        return None
    return found.group(2).decode() if found else None


def _in_root(root: Path, path: str | Path) -> Path:
    return root / str(path).lstrip("/")


def toolchains(root: Path, env: dict[str, str], dists: dict[str, str], sites: dict[str, Path], libs) -> dict:
    """The JIT toolchains of the environment: Triton and the ptxas it compiles with (TRITON_PTXAS_PATH, else
    the one it bundles), NVRTC, nvJitLink, and the nvcc a cpp_extension build finds (CUDA_HOME, else
    PATH, else /usr/local/cuda), each with its release; torch's CUDA from torch/version.py."""
    out: dict = {}
    triton = dists.get("triton") or dists.get("pytorch-triton")
    if triton:
        site = sites.get("triton") or sites.get("pytorch_triton")
        given = env.get("TRITON_PTXAS_PATH")
        candidates = [Path(given)] if given else []
        if site:
            candidates += [
                Path("/") / site.relative_to(root) / "triton" / sub
                for sub in ("backends/nvidia/bin/ptxas", "third_party/cuda/bin/ptxas")
            ]
        ptxas = next((c for c in candidates if _in_root(root, c).is_file()), None)
        out["triton"] = {
            "version": triton,
            "ptxas": str(ptxas) if ptxas else None,
            "ptxas_from": "TRITON_PTXAS_PATH" if given and ptxas == Path(given) else "bundled" if ptxas else None,
            "ptxas_release": tool_release(_in_root(root, ptxas)) if ptxas else None,
        }
    for name in ("nvrtc", "nvjitlink"):
        versions = [str(e.get("version")) for e in libs.get(name, []) if e.get("version")]
        if versions:
            out[name] = {"versions": sorted(set(versions))}
    homes = [env.get("CUDA_HOME"), env.get("CUDA_PATH")]
    dirs = [h + "/bin" for h in homes if h] + [d for d in env.get("PATH", "").split(":") if d] + ["/usr/local/cuda/bin"]
    nvcc = next((Path(d) / "nvcc" for d in dirs if _in_root(root, Path(d) / "nvcc").is_file()), None)
    if nvcc is not None:
        out["nvcc"] = {"path": str(nvcc), "release": tool_release(_in_root(root, nvcc))}
    site = sites.get("torch")
    if site is not None:
        try:
            text = (site / "torch" / "version.py").read_text(errors="replace")
            found = re.search(r"^cuda(?:\s*:\s*\S+)?\s*=\s*['\"]([\d.]+)['\"]", text, re.M)
            out["torch_cuda"] = found.group(1) if found else None
        except OSError:
            out["torch_cuda"] = None
    return out


def _library(path: Path, owner: tuple[str, int, str, str] | None) -> dict:
    m = re.search(r"\.so\.(\d+(?:\.\d+)*)$", path.name)
    return {
        "path": str(path),
        "version": (owner[3] if owner else None) or (m.group(1) if m else None),
        "from": owner[2] if owner else "file",
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the scan ---------------------------------------------------------------------------------------------


class _Progress:
    """One line now and then (the audit shows it): files looked at, carriers found and read; to ``say``,
    else to stderr (the audit reads a container's)."""

    def __init__(self, every: float, say=None):
        self.every, self.t0, self.last, self.say = every, time.monotonic(), 0.0, say
        self.files = self.carriers = self.read = 0
        self.lock = threading.Lock()

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.every <= 0 or (not force and now - self.last < self.every):
            return
        self.last = now
        print(
            f"scan: {self.files} files, {self.carriers} with device code, {self.read} read ({now - self.t0:.0f}s)",
            file=sys.stderr,
            flush=True,
        )


def scan(
    root: Path,
    cuobjdump: str | None,
    cache: Path | None,
    new: Path | None,
    python: str | None = None,
    scratch: Path | None = None,
    env: dict[str, str] | None = None,
    say=None,
) -> dict:
    """Every carrier under ``root`` and what it holds; the environment's libraries, wheels and JIT
    toolchains (``env``: the image's, for TRITON_PTXAS_PATH, CUDA_HOME and PATH). ``say`` gets a progress
    line every few seconds."""
    t0 = time.monotonic()
    stated, dists, sites = records(root)
    progress = _Progress(2.0 if say else float(os.environ.get(PROGRESS_ENV, "0") or 0), say)
    known = Known(cache, new)
    libraries: dict[str, list[dict]] = {}
    todo: list[tuple[Path, str, str, int, str | None]] = []
    hashed = 0
    for path in _walk(root, lambda p: not p.name.endswith(SOURCES)):
        progress.files += 1
        progress.tick()
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size < 20:
            continue
        owner = stated.get(os.path.normpath(path))
        digest = owner[0] if owner and owner[1] == st.st_size else None
        stem = path.name.split(".so")[0]
        if stem in LIBRARIES:
            libraries.setdefault(LIBRARIES[stem], []).append(_library(path, owner))
        if digest is not None and digest in known.none:
            continue  # read before: no device code (the cached scan opens nothing here)
        hit = known.entry(digest) if digest else None
        if hit is not None and digest is not None:
            todo.append((path, hit["kind"], digest, st.st_size, owner[2] if owner else None))
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
            kind = classify(path, head)
            if kind is None:
                continue
            if digest is None or kind in CONTAINERS:
                found, magic = digest_and_magic(path)
                hashed += digest is None
                digest = digest or found
                if kind in CONTAINERS and not magic:
                    known.nothing(digest)
                    continue
        except OSError:
            continue
        if digest is None:  # unreachable: a carrier's digest is RECORD's or was just computed
            continue
        progress.carriers += 1
        todo.append((path, kind, digest, st.st_size, owner[2] if owner else None))

    def one(item) -> dict | None:
        path, kind, digest, size, dist = item
        entry = known.entry(digest)
        if entry is None:
            t = time.monotonic()
            try:
                entry = {**read_object(path, kind, cuobjdump), "kind": kind, "seconds": 0.0}
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                entry = {"sass": [], "ptx": [], "fatbins": 0, "kernels": None, "error": str(exc)[:300], "kind": kind}
            entry["seconds"] = round(time.monotonic() - t, 3)
            if not entry["sass"] and not entry["ptx"] and not entry["error"]:
                known.nothing(digest)  # the magic's bytes, but no fat binary around them (libnvJitLink's code)
                return None
            known.keep(digest, entry)
        else:
            entry = {**entry, "cached": True}
        with progress.lock:
            progress.read += 1
            progress.tick()
        rel = "/" + str(path.relative_to(root))
        return {**entry, "path": rel, "kind": kind, "sha256": digest, "size": size, "dist": dist}

    jobs = os.environ.get(JOBS_ENV, "")
    limit = int(jobs) if jobs.isdigit() and int(jobs) > 0 else os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, limit))) as pool:
        objects = [o for o in pool.map(one, todo) if o is not None]
    known.close()
    cached = sum(1 for o in objects if o.pop("cached", False))
    progress.tick(force=True)
    torch = None
    if python and "torch" in dists:
        done = subprocess.run([python, "-c", TORCH_INFO], capture_output=True, text=True, timeout=300, check=False)
        lines = done.stdout.strip().splitlines()
        torch = json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.stderr.strip()[-300:]}
    kinds = {k: sum(1 for o in objects if o["kind"] == k) for k in KINDS}
    counts = {"objects": len(objects), "hashed": hashed, "cached": cached, "read": len(objects) - cached}
    return {
        "schema": 2,
        "objects": sorted(objects, key=lambda o: o["path"]),
        "libraries": libraries,
        "distributions": dict(sorted(dists.items(), key=lambda kv: kv[0].lower())),
        "torch": torch,
        "toolchains": toolchains(root, env or {}, dists, sites, libraries),
        "counts": {**counts, "files": progress.files, **{f"kind_{k}": n for k, n in kinds.items() if n}},
        "seconds": round(time.monotonic() - t0, 1),
    }


SOURCES = (".py", ".pyc", ".pyi")  # Python's own files: never device code, and a third of an environment's files
CONTAINERS = ("library", "extension", "executable", "archive")  # device code only where a fat binary is


class Known:
    """What earlier scans learnt, by sha256 (one cache for every project): an object's entry, or that it
    holds no device code. The cache is read-only here; what is new goes to ``new`` for the audit to keep."""

    def __init__(self, cache: Path | None, new: Path | None):
        self.cache, self.new = cache, new
        self.none: set[str] = set()
        self._fresh: list[str] = []
        self._lock = threading.Lock()
        for f in sorted(cache.glob(f"none*.v{SCAN_VERSION}")) if cache is not None and cache.is_dir() else ():
            try:
                self.none.update(line.strip() for line in f.read_text().splitlines() if len(line.strip()) == 64)
            except OSError:
                continue

    def entry(self, digest: str | None) -> dict | None:
        if digest is None or self.cache is None:
            return None
        path = self.cache / f"{digest}.v{SCAN_VERSION}.json"
        try:
            entry = json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("kind"), str) else None

    def keep(self, digest: str, entry: dict) -> None:
        if self.new is not None and not entry.get("error"):
            (self.new / f"{digest}.v{SCAN_VERSION}.json").write_text(json.dumps(entry))

    def nothing(self, digest: str) -> None:
        with self._lock:
            self.none.add(digest)
            self._fresh.append(digest)

    def close(self) -> None:
        if self.new is not None and self._fresh:
            name = f"none-{os.getpid()}-{int(time.time() * 1000)}.v{SCAN_VERSION}"
            (self.new / name).write_text("\n".join(self._fresh) + "\n")


def digest_and_magic(path: Path) -> tuple[str, bool]:
    """The file's sha256 and whether NVIDIA's fat binary magic is in it, in one read."""
    h, seen, tail = hashlib.sha256(), False, b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
            if not seen:
                seen = FATBIN in tail + chunk
                tail = chunk[-3:]
    return h.hexdigest(), seen


TORCH_INFO = (
    "import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
    "'arch_list': torch._C._cuda_getArchFlags().split() if hasattr(torch._C, '_cuda_getArchFlags') else []}))"
)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m imagematrix.oracle.scan")
    p.add_argument("--root", default="/")
    p.add_argument("--cuobjdump", default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--new", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--scratch", default=None, help="a writable directory (kept for older callers; unused)")
    p.add_argument("--python", default=sys.executable, help="the interpreter to ask torch's own facts ('' for none)")
    p.add_argument("--env", default="", help="the image's environment as JSON (TRITON_PTXAS_PATH, CUDA_HOME, PATH)")
    a = p.parse_args(argv)
    try:
        env = json.loads(a.env) if a.env else dict(os.environ)  # in a container of the image: its environment
    except ValueError:
        env = {}
    result = scan(
        Path(a.root),
        a.cuobjdump,
        Path(a.cache) if a.cache else None,
        Path(a.new) if a.new else None,
        a.python or None,
        env=env if isinstance(env, dict) else {},
    )
    Path(a.out).write_text(json.dumps(result))
    c = result["counts"]
    print(
        f"scanned {c['files']} files: {c['objects']} with device code in {result['seconds']}s "
        f"({c['cached']} from the cache, {c['hashed']} hashed)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
