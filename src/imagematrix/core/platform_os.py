"""Everything imagematrix does that differs between Unix and Windows, in one place: file locks, a child
process's own group and stopping it, and recognising WSL2. Stdlib only (host mode imports it).

Linux (and WSL2, which is Linux) is what runs and is tested. The Windows branches (``msvcrt`` locks,
``CREATE_NEW_PROCESS_GROUP`` and CTRL_BREAK) are the portable stdlib equivalents, written so a native
PowerShell port has one module to finish; they have never run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

WINDOWS = sys.platform == "win32"  # the form type checkers narrow on
WSL_LIB = Path("/usr/lib/wsl/lib")  # where WSL2 puts the Windows driver's libcuda for Linux programs


def lock(f: IO[Any], blocking: bool = True) -> None:
    """Exclusive lock on an open file; BlockingIOError when not ``blocking`` and another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            raise BlockingIOError(str(exc)) from None
        return
    import fcntl

    fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))


def unlock(f: IO[Any]) -> None:
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        with contextlib.suppress(OSError):
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(f, fcntl.LOCK_UN)


def own_group() -> dict[str, Any]:
    """Popen keywords: the child leads its own process group (Ctrl-C in the terminal reaches only us, and
    we stop it deliberately) and, on Linux, gets SIGTERM if we are SIGKILLed (PR_SET_PDEATHSIG)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True, "preexec_fn": _die_with_parent()}


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return lambda: None
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) and None


def interrupt_group(proc: subprocess.Popen) -> None:
    """Ask the child's whole group to stop, as Ctrl-C would (BuildKit cancels, pytest reports)."""
    if sys.platform == "win32":
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        os.killpg(proc.pid, signal.SIGINT)


def kill_group(proc: subprocess.Popen) -> None:
    if WINDOWS:
        proc.kill()
    else:
        os.killpg(proc.pid, signal.SIGKILL)


def wsl(osrelease: Path = Path("/proc/sys/kernel/osrelease"), lib: Path = WSL_LIB) -> str | None:
    """ "WSL2" (or "WSL1") when this Linux runs under Windows' subsystem, else None."""
    try:
        release = osrelease.read_text().lower()
    except OSError:
        return None
    if "microsoft" not in release:
        return None
    return "WSL2" if "wsl2" in release or lib.is_dir() else "WSL1"
