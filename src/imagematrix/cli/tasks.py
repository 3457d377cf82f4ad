"""The tasks: `imagematrix --list` (or `invoke --list` in this repository) shows them, `--help TASK` their options.

The one task collection: the `imagematrix` command (``cli.py``) and the repository's ``tasks.py`` both serve it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from invoke import Exit, task

from imagematrix.build import executor as builds
from imagematrix.build.buildkit import BuildOptions
from imagematrix.cli import commands
from imagematrix.core.errors import outcome
from imagematrix.core.options import number, words
from imagematrix.matrix.plan import Selection, select_cells
from imagematrix.testing import run as testrun

FILTER_HELP = {
    "phase": "only cells of build phase N (repeatable)",
    "cuda": "only this CUDA version, e.g. 12.8.1 (repeatable)",
    "python": "only this Python version, e.g. 3.13 (repeatable)",
    "target": "only this target, e.g. runtime (repeatable)",
    "platform": "only cells of this platform, e.g. linux/arm64 (repeatable; matrices with a platforms axis)",
    "matrix": "matrix file (default: matrix.yaml)",
}
FILTERS = {"iterable": ["phase", "cuda", "python", "target", "platform"], "help": FILTER_HELP}


def _cli(fn):
    """Turn package errors into a message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        code, message = outcome(lambda: fn(*args, **kwargs))
        if code or message:
            raise Exit(message, code=code)

    return wrapper


def _selection(phase, cuda, python, target, platform=None) -> Selection:
    return Selection.from_options(phase, cuda, python, target, platform)


