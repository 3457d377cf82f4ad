"""Each task's arguments as one frozen dataclass: a field per option, its flag, help and parsing from
``core.options.Option`` (the shared ones from the table there). A task reads ``v.no_cache``, never
``v["no_cache"]``: a misspelled option is a type error, and a field and its flag cannot drift apart (the
field's name is the option's). Parsed values only: a bad one is exit 2 before the task runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from imagematrix.core import options as table
from imagematrix.core.options import FILTERS, MATRIX, OUT, Option
from imagematrix.matrix.plan import Selection

A = TypeVar("A", bound="Args")


def opt(option: Option | str, kind: str = "str", default: Any = None, **kw: Any) -> Any:
    """A field that is an option: a shared ``Option`` of the table, or this task's own (help, kind,
    default, choices, minimum, metavar). Its name is the field's."""
    o = option if isinstance(option, Option) else Option("", option, kind, default, **kw)
    value = () if o.kind in ("list", "words") and o.default is None else o.default
    return dataclasses.field(default=value, metadata={"option": o})


@dataclasses.dataclass(frozen=True)
class Args:
    POSITIONAL: ClassVar[tuple[str, ...]] = ()  # options invoke also takes as the task's first arguments

    @classmethod
    def options(cls) -> tuple[Option, ...]:
        out = []
        for f in dataclasses.fields(cls):
            o: Option = f.metadata["option"]
            if o.name and o.name != f.name:
                raise TypeError(f"{cls.__name__}.{f.name} is declared with the option {o.name!r}")
            out.append(dataclasses.replace(o, name=f.name))
        return tuple(out)

    @classmethod
    def parse(cls: type[A], raw: Mapping[str, Any]) -> A:
        return cls(**table.parse_all(cls.options(), raw))

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class Filtered(Args):
    phase: tuple[str, ...] = opt(FILTERS[0])
    cuda: tuple[str, ...] = opt(FILTERS[1])
    python: tuple[str, ...] = opt(FILTERS[2])
    target: tuple[str, ...] = opt(FILTERS[3])
    platform: tuple[str, ...] = opt(FILTERS[4])

    def selection(self) -> Selection:
        return Selection.from_options(self.phase, self.cuda, self.python, self.target, self.platform)


@dataclasses.dataclass(frozen=True)
class Selected(Filtered):
    matrix: str = opt(MATRIX)


@dataclasses.dataclass(frozen=True)
class InBuildDir(Selected):
    out: str = opt(OUT)

    @property
    def build_dir(self) -> Path:
        return Path(self.out)


CA_CERT = Option(
    "ca_cert", "CA bundle handed to network steps as a BuildKit secret (default: build.ca_cert)", metavar="FILE"
)


@dataclasses.dataclass(frozen=True)
class MatrixArgs(Selected):
    pass


@dataclasses.dataclass(frozen=True)
class RenderArgs(InBuildDir):
    pass


@dataclasses.dataclass(frozen=True)
class CiArgs(Args):
    matrix: str = opt(MATRIX)
    check: bool = opt(
        "compare instead of writing: exit 1, with the difference, when the workflow is out of date", "bool", False
    )


@dataclasses.dataclass(frozen=True)
class PruneArgs(Args):
    keep: int = opt("images kept per cell, newest first; the tagged one always stays (default: 2)", "int", 2, minimum=1)
    cache_hours: float | None = opt(
        "also drop BuildKit cache unused for this many hours, at least 1 (the whole builder's cache, not only "
        "imagematrix's; default: keep the cache)",
        "number",
        minimum=1,
    )
    dry_run: bool = opt("say what would go; remove nothing", "bool", False)


