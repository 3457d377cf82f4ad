"""The record of each cell (``status.json``) and of each finished run (``history.jsonl``), as types.

A reader never guesses a key. Each section is read by its type's ``from_json``, which checks every
field's type and bounds and keeps the fields it does not know (a newer release's) for the round trip;
``to_json`` writes it back. A section that fails its check is *damaged*: it reads as absent, with a
note, so a damaged test, candidate or publish section means untested, never passed.

One predicate per question: ``SuiteRun.on_gpu`` ("did this run pass with the GPU checks required?")
is what the sheet, the status view, publishing and the reuse of results all ask. Stdlib only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

MAX_STRING = 100_000  # characters in one field (a log tail, an error); records hold short facts
MAX_ITEMS = 10_000  # entries in one list or mapping
MAX_INT = 2**63  # sizes and counts; a larger number is not one imagematrix wrote

BUILD_STATES = ("building", "built", "skipped", "failed", "blocked")
TEST_STATES = ("passed", "failed", "error", "timeout", "missing")


class RecordError(ValueError):
    """A record that is not of its type; the text says which field and why."""


T = TypeVar("T")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if len(errors) == 1 else f"{where}: {_shown(value)} is not of type {hint}")
    if hint is Any:
        return value
    if hint is str:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a string, got {_shown(value)}")
        if len(value) > MAX_STRING:
            raise RecordError(f"{where}: a string of {len(value):,} characters (at most {MAX_STRING:,})")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= MAX_INT:
            raise RecordError(f"{where}: expected an integer, got {_shown(value)}")
        return value
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or abs(value) >= MAX_INT
        ):
            raise RecordError(f"{where}: expected a finite number, got {_shown(value)}")
        return float(value)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise RecordError(f"{where}: expected a list, got {_shown(value)}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise RecordError(f"{where}: expected an object, got {_shown(value)}")
        return {_coerce(k, str, f"{where} key"): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where)
    raise RecordError(f"{where}: no reader for {hint}")  # pragma: no cover - a field type this module lacks


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Record:
    """A typed section: ``from_json`` checks, ``to_json`` writes back (None and empty fields left out)."""

    SECTION: ClassVar[str] = ""
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "") -> T:
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, got {_shown(data)}")
        hints = _hints(cls)  # type: ignore[arg-type]  # a class is hashable
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in fields:
                kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
            elif isinstance(key, str) and len(extra) < MAX_ITEMS:
                extra[key] = value
        for name, f in fields.items():
            if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: required field {name!r} is missing")
        for name, allowed in cls.CHOICES.items():  # type: ignore[attr-defined]
            if name in kwargs and kwargs[name] is not None and kwargs[name] not in allowed:
                raise RecordError(f"{where}.{name}: {_shown(kwargs[name])} is not one of {', '.join(allowed)}")
        if "extra" in {f.name for f in dataclasses.fields(cls)}:  # type: ignore[arg-type]
            kwargs["extra"] = extra
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None and value != () and value != {}:
                out[f.name] = _plain(value)
        return out


@dataclass(frozen=True)
class GpuDevice(Record):
    name: str | None = None
    compute_capability: str | None = None


@dataclass(frozen=True)
class GpuInfo(Record):
    """What a run saw of the GPU: the driver, the CUDA version it reports, the devices, the libcuda loaded."""

    driver: str | None = None
    driver_cuda: str | None = None
    devices: tuple[GpuDevice, ...] = ()
    libcuda: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TorchSeen(Record):
    """The torch the suite imported: torch.__version__, its distribution's name and version, its CUDA."""

    version: str | None = None
    distribution: str | None = None
    distribution_version: str | None = None
    cuda: str | None = None


@dataclass(frozen=True)
class Failure(Record):
    test: str = ""
    kind: str = ""
    message: str = ""