@task(**FILTERS)
@_cli
def matrix(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml"):
    """Show the cells of the matrix: id, CUDA, Python, target, parent, phases, tag."""
    return commands.show_matrix(matrix, _selection(phase, cuda, python, target, platform))


@task(iterable=FILTERS["iterable"], help={**FILTER_HELP, "out": "output directory (default: build)"})
@_cli
def render(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", out="build"):
    """Write build/<cell>/Dockerfile and cell.json for the selected cells."""
    return commands.render(matrix, _selection(phase, cuda, python, target, platform), Path(out))


@task(help={
    "matrix": FILTER_HELP["matrix"],
    "check": "compare instead of writing: exit 1, with the difference, when the workflow is out of date",
})
@_cli
def ci(c, matrix="matrix.yaml", check=False):
    """Write the GitHub Actions workflow (ci.workflow) from the phases and the schedule."""
    return commands.ci_workflow(matrix, check)


@task(help={
    "keep": "images kept per cell, newest first; the tagged one always stays (default: 2)",
    "cache_hours": "also drop BuildKit cache unused for this many hours, at least 1 (the whole builder's cache, not only "
                   "imagematrix's; default: keep the cache)",
    "dry_run": "say what would go; remove nothing",
})
@_cli
def prune(c, keep="2", cache_hours=None, dry_run=False):
    """Runner hygiene: remove old images of each cell, and old build cache."""
    from imagematrix.build.engine import docker_client
    from imagematrix.build.prune import prune as run_prune

    hours = number("--cache-hours", cache_hours, minimum=1) if cache_hours is not None else None
    kept = int(number("--keep", keep, minimum=1, integer=True))
    return run_prune(docker_client(), kept, hours, commands.console(), dry_run=dry_run)


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "out": "build directory: status.json (default: build)",
    "repository": "push to this repository instead of the matrix's image (e.g. 127.0.0.1:5000/team/pytorch)",
    "dry_run": "say what would be promoted or refused; push nothing",
    "candidates": "promote the candidates pushed to this repository (build --push-candidates), only if their digest was tested",
})
@_cli
def publish(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", out="build", repository="",
            dry_run=False, candidates=""):
    """Push cells whose required suite passed on a GPU on that very image; refuse the rest."""
    from imagematrix.build.engine import docker_client
    from imagematrix.release.publish import run_publish

    p = commands.plan(matrix, _selection(phase, cuda, python, target, platform), Path(out))
    return run_publish(p, p.matrix.publish_require, docker_client(), commands.console(),
                       repository=repository or None, dry_run=dry_run, candidates=candidates or None)


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "out": "build directory: contexts and docker-bake.json (default: build)",
    "ca_cert": "CA bundle handed to network steps as a BuildKit secret (default: build.ca_cert)",
})
@_cli
def bake(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", out="build", ca_cert=""):
    """Write build/docker-bake.json: the build plan for `docker buildx bake` on any builder."""
    from imagematrix.build.bake import write_bake
    from imagematrix.build.engine import docker_client

    p = commands.plan(matrix, _selection(phase, cuda, python, target, platform), Path(out))
    path = write_bake(p, BuildOptions(ca_cert=Path(ca_cert) if ca_cert else p.matrix.ca_cert), docker_client())
    commands.console().print(f"wrote {path}: {len(p.steps)} target(s); build them with `docker buildx bake -f {path}`",
                             markup=False, highlight=False)
    return 0


@task(iterable=[*FILTERS["iterable"], "merge", "diff_packages"], help={
    **FILTER_HELP,
    "out": "build directory: status.json, reports/ (default: build)",
    "merge": "another runner's history.jsonl to merge into the sheet (repeatable)",
    "diff_packages": "twice, OLD then NEW image (ref or id): print what their Python and Debian packages differ in",
})
@_cli
def report(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", out="build", merge=None,
           diff_packages=None):
    """Write build/reports/BUILD_MATRIX.md: the sheet, from status.json and the history."""
    if diff_packages:
        return commands.diff_packages(list(diff_packages))
    return commands.report(matrix, _selection(phase, cuda, python, target, platform), Path(out), [Path(p) for p in merge or ()])


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "gpu": "require GPU access for containers (--no-gpu: a build-only host)",
    "ca_cert": "CA bundle the builds will use (checked like build's)",
})
@_cli
def doctor(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", gpu=True, ca_cert=""):
    """Check that this host can build and GPU-test the selected cells; exit 0 only if so."""
    from imagematrix.cli.doctor import run_doctor

    p = commands.plan(matrix, _selection(phase, cuda, python, target, platform), Path("build"))
    options = BuildOptions(ca_cert=Path(ca_cert) if ca_cert else p.matrix.ca_cert)
    return run_doctor(p, options, need_gpu=gpu, console=commands.console())


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "code": "run ruff on src, tests, tasks.py, noxfile.py, benchmarks (--no-code skips it)",
    "dockerfiles": "run hadolint on the selected cells' rendered Dockerfiles (--no-dockerfiles skips it)",
})
@_cli
def lint(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", code=True, dockerfiles=True):
    """Lint code (ruff), the selected cells' Dockerfiles (hadolint), the workflow (actionlint, zizmor)."""
    return commands.lint(matrix, _selection(phase, cuda, python, target, platform), code=code, dockerfiles=dockerfiles)


@task
@_cli
def schema(c):
    """Print the JSON Schema of matrix.yaml, for editors."""
    return commands.print_schema()


@task(
    auto_shortflags=False,  # automatic ones collide (-h would be --cache-to)
    iterable=[*FILTERS["iterable"], "cache_from", "cache_to"],
    help={
        **FILTER_HELP,
        "dry_run": "print the ordered plan and the exact docker commands; run nothing",
        "no_cache": "build without BuildKit's cache",
        "pull": "always pull newer base images",
        "cache_from": "BuildKit --cache-from source, e.g. type=local,src=DIR (repeatable)",
        "cache_to": "BuildKit --cache-to destination (repeatable)",
        "ca_cert": "CA bundle for TLS-inspecting proxies, handed to pip/uv/curl as a BuildKit secret",
        "out": "build directory: contexts, logs, status (default: build)",
        "force": "rebuild cells even when their image is unchanged (BuildKit's cache still applies)",
        "skip_preflight": "report failed host checks (disk, memory, base images) as warnings and build anyway",
        "builder": "a named buildx builder (docker buildx ls; a docker context is one): build there, skip what is there",
        "jobs": "build up to N independent cells at once (a cell never before its parent; default 1)",
        "push_candidates": "then push each selected cell to this repository as a candidate (tag: <tag>-<input hash>) for GPU runners",
    },
)
@_cli
def build(
    c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml",
    dry_run=False, no_cache=False, pull=False, cache_from=None, cache_to=None, ca_cert="", out="build",
    force=False, skip_preflight=False, builder="", jobs="1", push_candidates="",
):
    """Build the selected cells, parents first (--dry-run: show the plan and commands)."""
    n_jobs = int(number("--jobs", jobs, minimum=1, integer=True))
    p = commands.plan(matrix, _selection(phase, cuda, python, target, platform), Path(out))
    options = BuildOptions(
        no_cache=no_cache,
        pull=pull,
        cache_from=tuple(cache_from or ()),
        cache_to=tuple(cache_to or ()),
        ca_cert=Path(ca_cert) if ca_cert else p.matrix.ca_cert,
        builder=builder,
    )
    if dry_run:
        return commands.print_dry_run(p, options, force=force)
    builds.run_build(p, options, force=force, skip_preflight=skip_preflight, console=commands.console(), jobs=n_jobs)
    if push_candidates:
        from imagematrix.build.engine import docker_client
        from imagematrix.release.publish import push_candidates as push

        return push(p, docker_client(), commands.console(), push_candidates)
    return 0


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "matrix": "also list this matrix's selected cells that have no record yet (default: only recorded cells)",
    "out": "build directory holding status.json (default: build)",
})
@_cli
def status(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="", out="build"):
    """Show the recorded state of each cell: build, duration, size, image, and test/sizes if recorded."""
    return commands.show_status(Path(out), matrix or None, _selection(phase, cuda, python, target, platform))


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "images": "also remove the images of the selected cells (only images labelled as those cells)",
    "out": "build directory to remove (default: build)",
    "history": "also remove history.jsonl (the build and test history `invoke report` reads)",
})
@_cli
def clean(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", images=False, out="build",
          history=False):
    """Remove build/ but its history; --images also removes the selected cells' images."""
    cells = select_cells(commands.load(matrix), _selection(phase, cuda, python, target, platform)) if images else None
    from imagematrix.build.clean import clean as run_clean

    return run_clean(Path(out), cells, console=commands.console(), history=history)


