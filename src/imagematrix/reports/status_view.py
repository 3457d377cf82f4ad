"""`invoke status`: the table of recorded states from build/status.json.

One row per cell: the "build" section in columns of its own, then one column
per other section present ("test" from the GPU-suite runner, "sizes" from the
size report). A section shows its "summary" string when it has one, else its
"state", so the other writers decide what their column says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from imagematrix.build.progress import human_duration
from imagematrix.core.status import read_status, status_path
from imagematrix.matrix.model import Cell
from imagematrix.terminal import fmt_bytes

BUILD_STYLE = {"built": "green", "skipped": "green", "failed": "red", "blocked": "yellow", "building": "cyan"}
OTHER_SECTIONS = ("test", "sizes")  # known writers first, in this order; unknown ones follow


def section_text(section: dict[str, Any] | None) -> str:
    if not section:
        return "-"
    if section.get("digest"):  # publish: where the tested image went
        return f"{section.get('repository')}@{str(section['digest'])[:19]}"
    if section and all(isinstance(v, dict) and "state" in v for v in section.values()):  # suites, side by side
        return ", ".join(f"{name} {v['state']}{' (GPU)' if v.get('require_gpu') else ''}" for name, v in sorted(section.items()))
    for key in ("summary", "state", "outcome", "result"):
        value = section.get(key)
        if isinstance(value, str) and value:
            return value
    return ", ".join(f"{k}={v}" for k, v in section.items() if isinstance(v, (str, int, float, bool)))[:60] or "-"


def _short_time(stamp: str | None) -> str:
    return (stamp or "-").replace("T", " ").removesuffix("Z")


def status_table(build_dir: Path, cells: list[Cell] | None = None) -> tuple[Table, int]:
    """The table and its number of rows; ``cells`` adds not-yet-built cells of a matrix, in its order."""
    records = read_status(build_dir)
    ids = [c.id for c in cells] if cells is not None else sorted(records)
    sections = [s for s in OTHER_SECTIONS if any(s in records.get(i, {}) for i in ids)]
    sections += sorted({s for i in ids for s in records.get(i, {}) if s != "build" and s not in sections})
    table = Table(title=f"{status_path(build_dir)}: {len(ids)} cell(s)", title_justify="left")
    for col in ("cell", "build", "duration", "size", "cached", "image", "ended", *sections):
        table.add_column(col, no_wrap=True)
    for cid in ids:
        rec = records.get(cid, {})
        b = rec.get("build", {})
        state = b.get("state", "not run")
        if state == "failed" and b.get("interrupted"):
            state = "failed (interrupted)"
        elif state == "blocked" and b.get("blocked_by"):
            state = f"blocked by {b['blocked_by']}"
        style = BUILD_STYLE.get(b.get("state", ""), "dim")
        cached = "-" if "cached" not in b else ("yes" if b["cached"] else "no")
        image = (b.get("image_id") or "-").removeprefix("sha256:")[:12]
        table.add_row(
            cid, Text(state, style=style), human_duration(None if b.get("state") == "skipped" else b.get("duration_s")), fmt_bytes(b.get("size_bytes")),
            cached, image, _short_time(b.get("ended")), *(section_text(rec.get(s)) for s in sections),
        )
    return table, len(ids)