@dataclass(frozen=True)
class BuildRecord(Record):
    """Section "build": the cell's last build (or skip), written by the executor."""

    SECTION: ClassVar[str] = "build"
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"state": BUILD_STATES}

    state: str
    ref: str | None = None
    image_id: str | None = None
    input_hash: str | None = None
    build_hash: str | None = None
    started: str | None = None
    ended: str | None = None
    image_created: str | None = None
    duration_s: float | None = None
    size_bytes: int | None = None
    cached: bool | None = None
    log: str | None = None
    builder: str | None = None
    command: str | None = None
    step: str | None = None
    error: str | None = None
    exit_code: int | None = None
    interrupted: bool | None = None
    blocked_by: str | None = None
    host_fault: str | None = None
    replaced_image_id: str | None = None
    steps_run: int | None = None
    steps_cached: int | None = None
    tail: tuple[str, ...] = ()
    error_lines: tuple[str, ...] = ()
    bases: dict[str, str | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def made(self) -> str | None:
        """When the image was made: its build's end, or (for an unchanged image) its creation."""
        return self.image_created if self.state == "skipped" else self.ended


@dataclass(frozen=True)
class SuiteRun(Record):
    """Section "test" (the cell's last run) and each entry of "suites" (the last run of each suite)."""

    SECTION: ClassVar[str] = "test"

    state: str
    suite: str | None = None
    backend: str | None = None
    summary: str | None = None
    image_id: str | None = None
    digest: str | None = None
    gpu: str | None = None
    gpu_info: GpuInfo | None = None
    require_gpu: bool | None = None
    finished: str | None = None
    passed: int | None = None
    failed: int | None = None
    skipped: int | None = None
    errors: int | None = None
    duration_s: float | None = None
    junit: str | None = None
    log: str | None = None
    note: str | None = None
    tail: str | None = None
    failures: tuple[Failure, ...] = ()
    key: dict[str, str] | None = None  # the reuse key (testing.reuse): value, image, suite, host
    decision: str | None = None  # ran, reused, incompatible
    reused_from: dict[str, Any] | None = None  # the run whose result this is: runner, finished, key
    prediction: dict[str, Any] | None = None  # the oracle's verdict for this host, when there was one
    attestation: str | None = None  # the signed statement of this result (a file or a registry reference)
    torch: TorchSeen | None = None  # the torch the suite imported (verify --chain holds it to the SBOM)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        """Passed with the GPU checks required (--require-gpu): none of them could skip for want of a GPU."""
        return self.state == "passed" and bool(self.require_gpu)

    @property
    def counts(self) -> str:
        return f"{self.passed or 0}/{self.failed or 0}/{self.skipped or 0}"


@dataclass(frozen=True)
class Candidate(Record):
    """Section "candidate": where `build --push-candidates` pushed the cell for GPU runners."""

    SECTION: ClassVar[str] = "candidate"

    repository: str
    tag: str
    digest: str
    image_id: str | None = None
    pushed: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published(Record):
    """Section "publish": what `invoke publish` pushed, by digest."""

    SECTION: ClassVar[str] = "publish"

    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    image_id: str | None = None
    published: str | None = None
    record_tag: str | None = None
    candidate: str | None = None
    index: str | None = None
    attestations: tuple[str, ...] = ()  # where the signed test results and SBOM went in the registry
    sbom: str | None = None  # the SBOM file kept beside the record
    sbom_packages: int | None = None
    provenance: str | None = None  # the attestation manifest with BuildKit's SLSA provenance of the digest
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SizesRecord(Record):
    """Section "sizes": the last `invoke sizes` measurement (its many figures stay as written)."""

    SECTION: ClassVar[str] = "sizes"

    state: str | None = None
    summary: str | None = None
    size_bytes: int | None = None
    env_bytes: int | None = None
    buckets: dict[str, int] = field(default_factory=dict)
    measured: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord(Record):
    """Section "audit": what the image's own binaries need from a GPU and a driver (``oracle``), and
    the prediction made from it for the catalogue's GPUs and driver branches."""

    SECTION: ClassVar[str] = "audit"

    image_id: str
    how: str | None = None  # "container" or "export"
    seconds: float | None = None
    objects: int | None = None
    sass: tuple[str, ...] = ()
    ptx: tuple[str, ...] = ()
    floor: tuple[int, ...] = ()  # the newest CUDA the image needs from the driver (major, minor)
    floor_source: str | None = None
    floor_native: str | None = None
    libraries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    torch: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    toolchains: dict[str, Any] | None = None  # Triton and its ptxas, NVRTC, nvJitLink, nvcc, torch's CUDA
    prediction: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # GPU -> branch -> verdict
    extra: dict[str, Any] = field(default_factory=dict)

    def verdict(self, gpu: str, branch: int) -> dict[str, Any] | None:
        return (self.prediction.get(gpu) or {}).get(f"R{branch}")


SUITES = "suites"
SECTION_TYPES: dict[str, type[Record]] = {
    t.SECTION: t for t in (BuildRecord, SuiteRun, Candidate, Published, SizesRecord, AuditRecord)
}


@dataclass(frozen=True)
class CellRecord:
    """Every section of one cell; a damaged section reads as absent (``damaged`` names it)."""

    build: BuildRecord | None = None
    test: SuiteRun | None = None
    suites: dict[str, SuiteRun] = field(default_factory=dict)
    sizes: SizesRecord | None = None
    candidate: Candidate | None = None
    publish: Published | None = None
    audit: AuditRecord | None = None
    other: dict[str, Any] = field(default_factory=dict)  # sections this release does not know, as written
    damaged: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any, where: str) -> CellRecord:
        if not isinstance(data, dict):
            return cls(damaged=(f"{where}: not an object of sections",))
        found: dict[str, Any] = {"suites": {}, "other": {}}
        damaged: list[str] = []
        for name, section in data.items():
            if name == SUITES:
                if not isinstance(section, dict):
                    damaged.append(f"{where}.{SUITES}: not an object of suites")
                    continue
                for suite, run in section.items():
                    try:
                        found["suites"][str(suite)] = SuiteRun.from_json(run, f"{where}.{SUITES}.{suite}")
                    except (RecordError, RecursionError) as exc:
                        damaged.append(str(exc))
            elif name in SECTION_TYPES:
                try:
                    found[name] = SECTION_TYPES[name].from_json(section, f"{where}.{name}")
                except (RecordError, RecursionError) as exc:
                    damaged.append(str(exc))
            elif isinstance(name, str):
                found["other"][name] = section
        return cls(**found, damaged=tuple(damaged))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.other)
        for name in SECTION_TYPES:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_json()
        if self.suites:
            out[SUITES] = {k: v.to_json() for k, v in self.suites.items()}
        return out


