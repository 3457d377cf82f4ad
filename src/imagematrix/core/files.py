"""The one reader of files imagematrix did not just write: keys, envelopes, records, audits, history,
SBOMs. A path names a regular file of bounded size, or it is refused with a message that says what it
is instead; nothing here blocks (a FIFO opens without waiting for a writer) or grows without bound
(``/dev/zero``, ``/proc``). JSON is parsed within a nesting depth. Stdlib only.

Caps per kind are what imagematrix writes, with room: a key is a few hundred bytes, an envelope or an
audit a few MB, a history years of runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

KIB, MIB = 1 << 10, 1 << 20
LIMITS = {
    "key": 64 * KIB,
    "envelope": 64 * MIB,
    "audit": 64 * MIB,
    "record": 64 * MIB,
    "sbom": 64 * MIB,
    "history": 256 * MIB,
    "lock": 64 * KIB,
    "config": 1 * MIB,  # a tool's configuration (Docker's config.json)
    "junit": 64 * MIB,  # a suite's JUnit file: the names of its tests for a signed result
}
MAX_DEPTH = 64  # JSON nesting: imagematrix writes under ten levels
MAX_PATH = 4096  # characters: the kernel's PATH_MAX


class Unreadable(ValueError):
    """A path that does not name a readable regular file of its kind; the text says what it is instead."""


def _kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, refused when it is no path at all (empty, NUL, longer than the kernel takes)."""
    text = os.fspath(path)
    if not text or "\0" in text or len(text) > MAX_PATH:
        shown = text[:60] + ("…" if len(text) > 60 else "")
        raise Unreadable(f"{what} {shown!r} is not a path (empty, a NUL byte, or over {MAX_PATH} characters)")
    return Path(text)


def read_bytes(path: str | os.PathLike[str], kind: str, what: str | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file of ``kind`` (a key of ``LIMITS``; ``limit`` overrides its cap); Unreadable
    otherwise. FileNotFoundError is the caller's (absent is often a fine answer)."""
    limit = limit or LIMITS[kind]
    p = check_path(path, what or kind)
    what = what or f"{kind} file {p}"
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Unreadable(f"{what} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{what} is {_kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise Unreadable(f"{what} is {st.st_size:,} bytes, more than a {kind} file can be ({limit:,})")
        chunks, size = [], 0
        while size <= limit:  # /proc files say 0 bytes and hold more: read to the cap, no further
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Unreadable(f"{what} holds more than a {kind} file can ({limit:,} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(f"{what} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike[str], what: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor of ``path`` opened without blocking (a FIFO, a device), refused unless it is a regular
    file: for the readers and appenders that need more than ``read_bytes`` (a tail, an append, a lock)."""
    p = check_path(path, what)
    try:
        fd = os.open(p, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:  # a FIFO with no reader refuses a writer (ENXIO): say what it is, not the errno
        with contextlib.suppress(OSError):
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"{what} is {_kind_of(st.st_mode)}, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{what} is {_kind_of(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iterative: a deep value cannot exhaust the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def parse_json(data: bytes | str, what: str) -> Any:
    """JSON from a file we did not write: UTF-8, within ``MAX_DEPTH``, every failure an Unreadable."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text)
    except RecursionError:
        raise Unreadable(
            f"{what} is not valid JSON (RecursionError: it nests deeper than {MAX_DEPTH} levels)"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, an int over 4,300 digits
        raise Unreadable(f"{what} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if depth(value) > MAX_DEPTH:
        raise Unreadable(f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


def read_json(path: str | os.PathLike[str], kind: str, what: str | None = None, limit: int | None = None) -> Any:
    """A JSON file of ``kind``: bounded, regular, within the depth (Unreadable otherwise)."""
    what = what or f"{kind} file {os.fspath(path)}"
    return parse_json(read_bytes(path, kind, what, limit), what)


PSEUDO = ("/proc", "/sys", "/dev")  # the kernel's: never a place to write a project's files


def out_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be a directory imagematrix writes into (None: it can, or can be made)."""
    if not path or "\0" in path or len(path) > MAX_PATH:
        return f"is not a path (empty, a NUL byte, or over {MAX_PATH} characters)"
    if any(len(part) > 255 for part in path.split("/")):
        return "has a component over 255 characters (the file system's limit)"
    real = os.path.realpath(path)
    if any(real == d or real.startswith(d + "/") for d in PSEUDO):
        return f"is under {real.split('/')[1] and '/' + real.split('/')[1]}, the kernel's, not a place for files"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be used: {exc.strerror}"
    return None if stat.S_ISDIR(st.st_mode) else f"is {_kind_of(st.st_mode)}, not a directory"
