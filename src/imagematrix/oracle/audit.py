"""`imagematrix audit`: what an image's binaries need from a GPU and a driver, read from the image itself.

The scan (``scan.py``) runs in a container of the image, with the image's own Python, ``--network
none``, a read-only root, a memory limit (cuobjdump on libtorch_cuda.so peaks near 6 GB) and a time
limit; this package, pyelftools and NVIDIA's cuobjdump (the ``nvidia-cuda-cuobjdump`` wheel) are
mounted read-only. An image without a shell or a Python, or of another architecture than this host
(cuobjdump is a binary of the host's), is exported instead and scanned here: its shared objects and
wheel records are copied out of ``docker export``'s stream, nothing is run from it. musl images take
the same path as the scan finds no loader for cuobjdump's glibc.

Results are cached by object, by sha256, in one cache for every project (``cache_dir``): an unchanged
torch is dumped once, and a slim runtime that copies its devel parent's environment costs a walk and a lookup.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.oracle import scan
from imagematrix.oracle.predict import coverage, floor, table

PKG_IN = "/opt/imagematrix/pkg"
SITE_IN = "/opt/imagematrix/site"
TOOL_IN = "/opt/imagematrix/bin/cuobjdump"
CACHE_IN = "/opt/imagematrix/audit-cache"
WORK_IN = "/opt/imagematrix/work"
MEMORY = "8g"
TIMEOUT_S = 1800
NO_PYTHON = 127
SHELL = (
    'for p in python3 python; do if command -v "$p" >/dev/null 2>&1; then exec "$p" -m imagematrix.oracle.scan '
    f"--root / --cuobjdump {TOOL_IN} --cache {CACHE_IN} --new {WORK_IN}/new --out {WORK_IN}/audit.json --scratch "
    f"{WORK_IN}; fi; done; "
    f'echo "no python in this image" >&2; exit {NO_PYTHON}'
)
AUDITS_DIR = "audits"  # under the build directory: each image's full audit
CACHE_ENV = "IMAGEMATRIX_AUDIT_CACHE"


def cache_dir() -> Path:
    """Where object dumps are kept: by sha256, so one cache serves every build directory and project
    ($IMAGEMATRIX_AUDIT_CACHE, else $XDG_CACHE_HOME/imagematrix/audit, else ~/.cache/imagematrix/audit)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagematrix" / "audit"


class AuditError(ImagematrixError):
    pass