# --- the history: one finished build or test run per line ---------------------------------------

HISTORY_KINDS = ("build", "test")


@dataclass(frozen=True)
class HistoryEvent:
    """One line of history.jsonl: what happened to which cell, where and when, and its record."""

    kind: str
    cell: str
    at: str
    runner: str
    build: BuildRecord | None = None
    test: SuiteRun | None = None

    @property
    def record(self) -> BuildRecord | SuiteRun:
        return self.build if self.build is not None else self.test  # type: ignore[return-value]

    @property
    def state(self) -> str:
        return self.record.state

    @classmethod
    def from_json(cls, data: Any, where: str) -> HistoryEvent:
        if not isinstance(data, dict):
            raise RecordError(f"{where}: not a history event (an object)")
        kind, cell = data.get("kind"), data.get("cell")
        if kind not in HISTORY_KINDS:
            raise RecordError(f"{where}: kind {_shown(kind)} is not one of {', '.join(HISTORY_KINDS)}")
        cell = _coerce(cell, str, f"{where}.cell")
        at = _coerce(data.get("at") or "", str, f"{where}.at")
        runner = _coerce(data.get("runner") or "", str, f"{where}.runner")
        body = {k: v for k, v in data.items() if k not in ("kind", "cell", "at", "runner")}
        if kind == "build":
            return cls(kind, cell, at, runner, build=BuildRecord.from_json(body, where))
        return cls(kind, cell, at, runner, test=SuiteRun.from_json(body, where))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "cell": self.cell, "at": self.at, "runner": self.runner, **self.record.to_json()}


def parse_section(name: str, data: Mapping[str, Any], where: str) -> Record:
    """A section's data as its type (RecordError when it is not): what every writer checks before writing."""
    return SECTION_TYPES[name].from_json(dict(data), where)
