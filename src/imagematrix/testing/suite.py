"""What a GPU-suite run is, whichever backend runs it: the suites (smoke, full), the run's
options, a cell's result paths and caches, pytest's arguments, the test tools mounted into
images, and judging a finished run into a recorded result. Stdlib only (host mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagematrix.core import history, status
from imagematrix.core.builddir import utcnow
from imagematrix.core.cuda_compat import cuda_int, fmt_mm
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.options import DEFAULT_MATRIX, default_matrix
from imagematrix.core.resources import gpu_suite
from imagematrix.testing import grid as testgrid
from imagematrix.testing.grid import CellResult

BACKENDS = ("docker", "host")


@dataclass(frozen=True)
class Suite:
    name: str
    markers: str  # pytest -m expression
    timeout: float  # seconds per image unless --timeout says otherwise
    what: str

    def describe(self, python: str) -> str:
        return f"GPU suite, {self.what}, in each built Python {python} image (-- --help: options)"


SUITES = {
    "smoke": Suite("smoke", "smoke", 900, "fast checks"),
    "full": Suite("full", "smoke or full", 3600, "every check"),
}

# Where things live inside the test container.
CACHE_IN = "/var/cache/imagematrix"
PACKAGE_ROOT = (
    Path(__file__).resolve().parents[2]
)  # the directory that holds imagematrix/ (the suite imports its contract)
# Cache variables -> subdirectory of the cell's cache dir. HOME is kept on the
# host: overriding it there would hide `pip install --user` packages.
CACHE_DIRS = {
    "TORCH_EXTENSIONS_DIR": "torch_extensions",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "XDG_CACHE_HOME": "xdg",
    "HOME": "home",
    # Bytecode of the image's own packages (installed without .pyc): a warm run skips
    # recompiling torch on every fresh-process probe, and nothing lands beside any source.
    "PYTHONPYCACHEPREFIX": "pycache",
}
# A host's own environment normally has its bytecode already; a prefix would ignore it.
HOST_KEEPS = ("HOME", "PYTHONPYCACHEPREFIX")
# pytest 9.2 derives node ids from a structured id that pytest-xdist 3.8's loadgroup no longer
# rewrites: every xdist_group silently spreads over the workers and each worker runs its own probe
# (pytest-dev/pytest-xdist#1386; measured on the H200: 7 concurrent kernel probes, 6 PyG ones).
TOOLS = ("pytest>=8,<9.2", "pytest-xdist>=3.6")

# What main()'s exit code means, for the nox session's last line.
EXIT_MEANING = {
    1: "not every cell passed (the grid above says which and why), or the run could not start (see above)",
    2: "usage error (the message above says what to change)",
    130: "interrupted; the running container was removed",
    143: "terminated; the running container was removed",
}


@dataclass(frozen=True)
class Options:
    suite: Suite
    pythons: tuple[str, ...] = ()
    cudas: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    phases: tuple[str, ...] = ()  # a scheduled run tests what its phase built
    matrix: str = DEFAULT_MATRIX
    backend: str = "docker"
    require_gpu: bool = False
    timeout: float | None = None
    workers: str = "auto"  # pytest-xdist -n; "0": one process (measured: 2 workers 1.6x faster on 2 cores)
    jobs: int = 1  # cells tested at once (docker backend); each gets its own GPU while there are enough
    build_dir: Path = Path("build")
    tests_dir: Path = field(default_factory=gpu_suite)  # the installed suite (tests/gpu in the repository)
    interpreter: str | None = None
    candidates: str | None = None  # a repository: pull each cell's candidate (pushed by the build host) and test it
    pytest_extra: tuple[str, ...] = ()  # after a second `--`: handed to pytest as they are
    reuse: bool = True  # a passed result for the very same image, suite and host stands (testing.reuse)
    reuse_max_age_days: float = 30.0
    run_anyway: bool = False  # run an image the oracle predicts to fail on this host
    signing_key: str | None = None  # sign GPU results (evidence.attest); None: the environment's key, if any
    verbose: bool = False  # stream pytest's output; else one progress line on a terminal, nothing in a log

    @property
    def limit(self) -> float:
        return self.timeout or self.suite.timeout

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> Options:
        """From the options table's parsed values (``core.options.parse_all``): the one way both CLIs make it."""
        return cls(
            suite=SUITES[v["suite"]],
            phases=v["phase"],
            pythons=v["python"],
            cudas=v["cuda"],
            targets=v["target"],
            platforms=v["platform"],
            matrix=v["matrix"],
            backend=v["backend"],
            require_gpu=v["require_gpu"],
            timeout=v["timeout"],
            workers=v["workers"],
            jobs=v["jobs"],
            build_dir=Path(v["out"]),
            interpreter=v["interpreter"],
            candidates=v["candidates"],
            pytest_extra=tuple(v["pytest"]),
            reuse=not v["no_reuse"],
            reuse_max_age_days=v["reuse_max_age"],
            run_anyway=v["run_anyway"],
            signing_key=v["signing_key"],
            verbose=v["verbose"],
        )


