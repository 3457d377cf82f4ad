"""The grammar of each kind of value imagematrix reads from a file and later writes somewhere that
executes or renders it (a RUN line, a workflow, a path, Markdown, a terminal).

One function per kind, each returning why a value is not of its kind, or None; the matrix loader
calls them, so a bad value is refused at load with its file, line and key. Every pattern is a full
match (``re.fullmatch``): ``$`` alone accepts a trailing newline. The sinks still quote or escape
what they write; the grammar is what makes their output predictable.
"""

from __future__ import annotations

import math
import re
import urllib.parse
import zoneinfo
from pathlib import PurePosixPath

# C0 and C1 control characters and DEL: newlines, carriage returns, terminal escapes, NUL, BEL.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_TEXT = 300  # a description, a reason, a phase name: one line of prose

TARGET = re.compile(r"[a-z][a-z0-9-]{0,62}")
VERSION = re.compile(r"\d{1,4}(?:\.\d{1,4}){1,2}")  # "3.13", "12.8.1"
# PEP 508 distribution names (also the keys fragments read as packages.NAME).
PACKAGE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
# Pins that are not Python distributions but Debian package suffixes: g++-{{ packages.gxx }}.
DEBIAN_PINS = {"gxx": re.compile(r"\d{1,3}")}
# One entry of TORCH_CUDA_ARCH_LIST: 8.0, 9.0a, 10.0f, 12.0+PTX.
ARCH = re.compile(r"\d{1,2}\.\d[af]?(?:\+PTX)?")
RUNNER_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PATH_PART = re.compile(r"(?!\.\.?$)[A-Za-z0-9._@+-]{1,100}")  # a plain name; never . or ..
WORKFLOW_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\.ya?ml")
TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,29}(?:/[A-Za-z0-9][A-Za-z0-9_+-]{0,29}){0,2}")
# A word list a fragment may write into a RUN line (package names, flags): no quotes, $, ;, `, \ or globs.
OPTION_WORDS = re.compile(r"[A-Za-z0-9._/:@+=,-]+(?: [A-Za-z0-9._/:@+=,-]+)*")
FRAGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
# pip's own argument for the generated workflow's install step: a local path ("." or "./tools/im") with extras.
LOCAL_INSTALL = re.compile(r"\.(?:/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)*(?:\[[a-z0-9_,-]+\])?")
# The option a target may set, and the grammar of its value (bool options: true or false).
OPTIONS: dict[str, str] = {
    "strip_debug": "bool",
    "drop_static_libs": "bool",
    "keep_tests": "bool",
    "env_dir": "abs_path",
    "drop_packages": "words",
    "torch_extras": "words",
}


def _r(value: object, limit: int = 80) -> str:
    """A value as a message shows it: repr (control characters escaped), cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_problem(value: str, limit: int = MAX_TEXT) -> str | None:
    """One line of prose: no control characters (newlines, escapes), at most ``limit`` characters."""
    if CONTROL.search(value):
        return f"holds control characters ({_controls(value)}); write one line of plain text"
    if len(value) > limit:
        return f"is {len(value)} characters; at most {limit}"
    return None


def _controls(value: str) -> str:
    return ", ".join(sorted({f"U+{ord(c):04X}" for c in CONTROL.findall(value)}))


def pin_problem(name: str, version: str) -> str | None:
    """A pin of ``packages:``: a distribution name and a PEP 440 version (Debian suffixes: digits)."""
    if not PACKAGE_NAME.fullmatch(name):
        return f"{_r(name)} is not a package name (letters, digits, '.', '_', '-')"
    if name in DEBIAN_PINS:
        if not DEBIAN_PINS[name].fullmatch(version):
            return f"{name}: {_r(version)} is not a Debian version suffix (digits, as in g++-14)"
        return None
    from packaging.version import InvalidVersion, Version

    if CONTROL.search(version) or not version.strip() or version != version.strip():
        return f"{name}: {_r(version)} is not a version (PEP 440, e.g. 2.9.1 or 2.1.2+pt28cu128)"
    try:
        Version(version)
    except InvalidVersion:
        return f"{name}: {_r(version)} is not a version (PEP 440, e.g. 2.9.1 or 2.1.2+pt28cu128)"
    return None


def url_problem(url: str) -> str | None:
    """An http(s) index URL: no whitespace, quotes, $, backticks or backslashes."""
    if re.search(r"[\s\"'`$\\<>|;&(){}]", url) or CONTROL.search(url):
        return f"{_r(url)} is not a plain URL (no whitespace, quotes, $, `, \\ or shell characters)"
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"{_r(url)} is not a URL ({exc})"
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{_r(url)} is not an http(s) URL with a host (e.g. https://download.pytorch.org/whl/cu128)"
    return None


def arch_list_problem(value: str) -> str | None:
    """TORCH_CUDA_ARCH_LIST: entries like 8.0, 9.0a or 12.0+PTX, separated by ';' or spaces."""
    if value == "":
        return None
    items = re.split(r"[; ]", value)
    bad = [i for i in items if not ARCH.fullmatch(i)]
    if bad or len(items) > 32:
        return (
            f"{_r(value)} is not an arch list: entries like 8.0, 9.0a, 10.0f or 12.0+PTX separated by ';' "
            f"or single spaces (bad: {', '.join(map(repr, bad[:3])) or 'too many entries'})"
        )
    return None


def runner_label_problem(label: str) -> str | None:
    if not RUNNER_LABEL.fullmatch(label):
        return f"{_r(label)} is not a runner label (letters, digits, '.', '_', '-'; e.g. self-hosted, gpu)"
    return None


def abs_path_problem(path: str) -> str | None:
    """An absolute path of plain names: no '..', no spaces, quotes or shell characters."""
    parts = path.split("/")
    if not path.startswith("/") or path == "/" or not all(PATH_PART.fullmatch(p) for p in parts[1:]):
        return f"{_r(path)} is not an absolute path of plain names (letters, digits, '.', '_', '-', '@', '+'; no '..')"
    return None


def rel_path_problem(path: str) -> str | None:
    """A relative path of plain names that stays below where it starts (no '..', not absolute)."""
    parts = path.split("/")
    if not path or path.startswith("/") or not all(p == "." or PATH_PART.fullmatch(p) for p in parts):
        return f"{_r(path)} is not a relative path of plain names (letters, digits, '.', '_', '-'; no '..')"
    return None


def workflow_path_problem(path: str) -> str | None:
    """Where `invoke ci` writes: .github/workflows/NAME.yml, relative to the matrix file's directory."""
    p = PurePosixPath(path)
    if rel_path_problem(path) or p.parent != PurePosixPath(".github/workflows") or not WORKFLOW_FILE.fullmatch(p.name):
        return f"{_r(path)} is not a workflow file in .github/workflows/ (e.g. .github/workflows/imagematrix.yml)"
    return None


