"""The tasks: `imagematrix --list` (or `invoke --list` in this repository) shows them, `--help TASK` their options.

The one task collection: the `imagematrix` command (``app.py``) and the repository's ``tasks.py`` both serve it.
Every flag comes from an ``Option`` (``core.options`` for those several commands share, here for the rest):
``command`` turns a function of the parsed values into an invoke task with those flags and their help.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, task

from imagematrix.cli import commands
from imagematrix.core import options as table
from imagematrix.core.errors import outcome
from imagematrix.core.options import FILTERS, MATRIX, OUT, Option
from imagematrix.matrix.plan import Selection

SELECT = (*FILTERS, MATRIX)
OUT_DIR = OUT


def _opt(name: str, help: str, kind: str = "str", default: Any = None, **kw: Any) -> Option:
    return Option(name, help, kind, default, **kw)


def command(*options: Option, **task_kwargs: Any) -> Callable:
    """An invoke task whose flags, defaults and help come from ``options``; the function gets ``(values)``,
    every value parsed (a bad one is exit 2 with the flag named, never a traceback)."""

    def decorate(fn: Callable[[dict[str, Any]], int | None]):
        def body(c, **raw):
            code, message = outcome(lambda: fn(table.parse_all(options, raw)))
            if code or message:
                raise Exit(message, code=code)

        params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        positional = set(task_kwargs.get("positional") or ())  # invoke fills a positional whose value is None
        params += [
            inspect.Parameter(
                o.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None if o.name in positional else o.invoke_default,
            )
            for o in options
        ]
        body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # invoke reads the flags from it
        body.__name__, body.__doc__, body.__module__ = fn.__name__, fn.__doc__, fn.__module__
        return task(
            body,
            iterable=[o.name for o in options if o.kind == "list"],
            help=table.invoke_help(options),
            auto_shortflags=False,
            **task_kwargs,
        )

    return decorate


def selection(v: dict[str, Any]) -> Selection:
    return Selection.from_options(v["phase"], v["cuda"], v["python"], v["target"], v["platform"])


def _plan(v: dict[str, Any]):
    return commands.plan(v["matrix"], selection(v), Path(v["out"]) if "out" in v else Path("build"))


CA_CERT = _opt(
    "ca_cert", "CA bundle handed to network steps as a BuildKit secret (default: build.ca_cert)", metavar="FILE"
)


@command(*SELECT)
def matrix(v):
    """Show the cells of the matrix: id, CUDA, Python, target, parent, phases, tag."""
    return commands.show_matrix(v["matrix"], selection(v))


@command(*SELECT, OUT_DIR)
def render(v):
    """Write build/<cell>/Dockerfile and cell.json for the selected cells."""
    return commands.render(v["matrix"], selection(v), Path(v["out"]))


@command(
    MATRIX,
    _opt(
        "check",
        "compare instead of writing: exit 1, with the difference, when the workflow is out of date",
        "bool",
        False,
    ),
)
def ci(v):
    """Write the GitHub Actions workflow (ci.workflow) from the phases and the schedule."""
    return commands.ci_workflow(v["matrix"], v["check"])


@command(
    _opt("keep", "images kept per cell, newest first; the tagged one always stays (default: 2)", "int", 2, minimum=1),
    _opt(
        "cache_hours",
        "also drop BuildKit cache unused for this many hours, at least 1 (the whole builder's cache, "
        "not only imagematrix's; default: keep the cache)",
        "number",
        minimum=1,
    ),
    _opt("dry_run", "say what would go; remove nothing", "bool", False),
)
def prune(v):
    """Runner hygiene: remove old images of each cell, and old build cache."""
    from imagematrix.build.engine import docker_client
    from imagematrix.build.prune import prune as run_prune

    return run_prune(docker_client(), v["keep"], v["cache_hours"], commands.console(), dry_run=v["dry_run"])


@command(
    *SELECT,
    OUT_DIR,
    _opt(
        "repository",
        "push to this repository instead of the matrix's image (e.g. 127.0.0.1:5000/team/pytorch)",
        "repository",
        metavar="REPO",
    ),
    _opt("dry_run", "say what would be promoted or refused; push nothing", "bool", False),
    _opt(
        "candidates",
        "promote the candidates pushed to this repository (build --push-candidates), only if their digest was tested",
        "repository",
        metavar="REPO",
    ),
    _opt(
        "signing_key",
        "sign each published digest's required results and its SBOM with this ed25519 key and attach "
        "them in the registry (default: $IMAGEMATRIX_SIGNING_KEY_FILE or $IMAGEMATRIX_SIGNING_KEY)",
        metavar="FILE",
    ),
)
def publish(v):
    """Push cells whose required suite passed on a GPU on that very image; refuse the rest."""
    from imagematrix.build.engine import docker_client
    from imagematrix.evidence.attest import signer
    from imagematrix.release.publish import run_publish

    p = _plan(v)
    return run_publish(
        p,
        p.matrix.publish_require,
        docker_client(),
        commands.console(),
        repository=v["repository"],
        dry_run=v["dry_run"],
        candidates=v["candidates"],
        signer=signer(v["signing_key"]),
    )


@command(*SELECT, OUT_DIR, CA_CERT)
def bake(v):
    """Write build/docker-bake.json: the build plan for `docker buildx bake` on any builder."""
    return commands.bake(_plan(v), v["ca_cert"])


@command(
    *SELECT,
    OUT_DIR,
    _opt("merge", "another runner's history.jsonl to merge into the sheet (repeatable)", "list", metavar="FILE"),
    _opt(
        "diff_packages",
        "twice, OLD then NEW image (ref or id, or an SBOM file build/sbom/<cell>.cdx.json): print what their "
        "Python and Debian packages differ in",
        "list",
        metavar="IMAGE",
    ),
)
def report(v):
    """Write build/reports/BUILD_MATRIX.md: the sheet, from status.json and the history."""
    if v["diff_packages"]:
        return commands.diff_packages(list(v["diff_packages"]))
    return commands.report(v["matrix"], selection(v), Path(v["out"]), [Path(p) for p in v["merge"]])


@command(*SELECT, _opt("gpu", "require GPU access for containers (--no-gpu: a build-only host)", "bool", True), CA_CERT)
def doctor(v):
    """Check that this host can build and GPU-test the selected cells; exit 0 only if so."""
    return commands.doctor(commands.plan(v["matrix"], selection(v), Path("build")), v["ca_cert"], need_gpu=v["gpu"])


@command(
    *SELECT,
    _opt("code", "run ruff on src, tests, tasks.py, noxfile.py, benchmarks (--no-code skips it)", "bool", True),
    _opt(
        "dockerfiles",
        "run hadolint on the selected cells' rendered Dockerfiles (--no-dockerfiles skips it)",
        "bool",
        True,
    ),
)
def lint(v):
    """Lint code (ruff), the selected cells' Dockerfiles (hadolint), the workflow (actionlint, zizmor)."""
    return commands.lint(v["matrix"], selection(v), code=v["code"], dockerfiles=v["dockerfiles"])


