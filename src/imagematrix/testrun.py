"""Run the GPU suite (``tests/gpu``) inside every built image of a selection, or on the host.

The one place a test suite is launched: nox's ``gpu_<suite>-<python>`` sessions,
CI and ``python -m imagematrix.testrun`` all come here. This module holds what both
backends share: the suites and options, the cell's paths, pytest's arguments, the test
tools, judging a run into a result and recording it, and the command line. The backends:
``testrun_docker`` (one container per built image, on the host's GPUs) and
``testrun_host`` (this host's interpreter, for runners without Docker).

Only the stdlib is imported up front: docker, pydantic (the matrix) and rich
are imported where they are used, so host mode runs with ``PYTHONPATH=src`` on a
GPU machine that has nothing but torch and pytest.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import status, testgrid
from .builddir import utcnow
from .errors import ImagematrixError, UsageError, outcome
from .interrupts import sigterm_as_interrupt
from .testgrid import CellResult

MATRIX_ENV = "IMAGEMATRIX_MATRIX"
DEFAULT_MATRIX = "matrix.yaml"
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
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds imagematrix/ (the suite imports its contract)
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
TOOLS = ("pytest", "pytest-xdist")

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
    matrix: str = DEFAULT_MATRIX
    backend: str = "docker"
    require_gpu: bool = False
    timeout: float | None = None
    workers: str = "auto"  # pytest-xdist -n; "0": one process (measured: 2 workers 1.6x faster on 2 cores)
    jobs: int = 1  # cells tested at once (docker backend); each gets its own GPU while there are enough
    build_dir: Path = Path("build")
    tests_dir: Path = Path("tests/gpu")
    interpreter: str | None = None
    pytest_extra: tuple[str, ...] = ()  # after a second `--`: handed to pytest as they are

    @property
    def limit(self) -> float:
        return self.timeout or self.suite.timeout


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


def default_matrix() -> str:
    return os.environ.get(MATRIX_ENV) or DEFAULT_MATRIX


def session_pythons(matrix: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """The matrix's Pythons for nox's session names, or () and why (never a traceback)."""
    path = matrix or default_matrix()
    try:
        from .matrix import load_matrix

        return load_matrix(path).pythons, None
    except ImagematrixError as exc:
        return (), str(exc)
    except ImportError as exc:
        return (), f"cannot read {path}: {exc} (pip install -e '.[dev]')"


def pytest_args(
    opts: Options, tests: str, junit: str, cell_id: str, cell_file: str | None = None
) -> list[str]:
    """pytest's arguments (after `python -m pytest`), the same for both backends."""
    args = [
        tests, "-m", opts.suite.markers, "-v", "-ra", "--color=no",
        "-p", "no:cacheprovider",  # the suite's folder is read-only
        f"--junitxml={junit}", "-o", f"junit_suite_name={cell_id}",
    ]
    if cell_file:
        args += ["--cell", cell_file]
    if opts.require_gpu:
        args.append("--require-gpu")
    if opts.workers not in ("", "0"):
        args += ["-n", opts.workers, "--dist", "loadgroup"]  # the suite groups tests that share one probe
    return [*args, *opts.pytest_extra]


def cache_env(root: str, keep: tuple[str, ...] = ()) -> dict[str, str]:
    return {var: f"{root}/{sub}" for var, sub in CACHE_DIRS.items() if var not in keep}


def build_command(matrix: str, cuda: str, python: str, target: str) -> str:
    argv = ["invoke", "build"] + (["--matrix", matrix] if matrix != DEFAULT_MATRIX else [])
    return shlex.join([*argv, "--cuda", cuda, "--python", python, "--target", target])


# --- shared plumbing -------------------------------------------------------------------


