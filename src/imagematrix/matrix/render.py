"""Turn one cell into one multi-stage Dockerfile and its build context.

A cell's Dockerfile holds one stage per target of its lineage (``devel`` →
``ray-devel`` → ``ray-runtime``). Each stage's text depends only on its own
cell, so the shared stages of a family are byte-identical across cells and
BuildKit builds them once. A slim target gets a ``prune-<target>`` stage, a
throw-away copy of its parent that is trimmed before the runtime stage copies
from it.

Rendering is pure: the same matrix and fragments give byte-identical output.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import jinja2.sandbox

from imagematrix.core import contract
from imagematrix.core.contract import MANIFEST_PATH
from imagematrix.core.errors import DiskWriteError, UsageError
from imagematrix.matrix import grammar
from imagematrix.matrix.model import Cell, Matrix
from imagematrix.matrix.schema import FRAGMENT_SUFFIX, SCHEMA_VERSION

CA_SECRET_ID = "ca-bundle"
CA_SECRET_PATH = f"/run/secrets/{CA_SECRET_ID}"
UV_PROJECT_DIR = "imagematrix/uv-project"  # a locked target's pyproject.toml and uv.lock, in the context
LOCK_IN = "/etc/imagematrix/uv.lock"  # the lock an image's environment was synced from
WHEELHOUSE_DIR = "wheelhouse"  # build.wheelhouse's files, linked into the context
WHEELHOUSE_IN = "/tmp/imagematrix-wheelhouse"  # where network steps see them
FILES_DIR = "files"  # fragments' support files: dockerfiles/files -> <context>/files

# Every network step mounts the CA bundle secret (absent unless --ca-cert is given)
# and points pip, uv, curl and requests at it; nothing is written into a layer.
# Mode 0444: a step that runs as another user (USER 1000) must read it too; it is a public
# CA bundle, and a secret mount never lands in a layer whatever its mode.
SECRET_MOUNT = f"--mount=type=secret,id={CA_SECRET_ID},mode=0444"
WITH_CA = (
    f"if [ -r {CA_SECRET_PATH} ]; then export PIP_CERT={CA_SECRET_PATH} "
    f"SSL_CERT_FILE={CA_SECRET_PATH} REQUESTS_CA_BUNDLE={CA_SECRET_PATH} "
    f"CURL_CA_BUNDLE={CA_SECRET_PATH} UV_NATIVE_TLS=true; fi &&"
)
# With build.wheelhouse, network steps also mount it and install from it alone (air-gapped hosts).
WHEELHOUSE_MOUNT = f" --mount=type=bind,source={WHEELHOUSE_DIR},target={WHEELHOUSE_IN}"
OFFLINE = (
    f" export PIP_NO_INDEX=1 PIP_FIND_LINKS={WHEELHOUSE_IN} UV_OFFLINE=1 UV_NO_INDEX=1 UV_FIND_LINKS={WHEELHOUSE_IN} &&"
)


@dataclass(frozen=True)
class Rendered:
    """Everything a build of one cell needs: Dockerfile text and context files."""

    cell: Cell
    dockerfile: str
    manifest: dict
    input_hash: str
    stages: tuple[str, ...]
    files: dict[str, bytes]  # context-relative path -> content (includes the manifests)
    links: dict[str, Path] = field(default_factory=dict)  # context-relative path -> a file linked in (wheelhouse)

    @property
    def stage(self) -> str:
        """The stage to build (``--target``)."""
        return self.cell.target.name


def prune_stage(target: str) -> str:
    return f"prune-{target}"


@functools.lru_cache(maxsize=8)
def _environment(fragments_dir: Path) -> jinja2.Environment:
    # One environment per fragments directory: jinja compiles each fragment once and
    # recompiles it when the file changes (auto_reload checks mtimes), so every cell
    # after the first renders without parsing templates again.
    # Sandboxed: rendering (a dry run, `invoke render`) must never run host code; fragments
    # need only simple expressions. Their RUN lines are trusted build code all the same.
    return jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(fragments_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _support_files(m: Matrix) -> dict[str, bytes]:
    root = m.fragments_dir / FILES_DIR
    if not root.is_dir():
        return {}
    return {
        f"{FILES_DIR}/{p.relative_to(root).as_posix()}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


_FILE_SHA: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, computed once per (path, size, mtime) in this process (wheels are big)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_SHA[key] = h.hexdigest()
    return _FILE_SHA[key]


def _wheelhouse(m: Matrix) -> dict[str, Path]:
    if m.wheelhouse is None:
        return {}
    # Dotfiles (.gitkeep) are not distributions.
    return {
        f"{WHEELHOUSE_DIR}/{p.name}": p
        for p in sorted(m.wheelhouse.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return "sha256:" + h.hexdigest()


def manifest(m: Matrix, cell: Cell, input_hash: str) -> dict:
    """The cell's manifest (the image contract), written to MANIFEST_PATH and mirrored in labels."""
    t = cell.target
    return contract.manifest(
        id=cell.id,
        image=cell.image,
        tag=cell.tag,
        target=t.name,
        kind=t.kind,
        parent=t.parent,
        relation=t.relation,
        lineage=list(t.lineage),
        cuda=None if cell.cuda.cpu else cell.cuda.version,
        torch_cuda=cell.cuda.torch_cuda,
        python=cell.python,
        torch=cell.packages.get("torch", "") if t.holds_torch else None,
        features=list(cell.features),
        pyg_extensions=list(t.pyg_extensions),
        extensions=cell.cuda.extensions,
        input_hash=input_hash,
        **({"optional_libraries": [list(o) for o in t.optional_libraries]} if t.optional_libraries else {}),
        **({"environment": {"lock": LOCK_IN, "sha256": cell.uv_lock.sha256}} if cell.uv_lock else {}),
        **({"platform": cell.platform} if cell.platform else {}),
        **({"policy": {"keep_tests": True}} if t.options.get("keep_tests") else {}),
    )


