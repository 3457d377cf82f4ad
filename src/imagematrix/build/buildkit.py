"""The docker command lines imagematrix runs, and what BuildKit prints back.

Commands are built here, as argument lists, nowhere else. ``BuildkitLog``
reads BuildKit's ``--progress plain`` output: the executor, the progress view
and failure messages all take the current and the failing step from it.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagematrix.core.errors import UsageError
from imagematrix.matrix.plan import BuildStep
from imagematrix.matrix.render import CA_SECRET_ID

BUILDX = "buildx"
CLASSIC = "docker"  # DOCKER_BUILDKIT=1 docker build

# BuildKit's predefined proxy ARGs: passed by name (the value stays in the
# environment, out of argv and logs) and excluded from the build cache and history.
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")


@dataclass(frozen=True)
class BuildOptions:
    no_cache: bool = False
    pull: bool = False
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    ca_cert: Path | None = None
    progress: str = "plain"
    labels: dict[str, str] = field(default_factory=dict)  # added at build time (e.g. the build hash)
    builder: str = ""  # a named buildx builder (`docker buildx ls`); "" is the current one
    context: str = ""  # a docker context whose own (docker-driver) builder builds: `docker --context NAME buildx`
    build_args: tuple[str, ...] = ()  # NAME (value from the environment) or NAME=VALUE
    no_cache_filter: tuple[str, ...] = ()  # stages to build without cache (buildx); the rest may come from cache
    provenance: bool = False  # BuildKit's SLSA provenance (mode=max) on the image: only where the builder keeps it


@dataclass(frozen=True)
class Builder:
    """What runs the builds: buildx (and its driver) or the classic CLI with BuildKit."""

    kind: str
    version: str = ""
    driver: str = ""  # buildx driver: docker, docker-container, kubernetes, remote
    buildkit: str = ""  # BuildKit version the builder reports
    client: str = ""  # docker CLI version (the classic builder only)
    name: str = ""  # the buildx builder's name, when one was asked for
    engine: str = ""  # where a docker-driver builder's images land (its context's socket); "" = DOCKER_HOST
    # What it loads keeps BuildKit's attestations: the docker driver over an engine whose images live in the
    # containerd image store (Docker 24+); the classic store, and `--load` from any other driver, drop them.
    provenance: bool = False

    def describe(self) -> str:
        if self.kind == BUILDX:
            named = f"builder {self.name}: " if self.name else ""
            into = f", images into {self.engine}" if self.engine else ""
            kept = ", provenance kept (containerd image store)" if self.provenance else ""
            driver, buildkit = self.driver or "?", self.buildkit or "?"
            return f"{named}buildx {self.version or '?'} ({driver} driver, BuildKit {buildkit}{into}{kept})"
        return f"DOCKER_BUILDKIT=1 docker build (docker CLI {self.client or '?'}, no buildx plugin)"

    @property
    def classic_has_buildkit(self) -> bool:
        """Only docker CLIs before 23.0 build with BuildKit themselves; newer ones hand it to the buildx plugin."""
        major = self.client.split(".")[0]
        return self.kind != BUILDX and major.isdigit() and int(major) < CLI_WITHOUT_BUILTIN_BUILDKIT


CLI_WITHOUT_BUILTIN_BUILDKIT = 23


def detect_builder() -> str:
    """``buildx`` when the plugin answers, else the classic CLI with BuildKit switched on."""
    if shutil.which("docker") is None:
        return CLASSIC
    try:
        ok = (
            subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=10, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return BUILDX if ok else CLASSIC


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def for_builder(options: BuildOptions, builder: Builder) -> BuildOptions:
    """Options that address ``builder``: a context's docker-driver builder through --context; provenance
    where the builder keeps it."""
    options = replace(options, provenance=builder.provenance)
    if builder.name and builder.engine:
        return replace(options, context=builder.name, builder="")
    return options


CONTAINERD_STORE = "io.containerd.snapshotter.v1"


def keeps_attestations(engine: str = "") -> bool:
    """Whether the engine (``engine``: its socket; "" the current one) stores images in containerd, where a
    docker-driver build keeps its provenance and the image id is the index that carries it."""
    return CONTAINERD_STORE in _run(
        ["docker", *(["--host", engine] if engine else []), "info", "--format", "{{json .DriverStatus}}"]
    )


def describe_builder(kind: str | None = None, name: str = "") -> Builder:
    """The builder with its driver and BuildKit version (``docker buildx inspect [NAME]``)."""
    kind = BUILDX if name else (kind or detect_builder())
    if kind != BUILDX:
        return Builder(kind, client=_run(["docker", "version", "--format", "{{.Client.Version}}"]).strip())
    version = _run(["docker", "buildx", "version"]).split()
    fields: dict[str, str] = {}
    for line in _run(["docker", "buildx", "inspect", *([name] if name else [])]).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if name and not fields:
        raise UsageError(
            f"no buildx builder named {name!r} (`docker buildx ls` lists them; a docker context is one "
            "too: `docker context create NAME --docker host=...`)"
        )
    driver = fields.get("driver", "")
    engine = ""
    if name and driver == "docker":  # its images land in the engine of the context it names
        endpoint = fields.get("endpoint", name)
        engine = (
            endpoint
            if "://" in endpoint
            else _run(["docker", "context", "inspect", endpoint, "--format", "{{.Endpoints.docker.Host}}"]).strip()
        )
    return Builder(
        BUILDX,
        provenance=driver == "docker" and keeps_attestations(engine),
        version=version[1] if len(version) > 1 else "",
        driver=driver,
        # buildx >= 0.11 says "BuildKit version:", older ones "Buildkit:".
        buildkit=fields.get("buildkit version", fields.get("buildkit", "")),
        name=name,
        engine=engine,
    )


def cache_type(spec: str) -> str:
    """The ``type=`` of a --cache-from/--cache-to value; a bare reference means ``registry``."""
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "type":
            return value.strip()
    return "registry"


def check_cache_options(options: BuildOptions, builder: Builder) -> None:
    """Refuse cache exports the builder cannot do, before any build starts."""
    if not options.cache_to:
        return
    if builder.kind != BUILDX:
        raise UsageError(
            "--cache-to needs docker buildx: the classic `docker build` cannot export a cache. "
            "Install the buildx plugin (scripts/bootstrap-host.sh does) or drop --cache-to."
        )
    if builder.driver == "docker":
        bad = [c for c in options.cache_to if cache_type(c) != "inline"]
        if bad:
            raise UsageError(
                f"--cache-to {bad[0]}: buildx's 'docker' driver (the default builder) can only export "
                "type=inline (the cache travels in the image, for registries). For type=local/registry/gha "
                "create a builder with another driver: `docker buildx create --name im --driver docker-container "
                "--use` (it pulls moby/buildkit, so it needs a registry), or drop --cache-to."
            )


def proxy_build_args(env: Mapping[str, str]) -> tuple[str, ...]:
    """Names of the proxy variables set in ``env``, to hand to every build."""
    return tuple(n for name in PROXY_ARGS for n in (name, name.lower()) if env.get(n))


def build_env(builder: str) -> dict[str, str]:
    """Environment additions for the build command."""
    return {"DOCKER_BUILDKIT": "1"}


def csv_fields(*fields: str) -> str:
    """``key=value`` fields as one CSV line, the way docker's --secret/--mount options are parsed:
    a path with a comma or a quote stays one field."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def build_argv(step: BuildStep, options: BuildOptions, builder: str = BUILDX) -> list[str]:
    """The exact command that builds one planned cell."""
    argv = ["docker", "buildx", "build", "--load"] if builder == BUILDX else ["docker", "build"]
    if options.context:  # buildx refuses --builder for a context's builder: it must be the CLI's context
        argv[1:1] = ["--context", options.context]
    elif options.builder and builder == BUILDX:
        argv[3:3] = ["--builder", options.builder]
    argv += [
        "--file",
        str(step.dockerfile),
        "--target",
        step.rendered.stage,
        "--tag",
        step.cell.ref,
        "--progress",
        options.progress,
    ]
    if step.cell.platform:  # cells of the platforms axis; emulated where it is not the host's (binfmt)
        argv += ["--platform", step.cell.platform]
    for key, value in sorted(options.labels.items()):
        argv += ["--label", f"{key}={value}"]
    for arg in options.build_args:
        argv += ["--build-arg", arg]
    if options.ca_cert is not None:
        argv += ["--secret", csv_fields(f"id={CA_SECRET_ID}", f"src={options.ca_cert}")]
    for ref in options.cache_from:
        argv += ["--cache-from", ref]
    for ref in options.cache_to:
        argv += ["--cache-to", ref]
    if options.no_cache_filter and builder == BUILDX:
        for stage in options.no_cache_filter:
            argv += ["--no-cache-filter", stage]
    elif options.no_cache or options.no_cache_filter:
        argv.append("--no-cache")
    if options.pull:
        argv.append("--pull")
    if options.provenance and builder == BUILDX:
        argv.append("--provenance=mode=max")
    argv.append(str(step.context))
    return argv


