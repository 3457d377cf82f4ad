"""The one way imagematrix runs a long child process: docker builds and host-mode test runs.

The child gets its own process group (Ctrl-C in the terminal reaches only us, and we stop
it deliberately), dies with us if we are SIGKILLed (``PR_SET_PDEATHSIG``), and its output
goes line by line to a log (unbuffered, so ``tail -f`` follows), optionally to our stdout
and to a callback. A deadline or an interrupt stops the whole group: SIGINT first (BuildKit
cancels its solve, pytest writes its report), SIGKILL after a grace period. A log that
cannot be written stops the child and raises DiskWriteError. Stdlib only (host mode).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from imagematrix.core import platform_os
from imagematrix.core.builddir import utcnow
from imagematrix.core.errors import DiskWriteError

STOP_GRACE_S = 10  # after SIGINT, before SIGKILL
_LIVE: set[subprocess.Popen] = set()  # children of run_logged still running (parallel builds stop them all)
_LIVE_LOCK = threading.Lock()
LOG_RESERVE = 256 * 1024  # given back from a log that filled the disk, so the record can still be written


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """End the child's whole process group: an interrupt, then a kill after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired, KeyboardInterrupt):
        platform_os.interrupt_group(proc)
        proc.wait(timeout=grace)
        return
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        platform_os.kill_group(proc)
        proc.wait(timeout=5)


def stop_all(grace: float = STOP_GRACE_S) -> None:
    """Stop every child run_logged is running, at once (Ctrl-C during parallel builds)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    threads = [threading.Thread(target=stop, args=(p, grace)) for p in live]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _log_full(log_path: Path, exc: OSError) -> DiskWriteError:
    """The log could not be written: give back its last LOG_RESERVE bytes (the record needs room) and say so."""
    with contextlib.suppress(OSError):
        size = log_path.stat().st_size
        os.truncate(log_path, max(0, size - LOG_RESERVE))
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"\n# {utcnow()} log cut short: {exc.strerror}; the process was stopped\n")
    return DiskWriteError.of(log_path, exc)


def run_logged(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    on_line: Callable[[str], None] | None = None,
    echo: bool = False,
    limit: float | None = None,
    header: bool = True,
    grace: float = STOP_GRACE_S,
) -> tuple[int | None, bool]:
    """Run ``argv``; (exit code, whether ``limit`` seconds ran out). Output to ``log_path``,
    to stdout with ``echo``, each line (text) to ``on_line``."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a write that fails leaves nothing behind for close() to fail on again.
        log = open(log_path, "wb", buffering=0)  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise DiskWriteError.of(log_path, exc) from None
    proc: subprocess.Popen | None = None
    fired = threading.Event()
    timer = None
    try:
        if header:
            try:
                log.write(f"# {utcnow()} {shlex.join(argv)}\n".encode())
            except OSError as exc:
                raise _log_full(log_path, exc) from None
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            **platform_os.own_group(),
        )
        with _LIVE_LOCK:
            _LIVE.add(proc)
        if limit is not None:

            def expire() -> None:
                fired.set()
                stop(proc, grace)

            timer = threading.Timer(limit, expire)
            timer.daemon = True
            timer.start()
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            try:
                log.write(raw)
            except OSError as exc:
                stop(proc, grace)
                raise _log_full(log_path, exc) from None
            if echo:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
            if on_line is not None:
                on_line(raw.decode("utf-8", errors="replace"))
        return proc.wait(), fired.is_set()
    finally:
        if proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        if timer is not None:
            timer.cancel()
        if proc is not None and proc.poll() is None:
            stop(proc, grace)
            with contextlib.suppress(OSError):
                log.write(f"# {utcnow()} interrupted: the process was stopped\n".encode())
        log.close()
