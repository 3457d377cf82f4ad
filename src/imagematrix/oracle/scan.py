"""The audit's scan: every ELF shared object with CUDA device code under a root, what it embeds, and what
the environment loads. It runs inside a container of the image (its own Python, ``--network none``),
or on the host over files exported from the image when the image has no usable Python.

Needs the standard library, pyelftools (mounted beside it) and NVIDIA's cuobjdump (a binary, mounted):
pyelftools finds the ``.nv_fatbin`` section, cuobjdump lists the SASS and PTX in it and reads each
PTX's ISA version. Objects are keyed by sha256: what a wheel's RECORD states (path, size, sha256) is
trusted when the size matches, so only files no RECORD covers are hashed; an object whose key is in
the cache is not dumped again.

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
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKIP = ("proc", "sys", "dev", "run", "opt/imagematrix")  # the kernel's, and what the audit mounts
SO = re.compile(r"\.so(\.\d+)*$")
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
JOBS_ENV = "IMAGEMATRIX_SCAN_JOBS"  # how many objects are scanned at once (the audit sets it from its memory limit)
STUB_ENTRIES = 4  # objects listing this few cubins and PTX are checked for kernels (a stub has none)
TORCH_INFO = (
    "import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
    "'arch_list': torch._C._cuda_getArchFlags().split() if hasattr(torch._C, '_cuda_getArchFlags') else []}))"
)


def records(root: Path) -> tuple[dict[str, tuple[str, int, str, str]], dict[str, str]]:
    """Every file a wheel's RECORD states: path -> (sha256 hex, size, distribution, version); and the
    distributions: name -> version."""
    files: dict[str, tuple[str, int, str, str]] = {}
    dists: dict[str, str] = {}
    for record in _walk(root, lambda p: p.name == "RECORD" and p.parent.name.endswith(".dist-info")):
        info = record.parent
        name, version = _dist_name(info)
        dists[name] = version
        site = info.parent
        try:
            rows = list(csv.reader(io.StringIO(record.read_text(errors="replace"))))
        except (OSError, csv.Error):
            continue
        for row in rows:
            if len(row) < 3 or not row[1].startswith("sha256=") or not row[2].isdigit():
                continue
            digest = base64.urlsafe_b64decode(row[1][7:] + "=" * (-len(row[1][7:]) % 4)).hex()
            path = os.path.normpath(site / row[0])
            files[path] = (digest, int(row[2]), name, version)
    return files, dists


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


def fatbin_section(path: Path) -> tuple[int, int] | None:
    """(file offset, size) of the ``.nv_fatbin`` section, or None: no device code, or not an ELF object."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
            f.seek(0)
            section = ELFFile(f).get_section_by_name(".nv_fatbin")
            return (section["sh_offset"], section["sh_size"]) if section is not None and section["sh_size"] else None
    except (ELFError, OSError, ValueError, KeyError):  # a truncated or odd ELF: not ours to judge
        return None


# A fat binary starts with NVIDIA's fatBinaryHeader (fatbinary_section.h): magic, version 1, a 16-byte header,
# then the size of what follows. Most objects keep them all in .nv_fatbin; some (cuFFT) keep the rest in their
# data sections, where cuobjdump does not look: those are located by their header and handed to it as a file.
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


