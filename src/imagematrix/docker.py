"""The docker command lines imagematrix runs: built here, as argument lists, nowhere else."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .plan import BuildStep
from .render import CA_SECRET_ID

BUILDX = "buildx"
CLASSIC = "docker"  # DOCKER_BUILDKIT=1 docker build


@dataclass(frozen=True)
class BuildOptions:
    no_cache: bool = False
    pull: bool = False
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    ca_cert: Path | None = None
    progress: str = "plain"
    labels: dict[str, str] = field(default_factory=dict)  # added at build time (e.g. created, revision)


def detect_builder() -> str:
    """``buildx`` when the plugin answers, else the classic CLI with BuildKit switched on."""
    if shutil.which("docker") is None:
        return CLASSIC
    try:
        ok = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, timeout=10, check=False
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return BUILDX if ok else CLASSIC


def build_env(builder: str) -> dict[str, str]:
    """Environment additions for the build command."""
    return {"DOCKER_BUILDKIT": "1"}


def build_argv(step: BuildStep, options: BuildOptions, builder: str = BUILDX) -> list[str]:
    """The exact command that builds one planned cell."""
    argv = ["docker", "buildx", "build", "--load"] if builder == BUILDX else ["docker", "build"]
    argv += [
        "--file", str(step.dockerfile),
        "--target", step.rendered.stage,
        "--tag", step.cell.ref,
        "--progress", options.progress,
    ]
    for key, value in sorted(options.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if options.ca_cert is not None:
        argv += ["--secret", f"id={CA_SECRET_ID},src={options.ca_cert}"]
    for ref in options.cache_from:
        argv += ["--cache-from", ref]
    for ref in options.cache_to:
        argv += ["--cache-to", ref]
    if options.no_cache:
        argv.append("--no-cache")
    if options.pull:
        argv.append("--pull")
    argv.append(str(step.context))
    return argv
