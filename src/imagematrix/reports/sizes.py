"""`invoke sizes`: how big each built image is, where the bytes are, and whether it fits its budget.

Per image: its size, its biggest layers (image history), its biggest directories
and a split into buckets (base, Python, torch, nvidia, ...) from one short-lived
container listing every file, the devel -> runtime difference, and the target's
``budget_gb``. Each measurement lands in ``build/status.json`` (section
"sizes"); the plot is drawn from those records (``sizeplot``).

Sizes are apparent file bytes (what a layer stores), in decimal GB like
``docker images``. A hard-linked file counts once. Bytes the image stores but
its final filesystem does not show (a file rewritten or deleted by a later
layer) are its *layer overhead*: the price of a RUN that touches copied files.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from imagematrix.core.builddir import utcnow
from imagematrix.core.contract import INPUT_HASH_LABEL
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.text import fmt_bytes
from imagematrix.matrix.model import Cell, Matrix

SECTION = "sizes"
GB = 1e9
# Buckets come from what is installed: each top-level package of site-packages is its own, except
# families of many distributions that are one thing to a reader (below); the biggest MAX_PACKAGES are
# kept and the rest joins "other". "base" (the base image's files) and "Python" (the interpreter) always.
FIXED = ("base", "Python")
OTHER = "other"
MAX_PACKAGES = 8
PACKAGE_GROUPS = (  # distribution or top-level name -> group; first match wins
    ("torch", "torch"),
    ("torchgen", "torch"),
    ("functorch", "torch"),
    ("torchvision", "torch"),
    ("torchaudio", "torch"),
    ("nvidia", "nvidia"),
    ("nvidia_*", "nvidia"),
    ("cuda", "nvidia"),
    ("cuda_*", "nvidia"),
    ("torch_geometric", "PyG"),
    ("pyg_lib", "PyG"),
    ("torch_scatter", "PyG"),
    ("torch_sparse", "PyG"),
    ("torch_cluster", "PyG"),
    ("torch_spline_conv", "PyG"),
)
SYSTEM_PREFIXES = ("/usr", "/usr/local")  # an interpreter installed here belongs to the OS
BASE_LABEL = "org.opencontainers.image.base.name"
# Every file of the image, NUL-separated: type, bytes, link count, inode, path. GNU find (Debian, Ubuntu).
FIND_ARGV = ["find", "/", "-xdev", "(", "-type", "f", "-o", "-type", "l", ")", "-printf", r"%y %s %n %i %p\0"]
PROBE_TIMEOUT_S = 600
LAYOUT_CODE = """
import json, os, site, sys, sysconfig
v = sysconfig.get_config_vars()
lib = os.path.join(v.get("LIBDIR") or "", v.get("LDLIBRARY") or "")
real = os.path.realpath
print(json.dumps({
    "version": sys.version.split()[0],
    "prefix": real(sys.prefix),
    "base_prefix": real(sys.base_prefix),
    "site": sorted({real(p) for p in site.getsitepackages()}),
    "stdlib": sorted({real(sysconfig.get_path("stdlib")), real(sysconfig.get_path("platstdlib"))}),
    "include": real(sysconfig.get_path("include")),
    "executable": real(sys.executable),
    "libpython": real(lib) if os.path.isfile(lib) else None,
}))
"""
# The knobs that trade size for debuggability (matrix.yaml targets.*.options), cheapest loss first.
KNOBS = (
    ("drop_static_libs", "deletes static .a libraries: nothing can link them statically any more"),
    ("strip_debug", "strips debug sections from .so files: profilers and stack traces lose file:line info"),
)


class SizesError(ImagematrixError):
    pass


# --- pure parts: parsing, bucketing, judging, formatting -------------------------------


@dataclass(frozen=True)
class Entry:
    """One file of an image's final filesystem."""

    kind: str  # "f" file, "l" symlink
    size: int
    links: int
    inode: int
    path: str


def parse_listing(raw: bytes) -> list[Entry]:
    """Parse ``FIND_ARGV``'s output; unreadable records are skipped, never guessed."""
    out = []
    for rec in raw.split(b"\0"):
        parts = rec.split(b" ", 4)
        if len(parts) != 5:
            continue
        kind, size, links, inode, path = parts
        try:
            out.append(Entry(kind.decode(), int(size), int(links), int(inode), path.decode(errors="replace")))
        except ValueError:
            continue
    return out


def counted(entries: Iterable[Entry]) -> Iterable[Entry]:
    """Entries whose bytes a layer stores: files, each hard-linked inode once (symlinks cost ~nothing)."""
    seen: set[int] = set()
    for e in entries:
        if e.kind != "f":
            continue
        if e.links > 1:
            if e.inode in seen:
                continue
            seen.add(e.inode)
        yield e