def option_problem(key: str, value: object) -> str | None:
    """A target option: the known ones by their own grammar, a team's own as a bool, a number or plain words."""
    kind = OPTIONS.get(key)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", key):
        return f"{_r(key)} is not an option name (lowercase letters, digits, _)"
    if kind == "bool" and not isinstance(value, bool):
        return f"{key} takes true or false, not {_r(value)}"
    if isinstance(value, bool):
        return None if kind in (None, "bool") else f"{key} takes {_KINDS[kind]}, not {_r(value)}"
    if isinstance(value, (int, float)):
        if kind is not None or not math.isfinite(value):
            return f"{key} takes {_KINDS.get(kind or '', 'a finite number')}, not {_r(value)}"
        return None
    if kind == "abs_path":
        return abs_path_problem(str(value))
    if not OPTION_WORDS.fullmatch(str(value)):
        return (
            f"{key}: {_r(value)} is not plain words (letters, digits, '.', '_', '-', '/', ':', '@', '+', '=', ','; "
            "single spaces between them)"
        )
    return None


_KINDS = {"bool": "true or false", "abs_path": "an absolute path", "words": "plain words"}


def fragment_problem(name: str) -> str | None:
    if not FRAGMENT.fullmatch(name):
        return f"{_r(name)} is not a fragment name (letters, digits, '_', '-', '.')"
    return None


def install_problem(spec: str) -> str | None:
    """What the generated workflow hands pip to install imagematrix: a requirement or a local path."""
    if LOCAL_INSTALL.fullmatch(spec):
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    bad = (
        f"{_r(spec)} is not a pip requirement for imagematrix (e.g. imagematrix==0.1.0) or a local path (., ./tools/im)"
    )
    if CONTROL.search(spec) or re.search(r"[\s\"'`$\\;&|<>]", spec.replace(" @ ", "@", 1)):
        return bad
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return bad
    if req.name.lower() != "imagematrix" or req.marker is not None:
        return bad
    if req.url and url_problem(req.url.removeprefix("git+")):
        return bad
    return None


def timezone_problem(name: str) -> str | None:
    """An IANA zone name that names a zone (not a directory of them such as America)."""
    if not TIMEZONE.fullmatch(name):
        return f"{_r(name)} is not a time zone name (an IANA name such as UTC, Asia/Tokyo, Europe/Berlin)"
    known = zoneinfo.available_timezones()
    if known and name not in known:
        return f"unknown time zone {_r(name)} (an IANA name such as UTC, Asia/Tokyo, Europe/Berlin)"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        if known:
            return f"unknown time zone {_r(name)} (an IANA name such as UTC, Asia/Tokyo, Europe/Berlin)"
    return None


def finite_problem(value: float, what: str = "a number") -> str | None:
    if not math.isfinite(value):
        return f"{_r(value)} is not {what} (NaN and infinity are not)"
    return None
