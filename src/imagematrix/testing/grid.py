"""One test grid for the matrix: JUnit XML per cell in, a table and status records out.

Stdlib only at import time (rich is used when it is installed): host mode runs
this on GPU machines that have nothing but torch and pytest.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imagematrix.core.text import printable

# A cell's state after a run. Only "passed" is good; every other state makes the run exit 1.
PASSED, FAILED, ERROR, TIMEOUT, MISSING, INCOMPATIBLE = (
    "passed",
    "failed",
    "error",
    "timeout",
    "missing",
    "incompatible",
)
GOOD = (PASSED,)
STYLE = {PASSED: "green", FAILED: "red", ERROR: "red", TIMEOUT: "red", MISSING: "yellow", INCOMPATIBLE: "magenta"}
# pytest's exit codes (pytest.ExitCode) that are not a plain pass/fail verdict.
PYTEST_EXIT = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}


@dataclass(frozen=True)
class Failure:
    test: str  # classname::name, as pytest writes it
    kind: str  # "failure" or "error"
    message: str  # the first line pytest recorded


@dataclass(frozen=True)
class Summary:
    """Counts from one JUnit file."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    failures: tuple[Failure, ...] = ()
    skip_reasons: dict[str, int] = field(default_factory=dict)  # reason -> how many tests

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors


def _ungrouped(name: str | None) -> str | None:
    """A test's name without pytest-xdist's ``@group`` suffix (--dist loadgroup adds it): the same
    check keeps one name whatever the scheduling."""
    if name and "@" in name.rpartition("]")[2]:
        return name[: name.rindex("@")]
    return name


def _gist(lines: list[str]) -> str:
    """A failure's message in one line: its first, and the list it introduces when it ends with a colon
    ("2 distribution(s) differ from the lock:" and which), up to 300 characters."""
    if not lines:
        return ""
    first = lines[0].strip()
    if first.endswith(":"):
        first = " ".join([first, "; ".join(x.strip() for x in lines[1:4] if x.strip())]).strip()
    return first[:300]


def test_names(path: str | Path | None, limit: int = 2000) -> dict[str, list[str]]:
    """The names of the tests that passed and failed (an error counts as failed) in a JUnit file, for a
    signed test result; {} when there is no readable file (the statement then carries counts alone)."""
    from imagematrix.core import files

    if not path:
        return {}
    try:
        root = ET.fromstring(files.read_bytes(path, "junit"))
    except (OSError, ValueError, ET.ParseError):
        return {}
    out: dict[str, list[str]] = {"passed": [], "failed": []}
    for case in root.iter("testcase"):
        name = "::".join(p for p in (case.get("classname"), _ungrouped(case.get("name"))) if p)
        kinds = {child.tag for child in case}
        which = "failed" if kinds & {"failure", "error"} else None if "skipped" in kinds else "passed"
        if which and len(out[which]) < limit:
            out[which].append(printable(name, 300))
    return out