@dataclasses.dataclass(frozen=True)
class PublishArgs(InBuildDir):
    repository: str | None = opt(
        "push to this repository instead of the matrix's image (e.g. 127.0.0.1:5000/team/pytorch)",
        "repository",
        metavar="REPO",
    )
    dry_run: bool = opt("say what would be promoted or refused; push nothing", "bool", False)
    candidates: str | None = opt(
        "promote the candidates pushed to this repository (build --push-candidates), only if their digest was tested",
        "repository",
        metavar="REPO",
    )
    signing_key: str | None = opt(
        "sign each published digest's required results and its SBOM with this ed25519 key and attach them in the "
        "registry (default: $IMAGEMATRIX_SIGNING_KEY_FILE or $IMAGEMATRIX_SIGNING_KEY)",
        metavar="FILE",
    )
    attest_github: bool = opt(
        "for GitHub's attest action (the generated workflow's keyless path): write each published cell's "
        "test-result predicate under build/attestations/github/ and its subject to the step outputs ($GITHUB_OUTPUT)",
        "bool",
        False,
    )


@dataclasses.dataclass(frozen=True)
class BakeArgs(InBuildDir):
    ca_cert: str | None = opt(CA_CERT)


@dataclasses.dataclass(frozen=True)
class ReportArgs(InBuildDir):
    merge: tuple[str, ...] = opt(
        "another runner's history.jsonl to merge into the sheet (repeatable)", "list", metavar="FILE"
    )
    diff_packages: tuple[str, ...] = opt(
        "twice, OLD then NEW image (ref or id, or an SBOM file build/sbom/<cell>.cdx.json): print what their Python "
        "and Debian packages differ in",
        "list",
        metavar="IMAGE",
    )


@dataclasses.dataclass(frozen=True)
class DoctorArgs(Selected):
    build_only: bool = opt("a build-only host: check what building needs, not GPU access for the tests", "bool", False)
    ca_cert: str | None = opt(CA_CERT)


@dataclasses.dataclass(frozen=True)
class LintArgs(Selected):
    code: bool = opt("run ruff on src, tests, tasks.py, noxfile.py, benchmarks (--no-code skips it)", "bool", True)
    dockerfiles: bool = opt(
        "run hadolint on the selected cells' rendered Dockerfiles (--no-dockerfiles skips it)", "bool", True
    )


@dataclasses.dataclass(frozen=True)
class NoArgs(Args):
    pass


@dataclasses.dataclass(frozen=True)
class BuildArgs(InBuildDir):
    ca_cert: str | None = opt(CA_CERT)
    dry_run: bool = opt("print the ordered plan and the exact docker commands; run nothing", "bool", False)
    no_cache: bool = opt("build without BuildKit's cache", "bool", False)
    pull: bool = opt("always pull newer base images", "bool", False)
    cache_from: tuple[str, ...] = opt(
        "BuildKit --cache-from source, e.g. type=local,src=DIR (repeatable)", "list", metavar="SPEC"
    )
    cache_to: tuple[str, ...] = opt("BuildKit --cache-to destination (repeatable)", "list", metavar="SPEC")
    force: bool = opt(
        "rebuild cells even when their image is unchanged (BuildKit's cache still applies)", "bool", False
    )
    skip_preflight: bool = opt(
        "report failed host checks (disk, memory, base images) as warnings and build anyway", "bool", False
    )
    builder: str | None = opt(
        "a named buildx builder (docker buildx ls; a docker context is one): build there, skip what is there",
        metavar="NAME",
    )
    jobs: int = opt(
        "build up to N independent cells at once (a cell never before its parent; default 1)", "int", 1, minimum=1
    )
    push_candidates: str | None = opt(
        "then push each selected cell to this repository as a candidate (tag: <tag>-<input hash>) for GPU runners",
        "repository",
        metavar="REPO",
    )
    no_audit: bool = opt(
        "skip the audit of each new image's device code (what GPUs and drivers it runs on; `imagematrix audit` "
        "does it later)",
        "bool",
        False,
    )