@command()
def schema(v):
    """Print the JSON Schema of matrix.yaml, for editors."""
    return commands.print_schema()


@command(
    *SELECT,
    OUT_DIR,
    CA_CERT,
    _opt("dry_run", "print the ordered plan and the exact docker commands; run nothing", "bool", False),
    _opt("no_cache", "build without BuildKit's cache", "bool", False),
    _opt("pull", "always pull newer base images", "bool", False),
    _opt("cache_from", "BuildKit --cache-from source, e.g. type=local,src=DIR (repeatable)", "list", metavar="SPEC"),
    _opt("cache_to", "BuildKit --cache-to destination (repeatable)", "list", metavar="SPEC"),
    _opt("force", "rebuild cells even when their image is unchanged (BuildKit's cache still applies)", "bool", False),
    _opt(
        "skip_preflight",
        "report failed host checks (disk, memory, base images) as warnings and build anyway",
        "bool",
        False,
    ),
    _opt(
        "builder",
        "a named buildx builder (docker buildx ls; a docker context is one): build there, skip what is there",
        metavar="NAME",
    ),
    _opt(
        "jobs",
        "build up to N independent cells at once (a cell never before its parent; default 1)",
        "int",
        1,
        minimum=1,
    ),
    _opt(
        "push_candidates",
        "then push each selected cell to this repository as a candidate (tag: <tag>-<input hash>) for GPU runners",
        "repository",
        metavar="REPO",
    ),
    _opt(
        "no_audit",
        "skip the audit of each new image's device code (what GPUs and drivers it runs on; "
        "`imagematrix audit` does it later)",
        "bool",
        False,
    ),
)
def build(v):
    """Build the selected cells, parents first (--dry-run: show the plan and commands)."""
    return commands.build(_plan(v), v)


