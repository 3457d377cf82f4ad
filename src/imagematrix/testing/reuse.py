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

The newest run with the exact key decides, and only a result that holds up is reused: passed, with
at least one check passed and none failed or in error, finished at a zone-aware time in the past (a
few minutes of clock skew allowed) and within the age limit, never itself a reuse; anything else is
tested again and the grid says why. Where the runner signs or publish verifies, the run's signed
attestation must verify too (``testing.decide``). Only this runner's own history is read (a line merged
from another runner is evidence only with a signed attestation: ``evidence``). Stdlib only.
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
CLOCK_SKEW = timedelta(
    minutes=5
)  # a run finished "in the future" by more than this was not recorded by a clock we trust


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


@dataclass(frozen=True)
class Lookup:
    """What the history holds for a cell's exact key: a result to reuse, or why there is none."""

    found: Reusable | None = None
    why_not: str = ""  # empty when nothing was recorded for the key


def why_not_reusable(run: SuiteRun, at: str, max_age_days: float, now: datetime | None = None) -> str | None:
    """Why a recorded run of the exact key cannot stand for a new one (None: it can)."""
    now = now or datetime.now(timezone.utc)
    if run.state != "passed":
        return f"its last run {run.state}"
    if run.reused_from:
        return "its last result was itself reused"
    passed, failed, errors, skipped = run.passed, run.failed or 0, run.errors or 0, run.skipped or 0
    if passed is None or passed <= 0 or failed != 0 or errors != 0 or skipped < 0:
        return f"its record says passed with {passed} passed, {failed} failed, {errors} errors: inconsistent"
    stamp = run.finished or at
    finished = parse_time(stamp)
    if finished is None:
        return f"its time {stamp[:40]!r} is not an ISO time with a zone"
    if finished > now + CLOCK_SKEW:
        return f"it finished {stamp} (in the future by this host's clock)"
    if now - finished > timedelta(days=max_age_days):
        return f"it finished {stamp}, more than {max_age_days:g} days ago"
    return None


def lookup(
    build_dir: Path, cell: str, key: Key, max_age_days: float = DEFAULT_MAX_AGE_DAYS, now: datetime | None = None
) -> Lookup:
    """The newest run of ``cell`` with exactly ``key`` in this runner's history, if it can be reused."""
    events, _ = history.read([history.history_path(build_dir)])
    for ev in reversed(events):
        t = ev.test
        if t is None or ev.cell != cell or (t.key or {}).get("value") != key.value:
            continue
        why = why_not_reusable(t, ev.at, max_age_days, now)
        return Lookup(None, f"not reused: {why}") if why else Lookup(Reusable(ev))
    return Lookup()


def find(
    build_dir: Path, cell: str, key: Key, max_age_days: float = DEFAULT_MAX_AGE_DAYS, now: datetime | None = None
) -> Reusable | None:
    """The newest run of ``cell`` with exactly ``key``, when it is a result that holds up."""
    return lookup(build_dir, cell, key, max_age_days, now).found


def changed_parts(old: Mapping[str, str] | None, key: Key) -> list[str]:
    """Which parts of the key moved since a run (for the grid's note)."""
    if not old:
        return []
    return [p for p, v in key.parts.items() if old.get(p) != v]


def parse_time(stamp: str) -> datetime | None:
    """A zone-aware ISO time, or None (no zone, not a time, or an absurd one)."""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo is not None else None
