"""Run the GPU suite (``tests/gpu``) inside every built image of a selection, or on the host.

The one place a test suite is launched: nox's ``gpu_<suite>-<python>`` sessions,
CI and ``python -m imagematrix.testing.run`` all come here. This module holds what both
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
import sys
from pathlib import Path

from imagematrix.core.errors import UsageError, outcome
from imagematrix.core.interrupts import sigterm_as_interrupt
from imagematrix.testing import grid as testgrid
from imagematrix.testing.suite import (  # noqa: F401 - the run's vocabulary, importable from here too
    BACKENDS,
    CACHE_DIRS,
    CACHE_IN,
    DEFAULT_MATRIX,
    EXIT_MEANING,
    HOST_KEEPS,
    MATRIX_ENV,
    MAX_AUTO_WORKERS,
    PACKAGE_ROOT,
    SUITES,
    CellPaths,
    Options,
    Suite,
    build_command,
    cache_env,
    default_matrix,
    ensure_tools,
    pytest_args,
    resolve_workers,
    session_pythons,
    tools_missing,
)

# --- entry point -----------------------------------------------------------------------


def run(opts: Options) -> int:
    with sigterm_as_interrupt():
        if opts.backend == "host":
            from imagematrix.testing.host import run_host

            results = run_host(opts)
        else:
            from imagematrix.testing.containers import run_docker

            results = run_docker(opts)
    print(flush=True)
    testgrid.print_grid(results, opts.suite.name)
    return testgrid.exit_code(results)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m imagematrix.testing.run",
        description="Run the GPU suite in every built image of the selection (or on this host) and print one grid.",
        epilog="Results: build/test-results/<cell>.xml (JUnit) and .log; build/status.json (section 'test').",
    )
    p.add_argument("--suite", choices=SUITES, default="smoke", help="smoke: fast checks; full: every check (default: smoke)")
    p.add_argument("--phase", action="append", default=[], help="only images of build phase N, as `invoke build --phase N` (repeatable)")
    p.add_argument("--python", action="append", default=[], help="only images of this Python (repeatable)")
    p.add_argument("--cuda", action="append", default=[], help="only images of this CUDA version (repeatable)")
    p.add_argument("--target", action="append", default=[], help="only this target, e.g. runtime (repeatable)")
    p.add_argument("--platform", action="append", default=[], help="only images of this platform, e.g. linux/arm64 (repeatable)")
    p.add_argument("--matrix", default=None, help=f"matrix file (default: ${MATRIX_ENV}, else {DEFAULT_MATRIX})")
    p.add_argument("--backend", choices=BACKENDS, default="docker", help="docker: inside each built image (default); host: this host's interpreter")
    p.add_argument("--require-gpu", action="store_true", help="fail GPU checks that find no GPU instead of skipping them (GPU runners)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per image before it is killed (default: smoke 900, full 3600)")
    p.add_argument("--workers", default="auto", help="pytest-xdist workers per image: a number, 'auto' (default: one per CPU, at most 16; with --jobs N, half of each container's share) or 0 (no xdist)")
    p.add_argument("--jobs", type=int, default=1, help="cells tested at once, each container on its own GPU while there are enough (default: 1)")
    p.add_argument("--build-dir", default="build", help="where results, caches and status.json live (default: build)")
    p.add_argument("--candidates", default=None, metavar="REPO", help="pull each cell's candidate from REPO (invoke build --push-candidates REPO) and test it; the record keeps its digest")
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
        suite=SUITES[a.suite], phases=tuple(a.phase), pythons=tuple(a.python), cudas=tuple(a.cuda), targets=tuple(a.target), platforms=tuple(a.platform),
        matrix=a.matrix or default_matrix(), backend=a.backend, require_gpu=a.require_gpu, timeout=a.timeout,
        workers=a.workers, jobs=a.jobs, build_dir=Path(a.build_dir), interpreter=a.interpreter, pytest_extra=tuple(a.pytest_args),
        candidates=a.candidates,
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