@dataclass(frozen=True)
class Layout:
    """Where the image's interpreter and environment live (from ``LAYOUT_CODE``)."""

    prefix: str = ""
    base_prefix: str = ""
    site: tuple[str, ...] = ()
    stdlib: tuple[str, ...] = ()
    include: str = ""
    executable: str = ""
    libpython: str | None = None
    version: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layout:
        return cls(
            prefix=data.get("prefix", ""),
            base_prefix=data.get("base_prefix", ""),
            site=tuple(data.get("site", ())),
            stdlib=tuple(data.get("stdlib", ())),
            include=data.get("include", ""),
            executable=data.get("executable", ""),
            libpython=data.get("libpython"),
            version=data.get("version", ""),
        )

    def python_roots(self) -> tuple[str, ...]:
        """Trees and files that make up the interpreter (site dirs inside them are not Python)."""
        roots = [*self.stdlib, self.include, self.executable, self.libpython or "", self.prefix]
        if self.base_prefix and self.base_prefix not in SYSTEM_PREFIXES:
            roots.append(self.base_prefix)  # a private interpreter (/opt/python): all of it
        return tuple(r for r in roots if r and r != "/")

    def env_roots(self) -> tuple[str, ...]:
        """What a runtime stage copies: the venv, and the interpreter when it is not the OS's."""
        roots = [self.prefix] if self.prefix and self.prefix not in SYSTEM_PREFIXES else []
        if self.base_prefix and self.base_prefix not in SYSTEM_PREFIXES and self.base_prefix != self.prefix:
            roots.append(self.base_prefix)
        return tuple(roots)


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_VERSION_TAIL = re.compile(r"-\d.*$")


def package_name(entry: str) -> str:
    """Normalised project name of a site-packages entry: ``nvidia_cublas-13.1.dist-info`` -> ``nvidia_cublas``."""
    if entry.endswith((".dist-info", ".egg-info", ".data")):
        name = _VERSION_TAIL.sub("", entry.rsplit(".", 1)[0])
    else:  # a package dir, torch_scatter.libs, typing_extensions.py, foo.cpython-313-x86_64-linux-gnu.so, x.pth
        name = entry.split(".", 1)[0]
    return name.lower().replace("-", "_").replace(".", "_")


def package_bucket(entry: str) -> str:
    """The bucket of a site-packages entry: its family (torch, nvidia, PyG) or its own top-level name."""
    name = package_name(entry)
    for pattern, bucket in PACKAGE_GROUPS:
        if fnmatch.fnmatchcase(name, pattern):
            return bucket
    return name or OTHER


def classify(path: str, layout: Layout, base_paths: frozenset[str] | set[str] = frozenset()) -> str:
    """The bucket of one file: base image, a site-packages package, the interpreter, or other."""
    if path in base_paths:
        return "base"
    for site_dir in layout.site:
        if under(path, site_dir) and path != site_dir:
            return package_bucket(path[len(site_dir.rstrip("/")) + 1 :].split("/", 1)[0])
    if any(under(path, r) for r in layout.python_roots()):
        return "Python"
    return "other"


def bucket_bytes(
    entries: Iterable[Entry], layout: Layout, base_paths=frozenset(), keep: int = MAX_PACKAGES
) -> dict[str, int]:
    """Bytes per bucket: base, Python, the ``keep`` biggest packages (biggest first), then other."""
    raw: dict[str, int] = {}
    for e in counted(entries):
        bucket = classify(e.path, layout, base_paths)
        raw[bucket] = raw.get(bucket, 0) + e.size
    packages = sorted((b for b in raw if b not in (*FIXED, OTHER)), key=lambda b: (-raw[b], b))
    out = {b: raw.get(b, 0) for b in FIXED}
    out.update({b: raw[b] for b in packages[:keep]})
    out[OTHER] = raw.get(OTHER, 0) + sum(raw[b] for b in packages[keep:])
    return out


def bucket_order(bucket_maps: Iterable[Mapping[str, int | float]]) -> list[str]:
    """Every bucket of several measurements, for one legend: base, Python, packages by total size, other."""
    totals: dict[str, float] = {}
    for m in bucket_maps:
        for b, v in m.items():
            totals[b] = totals.get(b, 0) + v
    packages = sorted((b for b in totals if b not in (*FIXED, OTHER)), key=lambda b: (-totals[b], b))
    return [*FIXED, *packages, OTHER]