# --- BuildKit's plain progress output ----------------------------------------------

_VERTEX = re.compile(r"^#(\d+) (.*)$")
_STEP = re.compile(r"^\[[^\]]*\d+/\d+\]")  # "[devel 3/5] RUN ...", "[2/3] COPY ..."
_SOLVE_ERROR = re.compile(r"^(?:ERROR|error): (?:failed to solve[^:]*: )?(.*)$")
_FAILED_STEP = re.compile(r"^ > (\[.*\] .*):$")
# A step's own output lines that say why it failed (gcc/nvcc/ld/pip/the kernel), often far above the tail:
# pip ends a failed source build with a dozen lines that name nothing.
_CAUSE = re.compile(
    r"error:|\): error|fatal error|ERROR:|Killed signal|No space left on device|MemoryError|out of memory"
)
ERROR_LINES = 8


@dataclass
class Vertex:
    number: int
    name: str  # "[devel 3/5] RUN pip install torch", "exporting to image"
    state: str = "running"  # running, done, cached, error, canceled
    error: str = ""

    @property
    def is_step(self) -> bool:
        """A Dockerfile instruction (not BuildKit's internal loading/exporting work)."""
        return bool(_STEP.match(self.name))

    @property
    def is_work(self) -> bool:
        """A step that does work (RUN, COPY ...); FROM only names a base."""
        return self.is_step and self.name.split("] ", 1)[-1].split(" ", 1)[0] != "FROM"