@command(
    *SELECT,
    OUT_DIR,
    _opt(
        "image", "audit this image reference instead (any image, built here or not; repeatable)", "list", metavar="REF"
    ),
    _opt(
        "gpu",
        "with --driver: the verdict for this GPU (a catalogue name such as H100, or a compute capability such as 9.0)",
        metavar="GPU",
    ),
    _opt("driver", "with --gpu: the verdict for this driver (580.159.04, or a branch such as 580)", metavar="VERSION"),
)
def audit(v):
    """What each image's binaries need from a GPU and a driver, and where they run (read from the image)."""
    return commands.audit(v["matrix"], selection(v), Path(v["out"]), v["image"], v["gpu"], v["driver"])


@command(
    _opt(
        "out",
        "directory for imagematrix.key (mode 0600) and imagematrix.pub (default: here)",
        default=".",
        metavar="DIR",
    )
)
def keygen(v):
    """Write a new ed25519 key pair for signing GPU test results (imagematrix.key, imagematrix.pub)."""
    return commands.keygen(Path(v["out"]))


@command(
    _opt(
        "image",
        "the first argument: the image to verify, a reference in a registry (repo:tag or repo@sha256:...); "
        "or a signed envelope file (build/attestations/*.intoto.json) with --digest",
        metavar="REF",
    ),
    _opt("key", "the public key the results must be signed with (imagematrix.pub)", metavar="FILE"),
    _opt("gpu", "a GPU of the catalogue the result must have been measured on (e.g. H100)", metavar="GPU"),
    _opt("cc", "or its compute capability (e.g. 9.0)", metavar="X.Y"),
    _opt("driver", "the driver branch it must have been measured with (e.g. 580)", metavar="VERSION"),
    _opt("suite", "the suite that must have passed (default: any)", metavar="NAME"),
    _opt("max_age", "refuse a result older than this many days", "number", minimum=0, metavar="DAYS"),
    _opt(
        "digest", "with an envelope file: the digest (or local image id) the statement must be about", metavar="SHA256"
    ),
    positional=["image"],
)
def verify(v):
    """Check that an image passed the GPU suite, on a GPU and driver like yours, signed by your key."""
    return commands.verify(v)


@command(
    *FILTERS,
    _opt(
        "matrix",
        "also list this matrix's selected cells that have no record yet (default: only recorded cells)",
        metavar="FILE",
    ),
    _opt("out", "build directory holding status.json (default: build)", default="build", metavar="DIR"),
)
def status(v):
    """Show the recorded state of each cell: build, duration, size, image, and test/sizes if recorded."""
    return commands.show_status(Path(v["out"]), v["matrix"], selection(v))


@command(
    *SELECT,
    _opt("images", "also remove the images of the selected cells (only images labelled as those cells)", "bool", False),
    _opt("out", "build directory to remove (default: build)", default="build", metavar="DIR"),
    _opt("history", "also remove history.jsonl (the build and test history `invoke report` reads)", "bool", False),
)
def clean(v):
    """Remove build/ but its history; --images also removes the selected cells' images."""
    return commands.clean(Path(v["out"]), v["matrix"], selection(v) if v["images"] else None, history=v["history"])


@command(
    *SELECT,
    _opt(
        "out",
        "build directory: status.json (section 'sizes') and reports/sizes.png (default: build)",
        default="build",
        metavar="DIR",
    ),
    _opt("top", "how many layers and directories to list per image (default: 5)", "int", 5, minimum=1),
    _opt("plot", "draw build/reports/sizes.png (--no-plot: skip it)", "bool", True),
)
def sizes(v):
    """Size of each built image: biggest layers and dirs, devel->runtime saving, budget (exit 1 when over)."""
    return commands.sizes_report(v["matrix"], selection(v), Path(v["out"]), top=v["top"], plot=v["plot"])


@command(*table.TEST_OPTIONS)
def test(v):
    """Run the GPU suite inside each selected built image (what nox gpu_<suite>-<python> runs)."""
    return commands.test(v)


@command(
    _opt(
        "directory",
        "where to write matrix.yaml and dockerfiles/ (default: here); it must not hold them already",
        default=".",
        metavar="DIR",
    ),
    _opt("example", "which bundled example to start from (default: matrix)", default="matrix"),
)
def init(v):
    """Start a project: a matrix.yaml and the fragments it renders, ready for `imagematrix build`."""
    from imagematrix.cli.starter import init_project

    return init_project(Path(v["directory"]), v["example"], commands.console())