def dockerfile_quote(value: str) -> str:
    """``value`` as a Dockerfile double-quoted word that reads back exactly: \\, " and $ escaped,
    UTF-8 kept. Control characters cannot be written (the matrix refuses them in labels)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError(f"{value!r}: a Dockerfile LABEL cannot carry control characters (newlines, tabs)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def comment_text(value: str) -> str:
    """``value`` for a Dockerfile comment: control characters escaped, so it stays one comment line
    (a newline would start an instruction). File names reach comments; matrix values are checked at load."""
    return grammar.CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", value)


def _label_block(lab: dict[str, str]) -> str:
    lines = [f"{k}={dockerfile_quote(v)}" for k, v in lab.items()]
    return "LABEL " + " \\\n      ".join(lines) + "\n"


def render_cell(m: Matrix, cell: Cell) -> Rendered:
    """Render ``cell`` (and the stages of its lineage) into a Dockerfile and context."""
    env = _environment(m.fragments_dir)
    support = _support_files(m)
    links = _wheelhouse(m)
    support_hash = _hash(
        *(x for k in sorted(support) for x in (k, support[k])),
        *(x for k in sorted(links) for x in (k, file_sha256(links[k]))),
    )
    stages_text: list[str] = []
    stage_names: list[str] = []
    files: dict[str, bytes] = dict(support)
    parent_hash = _hash("imagematrix", str(SCHEMA_VERSION), support_hash)
    man: dict = {}
    for name in cell.target.lineage:
        sc = m.stage_cell(cell, name)
        t = sc.target
        ctx = {
            "cell": sc,
            "target": t,
            "cuda": sc.cuda,
            "python": sc.python,
            "python_nodot": sc.python.replace(".", ""),
            "packages": sc.packages,
            "options": t.options,
            "features": sc.features,
            "pyg_extensions": t.pyg_extensions,
            "stage": t.name,
            "parent_stage": t.parent,
            "source_stage": prune_stage(t.name) if t.prune else t.parent,
            "secret_mount": SECRET_MOUNT + (WHEELHOUSE_MOUNT if links else ""),
            "with_ca": WITH_CA + (OFFLINE if links else ""),
            "pin": lambda name, extras=None, _p=sc.packages: _pin(name, _p, extras),
            "uv_lock": sc.uv_lock,
            "uv_project": UV_PROJECT_DIR,
        }
        if t.uv_lock is not None:
            files.update({f"{UV_PROJECT_DIR}/{k}": v for k, v in t.uv_lock.files.items()})
        parts: list[str] = []
        if t.relation == "slim" and t.prune:
            parts.append(f"FROM {t.parent} AS {prune_stage(t.name)}\n")
            parts += [_fragment(env, f, ctx) for f in t.prune]
            parts.append("\n")
            stage_names.append(prune_stage(t.name))
        base_image = sc.base(t.base)
        parts.append(f"FROM {t.parent if t.relation == 'extends' else base_image} AS {t.name}\n")
        parts += [_fragment(env, f, ctx) for f in t.fragments]
        body = "".join(parts)
        stage_hash = _hash(parent_hash, body)
        man = manifest(m, sc, stage_hash)
        man_path = f"imagematrix/{t.name}.json"
        files[man_path] = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
        inherited_base = base_image or _root_base(m, sc)
        lock_copy = f"COPY {UV_PROJECT_DIR}/uv.lock {LOCK_IN}\n" if sc.uv_lock else ""  # what the suite checks against
        tail = (
            lock_copy
            + f"COPY {man_path} {MANIFEST_PATH}\n"
            + _label_block(contract.labels(man, inherited_base, m.labels))
        )
        stages_text.append(f"# ---- stage {t.name}: {sc.id} ----\n{body}{tail}")
        stage_names.append(t.name)
        parent_hash = stage_hash
    source, fragments = comment_text(m.path.name), comment_text(m.fragments_dir.name)
    header = (
        f"# Rendered by imagematrix from {source} for cell {cell.id}.\n"
        f"# Do not edit: change {source} or the fragments in {fragments}/ and run `invoke render`.\n"
        f"# Build: docker buildx build --target {cell.target.name} -f Dockerfile .\n\n"
    )
    dockerfile = header + "\n".join(stages_text)
    files["cell.json"] = files[f"imagematrix/{cell.target.name}.json"]
    return Rendered(cell, dockerfile, man, man["input_hash"], tuple(stage_names), files, links)


def is_current(m: Matrix, cell: Cell, image_labels: dict[str, str] | None) -> bool:
    """Was an image with these labels built from what ``cell`` renders now? (Its input-hash label.)

    The one answer test runs, size reports and publishing use; a build's skip decision is
    stricter (the build hash also covers base image ids and build labels)."""
    try:
        return (image_labels or {}).get(contract.INPUT_HASH_LABEL) == render_cell(m, cell).input_hash
    except UsageError:  # a fragment that no longer renders: nothing built earlier is current
        return False


def _root_base(m: Matrix, cell: Cell) -> str:
    name = cell.target.lineage[0]
    return cell.base(m.targets[name].base)


def _pin(name: str, packages: dict[str, str], extras: str | None) -> str:
    spec = f"{name}[{extras}]" if extras else name
    version = packages.get(name)
    return f"{spec}=={version}" if version else spec


def _template_line(tb, default: str) -> str:
    """``file:line`` of the innermost template frame of a render traceback (jinja maps them to template lines)."""
    where = default
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(FRAGMENT_SUFFIX) or code.co_name in ("top-level template code", "template"):
            where = f"{code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _fragment(env: jinja2.Environment, name: str, ctx: dict) -> str:
    file = f"{name}{FRAGMENT_SUFFIX}"
    assert isinstance(env.loader, jinja2.FileSystemLoader)
    where = env.loader.searchpath[0]
    path = f"{where}/{file}"
    cid = ctx["cell"].id
    try:
        text = env.get_template(file).render(ctx)
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"{exc.filename or path}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise UsageError(
            f"{_template_line(exc.__traceback__, path)}: {exc.message} while rendering cell {cid} "
            "(values come from matrix.yaml: packages, targets.*.options, cuda.*)"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise UsageError(
            f"{_template_line(exc.__traceback__, path)}: includes {exc.name!r}, which is not in {where} "
            f"(while rendering cell {cid})"
        ) from None
    except jinja2.sandbox.SecurityError as exc:
        raise UsageError(
            f"{_template_line(exc.__traceback__, path)}: {exc} while rendering cell {cid}: fragments are rendered "
            "in a sandbox and may not reach Python internals; use plain expressions"
        ) from None
    except Exception as exc:  # any other error in a fragment's expression (TypeError, ZeroDivisionError ...)
        raise UsageError(
            f"{_template_line(exc.__traceback__, path)}: {type(exc).__name__}: {exc} while rendering cell {cid}"
        ) from None
    if not text.endswith("\n"):
        text += "\n"
    return f"# fragment: {name}\n{text}"


def write_context(r: Rendered, out_dir: Path) -> Path:
    """Write the Dockerfile and context files to ``out_dir/<cell id>/``; returns that directory.

    Files are replaced atomically and stale ones removed, so a context never mixes renders.
    """
    ctx = out_dir / r.cell.id
    wanted = {"Dockerfile": r.dockerfile.encode(), **r.files}
    needed = sum(map(len, wanted.values()))
    for rel, data in wanted.items():
        dest = ctx / rel
        if dest.is_file() and dest.read_bytes() == data:
            continue
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DiskWriteError.of(dest, exc, needed) from None
    for rel, src in r.links.items():
        dest = ctx / rel
        st = src.stat()
        if dest.is_file() and (dest.stat().st_size, dest.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            continue
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)  # no copy of a 1 GB wheel per cell where the filesystem allows
            except OSError:
                shutil.copy2(src, tmp)
            tmp.replace(dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DiskWriteError.of(dest, exc, st.st_size) from None
    wanted = {**wanted, **dict.fromkeys(r.links, b"")}
    for sub in ("imagematrix", FILES_DIR, WHEELHOUSE_DIR):
        root = ctx / sub
        if root.is_dir():
            for p in sorted(root.rglob("*"), reverse=True):
                rel = p.relative_to(ctx).as_posix()
                if p.is_file() and rel not in wanted:
                    p.unlink()
                elif p.is_dir() and not any(p.iterdir()):
                    shutil.rmtree(p)
    return ctx
