"""`invoke status`: the table of recorded states from build/status.json.

One row per cell: the "build" section in columns of its own, then one column
per other section present ("test" from the GPU-suite runner, "sizes" from the
size report). A section shows its "summary" string when it has one, else its
"state", so the other writers decide what their column says.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from imagematrix.core.records import CellRecord
from imagematrix.core.status import read_status, status_path
from imagematrix.core.text import fmt_bytes, human_duration, printable
from imagematrix.matrix.model import Cell

BUILD_STYLE = {"built": "green", "skipped": "green", "failed": "red", "blocked": "yellow", "building": "cyan"}
# The sections after "build", in this order; a section a newer release writes shows its state, if it has one.
SECTIONS = ("test", "suites", "sizes", "candidate", "publish")


def section_text(rec: CellRecord, name: str) -> str:
    """One section of a cell in a word or two (a value from the file, so made printable)."""
    if name == "test":
        text = rec.test.summary or rec.test.state if rec.test else "-"
    elif name == "suites":
        text = ", ".join(f"{n} {r.state}{' (GPU)' if r.on_gpu else ''}" for n, r in sorted(rec.suites.items())) or "-"
    elif name == "sizes":
        text = (rec.sizes.summary or rec.sizes.state or "measured") if rec.sizes else "-"
    elif name == "candidate":
        text = f"{rec.candidate.repository}@{rec.candidate.digest[:19]}" if rec.candidate else "-"
    elif name == "publish":
        text = f"{rec.publish.repository}@{rec.publish.digest[:19]}" if rec.publish else "-"
    else:
        other = rec.other.get(name)
        state = other.get("summary") or other.get("state") if isinstance(other, dict) else None
        text = state if isinstance(state, str) else "-"
    return printable(text, 80)


def _short_time(stamp: str | None) -> str:
    return (stamp or "-").replace("T", " ").removesuffix("Z")


def status_table(build_dir: Path, cells: list[Cell] | None = None) -> tuple[Table, int, str | None]:
    """The table, its number of rows and a warning about damaged sections (or None); ``cells`` adds
    not-yet-built cells of a matrix, in its order."""
    records = read_status(build_dir)
    ids = [c.id for c in cells] if cells is not None else sorted(records.cells)
    present = {n for i in ids for n in _sections(records.get(i))}
    names = [n for n in SECTIONS if n in present] + sorted(present - set(SECTIONS))
    table = Table(title=f"{printable(status_path(build_dir))}: {len(ids)} cell(s)", title_justify="left")
    for col in ("cell", "build", "duration", "size", "cached", "image", "ended", *names):
        table.add_column(printable(col, 40), no_wrap=True)
    for cid in ids:
        rec = records.get(cid)
        b = rec.build
        state = b.state if b else "not run"
        if b and b.state == "failed" and b.interrupted:
            state = "failed (interrupted)"
        elif b and b.state == "blocked" and b.blocked_by:
            state = f"blocked by {b.blocked_by}"
        style = BUILD_STYLE.get(b.state if b else "", "dim")
        cached = "-" if b is None or b.cached is None else ("yes" if b.cached else "no")
        image = ((b.image_id if b else None) or "-").removeprefix("sha256:")[:12]
        table.add_row(
            printable(cid, 120),
            Text(printable(state, 80), style=style),
            human_duration(None if b is None or b.state == "skipped" else b.duration_s),
            fmt_bytes(b.size_bytes if b else None),
            cached,
            printable(image),
            _short_time(printable(b.ended if b else None, 40)),
            *(section_text(rec, n) for n in names),
        )
    return table, len(ids), records.warning()


def _sections(rec: CellRecord) -> list[str]:
    found = [n for n in SECTIONS if (rec.suites if n == "suites" else getattr(rec, n))]
    return found + [n for n in rec.other if isinstance(n, str)]
