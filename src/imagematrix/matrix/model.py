"""The resolved matrix: frozen dataclasses every other module works on (stdlib only).

``matrix.load_matrix`` builds them from a checked file; ``make_cell`` and ``render_tag``
are the only ways a cell and its tag are made.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from imagematrix.matrix.lockfile import UvLock


@dataclass(frozen=True)
class Cuda:
    version: str  # "cpu": a family without CUDA
    torch_cuda: str | None  # None only for the cpu family
    torch_index: str | None
    arch_list: str
    bases: dict[str, str]
    packages: dict[str, str] = field(default_factory=dict)
    extensions: str = "cuda"  # "cpu": compiled extensions carry no CUDA kernels (no nvcc for this family)

    @property
    def cpu(self) -> bool:
        return self.torch_cuda is None

    @property
    def tag(self) -> str:
        """The wheel tag of torch's CUDA, e.g. ``cu128``; ``cpu`` for the cpu family."""
        return "cpu" if self.torch_cuda is None else "cu" + self.torch_cuda.replace(".", "")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    parent: str | None
    relation: Literal["extends", "slim"] | None
    base: str | None
    prune: tuple[str, ...]
    fragments: tuple[str, ...]
    features: tuple[str, ...]
    pyg_extensions: tuple[str, ...]
    options: dict[str, bool | int | str]
    budget_gb: float | None
    lineage: tuple[str, ...]
    optional_libraries: tuple[tuple[str, str, str], ...] = ()  # (library glob, needs glob, reason)
    uv_lock: UvLock | None = None  # this target's environment comes from a uv lock (it and its descendants)
    holds_torch: bool = True  # targets.<name>.torch, inherited along extends and slim

    @property
    def kind(self) -> str:
        """``runtime`` for slim copies, else ``devel``."""
        return "runtime" if self.relation == "slim" else "devel"


@dataclass(frozen=True)
class Cell:
    cuda: Cuda
    python: str
    target: Target
    tag: str
    image: str
    phases: tuple[int, ...] = ()
    bases: dict[str, str] = field(default_factory=dict)  # role -> image, for this (CUDA, Python) family
    packages: dict[str, str] = field(default_factory=dict)  # pins for this family (torch: the lock's, if any)
    uv_lock: UvLock | None = None  # the lock this cell's environment comes from (its own or an ancestor's)
    platform: str | None = None  # linux/arm64 ...: BuildKit's --platform; None: the builder's own
    arch_suffix: str = ""  # "-arm64" where the matrix has several platforms: ids and tags stay apart

    @property
    def features(self) -> tuple[str, ...]:
        """The target's features, less what the family cannot give (no nvcc: no cuda_extension)."""
        if self.cuda.extensions == "cpu":
            return tuple(f for f in self.target.features if f != "cuda_extension")
        return self.target.features

    def base(self, role: str | None) -> str:
        return self.bases[role] if role else ""

    @property
    def id(self) -> str:
        return cell_id(self.cuda.version, self.python, self.target.name) + self.arch_suffix

    @property
    def family(self) -> tuple[str, str]:
        return (self.cuda.version, self.python)

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}"


def cell_id(cuda: str, python: str, target: str) -> str:
    return f"{family_name(cuda)}-py{python}-{target}"


def family_name(cuda: str) -> str:
    """``cu12.8``, or ``cpu`` for the family without CUDA."""
    return cuda if cuda == "cpu" else f"cu{cuda}"


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Override:
    """Settings for the (CUDA, Python) families it matches; None matches any."""

    cuda: str | None
    python: str | None
    bases: dict[str, str]
    packages: dict[str, str]
    platform: str | None = None

    def matches(self, cuda: str, python: str, platform: str | None = None) -> bool:
        return self.cuda in (None, cuda) and self.python in (None, python) and self.platform in (None, platform)


@dataclass(frozen=True)
class Host:
    """What a build host needs (checked by preflight)."""

    buildkit: bool
    min_free_disk_gb: float
    min_memory_gb: float


@dataclass(frozen=True)
class ScheduleRun:
    cron: str
    phases: tuple[int, ...]
    retest: bool = False  # the run tests again what it could reuse


@dataclass(frozen=True)
class CI:
    """The generated workflow's settings (``ci:`` in matrix.yaml)."""

    workflow: Path
    runs_on: tuple[str, ...]
    gate_runs_on: str
    timeout_minutes: int
    artifact_retention_days: int
    state_dir: str
    keep_images: int = 2
    cache_hours: int = 336
    install: str = "imagematrix"  # what the workflow hands pip to install imagematrix on the runners
    publish: tuple[str, ...] = ()  # how the publish step signs ("key", "github"); empty: no publish step


