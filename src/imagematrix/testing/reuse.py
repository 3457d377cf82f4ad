"""GPU results reused by an exact key: a cell is not tested again when a passing result exists for the
very same image, suite and host.

The key has three parts, each hashed and each kept in the record so a change says which part moved:

- **image**: the image id here, or the registry digest of a candidate pulled by digest;
- **suite**: every file mounted into the test container (the suite and this package), the test tools'
  versions, the suite's name and markers, ``--require-gpu`` and the extra pytest arguments: not the
  cell selection, ``--jobs`` or ``--workers``, which change how a run is spread, not what it checks;
- **host**: each GPU handed to the container (name, compute capability), the driver, the CUDA version
  it reports, and the libcuda the container loads (the host's driver, or a forward-compatibility copy
  in the image).

Only passed results are reused, never failures or errors, and only from this runner's own history (a
line merged from another runner is evidence only with a signed attestation: ``evidence``). Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from imagematrix.core import history
from imagematrix.core.records import HistoryEvent, SuiteRun

KEY_VERSION = 1
DEFAULT_MAX_AGE_DAYS = 30


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tree_digest(roots: Iterable[Path]) -> str:
    """sha256 over every file under ``roots`` (path relative to its root, then bytes); caches excluded."""
    h = hashlib.sha256()
    for root in roots:
        root = Path(root)
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
                h.update(f"{root.name}/{p.relative_to(root).as_posix()}\0".encode())
                h.update(p.read_bytes())
                h.update(b"\0")
    return h.hexdigest()


def suite_part(
    mounted: Iterable[Path], tools: str, suite: str, markers: str, require_gpu: bool, pytest_extra: Iterable[str]
) -> dict[str, Any]:
    return {
        "files": tree_digest(mounted),
        "tools": tools,
        "suite": suite,
        "markers": markers,
        "require_gpu": bool(require_gpu),
        "pytest": list(pytest_extra),
    }


def host_part(
    devices: Iterable[Mapping[str, Any]], driver: str | None, driver_cuda: str | None, libcuda: str | None
) -> dict[str, Any]:
    return {
        "devices": [{"name": d.get("name"), "compute_capability": d.get("compute_capability")} for d in devices],
        "driver": driver,
        "driver_cuda": driver_cuda,
        "libcuda": libcuda,
    }


@dataclass(frozen=True)
class Key:
    image: str
    suite: dict[str, Any]
    host: dict[str, Any]

    @property
    def parts(self) -> dict[str, str]:
        return {"image": self.image, "suite": _digest(self.suite), "host": _digest(self.host)}

    @property
    def value(self) -> str:
        return _digest({"v": KEY_VERSION, **self.parts})

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, **self.parts}


@dataclass(frozen=True)
class Reusable:
    event: HistoryEvent

    @property
    def run(self) -> SuiteRun:
        assert self.event.test is not None
        return self.event.test

    def describe(self) -> str:
        return f"reused from {self.event.runner}, {self.run.finished or self.event.at}"


def find(
    build_dir: Path, cell: str, key: Key, max_age_days: float = DEFAULT_MAX_AGE_DAYS, now: datetime | None = None
) -> Reusable | None:
    """The newest passed run of ``cell`` with exactly ``key``, in this runner's history, younger than the limit."""
    events, _ = history.read([history.history_path(build_dir)])
    now = now or datetime.now(timezone.utc)
    for ev in reversed(events):
        t = ev.test
        if t is None or ev.cell != cell or t.state != "passed" or t.reused_from:
            continue
        if (t.key or {}).get("value") != key.value:
            continue
        finished = _parse(t.finished or ev.at)
        if finished is None or now - finished > timedelta(days=max_age_days):
            continue
        return Reusable(ev)
    return None


def changed_parts(old: Mapping[str, str] | None, key: Key) -> list[str]:
    """Which parts of the key moved since a run (for the grid's note)."""
    if not old:
        return []
    return [p for p, v in key.parts.items() if old.get(p) != v]


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
