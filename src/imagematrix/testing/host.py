"""The GPU suite against a host interpreter, no Docker (the host backend of testrun).

The interpreter is described by ``tests/gpu/describe_host.py`` (a manifest of what is
installed), then the suite runs in it under the same judging as in images.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace

from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.procs import run_logged
from imagematrix.testing.grid import CellResult
from imagematrix.testing.suite import (
    HOST_KEEPS,
    PACKAGE_ROOT,
    SUITE_ENV,
    CellPaths,
    Options,
    cache_env,
    judge_files,
    prepare_dirs,
    pytest_args,
    record_result,
)


def host_interpreter(opts: Options) -> str:
    if opts.interpreter:
        return opts.interpreter
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not opts.pythons or opts.pythons == (running,):
        return sys.executable
    if len(opts.pythons) > 1:
        raise UsageError("--backend host tests one interpreter: give one --python (or --interpreter PATH)")
    want = opts.pythons[0]
    found = shutil.which(f"python{want}") or ""
    problem = _interpreter_problem(found, want) if found else "is not on PATH"
    if problem:
        raise UsageError(
            f"--backend host tests the host's Python {want}, but python{want} {problem} (this is Python {running}). "
            "Fix: install it, pass --interpreter PATH, or run `python -m imagematrix.testing --backend host` "
            "with the interpreter to test"
        )
    return found


def _interpreter_problem(exe: str, want: str) -> str | None:
    """Why ``exe`` is not a working Python ``want`` (a pyenv shim is on PATH even when it cannot run)."""
    done = subprocess.run(
        [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()
        return f"({exe}) does not run: {first[0] if first else f'exit {done.returncode}'}"
    if done.stdout.strip() != want:
        return f"({exe}) is Python {done.stdout.strip()}"
    return None


def run_host(opts: Options) -> list[CellResult]:
    if opts.cudas or opts.targets or opts.phases or opts.platforms:
        raise UsageError(
            "--phase, --cuda, --target and --platform select images; --backend host tests this host's interpreter"
        )
    interp = host_interpreter(opts)
    describe = opts.tests_dir / "describe_host.py"
    suite_path = ":".join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [interp, str(describe)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": suite_path},
    )
    if proc.returncode != 0:
        raise ImagematrixError(
            f"{interp} {describe} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}\nFix: torch must "
            f"import in {interp}"
        )
    manifest = json.loads(proc.stdout)
    cid = manifest["id"]
    has_xdist = subprocess.run([interp, "-c", "import xdist"], capture_output=True, check=False).returncode == 0
    if not has_xdist and opts.workers not in ("", "0"):
        print(f"note: pytest-xdist is not installed for {interp}: running in one process", flush=True)
        opts = replace(opts, workers="0")
    paths = CellPaths.of(opts.build_dir, cid)
    prepare_dirs(paths, keep=HOST_KEEPS)
    cell_file = paths.results / "cell.json"
    cell_file.write_text(proc.stdout)
    # An empty ini: the repository's pytest settings are for its own tests, not the suite.
    ini = paths.results / "pytest.ini"
    ini.write_text("[pytest]\n")
    argv = [
        interp,
        "-m",
        "pytest",
        *pytest_args(opts, str(opts.tests_dir), str(paths.junit), cid, str(cell_file)),
        "-c",
        str(ini),
        "--rootdir",
        str(opts.tests_dir),
    ]
    env = {
        **os.environ,
        **cache_env(str(paths.cache.resolve()), HOST_KEEPS),
        **SUITE_ENV,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": suite_path,
        "IMAGEMATRIX_ARTIFACTS": str((paths.results / "artifacts").resolve()),
    }
    print(f"\n==> {cid}: {interp} (limit {opts.limit:.0f}s)\n    {shlex.join(argv)}", flush=True)
    start = time.monotonic()
    code, timed_out = run_logged(argv, env, paths.log, echo=True, limit=opts.limit, header=False)
    return [
        record_result(
            judge_files(cid, opts, paths, code, timed_out, time.monotonic() - start, gpu="host"), opts.build_dir
        )
    ]