@dataclass(frozen=True)
class Matrix:
    path: Path
    image: str
    tag_template: str
    labels: dict[str, str]
    pythons: tuple[str, ...]
    cudas: dict[str, Cuda]
    targets: dict[str, Target]
    excluded: dict[str, str]  # cell id -> reason
    packages: dict[str, str]
    phases: dict[int, Phase]
    timezone: str
    schedule: tuple[ScheduleRun, ...]
    host: Host
    fragments_dir: Path
    ca_cert: Path | None
    cells: tuple[Cell, ...]
    warnings: tuple[str, ...] = field(default=())
    overrides: tuple[Override, ...] = ()
    wheelhouse: Path | None = None
    ci: CI | None = None
    publish_require: tuple[str, ...] = ("smoke",)
    publish_verify_key: Path | None = None  # publish refuses results no attestation by this key backs
    publish_max_age_days: int | None = None
    platforms: tuple[str, ...] = ()

    def family(self, cuda: Cuda, python: str, platform: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """Base images and pins of one (CUDA, Python) family: top level, then the CUDA entry, then the
        overrides in order."""
        bases, packages = dict(cuda.bases), {**self.packages, **cuda.packages}
        for o in self.overrides:
            if o.matches(cuda.version, python, platform):
                bases.update(o.bases)
                packages.update(o.packages)
        return bases, packages

    def cell(self, cid: str) -> Cell:
        for c in self.cells:
            if c.id == cid:
                return c
        raise KeyError(cid)

    def stage_cell(self, cell: Cell, target: str) -> Cell:
        """The cell of an ancestor stage, in the same family (it may be excluded)."""
        return make_cell(self, self.cudas[cell.cuda.version], cell.python, self.targets[target], platform=cell.platform)

    def target_order(self) -> list[str]:
        """Targets parents-first, ties in file order."""
        names = list(self.targets)
        return sorted(names, key=lambda n: (len(self.targets[n].lineage), names.index(n)))


def arch_suffix(m: Matrix, platform: str | None) -> str:
    """``-arm64`` for linux/arm64 where the matrix builds several platforms, else nothing."""
    return "-" + platform.split("/")[1] + "".join(platform.split("/")[2:]) if platform and len(m.platforms) > 1 else ""


def make_cell(m: Matrix, cuda: Cuda, python: str, target: Target, phases=(), platform: str | None = None) -> Cell:
    suffix = arch_suffix(m, platform)
    tag = render_tag(m.tag_template, cuda, python, target.name) + suffix
    bases, packages = m.family(cuda, python, platform)
    lock = next((m.targets[n].uv_lock for n in target.lineage if m.targets[n].uv_lock), None)
    if lock is not None:  # the lock is the declaration: torch is what it pins (or nothing)
        packages = {k: v for k, v in packages.items() if k != "torch"} | ({"torch": lock.torch} if lock.torch else {})
    return Cell(
        cuda=cuda,
        python=python,
        target=target,
        tag=tag,
        image=m.image,
        phases=phases,
        bases=bases,
        packages=packages,
        uv_lock=lock,
        platform=platform,
        arch_suffix=suffix,
    )


TAG_FIELDS = ("cuda", "cuda_tag", "torch_cuda", "python", "python_nodot", "target")


def tag_template_problem(template: str) -> str | None:
    """Why ``template`` is not plain text with ``{placeholder}`` names, or None.

    str.format would also take attributes, indexes and format specs ({cuda.x}, {cuda:>99999});
    a tag needs none of them, and they crash or exhaust memory.
    """
    allowed = ", ".join("{" + f + "}" for f in TAG_FIELDS)
    if len(template) > 1024:
        return f"the tag template is {len(template)} characters; a Docker tag has at most 128"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template: {exc} (write a literal brace as {{{{ or }}}}; placeholders: {allowed})"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TAG_FIELDS:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            return f"unknown placeholder {shown} in the tag template (allowed: {allowed}; no attributes or indexes)"
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format spec or conversion in the tag template (allowed: {allowed})"
    return None


def render_tag(template: str, cuda: Cuda, python: str, target: str) -> str:
    if cuda.cpu:  # "cu{cuda}" reads "cpu" for the family without CUDA, not "cucpu"
        template = template.replace("cu{cuda}", "{cuda}")
    return template.format(
        cuda=cuda.version,
        cuda_tag=cuda.tag,
        torch_cuda=cuda.torch_cuda or "cpu",
        python=python,
        python_nodot=python.replace(".", ""),
        target=target,
    )
