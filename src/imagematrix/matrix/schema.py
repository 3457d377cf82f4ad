"""The shape of ``matrix.yaml``: a pydantic schema (keys, types, defaults) and the grammars
its values follow (versions, image references, tags, label keys, cron). ``matrix`` checks a
file against it; ``invoke schema`` prints it as JSON Schema for editors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from imagematrix.core import cron
from imagematrix.core.contract import FEATURES, LABEL_PREFIX
from imagematrix.core.version import __version__
from imagematrix.matrix import grammar

SCHEMA_VERSION = 1
FRAGMENT_SUFFIX = ".Dockerfile"


VERSION_RE = grammar.VERSION
TARGET_RE = grammar.TARGET
cron_problem = cron.cron_problem  # the schedule's grammar lives with the gate that reads it


# Label keys: Docker's recommendation (lowercase reverse-DNS) loosened to what engines accept,
# and nothing a Dockerfile LABEL line could misread (spaces, quotes, '=', newlines).
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9])?")
RESERVED_LABEL_PREFIX = f"{LABEL_PREFIX}."


def label_problem(key: str, value: str) -> str | None:
    """Why a user label cannot be written as given, or None."""
    if not LABEL_KEY_RE.fullmatch(key):
        return (
            f"label key {key!r} is not valid: letters, digits, '.', '-', '_', '/' only, starting and ending "
            "with a letter or digit, at most 255 characters (e.g. org.opencontainers.image.source)"
        )
    if key.startswith(RESERVED_LABEL_PREFIX):
        return (
            f"label keys starting with {RESERVED_LABEL_PREFIX!r} are imagematrix's own (the image contract); "
            "choose another prefix"
        )
    bad = sorted({f"U+{ord(c):04X}" for c in value if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        return (
            f"label value of {key!r} holds control characters ({', '.join(bad)}); "
            "a Dockerfile LABEL cannot carry them as written: use one line of text"
        )
    return None


# --- schema: the shape of the file -------------------------------------------------


class UnquotedVersion(ValueError):
    """A version YAML read as a number; the loader puts the text the user wrote back."""


def _version(value: Any) -> Any:
    # YAML reads 3.10 as the float 3.1: refuse numbers instead of guessing.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnquotedVersion(value)
    if isinstance(value, str) and not VERSION_RE.fullmatch(value):
        raise ValueError(f'{value!r} is not a version like "3.13" or "12.8.1"')
    return value


Version = Annotated[str, BeforeValidator(_version)]
CPU = "cpu"  # the CUDA axis's name for a family without CUDA (CPU torch, or no torch at all)


def _family(value: Any) -> Any:
    return value if value == CPU else _version(value)


Family = Annotated[str, BeforeValidator(_family)]  # a CUDA version, or "cpu"
FEATURE_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def _feature(value: Any) -> Any:
    if isinstance(value, str) and not FEATURE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a feature name (lowercase letters, digits, _ and -)")
    return value


# The suite checks the contract's FEATURES; a team's own names are kept in labels and get no checks.
Feature = Annotated[str, BeforeValidator(_feature), Field(json_schema_extra={"examples": list(FEATURES)})]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CudaSpec(_Model):
    torch_cuda: Version | None = Field(
        description="CUDA major.minor the torch wheels are built with; null only for the cpu family (CPU torch or none)"
    )
    torch_index: Url | None = Field(None, description="pip index of the torch wheels; null: PyPI")
    arch_list: ArchList = Field("", description="TORCH_CUDA_ARCH_LIST for source builds")
    bases: dict[Role, str] = Field(description="base image per role, e.g. devel, runtime")
    packages: Pins = Field({}, description="pins for this CUDA family; they win over the top-level packages")
    extensions: Literal["cuda", "cpu"] = Field(
        "cuda",
        description="how compiled extensions (PyG) are built: with CUDA kernels, or CPU-only where no nvcc exists",
    )


PLATFORM_RE = re.compile(r"linux/[a-z0-9]{1,20}(?:/v[0-9])?")


def _platform(value: Any) -> Any:
    if isinstance(value, str) and not PLATFORM_RE.fullmatch(value):
        raise ValueError(f'{value!r} is not a platform like "linux/amd64" or "linux/arm64"')
    return value


Platform = Annotated[str, BeforeValidator(_platform)]


def _checked(problem):
    """An AfterValidator from a grammar function (value -> why not, or None)."""

    def check(value: Any) -> Any:
        why = problem(value)
        if why:
            raise ValueError(why)
        return value

    return AfterValidator(check)


def _pins(pins: dict[str, str]) -> dict[str, str]:
    for name, version in pins.items():
        why = grammar.pin_problem(name, version)
        if why:
            raise ValueError(why)
    return pins


def _options(options: dict[str, Any]) -> dict[str, Any]:
    for key, value in options.items():
        why = grammar.option_problem(key, value)
        if why:
            raise ValueError(why)
    return options


def _finite(value: float) -> float:
    why = grammar.finite_problem(value)
    if why:
        raise ValueError(why)
    return value


Text = Annotated[str, _checked(grammar.text_problem)]  # one line of prose (descriptions, reasons, names)
Pins = Annotated[dict[str, str], AfterValidator(_pins)]
Url = Annotated[str, _checked(grammar.url_problem)]
ArchList = Annotated[str, _checked(grammar.arch_list_problem)]
Fragment = Annotated[str, _checked(grammar.fragment_problem)]
Role = Annotated[
    str,
    _checked(
        lambda v: None if grammar.TARGET.fullmatch(v) else f"{v!r} is not a role name (lowercase letters, digits, -)"
    ),
]
PackageName = Annotated[
    str, _checked(lambda v: None if grammar.PACKAGE_NAME.fullmatch(v) else f"{v!r} is not a package name")
]
Glob = Annotated[
    str,
    _checked(
        lambda v: (
            None
            if re.fullmatch(r"[A-Za-z0-9._*?/\[\]+-]{1,200}", v)
            else f"{v!r} is not a path glob (letters, digits, . _ - / + * ? [ ])"
        )
    ),
]
Options = Annotated[dict[str, bool | int | str], AfterValidator(_options)]
FiniteNumber = Annotated[float | int, AfterValidator(_finite)]
RelPath = Annotated[str, _checked(grammar.rel_path_problem)]
# A path on this host; its last part names the project in the Dockerfile it renders.
UvProject = Annotated[
    str,
    _checked(
        lambda v: (
            grammar.text_problem(v, 1000)
            or (
                None
                if grammar.PATH_PART.fullmatch(v.rstrip("/").rsplit("/", 1)[-1])
                else f"the project's directory name in {v!r} is not plain (letters, digits, '.', '_', '-', '@', '+')"
            )
        )
    ),
]
AbsPath = Annotated[str, _checked(grammar.abs_path_problem)]
HostPath = Annotated[str, _checked(lambda v: grammar.text_problem(v, 1000))]  # a path on this host: any, but one line
RunnerLabel = Annotated[str, _checked(grammar.runner_label_problem)]
WorkflowPath = Annotated[str, _checked(grammar.workflow_path_problem)]
InstallSpec = Annotated[str, _checked(grammar.install_problem)]


class OverrideSpec(_Model):
    cuda: Family | None = None
    python: Version | None = None
    platform: Platform | None = None
    bases: dict[Role, str] = Field({}, description="base image per role for the matching families")
    packages: Pins = Field({}, description="pins for the matching families")
    reason: Text = ""


class ExcludeSpec(_Model):
    cuda: Family | None = None
    python: Version | None = None
    target: str | None = None
    reason: Text


class OptionalLibrarySpec(_Model):
    library: Glob  # glob over the library's path in the image
    needs: Glob  # glob over the soname it may leave unresolved
    reason: Text


class TargetSpec(_Model):
    description: Text = ""
    extends: str | None = None
    slim: str | None = None
    base: str | None = None
    prune: list[Fragment] = []
    fragments: list[Fragment]
    torch: bool | None = Field(
        None,
        description="whether this target's image holds torch: false for a target without it (its torch checks "
        "skip, saying so); unset: as its parent (extends or slim), true for a target with no parent",
    )
    features: list[Feature] = []
    drop_features: list[Feature] = []
    pyg_extensions: list[PackageName] = []
    options: Options = {}
    budget_gb: FiniteNumber | None = None
    # Needs a slim image may leave unresolved: plugins the environment loads only on request.
    optional_libraries: list[OptionalLibrarySpec] = []
    uv_project: UvProject | None = Field(
        None,
        description="a uv project (pyproject.toml + uv.lock), relative to the matrix file: this target's "
        "environment is synced from its lock (the uv-sync fragment), and torch's version and CUDA are read from it",
    )


class PhaseCellsSpec(_Model):
    cuda: Family
    python: Version
    targets: list[str]


class PhaseSpec(_Model):
    name: Text = ""
    cells: list[PhaseCellsSpec]


class ScheduleRunSpec(_Model):
    cron: str
    phases: list[int] | Literal["all"]
    retest: bool = Field(
        False,
        description="test every cell of this run again, even one whose very image, suite "
        "and host passed before (the monthly full run); other runs reuse such results",
    )


class ScheduleSpec(_Model):
    timezone: str = "UTC"
    runs: list[ScheduleRunSpec] = []


class HostSpec(_Model):
    buildkit: bool = True
    min_free_disk_gb: FiniteNumber = Field(0, ge=0)
    min_memory_gb: FiniteNumber = Field(0, ge=0)


class BuildSpec(_Model):
    fragments_dir: HostPath = "dockerfiles"
    ca_cert: HostPath | None = None
    wheelhouse: HostPath | None = Field(
        None, description="a directory of wheels and sdists; pip installs only from it (offline, air-gapped builds)"
    )


class CIPublishSpec(_Model):
    """The workflow's publish step: after the GPU suite, `imagematrix publish` of the job's cells."""

    attest: list[Literal["key", "github"]] = Field(
        ["key"],
        min_length=1,
        description="how each published result is signed: key (imagematrix's ed25519 key, from the "
        "IMAGEMATRIX_SIGNING_KEY secret; works with any registry, verifiable offline) and/or github (keyless: "
        "GitHub's attest action signs the standard test-result statement with the workflow's identity)",
    )


class CISpec(_Model):
    """`invoke ci`: the GitHub Actions workflow generated from phases and schedule."""

    workflow: WorkflowPath = ".github/workflows/imagematrix.yml"  # relative to the matrix file's directory
    runs_on: list[RunnerLabel] = Field(["self-hosted", "linux", "x64", "gpu"], min_length=1)  # the GPU runners' labels
    gate_runs_on: RunnerLabel = "ubuntu-latest"  # the small job that decides what is due (stdlib Python only)
    timeout_minutes: int = Field(720, ge=1, le=4320)
    artifact_retention_days: int = Field(30, ge=1, le=400)
    state_dir: AbsPath = (
        "/var/lib/imagematrix/state"  # IMAGEMATRIX_STATE_DIR on the runners: the history survives checkouts
    )
    keep_images: int = Field(2, ge=1)  # after each run: `invoke prune --keep N`
    cache_hours: int = Field(336, ge=1)  # ... and BuildKit cache unused for this long goes
    install: InstallSpec = Field(
        f"imagematrix=={__version__}",
        description="what the workflow hands pip to install imagematrix: a requirement "
        "(imagematrix==X.Y.Z, imagematrix @ https://...) or a path in the repository (. where this is imagematrix's "
        "own)",
    )
    publish: CIPublishSpec | None = None  # absent: the workflow builds and tests, and publishes nothing


class PublishSpec(_Model):
    """`invoke publish`: which suites must have passed, on a GPU, on the very image."""

    require: list[Literal["smoke", "full"]] = Field(["smoke"], min_length=1)
    verify_key: HostPath | None = Field(
        None,
        description="a public key (imagematrix keygen's imagematrix.pub), relative to this file: publish refuses a "
        "cell unless each required result is backed by an attestation this key verifies, for that image and key",
    )
    max_age_days: int | None = Field(None, ge=1, description="with verify_key: refuse results measured longer ago")


class MatrixSpec(_Model):
    schema_: int = Field(alias="schema")
    image: str
    tag: str = "cu{cuda}-py{python}-{target}"
    labels: dict[str, str] = {}
    python: list[Version]
    cuda: dict[Family, CudaSpec]
    platforms: list[Platform] = Field(
        [],
        description="build every cell for each platform (BuildKit --platform); none: the builder's own. With "
        "several, ids and tags end in the architecture (cu13.0-py3.13-devel-arm64)",
    )
    exclude: list[ExcludeSpec] = []
    packages: Pins = {}
    overrides: list[OverrideSpec] = []
    targets: dict[str, TargetSpec]
    phases: dict[int, PhaseSpec] = {}
    schedule: ScheduleSpec = ScheduleSpec()
    host: HostSpec = HostSpec()
    build: BuildSpec = BuildSpec()
    ci: CISpec = CISpec()
    publish: PublishSpec = PublishSpec()


def matrix_json_schema() -> dict:
    """JSON Schema of the file's shape, for editors (yaml-language-server) and other tools.

    It covers keys and types only; references between sections (a phase naming
    an excluded cell, a cycle of targets) are checked by ``load_matrix``.
    """
    schema = MatrixSpec.model_json_schema(by_alias=True, mode="validation")
    return {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "imagematrix matrix.yaml"}
