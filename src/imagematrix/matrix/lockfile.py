"""A target's environment from a uv project (``pyproject.toml`` + ``uv.lock``): what the lock pins.

The lock is the one declaration: the image is built from it (``uv sync --frozen``), its labels and
manifest take torch's version and CUDA from it, and the suite checks the installed distributions
against the copy of it the image carries (``/etc/imagematrix/uv.lock``).
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from imagematrix.matrix import grammar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LOCK_FILE, PROJECT_FILE = "uv.lock", "pyproject.toml"
_LOCAL_CUDA = re.compile(r"\+cu(\d+)(\d)$")  # torch 2.10.0+cu128 -> 12.8
# Packages whose version names the CUDA a torch wheel from PyPI carries: cuda-toolkit 13.2.2 -> 13.2.
_CUDA_CARRIERS = ("cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13")


class LockError(ValueError):
    """The uv project cannot be read; the text says which file and why."""


@dataclass(frozen=True)
class UvLock:
    project: Path
    sha256: str  # of uv.lock's bytes
    packages: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> versions (several where uv forked)
    requires_python: str = ""
    torch: str | None = None  # the locked torch, without its local version
    torch_cuda: str | None = None  # major.minor torch's wheels carry, None: CPU build or no torch

    @property
    def files(self) -> dict[str, bytes]:
        return {name: (self.project / name).read_bytes() for name in (PROJECT_FILE, LOCK_FILE)}


MAX_LOCK_BYTES = 50 * 1024 * 1024  # a real uv.lock of a large ML environment is a few MB


def read_uv_lock(project: Path) -> UvLock:
    lock_path = project / LOCK_FILE
    for path in (project / PROJECT_FILE, lock_path):
        if not path.is_file():
            raise LockError(
                f"{path} does not exist: a uv project needs pyproject.toml and uv.lock (run `uv lock` there)"
            )
    try:
        size = lock_path.stat().st_size
        if size > MAX_LOCK_BYTES:
            raise LockError(
                f"{lock_path} is {size:,} bytes, more than a uv.lock can be ({MAX_LOCK_BYTES:,}); is it the right file?"
            )
        raw = lock_path.read_bytes()
        for path in (project / PROJECT_FILE, lock_path):
            if path.stat().st_size > MAX_LOCK_BYTES:
                raise LockError(f"{path} is too big to be a uv project file")
    except OSError as exc:
        raise LockError(f"cannot read {lock_path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"{lock_path} is not a readable uv.lock: {exc}") from None
    except RecursionError:
        raise LockError(f"{lock_path} is nested too deeply to be a uv.lock") from None
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise LockError(f"{lock_path}: 'package' is a {type(packages).__name__}, not a list of [[package]] tables")
    pkgs: dict[str, list[str]] = {}
    by_name: dict[str, list[dict]] = {}
    for n, p in enumerate(packages, 1):
        if not (isinstance(p, dict) and isinstance(p.get("name"), str)):
            raise LockError(f"{lock_path}: [[package]] #{n} has no name string")
        if "version" not in p and "source" in p:
            continue  # a workspace member or a path dependency without a version
        version = p.get("version")
        why = grammar.pin_problem(p["name"], version) if isinstance(version, str) else "version is not a string"
        if why:
            raise LockError(f"{lock_path}: [[package]] #{n} ({str(p['name'])[:80]!r}): {why}")
        pkgs.setdefault(p["name"], []).append(str(version))
        by_name.setdefault(p["name"], []).append(p)
    torch = by_name.get("torch", [None])[0]
    version, cuda = None, None
    if torch is not None:
        version, _, local = torch["version"].partition("+")
        m = _LOCAL_CUDA.search(torch["version"])
        if m:
            cuda = f"{m.group(1)}.{m.group(2)}"
        elif local != "cpu":
            deps = (
                {d.get("name") for d in torch.get("dependencies", []) if isinstance(d, dict)}
                if isinstance(torch.get("dependencies"), list)
                else set()
            )
            for carrier in _CUDA_CARRIERS:
                if carrier in deps and carrier in pkgs:
                    cuda = ".".join(pkgs[carrier][0].split(".")[:2])
                    break
    return UvLock(
        project=project,
        sha256=hashlib.sha256(raw).hexdigest(),
        packages={k: tuple(v) for k, v in pkgs.items()},
        requires_python=str(data.get("requires-python", ""))[:200],
        torch=version,
        torch_cuda=cuda,
    )