@dataclass(frozen=True)
class CellPaths:
    junit: Path  # build/test-results/<cell>.xml
    log: Path  # build/test-results/<cell>.log
    results: Path  # build/test-results/<cell>/: artifacts, cell.json (host)
    cache: Path  # build/test-cache/<cell>

    @classmethod
    def of(cls, build_dir: Path, cell_id: str) -> CellPaths:
        res = build_dir / "test-results"
        return cls(res / f"{cell_id}.xml", res / f"{cell_id}.log", res / cell_id, build_dir / "test-cache" / cell_id)


# --- pure parts ------------------------------------------------------------------------


def session_pythons(matrix: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """The matrix's Pythons for nox's session names, or () and why (never a traceback)."""
    path = matrix or default_matrix()
    try:
        from imagematrix.matrix.load import load_matrix

        return load_matrix(path).pythons, None
    except ImagematrixError as exc:
        return (), str(exc)
    except ImportError as exc:
        return (), f"cannot read {path}: {exc} (pip install -e '.[dev]')"


def pytest_args(opts: Options, tests: str, junit: str, cell_id: str, cell_file: str | None = None) -> list[str]:
    """pytest's arguments (after `python -m pytest`), the same for both backends."""
    args = [
        tests,
        "-m",
        opts.suite.markers,
        "-v",
        "-ra",
        "--color=no",
        "-p",
        "no:cacheprovider",  # the suite's folder is read-only
        f"--junitxml={junit}",
        "-o",
        f"junit_suite_name={cell_id}",
        "--durations=12",
        "--durations-min=0.5",  # the cell's log says where its time went
    ]
    if cell_file:
        args += ["--cell", cell_file]
    if opts.require_gpu:
        args.append("--require-gpu")
    if opts.workers not in ("", "0"):
        args += [
            "-p",
            "xdist.plugin",
            "-n",
            resolve_workers(opts.workers),
            "--dist",
            "loadgroup",
        ]  # groups share one probe
    return [*args, *opts.pytest_extra]


# More workers than this only add contention: each imports torch and initialises CUDA, and the smoke
# suite has ~25 units of work. Measured on the H200 (devel cell, warm, 32 CPUs): 32 workers 12.2 s
# and 11.9 s, 16 workers 10.5 s, 8 workers 13.1 s.
MAX_AUTO_WORKERS = 16


def resolve_workers(workers: str, jobs: int = 1) -> str:
    """``auto``: one worker per CPU (at most MAX_AUTO_WORKERS); with ``jobs`` containers at once,
    half of each one's share of the CPUs. Their workers all start and import torch at the same
    moment, beside each container's started probes: three cells at once on the H200's 32 CPUs took
    12.4 s with 5 workers each and 14.4 s with 10 (one cell alone: 9-11 s)."""
    if workers != "auto":
        return workers
    jobs = max(1, jobs)
    share = (os.cpu_count() or 1) // jobs
    return str(max(1, min(MAX_AUTO_WORKERS, share // 2 if jobs > 1 else share)))


# The suite loads only the plugins it names (pytest_args): whatever pytest plugins an image carries
# (benchmark, hypothesis, ...) are not the suite's, and each xdist worker would import them again.
SUITE_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def cache_env(root: str, keep: tuple[str, ...] = ()) -> dict[str, str]:
    return {var: f"{root}/{sub}" for var, sub in CACHE_DIRS.items() if var not in keep}


# --- shared plumbing -------------------------------------------------------------------


def ensure_tools(build_dir: Path) -> Path:
    """pytest + pytest-xdist in ``build/test-tools/site``: pure Python, mounted into every image."""
    site = build_dir / "test-tools" / "site"
    if site.is_dir() and not tools_missing(site):
        return site
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".site-", dir=site.parent))
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--target",
        str(tmp),
        *TOOLS,
    ]
    print(f"installing the test tools once: {shlex.join(argv)}", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ImagematrixError(
            f"pip could not install {shlex.join(TOOLS)} into {site}:\n{tail}\n"
            "Fix: check the network or proxy (PIP_INDEX_URL, PIP_CERT), or give pip a directory of wheels "
            f"(PIP_FIND_LINKS=DIR PIP_NO_INDEX=1), or fill it yourself: pip install --target {site} {shlex.join(TOOLS)}"
        )
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from the container's unprivileged uid
    if site.is_dir():  # installed for an older pin: set aside (a running container keeps its mount)
        old = Path(tempfile.mkdtemp(prefix=".old-site-", dir=site.parent))
        with contextlib.suppress(OSError):
            site.rename(old / "site")
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(site)  # atomic; a concurrent run that got there first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def _site_tools(site: Path) -> dict[str, tuple[str, str]]:
    """Each TOOLS requirement's text -> (its name, the version ``site`` holds, or "")."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    have = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        have[canonicalize_name(name)] = version
    return {t: (Requirement(t).name, have.get(canonicalize_name(Requirement(t).name), "")) for t in TOOLS}


def tools_missing(site: Path) -> list[str]:
    """The TOOLS requirements ``site`` does not meet (from its dist-info versions)."""
    from packaging.requirements import Requirement

    return [
        f"{text} (found {version or 'none'})"
        for text, (_, version) in _site_tools(site).items()
        if not version or not Requirement(text).specifier.contains(version, prereleases=True)
    ]


def tools_versions(site: Path) -> str:
    return ", ".join(f"{name} {version}" for name, version in _site_tools(site).values() if version)


def prepare_dirs(paths: CellPaths, keep: tuple[str, ...] = (), owner: int | None = None) -> None:
    for stale in (paths.junit, paths.log):
        stale.unlink(missing_ok=True)  # a result file is always from this run
    dirs = [
        paths.results,
        paths.results / "artifacts",
        paths.cache,
        *(paths.cache / sub for var, sub in CACHE_DIRS.items() if var not in keep),
    ]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(d, owner, owner)


def record_result(result: CellResult, build_dir: Path) -> CellResult:
    """Record the cell's result next to its build record (status.json, section "test") and in the history."""
    record = result.record()
    status.update_cell(build_dir, result.cell, "test", record, replace=True)
    # Each suite's last result side by side (a smoke run never erases a full one): the publish gate reads it.
    status.update_cell(
        build_dir, result.cell, SUITES_SECTION, {result.suite: {k: record[k] for k in SUITE_KEYS if k in record}}
    )
    history.append(build_dir, "test", result.cell, record)
    return result


def judge_files(
    cell_id: str, opts: Options, paths: CellPaths, code: int | None, timed_out: bool, seconds: float, **extra
) -> CellResult:
    summary = None
    if paths.junit.is_file():
        try:
            summary = testgrid.parse_junit(paths.junit)
        except Exception as exc:  # a truncated file from a killed run is an error, not a crash
            extra["note"] = f"unreadable JUnit {paths.junit}: {exc}"
    state, note = testgrid.judge(code, summary, timed_out)
    note = "; ".join(n for n in (note, extra.pop("note", "")) if n)
    tail = "" if summary and not timed_out else _tail(paths.log)  # no JUnit to explain it: the log must
    extra.setdefault("gpu_info", _gpu_seen(paths.results / "artifacts" / GPU_SEEN))
    extra.setdefault("torch", _torch_seen(paths.results / "artifacts" / TORCH_SEEN))
    extra.setdefault("require_gpu", opts.require_gpu)
    return CellResult(
        cell_id,
        state,
        opts.suite.name,
        opts.backend,
        summary or testgrid.Summary(),
        seconds,
        str(paths.junit) if summary else "",
        str(paths.log),
        note,
        tail=tail,
        finished=utcnow(),
        **extra,
    )


SUITES_SECTION = "suites"
SUITE_KEYS = (
    "state",
    "image_id",
    "digest",
    "require_gpu",
    "gpu",
    "gpu_info",
    "finished",
    "passed",
    "failed",
    "skipped",
    "key",
    "decision",
    "reused_from",
    "prediction",
    "attestation",
    "torch",
)
GPU_SEEN = "gpu.json"  # written by the suite (tests/gpu/conftest.py, imagematrix.core.driver_probe)
TORCH_SEEN = "torch.json"  # written by the suite: the torch it imported


def _torch_seen(path: Path) -> dict:
    """The torch the suite imported, as the record keeps it ({} if it imported none, or unreadable): strings
    of bounded length only (the file was written inside the image)."""
    from imagematrix.core import files

    try:
        seen = files.read_json(path, "config", f"the suite's {TORCH_SEEN}")
    except (OSError, ValueError):
        return {}
    if not isinstance(seen, dict):
        return {}
    fields = ("version", "distribution", "distribution_version", "cuda")
    return {k: seen[k][:200] for k in fields if isinstance(seen.get(k), str) and seen[k]}


def _gpu_seen(path: Path) -> dict:
    """Driver, its CUDA version and the devices the run saw, as the record keeps them ({} if unknown)."""
    try:
        seen = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    raw = seen.get("driver_cuda") if isinstance(seen, dict) else None
    devices = [d for d in seen.get("devices") or [] if isinstance(d, dict)] if isinstance(seen, dict) else []
    libcuda = seen.get("libcuda") if isinstance(seen, dict) else None
    out = {
        "libcuda": libcuda if isinstance(libcuda, str) else None,
        "driver": seen.get("driver") if isinstance(seen, dict) else None,
        "driver_cuda": fmt_mm(cuda_int(raw)) if isinstance(raw, int) and raw > 0 else None,
        "devices": [{"name": d.get("name"), "compute_capability": d.get("compute_capability")} for d in devices],
    }
    return {k: v for k, v in out.items() if v}


def _tail(log: Path, lines: int = 12) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""