@dataclass
class BuildkitLog:
    """Incremental parse of ``--progress plain``: the vertices, the current step, the error."""

    tail_lines: int = 25
    vertices: dict[int, Vertex] = field(default_factory=dict)
    solve_error: str = ""
    failed_heading: str = ""
    tail: deque[str] = field(default_factory=deque)
    current: Vertex | None = None
    error_lines: list[str] = field(default_factory=list)  # the first ERROR_LINES step lines matching _CAUSE

    def __post_init__(self) -> None:
        self.tail = deque(maxlen=self.tail_lines)

    def feed(self, line: str) -> Vertex | None:
        """Take one output line; returns the vertex it started, if it started one."""
        line = line.rstrip("\r\n")
        if line.strip():
            self.tail.append(line)
        m = _VERTEX.match(line)
        if (
            m is not None
            and len(self.error_lines) < ERROR_LINES
            and _CAUSE.search(m.group(2))
            and not m.group(2).startswith("ERROR")
        ):  # the vertex's own verdict: error() has it
            self.error_lines.append(line[:400])
        if m is None:
            if (e := _SOLVE_ERROR.match(line)) and not line.startswith("#"):
                self.solve_error = e.group(1).strip()
            elif f := _FAILED_STEP.match(line):
                self.failed_heading = self.failed_heading or f.group(1)
            return None
        num, text = int(m.group(1)), m.group(2)
        v = self.vertices.get(num)
        if v is None:
            v = self.vertices[num] = Vertex(num, text)
            self.current = v
            return v
        if text.startswith("DONE"):
            v.state = "done"
        elif text == "CACHED":
            v.state = "cached"
        elif text.startswith("CANCELED"):
            v.state = "canceled"
        elif text.startswith("ERROR"):
            v.state, v.error = "error", text.partition(":")[2].strip()
        return None

    @property
    def running(self) -> Vertex | None:
        """The step under way: the latest started vertex not yet finished, a Dockerfile step before
        BuildKit's own work (a context load for a later COPY starts beside a long RUN)."""
        live = [v for v in self.vertices.values() if v.state == "running"]
        return next((v for v in reversed(live) if v.is_step), live[-1] if live else self.current)

    @property
    def failed(self) -> Vertex | None:
        """The first vertex that failed (not merely cancelled because another did)."""
        return next((v for v in self.vertices.values() if v.state == "error"), None)

    def failing_step(self) -> str:
        v = self.failed
        if v is not None:
            return f"#{v.number} {v.name}"
        return self.failed_heading

    def error(self) -> str:
        v = self.failed
        return (v.error if v is not None and v.error else "") or self.solve_error

    def failure_tail(self, n: int) -> list[str]:
        """The last ``n`` output lines, starting at the failing step's heading when it is among them."""
        lines = list(self.tail)
        v = self.failed
        if v is not None:
            heading = f"#{v.number} {v.name}"
            starts = [i for i, line in enumerate(lines) if line == heading]
            if starts:
                lines = lines[starts[-1] :]
        return lines[-n:]

    def counts(self) -> dict[str, int]:
        """Dockerfile steps run vs taken from BuildKit's cache."""
        steps = [v for v in self.vertices.values() if v.is_work]
        return {
            "steps_run": sum(v.state == "done" for v in steps),
            "steps_cached": sum(v.state == "cached" for v in steps),
        }
