"""The tasks: `imagematrix --list` (or `invoke --list` in this repository) shows them, `--help TASK` their options.

The one task collection: the `imagematrix` command (``app.py``) and the repository's ``tasks.py`` both serve it.
Each task takes one typed argument, its dataclass of ``cli.args`` (a field per option: flag, help and parsing
from ``core.options``); ``command`` turns a function of it into an invoke task with those flags.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, task

from imagematrix.cli import args as a
from imagematrix.cli import commands
from imagematrix.core import options as table
from imagematrix.core.errors import UsageError, outcome


def command(kind: type[a.Args], **task_kwargs: Any) -> Callable:
    """An invoke task whose flags, defaults and help come from ``kind``'s options; the function gets one
    ``kind``, every value parsed (a bad one is exit 2 with the flag named, never a traceback)."""
    options = kind.options()

    def decorate(fn: Callable[[Any], int | None]):
        def body(c, **raw):
            code, message = outcome(lambda: fn(kind.parse(raw)))
            if code or message:
                raise Exit(message, code=code)

        params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        positional = set(kind.POSITIONAL)  # invoke fills a positional whose value is None
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
            positional=list(kind.POSITIONAL),
            **task_kwargs,
        )

    return decorate


def _plan(v: a.InBuildDir):
    return commands.plan(v.matrix, v.selection(), v.build_dir)


@command(a.MatrixArgs)
def matrix(v: a.MatrixArgs):
    """Show the cells of the matrix: id, CUDA, Python, target, parent, phases, tag."""
    return commands.show_matrix(v.matrix, v.selection())


@command(a.RenderArgs)
def render(v: a.RenderArgs):
    """Write build/<cell>/Dockerfile and cell.json for the selected cells."""
    return commands.render(v.matrix, v.selection(), v.build_dir)


@command(a.CiArgs)
def ci(v: a.CiArgs):
    """Write the GitHub Actions workflow (ci.workflow) from the phases and the schedule."""
    return commands.ci_workflow(v.matrix, v.check)


@command(a.PruneArgs)
def prune(v: a.PruneArgs):
    """Runner hygiene: remove old images of each cell, and old build cache."""
    from imagematrix.build.engine import docker_client
    from imagematrix.build.prune import prune as run_prune

    return run_prune(docker_client(), v.keep, v.cache_hours, commands.console(), dry_run=v.dry_run)


@command(a.PublishArgs)
def publish(v: a.PublishArgs):
    """Push cells whose required suite passed on a GPU on that very image; refuse the rest."""
    from imagematrix.build.engine import docker_client
    from imagematrix.evidence.attest import signer
    from imagematrix.release.publish import run_publish

    key = signer(v.signing_key)  # read and checked before anything else
    outputs = os.environ.get("GITHUB_OUTPUT") if v.attest_github else None
    if v.attest_github and not outputs:
        raise UsageError(
            "--attest-github writes step outputs for GitHub's attest action: run it in a workflow step "
            "($GITHUB_OUTPUT is not set); nothing was pushed"
        )
    p = _plan(v)
    return run_publish(
        p,
        p.matrix.publish_require,
        docker_client(),
        commands.console(),
        repository=v.repository,
        dry_run=v.dry_run,
        candidates=v.candidates,
        signer=key,
        github_output=Path(outputs) if outputs else None,
    )


@command(a.BakeArgs)
def bake(v: a.BakeArgs):
    """Write build/docker-bake.json: the build plan for `docker buildx bake` on any builder."""
    return commands.bake(_plan(v), v.ca_cert)


@command(a.ReportArgs)
def report(v: a.ReportArgs):
    """Write build/reports/BUILD_MATRIX.md: the sheet, from status.json and the history."""
    if v.diff_packages:
        return commands.diff_packages(list(v.diff_packages))
    return commands.report(v.matrix, v.selection(), v.build_dir, [Path(p) for p in v.merge])


@command(a.DoctorArgs)
def doctor(v: a.DoctorArgs):
    """Check that this host can build and GPU-test the selected cells; exit 0 only if so."""
    return commands.doctor(commands.plan(v.matrix, v.selection(), Path("build")), v.ca_cert, need_gpu=not v.build_only)


@command(a.LintArgs)
def lint(v: a.LintArgs):
    """Lint code (ruff), the selected cells' Dockerfiles (hadolint), the workflow (actionlint, zizmor)."""
    return commands.lint(v.matrix, v.selection(), code=v.code, dockerfiles=v.dockerfiles)


@command(a.NoArgs)
def schema(v: a.NoArgs):
    """Print the JSON Schema of matrix.yaml, for editors."""
    return commands.print_schema()


@command(a.BuildArgs)
def build(v: a.BuildArgs):
    """Build the selected cells, parents first (--dry-run: show the plan and commands)."""
    return commands.build(_plan(v), v)


@command(a.AuditArgs)
def audit(v: a.AuditArgs):
    """What each image's binaries need from a GPU and a driver, and where they run (read from the image)."""
    return commands.audit(v.matrix, v.selection(), v.build_dir, v.image, v.gpu, v.driver)


@command(a.KeygenArgs)
def keygen(v: a.KeygenArgs):
    """Write a new ed25519 key pair for signing GPU test results (imagematrix.key, imagematrix.pub)."""
    return commands.keygen(Path(v.out))


@command(a.VerifyArgs)
def verify(v: a.VerifyArgs):
    """Check that an image passed the GPU suite, on a GPU and driver like yours, signed by your key."""
    return commands.verify(v)


@command(a.StatusArgs)
def status(v: a.StatusArgs):
    """Show the recorded state of each cell: build, duration, size, image, and test/sizes if recorded."""
    return commands.show_status(Path(v.out), v.matrix, v.selection())


@command(a.CleanArgs)
def clean(v: a.CleanArgs):
    """Remove build/ but its history; --images also removes the selected cells' images."""
    return commands.clean(Path(v.out), v.matrix, v.selection() if v.images else None, history=v.history)


@command(a.SizesArgs)
def sizes(v: a.SizesArgs):
    """Size of each built image: biggest layers and dirs, devel->runtime saving, budget (exit 1 when over)."""
    return commands.sizes_report(v.matrix, v.selection(), Path(v.out), top=v.top, plot=v.plot)


@command(a.TestArgs)
def test(v):
    """Run the GPU suite inside each selected built image (what nox gpu_<suite>-<python> runs)."""
    return commands.test(v.values())


@command(a.InitArgs)
def init(v: a.InitArgs):
    """Start a project: a matrix.yaml and the fragments it renders, ready for `imagematrix build`."""
    from imagematrix.cli.starter import init_project

    return init_project(Path(v.directory), v.example, commands.console())