@dataclasses.dataclass(frozen=True)
class AuditArgs(InBuildDir):
    image: tuple[str, ...] = opt(
        "audit this image reference instead (any image, built here or not; repeatable)", "list", metavar="REF"
    )
    gpu: str | None = opt(
        "with --driver: the verdict for this GPU (a catalogue name such as H100, or a compute capability such as 9.0)",
        metavar="GPU",
    )
    driver: str | None = opt(
        "with --gpu: the verdict for this driver (580.159.04, or a branch such as 580)", metavar="VERSION"
    )


@dataclasses.dataclass(frozen=True)
class KeygenArgs(Args):
    out: str = opt(
        "directory for imagematrix.key (mode 0600) and imagematrix.pub (default: here)", "dir", ".", metavar="DIR"
    )


@dataclasses.dataclass(frozen=True)
class VerifyArgs(Args):
    POSITIONAL: ClassVar[tuple[str, ...]] = ("image",)

    image: str | None = opt(
        "the first argument: the image to verify, a reference in a registry (repo:tag or repo@sha256:...); or a "
        "signed envelope file (build/attestations/*.intoto.jsonl) with --digest",
        metavar="REF",
    )
    key: str | None = opt("the public key the results must be signed with (imagematrix.pub)", metavar="FILE")
    gpu: str | None = opt("a GPU of the catalogue the result must have been measured on (e.g. H100)", metavar="GPU")
    cc: str | None = opt("or its compute capability (e.g. 9.0)", metavar="X.Y")
    driver: str | None = opt("the driver branch it must have been measured with (e.g. 580)", metavar="VERSION")
    suite: str | None = opt("the suite that must have passed (default: any)", metavar="NAME")
    max_age: float | None = opt("refuse a result older than this many days", "number", minimum=0, metavar="DAYS")
    digest: str | None = opt(
        "with an envelope file: the digest (or local image id) the statement must be about", metavar="SHA256"
    )
    chain: bool = opt(
        "also check that the result, the signed SBOM, the build's provenance and the audit name the same "
        "image, and that the torch the suite imported is the SBOM's",
        "bool",
        False,
    )
    out: str = opt(
        "with --chain: the build directory that published the image (its publish record and audit)",
        "dir",
        "build",
        metavar="DIR",
    )


@dataclasses.dataclass(frozen=True)
class StatusArgs(Filtered):
    matrix: str | None = opt(
        "also list this matrix's selected cells that have no record yet (default: only recorded cells)", metavar="FILE"
    )
    out: str = opt("build directory holding status.json (default: build)", "dir", "build", metavar="DIR")


@dataclasses.dataclass(frozen=True)
class CleanArgs(Selected):
    images: bool = opt(
        "also remove the images of the selected cells (only images labelled as those cells)", "bool", False
    )
    out: str = opt("build directory to remove (default: build)", "dir", "build", metavar="DIR")
    history: bool = opt("also remove history.jsonl (the build and test history `invoke report` reads)", "bool", False)


@dataclasses.dataclass(frozen=True)
class SizesArgs(Selected):
    out: str = opt(
        "build directory: status.json (section 'sizes') and reports/sizes.png (default: build)",
        "dir",
        "build",
        metavar="DIR",
    )
    top: int = opt("how many layers and directories to list per image (default: 5)", "int", 5, minimum=1)
    plot: bool = opt("draw build/reports/sizes.png (--no-plot: skip it)", "bool", True)


def _test_args() -> type[Args]:
    """`imagematrix test`: exactly the options `python -m imagematrix.testing` takes (core.options.TEST_OPTIONS)."""
    fields = [(o.name, Any, opt(o)) for o in table.TEST_OPTIONS]
    return dataclasses.make_dataclass("TestArgs", fields, bases=(Args,), frozen=True)


TestArgs = _test_args()


@dataclasses.dataclass(frozen=True)
class InitArgs(Args):
    directory: str = opt(
        "where to write matrix.yaml and dockerfiles/ (default: here); it must not hold them already",
        "dir",
        ".",
        metavar="DIR",
    )
    example: str = opt("which bundled example to start from (default: matrix)", default="matrix")