def dir_bytes(entries: Iterable[Entry], max_depth: int) -> dict[str, int]:
    """Bytes under each directory down to ``max_depth`` path components ("/" included)."""
    out: dict[str, int] = {}
    for e in counted(entries):
        parts = PurePosixPath(e.path).parts[1:-1]
        out["/"] = out.get("/", 0) + e.size
        for i in range(min(len(parts), max_depth)):
            d = "/" + "/".join(parts[: i + 1])
            out[d] = out.get(d, 0) + e.size
    return out


def biggest_dirs(
    sizes: Mapping[str, int], n: int, dominant: float = 0.8, skip: Iterable[str] = ()
) -> list[tuple[str, int]]:
    """The ``n`` biggest directories worth looking at.

    A directory one child almost fills (>= ``dominant`` of its bytes) says nothing
    its child does not, so only the child is listed. "/" and the ``skip`` dirs
    (site-packages and its parents: the env column already says how big they are)
    never are.
    """
    skip = set(skip) | {"/"}
    children: dict[str, int] = {}
    for d, b in sizes.items():
        if d != "/":
            parent = str(PurePosixPath(d).parent)
            children[parent] = max(children.get(parent, 0), b)
    useful = [(d, b) for d, b in sizes.items() if d not in skip and b > 0 and children.get(d, 0) < dominant * b]
    return sorted(useful, key=lambda x: (-x[1], x[0]))[:n]


def short_command(created_by: str, width: int = 90) -> str:
    text = re.sub(r"^(RUN )?/bin/sh -c (#\(nop\)\s*)?", r"\1", created_by or "").strip()
    text = re.sub(r"\s+", " ", text.replace(" # buildkit", ""))
    return text if len(text) <= width else text[: width - 1] + "…"


def biggest_layers(history: list[dict], n: int, base: str | None = None) -> list[dict]:
    """The ``n`` biggest layers, newest-first history in; a layer with no command is the base image's."""
    layers: list[dict] = []
    for h in history:
        command = short_command(h.get("CreatedBy", ""))
        if not command:
            command = f"(base image {base})" if base else "(base image)"
        layers.append({"bytes": int(h.get("Size") or 0), "command": command})
    return sorted((x for x in layers if int(x["bytes"]) > 0), key=lambda x: -int(x["bytes"]))[:n]


@dataclass(frozen=True)
class Verdict:
    state: str  # "ok", "over", "no budget", "missing"
    summary: str

    @property
    def failed(self) -> bool:
        return self.state == "over"


def judge_budget(size_bytes: int | None, budget_gb: float | None) -> Verdict:
    if size_bytes is None:
        return Verdict("missing", "not built")
    size = fmt_bytes(size_bytes)
    if budget_gb is None:
        return Verdict("no budget", f"{size} (no budget_gb)")
    share = size_bytes / (budget_gb * GB)
    if size_bytes > budget_gb * GB:
        return Verdict("over", f"{size} OVER budget {budget_gb:g} GB ({share:.0%})")
    return Verdict("ok", f"{size} of {budget_gb:g} GB ({share:.0%})")


# --- measuring a real image ------------------------------------------------------------


@dataclass
class Measurement:
    cell: str
    ref: str
    image_id: str
    size_bytes: int
    fs_bytes: int
    layer_overhead_bytes: int
    env_bytes: int
    static_lib_bytes: int  # .a files in the environment: what drop_static_libs would save
    env_roots: list[str]
    site_dirs: list[str]
    base: str | None
    base_bytes: int | None
    buckets: dict[str, int]
    layers: list[dict]
    dirs: list[list]
    python: str
    input_hash: str | None = None  # the image's imagematrix.input-hash label
    notes: list[str] = field(default_factory=list)


def _client():
    from imagematrix.build.engine import docker_client

    return docker_client()


def run_probe(client, image_ref: str, label: str, with_python: bool = True) -> tuple[list[Entry], dict | None]:
    """List every file of ``image_ref`` (and its Python layout) in a short-lived container, always removed."""
    import docker

    name = f"imagematrix-sizes-{re.sub(r'[^a-zA-Z0-9_.-]', '-', label)}-{os.getpid()}"
    container = None
    try:
        container = client.containers.run(
            image_ref,
            entrypoint=["sleep"],
            command=["infinity"],
            name=name,
            detach=True,
            network_disabled=True,
            labels={"imagematrix.reports.sizes": label},
        )
        layout = None
        if with_python:
            code, out = container.exec_run(["timeout", "120", "python3", "-c", LAYOUT_CODE], demux=True)
            if code == 0 and out[0]:
                layout = json.loads(out[0].decode().strip().splitlines()[-1])
        code, out = container.exec_run(["timeout", str(PROBE_TIMEOUT_S), *FIND_ARGV], demux=True)
        stdout, stderr = out
        if code not in (0, 1) or not stdout:  # 1: some file vanished or was unreadable; the rest is listed
            why = (stderr or b"").decode(errors="replace").strip()[-500:]
            raise SizesError(
                f"could not list the files of {image_ref} (find exited {code}): {why}. The size probe needs GNU "
                "find and coreutils (sleep, timeout) in the image, as Debian and Ubuntu bases have"
            )
        return parse_listing(stdout), layout
    except docker.errors.APIError as exc:
        raise SizesError(f"the size probe could not run in {image_ref}: {exc.explanation or exc}") from None
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