def cuobjdump() -> Path:
    """NVIDIA's cuobjdump from the nvidia-cuda-cuobjdump wheel (a dependency of imagematrix)."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for found in sorted(Path(root).glob("cu*/bin/cuobjdump"), reverse=True):
            return found
    exe = shutil.which("cuobjdump")
    if exe:
        return Path(exe)
    raise UsageError("cuobjdump is not installed: pip install nvidia-cuda-cuobjdump (imagematrix depends on it)")


def elftools_dir() -> Path:
    spec = importlib.util.find_spec("elftools")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("pyelftools is not installed: pip install pyelftools (imagematrix depends on it)")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Audit:
    ref: str
    image_id: str
    doc: dict[str, Any]  # scan's document
    how: str  # "container" or "export"
    seconds: float

    def summary(self) -> dict[str, Any]:
        """What the record keeps of it (the section "audit"): the facts the sheet, the runner and doctor use."""
        fl = floor(self.doc)
        torch = self.doc.get("torch") or {}
        libs = {
            name: sorted({str(v.get("version")) for v in entries})
            for name, entries in (self.doc.get("libraries") or {}).items()
        }
        return {
            "image_id": self.image_id,
            "how": self.how,
            "seconds": round(self.seconds, 1),
            **coverage(self.doc),
            "floor": list(fl.cuda) if fl.cuda else [],
            "floor_source": fl.source,
            "floor_native": fl.native,
            "objects": len(self.doc.get("objects") or []),
            "libraries": libs,
            "torch": {k: torch[k] for k in ("version", "cuda", "arch_list") if k in torch} or None,
            "counts": self.doc.get("counts") or {},
            "toolchains": self.doc.get("toolchains") or None,
            "prediction": table(self.doc),
        }


def _same_arch(image) -> bool:
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return image.attrs.get("Architecture", host) == host


def audit_image(
    client, ref: str, build_dir: Path, *, memory: str = MEMORY, timeout: float = TIMEOUT_S, say=None
) -> Audit:
    """Scan the image ``ref`` (pulled if it is not here), in a container of it or from its export;
    ``say`` gets a progress line every few seconds."""
    from docker.errors import DockerException, ImageNotFound

    try:
        image = client.images.get(ref)
    except ImageNotFound:
        try:
            image = client.images.pull(ref)
        except DockerException as exc:
            raise AuditError(f"{ref}: not here and cannot be pulled ({str(exc).splitlines()[0][:200]})") from None
    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        Path(build_dir).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".audit-", dir=build_dir))
    except OSError as exc:
        raise AuditError(
            f"cannot write the audit's files ({exc.filename}: {exc.strerror}); free disk space, or point "
            f"{CACHE_ENV} at a writable directory"
        ) from None
    try:
        (work / "new").mkdir()
        work.chmod(0o777)
        (work / "new").chmod(0o777)
        t0 = time.monotonic()
        how = "container"
        doc = _in_container(client, image, cache, work, memory, timeout, say) if _same_arch(image) else None
        if doc is None:
            how = "export"
            doc = _from_export(client, image, cache, work, say)
        for entry in (work / "new").iterdir():  # object entries, and lists of what holds no device code
            with contextlib.suppress(OSError):
                entry.replace(cache / entry.name)
        return Audit(ref, image.id, doc, how, time.monotonic() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


PEAK_GB = 4  # most objects need far less than libtorch_cuda.so (near 6 GB); one scan per 4 GB


def jobs_for(memory: str) -> int:
    """Scans at once within ``memory`` (Docker's 8g, 512m): one per PEAK_GB, at least one."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    m = re.fullmatch(r"(\d+)([kmg]?)b?", memory.strip().lower())
    size = int(m.group(1)) * units.get(m.group(2), 1) if m else 8 * 2**30
    return max(1, size // (PEAK_GB * 2**30))


def _in_container(client, image, cache: Path, work: Path, memory: str, timeout: float, say=None) -> dict | None:
    """The scan in a container of the image; None when the image cannot run it (no shell, no Python)."""
    from docker.errors import APIError, DockerException

    package = Path(scan.__file__).resolve().parents[1]
    volumes = {
        str(package): {"bind": f"{PKG_IN}/imagematrix", "mode": "ro"},
        str(elftools_dir()): {"bind": f"{SITE_IN}/elftools", "mode": "ro"},
        str(cuobjdump()): {"bind": TOOL_IN, "mode": "ro"},
        str(cache.resolve()): {"bind": CACHE_IN, "mode": "ro"},
        str(work.resolve()): {"bind": WORK_IN, "mode": "rw"},
    }
    container = None
    try:
        container = client.containers.create(
            image.id,
            entrypoint=["sh", "-c", SHELL],
            command=[],
            user="0:0",
            network_disabled=True,
            read_only=True,
            mem_limit=memory,
            volumes=volumes,
            working_dir="/",
            environment={
                "PYTHONPATH": f"{SITE_IN}:{PKG_IN}",
                "PYTHONDONTWRITEBYTECODE": "1",
                "HOME": WORK_IN,
                scan.JOBS_ENV: str(jobs_for(memory)),
                scan.PROGRESS_ENV: "2" if say else "0",
            },
            tmpfs={"/tmp": "size=64m"},
            labels={"imagematrix.audit": image.id},
        )
        try:
            container.start()
        except APIError:
            return None  # no sh in the image: exported instead
        if say is not None:
            _follow(container, say)
        try:
            code = container.wait(timeout=timeout)["StatusCode"]
        except Exception:  # requests' ReadTimeout: the limit
            with contextlib.suppress(DockerException):
                container.kill()
            raise AuditError(
                f"{image.tags[0] if image.tags else image.id[:19]}: the audit took more than {timeout:.0f}s "
                "(raise the limit, or audit fewer images at once)"
            ) from None
        logs = container.logs().decode(errors="replace").strip()
    finally:
        if container is not None:
            with contextlib.suppress(DockerException):
                container.remove(force=True)
    out = work / "audit.json"
    if code != 0 or not out.is_file():
        if code == NO_PYTHON or "No such file" in logs or "not found" in logs:
            return None
        raise AuditError(
            f"the scan failed in {image.tags[0] if image.tags else image.id[:19]} (exit {code}): {logs[-600:]}"
        )
    return json.loads(out.read_text())


def _follow(container, say) -> None:
    """Pass the scan's progress lines to ``say`` as the container prints them (a thread: the wait is the limit)."""
    import threading

    def pump() -> None:
        with contextlib.suppress(Exception):  # the stream ends (or breaks) with the container
            for raw in container.logs(stream=True, follow=True):
                for line in raw.decode(errors="replace").splitlines():
                    if line.startswith("scan: "):
                        say(line)

    threading.Thread(target=pump, name=f"audit-{container.id[:12]}", daemon=True).start()


def _from_export(client, image, cache: Path, work: Path, say=None) -> dict:
    """The image's shared objects and wheel records, copied from ``docker export``, scanned on this host."""
    from docker.errors import DockerException

    root = work / "root"
    root.mkdir()
    container = client.containers.create(
        image.id, command=["true"], entrypoint=[], labels={"imagematrix.audit": image.id}
    )
    try:
        stream = _Chunks(container.export(chunk_size=1 << 20))
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]  # a stream reader
            for member in tar:
                name = member.name.lstrip("./")
                if not member.isfile() or ".." in Path(name).parts:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                head = src.read(4096)
                keep = name.endswith((".dist-info/RECORD", ".dist-info/METADATA", "torch/version.py"))
                if keep or scan.classify(Path(name), head) is not None or any(t in name for t in TOOLS):
                    dest = root / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with open(dest, "wb") as f:
                        f.write(head)
                        shutil.copyfileobj(src, f, 1 << 20)
    except DockerException as exc:
        raise AuditError(f"cannot export {image.id[:19]}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        with contextlib.suppress(DockerException):
            container.remove(force=True)
    return scan.scan(root, str(cuobjdump()), cache, work / "new", python=None, env=image_env(image), say=say)


TOOLS = ("/bin/nvcc", "/bin/ptxas")  # compilers the toolchain facts are read from, kept from an export


def image_env(image) -> dict[str, str]:
    """The image's configured environment (what its processes start with): where its compilers are."""
    env = image.attrs.get("Config", {}).get("Env") or []
    return dict(e.split("=", 1) for e in env if isinstance(e, str) and "=" in e)


class _Chunks:
    """A file-like view of the docker SDK's chunk iterator, for tarfile's stream mode."""

    def __init__(self, chunks):
        self.chunks, self.buf = iter(chunks), b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        data, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return data


def audit_and_record(client, ref: str, build_dir: Path, cell: str | None = None, **limits: Any) -> Audit:
    """Audit ``ref``, keep the full audit beside the record, and, for a cell, its summary in the record
    (section "audit"): the one path `imagematrix build` and `imagematrix audit` both take. ``limits``:
    ``audit_image``'s memory, timeout and say (a progress line every few seconds)."""
    from imagematrix.core import status

    result = audit_image(client, ref, build_dir, **limits)
    save(result, build_dir)
    if cell is not None:
        status.update_cell(build_dir, cell, "audit", result.summary(), replace=True)
    return result


def built(client, cells, say) -> list:
    """The cells whose image is here; ``say`` is told of each that is not."""
    from docker.errors import ImageNotFound

    out = []
    for cell in cells:
        try:
            client.images.get(cell.ref)
        except ImageNotFound:
            say(f"{cell.id}: not built ({cell.ref}); nothing to audit")
            continue
        out.append(cell)
    return out


def unaudited(client, build_dir: Path, cells) -> list[tuple[Any, Any]]:
    """(cell, image) of each cell whose image is here and has no audit in the record yet."""
    from docker.errors import ImageNotFound

    from imagematrix.core import status

    records, out = status.read_status(build_dir), []
    for cell in cells:
        try:
            image = client.images.get(cell.ref)
        except ImageNotFound:
            continue  # failed or blocked: the build's own lines said so
        audited = records.get(cell.id).audit
        if audited is None or audited.image_id != image.id:
            out.append((cell, image))
    return out


def load(build_dir: Path, image_id: str) -> dict[str, Any] | None:
    """The full audit of an image kept beside the record, or None (none kept, or not one: a FIFO, a file
    too big or too deep, not an object)."""
    from imagematrix.core import files

    path = Path(build_dir) / AUDITS_DIR / f"{image_id.removeprefix('sha256:')}.json"
    try:
        doc = files.read_json(path, "audit")
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and document_problem(doc) is None else None


def document_problem(doc: dict[str, Any]) -> str | None:
    """Why ``doc`` is not a scan document of the shape the prediction reads (None: it is). An audit kept
    on disk may have been edited or damaged: a field of another type is no audit, never a verdict."""

    def strings(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    objects = doc.get("objects", [])
    if not isinstance(objects, list):
        return "'objects' is not a list"
    for o in objects:
        if not isinstance(o, dict) or not isinstance(o.get("path"), str):
            return "an object is not an object with a path"
        if not strings(o.get("sass", [])) or not isinstance(o.get("error", ""), (str, type(None))):
            return f"{o['path'][:80]}: 'sass' or 'error' of another type"
        ptx = o.get("ptx", [])
        if not isinstance(ptx, list) or not all(isinstance(p, list) and len(p) == 2 and strings(p) for p in ptx):
            return f"{o['path'][:80]}: 'ptx' is not a list of [arch, ISA] pairs"
        if not isinstance(o.get("kernels"), (int, type(None))) or isinstance(o.get("kernels"), bool):
            return f"{o['path'][:80]}: 'kernels' is not a count"
    libraries = doc.get("libraries", {})
    if not isinstance(libraries, dict) or not all(
        isinstance(v, list) and all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in v)
        for v in libraries.values()
    ):
        return "'libraries' is not an object of lists of files"
    if not isinstance(doc.get("torch") or {}, dict):
        return "'torch' is not an object"
    return None


def save(audit: Audit, build_dir: Path) -> Path:
    """The full audit document beside the record (the record keeps its summary)."""
    out = Path(build_dir) / AUDITS_DIR / f"{audit.image_id.removeprefix('sha256:')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"ref": audit.ref, "image_id": audit.image_id, "how": audit.how, **audit.doc}))
    os.replace(tmp, out)
    return out