@task(iterable=FILTERS["iterable"], help={
    **FILTER_HELP,
    "out": "build directory: status.json (section 'sizes') and reports/sizes.png (default: build)",
    "top": "how many layers and directories to list per image (default: 5)",
    "plot": "draw build/reports/sizes.png (--no-plot: skip it)",
})
@_cli
def sizes(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="matrix.yaml", out="build", top="5", plot=True):
    """Size of each built image: biggest layers and dirs, devel->runtime saving, budget (exit 1 when over)."""
    return commands.sizes_report(matrix, _selection(phase, cuda, python, target, platform), Path(out), top=int(number("--top", top, minimum=1, integer=True)), plot=plot)


@task(iterable=[*FILTERS["iterable"]], help={
    **{**FILTER_HELP, "matrix": f"matrix file (default: ${testrun.MATRIX_ENV}, else matrix.yaml)"},
    "suite": "smoke: fast checks; full: every check (default: smoke)",
    "require_gpu": "fail GPU checks that find no GPU instead of skipping them (GPU runners)",
    "jobs": "cells tested at once, each container on its own GPU while there are enough (default: 1)",
    "workers": "pytest-xdist workers per image: a number, auto (one per CPU, at most 16) or 0 (default: auto)",
    "backend": "docker: inside each built image (default); host: this host's interpreter",
    "timeout": "seconds per image before it is killed (default: smoke 900, full 3600)",
    "out": "build directory: test results, caches, status.json (default: build)",
    "interpreter": "--backend host: the Python to test",
    "pytest": "more pytest arguments, one string, e.g. --pytest '-k abi -x'",
    "candidates": "pull each cell's candidate from this repository (build --push-candidates) and test it",
})
@_cli
def test(c, phase=None, cuda=None, python=None, target=None, platform=None, matrix="", suite="smoke", require_gpu=False, jobs="1",
         workers="auto", backend="docker", timeout="", out="build", interpreter="", pytest="", candidates=""):
    """Run the GPU suite inside each selected built image (what nox gpu_<suite>-<python> runs)."""
    argv = ["--suite", suite, "--backend", backend, "--jobs", str(jobs), "--workers", str(workers), "--build-dir", out]
    for flag, values in (("--phase", phase), ("--cuda", cuda), ("--python", python), ("--target", target), ("--platform", platform)):
        for v in values or ():
            argv += [flag, str(v)]
    argv += ["--matrix", matrix] if matrix else []
    argv += ["--timeout", str(timeout)] if timeout else []
    argv += ["--interpreter", interpreter] if interpreter else []
    argv += ["--require-gpu"] if require_gpu else []
    argv += ["--candidates", candidates] if candidates else []
    argv += ["--", *words("--pytest", pytest)] if pytest else []
    code = testrun.main(argv)
    if code:
        raise Exit(testrun.EXIT_MEANING.get(code, f"exit {code}"), code=code)
    return 0


@task(help={
    "directory": "where to write matrix.yaml and dockerfiles/ (default: here); it must not hold them already",
    "example": "which bundled example to start from (default: matrix)",
})
@_cli
def init(c, directory=".", example="matrix"):
    """Start a project: a matrix.yaml and the fragments it renders, ready for `imagematrix build`."""
    from imagematrix.cli.starter import init_project

    return init_project(Path(directory), example, commands.console())