class Prober:
    """Measures images, each at most once per run (a runtime's parent is often measured twice)."""

    def __init__(self, client, top: int = 5):
        self.client = client
        self.top = top
        self._base_paths: dict[str, frozenset[str] | None] = {}
        self._done: dict[str, Measurement] = {}

    def image(self, ref: str):
        import docker

        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    def base_paths(self, ref: str | None) -> frozenset[str] | None:
        if not ref:
            return None
        if ref not in self._base_paths:
            img = self.image(ref)
            if img is None:
                self._base_paths[ref] = None
            else:
                entries, _ = run_probe(self.client, img.id, f"base-{ref}", with_python=False)
                self._base_paths[ref] = frozenset(e.path for e in entries)
        return self._base_paths[ref]

    def measure(self, cell_id: str, ref: str, image=None) -> Measurement | None:
        image = image or self.image(ref)
        if image is None:
            return None
        if image.id in self._done:
            return self._done[image.id]
        notes = []
        entries, raw_layout = run_probe(self.client, image.id, cell_id)
        layout = Layout.from_json(raw_layout or {})
        if raw_layout is None:
            notes.append("no python3 in the image: Python and package buckets are empty")
        base = (image.labels or {}).get(BASE_LABEL)
        base_img = self.image(base) if base else None
        base_paths = self.base_paths(base) or frozenset()
        if base and base_img is None:
            notes.append(f"base image {base} is not here: its files count as 'other'")
        fs = sum(e.size for e in counted(entries))
        size = int(image.attrs.get("Size") or 0)
        buckets = bucket_bytes(entries, layout, base_paths)
        overhead = size - fs
        buckets["other"] += max(overhead, 0)  # the bars add up to the image size
        roots = layout.env_roots()
        in_env = [e for e in counted(entries) if any(under(e.path, r) for r in roots)]
        env = sum(e.size for e in in_env)
        static = sum(e.size for e in in_env if e.path.endswith(".a"))
        depth = max([len(PurePosixPath(s).parts) + 1 for s in layout.site] + [4])
        m = Measurement(
            cell=cell_id,
            ref=ref,
            image_id=image.id,
            size_bytes=size,
            fs_bytes=fs,
            layer_overhead_bytes=overhead,
            env_bytes=env,
            static_lib_bytes=static,
            env_roots=list(roots),
            site_dirs=list(layout.site),
            base=base,
            base_bytes=int(base_img.attrs.get("Size") or 0) if base_img else None,
            buckets=buckets,
            layers=biggest_layers(image.history(), self.top, base),
            dirs=[list(x) for x in biggest_dirs(dir_bytes(entries, depth), self.top, skip=_ancestors(layout.site))],
            python=layout.version,
            input_hash=(image.labels or {}).get(INPUT_HASH_LABEL),
            notes=notes,
        )
        self._done[image.id] = m
        return m


def _ancestors(paths: Iterable[str]) -> set[str]:
    """The paths and every directory above them."""
    out = set()
    for p in paths:
        pp = PurePosixPath(p)
        out |= {str(pp), *(str(a) for a in pp.parents)}
    return out


# --- the report ------------------------------------------------------------------------


def parent_cell(m: Matrix, cell: Cell) -> Cell | None:
    """The devel image a runtime (slim) cell copies from."""
    t = cell.target
    return m.stage_cell(cell, t.parent) if t.relation == "slim" and t.parent else None


def implemented_knobs(m: Matrix, cell: Cell) -> tuple[str, ...]:
    """The size knobs (KNOBS) that the fragments this cell renders read: advice names only those."""
    texts = []
    for name in cell.target.lineage:
        t = m.targets[name]
        for frag in (*t.prune, *t.fragments):
            with contextlib.suppress(OSError):
                texts.append((m.fragments_dir / f"{frag}.Dockerfile").read_text())
    return tuple(k for k, _ in KNOBS if any(f"options.{k}" in x or f'options.get("{k}"' in x for x in texts))


