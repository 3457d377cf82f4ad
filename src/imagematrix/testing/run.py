"""Run the GPU suite (``tests/gpu``) inside every built image of a selection, or on the host.

The one place a test run is launched: `imagematrix test`, nox's ``gpu_<suite>-<python>`` sessions,
CI and ``python -m imagematrix.testing`` all come here, with the options of ``core.options``. The
backends: ``containers`` (one container per built image, on the host's GPUs) and ``host`` (this
host's interpreter, for runners without Docker); ``suite`` holds what both share.

Only the stdlib is imported up front: docker, pydantic (the matrix) and rich are imported where they
are used, so host mode runs with ``PYTHONPATH=src`` on a GPU machine that has nothing but torch and pytest.
"""

from __future__ import annotations

import argparse
import sys

from imagematrix.core import options as table
from imagematrix.core.errors import UsageError, outcome
from imagematrix.core.interrupts import sigterm_as_interrupt
from imagematrix.testing import grid as testgrid
from imagematrix.testing.suite import Options

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
    # one cell run in a container: its result line ("<== cell: passed ...") is the table's one row
    shown = opts.backend == "docker" and len(results) == 1 and results[0].decision == "ran" and bool(results[0].log)
    testgrid.print_grid(results, opts.suite.name, table=not shown)
    return testgrid.exit_code(results)


def parser() -> argparse.ArgumentParser:
    """The command line, from the options table (the same options and words as `imagematrix test`)."""
    p = argparse.ArgumentParser(
        prog="python -m imagematrix.testing",
        description="Run the GPU suite in every built image of the selection (or on this host) and print one grid.",
        epilog="Results: build/test-results/<cell>.xml (JUnit) and .log; build/status.json (section 'test').",
    )
    for option in table.TEST_OPTIONS:
        option.add_to(p)
    p.add_argument("--build-dir", dest="out", default=None, help=argparse.SUPPRESS)  # the flag's name before --out
    p.add_argument(
        "pytest_args", nargs="*", metavar="-- PYTEST_ARG", help="after `--`: more pytest arguments, e.g. -- -k abi"
    )
    return p


def options(argv: list[str] | None = None) -> Options:
    a = parser().parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    if a.pytest_args and "--" not in raw:
        raise UsageError(f"unexpected argument(s) {' '.join(a.pytest_args)}: arguments for pytest go after `--`")
    values = table.parse_all(table.TEST_OPTIONS, vars(a))
    values["pytest"] = (*values["pytest"], *a.pytest_args)
    return Options.from_values(values)


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