def parse_junit(path: Path) -> Summary:
    """Count the testcases of a pytest JUnit file (xunit1 or xunit2, one or many suites)."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = errors = 0
    failures: list[Failure] = []
    reasons: dict[str, int] = {}
    seconds = sum(float(s.get("time") or 0) for s in root.iter("testsuite"))
    for case in root.iter("testcase"):
        name = "::".join(p for p in (case.get("classname"), _ungrouped(case.get("name"))) if p)
        kinds = {child.tag: child for child in case}
        # A teardown error is recorded next to a failure in the same testcase; count both.
        for kind in ("failure", "error"):
            if kind in kinds:
                msg = (kinds[kind].get("message") or (kinds[kind].text or "")).strip().splitlines()
                failures.append(Failure(name, kind, _gist(msg)))
        if "failure" in kinds:
            failed += 1
        if "error" in kinds:
            errors += 1
        if "skipped" in kinds and not {"failure", "error"} & kinds.keys():
            skipped += 1
            reason = (kinds["skipped"].get("message") or "").strip()
            reasons[reason] = reasons.get(reason, 0) + 1
        if not {"failure", "error", "skipped"} & kinds.keys():
            passed += 1
    return Summary(passed, failed, skipped, errors, seconds, tuple(failures), reasons)


@dataclass(frozen=True)
class CellResult:
    """What one cell's run came to; ``record()`` is what status.json keeps under "test"."""

    cell: str
    state: str
    suite: str
    backend: str
    summary: Summary = Summary()
    seconds: float = 0.0  # wall clock of the whole run (container start to removal)
    junit: str = ""
    log: str = ""
    note: str = ""
    gpu: str = ""
    image_id: str = ""
    finished: str = ""
    tail: str = ""  # last lines of the log when there is no JUnit verdict to explain the state
    gpu_info: dict = field(default_factory=dict)  # driver, driver_cuda, devices: what the run saw
    require_gpu: bool = False  # run with --require-gpu: GPU checks failed instead of skipping
    digest: str = ""  # the registry digest of the candidate tested (--candidates), else empty
    key: dict = field(default_factory=dict)  # the reuse key (testing.reuse)
    decision: str = "ran"  # ran, reused (no container), incompatible (predicted to fail here; no container)
    reused_from: dict = field(default_factory=dict)
    prediction: dict = field(default_factory=dict)  # the oracle's verdict for this host
    attestation: str = ""  # the signed statement of this result (a reused one: its original run's)
    torch: dict = field(default_factory=dict)  # the torch the suite imported (version, distribution)

    @property
    def counts(self) -> str:
        s = self.summary
        parts = [(s.passed, "ok"), (s.failed, "fail"), (s.errors, "error"), (s.skipped, "skip")]
        return ", ".join(f"{n} {word}" for n, word in parts if n or word == "ok")

    def record(self) -> dict:
        s = self.summary
        # invoke status shows "summary" in its test column.
        brief = self.state if self.state == MISSING else f"{self.state} ({self.suite}: {self.counts})"
        out = {
            "summary": brief,
            "state": self.state,
            "suite": self.suite,
            "backend": self.backend,
            "passed": s.passed,
            "failed": s.failed,
            "skipped": s.skipped,
            "errors": s.errors,
            "duration_s": round(self.seconds, 1),
            "junit": self.junit,
            "log": self.log,
            "note": self.note,
            "gpu": self.gpu,
            "image_id": self.image_id,
            "digest": self.digest,
            "finished": self.finished,
            "failures": [asdict(f) for f in s.failures[:20]],
            "tail": self.tail,
            "gpu_info": self.gpu_info or None,
            "require_gpu": self.require_gpu or None,
            "key": self.key or None,
            "decision": self.decision,
            "reused_from": self.reused_from or None,
            "prediction": self.prediction or None,
            "attestation": self.attestation or None,
            "torch": self.torch or None,
        }
        return {k: v for k, v in out.items() if v not in ("", None)}


def judge(exit_code: int | None, summary: Summary | None, timed_out: bool = False) -> tuple[str, str]:
    """(state, note) from pytest's exit code and the JUnit counts. Never passes vacuously."""
    if timed_out:
        return TIMEOUT, "killed at the time limit (raise it with --timeout SECONDS)"
    if summary is None:
        why = "it did not run" if exit_code is None else PYTEST_EXIT.get(exit_code, f"exit {exit_code}")
        return ERROR, f"pytest wrote no JUnit file ({why})"
    if exit_code in PYTEST_EXIT:
        return ERROR, f"pytest: {PYTEST_EXIT[exit_code]} (exit {exit_code})"
    if summary.failed or summary.errors or exit_code:
        return FAILED, ""
    if summary.passed == 0:
        return ERROR, f"no check passed ({summary.skipped} skipped): nothing was verified"
    return PASSED, ""


COLUMNS = ("cell", "state", "passed", "failed", "skipped", "errors", "time", "note")