def fatbins(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every fat binary in the file, by its header."""
    out = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos, end = 0, len(m)
        while (i := m.find(FATBIN_MAGIC, pos)) >= 0 and i + 16 <= end:
            version, header, size = struct.unpack_from("<HHQ", m, i + 4)
            if version == 1 and header == 16 and 0 < size <= end - i - 16:
                out.append((i, 16 + size))
                pos = i + 16 + size
            else:
                pos = i + 4
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump(cuobjdump: str, path: Path, section: tuple[int, int], scratch: Path) -> dict:
    """SASS architectures and PTX (arch, ISA version) an object embeds, as cuobjdump lists them."""
    blobs = fatbins(path)
    target = path
    if any(not (section[0] <= off < section[0] + section[1]) for off, _ in blobs):
        target = scratch / "device-code.fatbin"  # every fat binary of the file, where cuobjdump reads them
        with open(path, "rb") as src, open(target, "wb") as out:
            for off, size in blobs:
                src.seek(off)
                out.write(src.read(size))
    try:
        listing = subprocess.run(
            [cuobjdump, "-lelf", "-lptx", str(target)],
            capture_output=True,
            text=True,
            timeout=CUOBJDUMP_TIMEOUT,
            check=False,
        )
        text = listing.stdout
        sass = sorted({a for a in re.findall(r"\.(sm_\d+[af]?)\.cubin", text)})
        ptx: set[tuple[str, str]] = set()
        if "PTX file" in text:
            full = subprocess.run(
                [cuobjdump, "-ptx", str(target)], capture_output=True, text=True, timeout=CUOBJDUMP_TIMEOUT, check=False
            )
            block = arch = None
            for line in full.stdout.splitlines():
                if m := re.match(r"Fatbin (\w+) code:", line):
                    block, arch = m.group(1), None
                elif block == "ptx" and (m := re.match(r"\s*arch = sm_(\d+[af]?)\s*$", line)):
                    arch = "compute_" + m.group(1)
                elif block == "ptx" and arch and (m := re.match(r"\s*code version = \[(\d+),(\d+)\]\s*$", line)):
                    ptx.add((arch, f"{m.group(1)}.{m.group(2)}"))
                    arch = None
        kernels = None
        if listing.returncode == 0 and not ptx and text.count(" file ") <= STUB_ENTRIES:
            # A few entries may be a stub with no kernel at all (cuFFTW's, which launches cuFFT's): nothing to run.
            usage = subprocess.run(
                [cuobjdump, "-res-usage", str(target)],
                capture_output=True,
                text=True,
                timeout=CUOBJDUMP_TIMEOUT,
                check=False,
            )
            kernels = len(re.findall(r"^ Function ", usage.stdout, re.M)) if usage.returncode == 0 else None
    finally:
        if target != path:
            target.unlink(missing_ok=True)
    error = "" if listing.returncode == 0 else (listing.stderr.strip().splitlines() or ["?"])[-1][:300]
    return {"sass": sass, "ptx": sorted(map(list, ptx)), "fatbins": len(blobs), "kernels": kernels, "error": error}


def _library(path: Path, owner: tuple[str, int, str, str] | None) -> dict:
    m = re.search(r"\.so\.(\d+(?:\.\d+)*)$", path.name)
    return {
        "path": str(path),
        "version": (owner[3] if owner else None) or (m.group(1) if m else None),
        "from": owner[2] if owner else "file",
    }


def scan(
    root: Path, cuobjdump: str, cache: Path | None, new: Path | None, python: str | None, scratch: Path | None = None
) -> dict:
    t0 = time.monotonic()
    scratch = scratch or Path(tempfile.gettempdir())
    stated, dists = records(root)
    objects: list[dict] = []
    libraries: dict[str, list[dict]] = {}
    hashed = cached = dumped = 0
    todo: list[tuple[Path, tuple[int, int], str, int, str | None]] = []
    for path in _walk(root, lambda p: bool(SO.search(p.name))):
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        stem = path.name.split(".so")[0]
        owner = stated.get(os.path.normpath(path))
        if stem in LIBRARIES:
            libraries.setdefault(LIBRARIES[stem], []).append(_library(path, owner))
        section = fatbin_section(path)
        if section is None:
            continue
        if owner and owner[1] == st.st_size:
            digest = owner[0]
        else:
            digest, hashed = sha256(path), hashed + 1
        todo.append((path, section, digest, st.st_size, owner[2] if owner else None))

    def one(item) -> dict:
        path, section, digest, size, dist = item
        entry = None
        if cache is not None and (cache / f"{digest}.json").is_file():
            try:
                entry = {**json.loads((cache / f"{digest}.json").read_text()), "cached": True}
            except (OSError, ValueError):
                entry = None
        if entry is None:
            work = scratch / f"dump-{digest[:16]}"
            work.mkdir(exist_ok=True)
            t0 = time.monotonic()
            try:
                entry = {**dump(cuobjdump, path, section, work), "seconds": 0.0}
                entry["seconds"] = round(time.monotonic() - t0, 2)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if new is not None:
                (new / f"{digest}.json").write_text(json.dumps(entry))
        return {"path": "/" + str(path.relative_to(root)), "sha256": digest, "size": size, "dist": dist, **entry}

    # cuobjdump is single-threaded: the objects go to as many of them as there are CPUs.
    jobs = os.environ.get(JOBS_ENV, "")
    limit = int(jobs) if jobs.isdigit() and int(jobs) > 0 else os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, limit))) as pool:
        for entry in pool.map(one, todo):
            cached += bool(entry.pop("cached", False))
            dumped += not entry.get("cached", False)
            objects.append(entry)
    dumped = len(objects) - cached
    torch = None
    if python and "torch" in dists:
        done = subprocess.run([python, "-c", TORCH_INFO], capture_output=True, text=True, timeout=300, check=False)
        lines = done.stdout.strip().splitlines()
        torch = json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.stderr.strip()[-300:]}
    return {
        "schema": 1,
        "objects": sorted(objects, key=lambda o: o["path"]),
        "libraries": libraries,
        "distributions": dict(sorted(dists.items(), key=lambda kv: kv[0].lower())),
        "torch": torch,
        "counts": {"objects": len(objects), "hashed": hashed, "cached": cached, "dumped": dumped},
        "seconds": round(time.monotonic() - t0, 1),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m imagematrix.oracle.scan")
    p.add_argument("--root", default="/")
    p.add_argument("--cuobjdump", required=True)
    p.add_argument("--cache", default=None)
    p.add_argument("--new", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--scratch", default=None, help="a writable directory for device code cuobjdump reads from a file")
    p.add_argument("--python", default=sys.executable, help="the interpreter to ask torch's own facts ('' for none)")
    a = p.parse_args(argv)
    result = scan(
        Path(a.root),
        a.cuobjdump,
        Path(a.cache) if a.cache else None,
        Path(a.new) if a.new else None,
        a.python or None,
        Path(a.scratch) if a.scratch else None,
    )
    Path(a.out).write_text(json.dumps(result))
    print(
        f"scanned {result['counts']['objects']} objects with device code in {result['seconds']}s "
        f"({result['counts']['cached']} from the cache, {result['counts']['hashed']} hashed)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