def advice(
    meas: Measurement,
    options: Mapping[str, Any],
    budget_gb: float | None,
    target: str,
    knobs: Iterable[str] | None = None,
) -> list[str]:
    """What to look at when an image is over budget, biggest first. ``knobs``: the ones its fragments implement."""
    tips = []
    if meas.layers:
        top = meas.layers[0]
        tips.append(f"biggest layer {fmt_bytes(top['bytes'])}: {top['command']}")
    if meas.dirs:
        tips.append("biggest directories: " + ", ".join(f"{d} {fmt_bytes(b)}" for d, b in meas.dirs[:3]))
    if meas.layer_overhead_bytes > 0.02 * meas.size_bytes:
        tips.append(
            f"{fmt_bytes(meas.layer_overhead_bytes)} are stored in layers but hidden in the final filesystem: "
            "a later RUN rewrote or deleted copied files (chmod/chown/rm after COPY); do it in the prune stage"
        )
    usable = {k for k, _ in KNOBS} if knobs is None else set(knobs)
    for knob, why in KNOBS:
        if knob in usable and not options.get(knob):
            saves = f" (saves {fmt_bytes(meas.static_lib_bytes)})" if knob == "drop_static_libs" else ""
            tips.append(f"set targets.{target}.options.{knob}: true{saves}; it {why}")
    if budget_gb is not None:
        tips.append(f"or raise targets.{target}.budget_gb ({budget_gb:g}) in the matrix if the growth is wanted")
    return tips


def record(meas: Measurement, verdict: Verdict, budget_gb: float | None, parent: dict | None) -> dict:
    data: dict = {"state": verdict.state, "summary": verdict.summary, "measured": utcnow(), "budget_gb": budget_gb}
    data.update({k: v for k, v in asdict(meas).items() if k != "cell"})
    if parent is not None:
        data["parent"] = parent
    return data


def parent_diff(meas: Measurement, parent_id: str, pm: Measurement | None, rebuild: str) -> dict:
    if pm is None:
        return {"cell": parent_id, "missing": True, "build": rebuild}
    return {
        "cell": parent_id,
        "size_bytes": pm.size_bytes,
        "saved_bytes": pm.size_bytes - meas.size_bytes,
        "env_saved_bytes": pm.env_bytes - meas.env_bytes,
        "buckets_saved": {
            b: pm.buckets.get(b, 0) - meas.buckets.get(b, 0) for b in bucket_order([pm.buckets, meas.buckets])
        },
    }


def short_path(path: str, site_dirs: Iterable[str]) -> str:
    for s in site_dirs:
        if under(path, s):
            return "site-packages" + path[len(s.rstrip("/")) :]
    return path


@dataclass
class CellReport:
    cell: Cell
    verdict: Verdict
    rebuild: str
    meas: Measurement | None = None
    parent: dict | None = None
    tips: list[str] = field(default_factory=list)


def measure_cells(m: Matrix, cells: list[Cell], build_dir, prober: Prober, matrix_arg: str) -> list[CellReport]:
    """Measure each cell's image (and its devel parent) and record it in status.json."""
    from imagematrix.core.options import build_command
    from imagematrix.core.status import update_cell
    from imagematrix.matrix.render import is_current

    def rebuild(c: Cell) -> str:
        return build_command(matrix_arg, c.cuda.version, c.python, c.target.name)

    reports = []
    for cell in cells:
        t = cell.target
        meas = prober.measure(cell.id, cell.ref)
        verdict = judge_budget(meas.size_bytes if meas else None, t.budget_gb)
        rep = CellReport(cell, verdict, rebuild(cell), meas)
        if meas is not None and not is_current(m, cell, {INPUT_HASH_LABEL: meas.input_hash or ""}):
            meas.notes.append(f"stale: built from other inputs than the matrix renders now; rebuild: {rep.rebuild}")
        if meas is None:
            data = {"state": verdict.state, "summary": verdict.summary, "measured": utcnow(), "build": rep.rebuild}
        else:
            pc = parent_cell(m, cell)
            if pc is not None:
                rep.parent = parent_diff(meas, pc.id, prober.measure(pc.id, pc.ref), rebuild(pc))
            if verdict.failed:
                rep.tips = advice(meas, t.options, t.budget_gb, t.name, implemented_knobs(m, cell))
            data = record(meas, verdict, t.budget_gb, rep.parent) | {"advice": rep.tips}
        update_cell(build_dir, cell.id, SECTION, data, replace=True)
        reports.append(rep)
    return reports