def rows(results: list[CellResult]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in results:
        s = r.summary
        if r.state == MISSING:
            out.append((r.cell, r.state, *("-",) * 5, printable(r.note, 500)))
        else:
            out.append(
                (
                    r.cell,
                    r.state,
                    *map(str, (s.passed, s.failed, s.skipped, s.errors)),
                    f"{r.seconds:.0f}s",
                    printable(r.note, 500),
                )
            )
    return out


def exit_code(results: list[CellResult]) -> int:
    return 0 if results and all(r.state in GOOD for r in results) else 1


def headline(results: list[CellResult], suite: str) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"gpu_{suite}: {len(results)} cell(s): {states}"


def details(results: list[CellResult], limit: int = 8) -> list[str]:
    """Lines under the grid: why each bad cell is bad, and where to read more."""
    lines = []
    for r in results:
        if r.state in GOOD:
            continue
        where = f" (log: {r.log})" if r.log else ""
        lines.append(f"{r.cell}: {r.state}{where}")
        # One line per distinct message: eleven GPU checks failing for one reason is one finding.
        groups: dict[tuple[str, str], list[str]] = {}
        for f in r.summary.failures:
            groups.setdefault((f.kind, f.message), []).append(f.test)
        for (kind, message), tests in list(groups.items())[:limit]:
            names = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
            lines.append(f"  {kind}: {names}: {message}")
        if len(groups) > limit:
            lines.append(f"  ... {len(groups) - limit} more distinct failures in {r.junit}")
        if r.note:
            lines.append(f"  {r.note}")
        lines += [f"  | {line}" for line in r.tail.splitlines()]
    return lines


def skip_lines(results: list[CellResult], limit: int = 3) -> list[str]:
    """The distinct skip reasons (e.g. no GPU), so a skip is never silent."""
    reasons: dict[str, int] = {}
    for r in results:
        for reason, n in r.summary.skip_reasons.items():
            reason = reason.replace(r.cell, "<cell>")  # one line for "cell X declares no 'pyg'" across cells
            reasons[reason] = reasons.get(reason, 0) + n
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    lines = [f"skipped {n}x: {reason}" for reason, n in ranked[:limit]]
    rest = ranked[limit:]
    if rest:  # say how many are not shown, so no skip goes unmentioned
        lines.append(
            f"skipped {sum(n for _, n in rest)}x more for {len(rest)} other reason(s): "
            + "; ".join(reason for reason, _ in rest)[:300]
        )
    return lines


def _printable(lines: list[str]) -> list[str]:
    """Lines that quote what a container printed (JUnit messages, log tails): safe for a terminal."""
    return [printable(line, 2000) for line in lines]


def render_plain(results: list[CellResult], suite: str) -> str:
    table = [COLUMNS, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    fmt = lambda row: "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    lines = [headline(results, suite), fmt(table[0]), fmt(tuple("-" * w for w in widths))]
    lines += [fmt(row) for row in table[1:]]
    return "\n".join([*_printable(lines), *_printable(skip_lines(results)), *_printable(details(results))])


def print_grid(results: list[CellResult], suite: str, table: bool = True) -> None:
    """The grid, then the skip reasons and what went wrong. ``table=False``: the headline instead of
    the table (one cell whose result line was just printed)."""
    if not table:
        from imagematrix.terminal import console

        out = console()
        out.print(headline(results, suite), markup=False)
        for line in _printable([*skip_lines(results), *details(results)]):
            out.print(line, soft_wrap=True, markup=False)
        return
    try:
        from rich.table import Table
        from rich.text import Text

        from imagematrix.terminal import console
    except ImportError:  # host mode on a bare GPU machine: the same grid as plain text
        print(render_plain(results, suite), flush=True)
        return
    grid = Table(title=headline(results, suite), title_justify="left")
    for col in COLUMNS:
        grid.add_column(col, no_wrap=col != "note", justify="right" if col in COLUMNS[2:7] else "left")
    for r, row in zip(results, rows(results), strict=True):
        style = STYLE.get(r.state, "")
        grid.add_row(row[0], Text(row[1], style=style), *row[2:])
    out = console()
    out.print(grid)
    for line in _printable([*skip_lines(results), *details(results)]):
        out.print(line, soft_wrap=True, markup=False)


# --- a running suite, from pytest -v's lines --------------------------------------------
# A -v progress line has the outcome after the test id or after "[gwN] [ n%]"; -ra's short summary,
# which repeats failures and skips, starts with it: not counted again.
_OUTCOME = re.compile(r"\s(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)(?=\s|$)")
_PERCENT = re.compile(r"\[\s*(\d{1,3})%\]")


@dataclass
class Tally:
    """What a suite has done so far, counted from its streamed log (the JUnit file judges it at the end)."""

    counts: dict[str, int] = field(default_factory=dict)
    percent: int | None = None
    _partial: bytes = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            summary = _OUTCOME.match(" " + line)
            found = _OUTCOME.search(line) if "::" in line and not summary else None
            if found:
                self.counts[found.group(1).lower()] = self.counts.get(found.group(1).lower(), 0) + 1
            pct = _PERCENT.search(line)
            if pct:
                self.percent = min(100, int(pct.group(1)))

    def line(self) -> str:
        if not self.counts:
            return "starting"
        order = ("passed", "failed", "error", "skipped", "xfail", "xpass")
        done = ", ".join(f"{self.counts[k]} {k}" for k in order if self.counts.get(k))
        return f"{self.percent}%: {done}" if self.percent is not None else done