def ensure_tools(build_dir: Path) -> Path:
    """pytest + pytest-xdist in ``build/test-tools/site``: pure Python, mounted into every image."""
    site = build_dir / "test-tools" / "site"
    if site.is_dir():
        return site
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".site-", dir=site.parent))
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--only-binary=:all:", "--target", str(tmp), *TOOLS,
    ]
    print(f"installing the test tools once: {shlex.join(argv)}", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ImagematrixError(
            f"pip could not install {' '.join(TOOLS)} into {site}:\n{tail}\n"
            "Fix: check the network or proxy (PIP_INDEX_URL, PIP_CERT), or fill the directory yourself: "
            f"pip install --target {site} {' '.join(TOOLS)}"
        )
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from the container's unprivileged uid
    try:
        tmp.rename(site)  # atomic; a concurrent run that got there first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def tools_versions(site: Path) -> str:
    names = sorted(p.name[: -len(".dist-info")] for p in site.glob("*.dist-info"))
    wanted = {t.replace("-", "_") for t in TOOLS}
    return ", ".join(n.replace("-", " ", 1) for n in names if n.rsplit("-", 1)[0].lower() in wanted)


def _prepare_dirs(paths: CellPaths, keep: tuple[str, ...] = (), owner: int | None = None) -> None:
    for stale in (paths.junit, paths.log):
        stale.unlink(missing_ok=True)  # a result file is always from this run
    dirs = [paths.results, paths.results / "artifacts", paths.cache,
            *(paths.cache / sub for var, sub in CACHE_DIRS.items() if var not in keep)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(d, owner, owner)


def _finish(result: CellResult, build_dir: Path) -> CellResult:
    """Record the cell's result next to its build record (status.json, section "test")."""
    status.update_cell(build_dir, result.cell, "test", result.record(), replace=True)
    return result


def _judge_files(
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
    return CellResult(
        cell_id, state, opts.suite.name, opts.backend, summary or testgrid.Summary(), seconds,
        str(paths.junit) if summary else "", str(paths.log), note, tail=tail, finished=utcnow(), **extra,
    )


def _tail(log: Path, lines: int = 12) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


# --- entry point -----------------------------------------------------------------------


def run(opts: Options) -> int:
    with sigterm_as_interrupt():
        if opts.backend == "host":
            from .testrun_host import run_host

            results = run_host(opts)
        else:
            from .testrun_docker import run_docker

            results = run_docker(opts)
    print(flush=True)
    testgrid.print_grid(results, opts.suite.name)
    return testgrid.exit_code(results)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m imagematrix.testrun",
        description="Run the GPU suite in every built image of the selection (or on this host) and print one grid.",
        epilog="Results: build/test-results/<cell>.xml (JUnit) and .log; build/status.json (section 'test').",
    )
    p.add_argument("--suite", choices=SUITES, default="smoke", help="smoke: fast checks; full: every check (default: smoke)")
    p.add_argument("--python", action="append", default=[], help="only images of this Python (repeatable)")
    p.add_argument("--cuda", action="append", default=[], help="only images of this CUDA version (repeatable)")
    p.add_argument("--target", action="append", default=[], help="only this target, e.g. runtime (repeatable)")
    p.add_argument("--matrix", default=None, help=f"matrix file (default: ${MATRIX_ENV}, else {DEFAULT_MATRIX})")
    p.add_argument("--backend", choices=BACKENDS, default="docker", help="docker: inside each built image (default); host: this host's interpreter")
    p.add_argument("--require-gpu", action="store_true", help="fail GPU checks that find no GPU instead of skipping them (GPU runners)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per image before it is killed (default: smoke 900, full 3600)")
    p.add_argument("--workers", default="auto", help="pytest-xdist workers per image: a number, 'auto' (default: one per CPU) or 0 (no xdist)")
    p.add_argument("--jobs", type=int, default=1, help="cells tested at once, each container on its own GPU while there are enough (default: 1)")
    p.add_argument("--build-dir", default="build", help="where results, caches and status.json live (default: build)")
    p.add_argument("--interpreter", default=None, help="--backend host: the Python to test (default: this one, or python<X.Y> for --python)")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARG", help="after `--`: more pytest arguments, e.g. -- -k abi")
    return p


def options(argv: list[str] | None = None) -> Options:
    a = parser().parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    if a.pytest_args and "--" not in raw:
        raise UsageError(f"unexpected argument(s) {' '.join(a.pytest_args)}: arguments for pytest go after `--`")
    if a.jobs < 1:
        raise UsageError(f"--jobs takes a number of cells >= 1, not {a.jobs}")
    if a.timeout is not None and a.timeout <= 0:
        raise UsageError(f"--timeout takes a positive number of seconds, not {a.timeout:g}")
    return Options(
        suite=SUITES[a.suite], pythons=tuple(a.python), cudas=tuple(a.cuda), targets=tuple(a.target),
        matrix=a.matrix or default_matrix(), backend=a.backend, require_gpu=a.require_gpu, timeout=a.timeout,
        workers=a.workers, jobs=a.jobs, build_dir=Path(a.build_dir), interpreter=a.interpreter, pytest_extra=tuple(a.pytest_args),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        code, message = outcome(lambda: run(options(argv)), stopped="the running container was removed")
    except SystemExit as exc:  # --help, or argparse's own usage error: a code for nox, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if message:
        print(message, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
