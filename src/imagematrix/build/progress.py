"""What a person watching a build sees: which cell, which step, how long.

On a terminal: a rich Live table of every planned cell, redrawn four times a
second so the elapsed time moves while a long step (pip install torch) runs.
Elsewhere (CI logs, pipes): plain timestamped lines, one per cell event and
per Dockerfile step; the full BuildKit output is in build/logs/<cell>.log.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from imagematrix.build.buildkit import Vertex
from imagematrix.core.text import human_duration

HEARTBEAT_S = 60  # a plain-mode line at least this often while a step prints output

STYLE = {
    "waiting": "dim",
    "building": "bold cyan",
    "built": "green",
    "skipped": "green",
    "failed": "bold red",
    "blocked": "yellow",
}


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class _Row:
    cell: str
    state: str = "waiting"
    step: str = ""
    note: str = ""
    started: float | None = None
    step_started: float | None = None
    duration: float | None = None


class Progress:
    """Plain lines; the base of the live view."""

    def __init__(self, console: Console, cells: list[str]):
        self.console = console
        self.rows = {c: _Row(c) for c in cells}
        self.total = len(cells)
        self._last_line = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _line(self, cell: str, text: str) -> None:
        self._last_line = time.monotonic()
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        self.console.print(f"{stamp} {cell}: {text}", soft_wrap=True, markup=False, highlight=False)

    def started(self, cell: str, log: str) -> None:
        row = self.rows[cell]
        row.state, row.started = "building", time.monotonic()
        n = list(self.rows).index(cell) + 1
        self._line(cell, f"building ({n}/{self.total}), log {log}")

    def step(self, cell: str, vertex: Vertex) -> None:
        if vertex.is_step or vertex.name.startswith("exporting"):
            row = self.rows[cell]
            row.step, row.step_started = f"#{vertex.number} {vertex.name}", time.monotonic()
            self._line(cell, _short(row.step, 140))

    def tick(self, cell: str) -> None:
        """Output without a new step: in plain mode, say every HEARTBEAT_S that a long step still runs."""
        row, now = self.rows[cell], time.monotonic()
        if row.step and row.step_started is not None and now - self._last_line >= HEARTBEAT_S:
            self._line(cell, f"still running {_short(row.step, 100)} ({human_duration(now - row.step_started)} so far)")

    def finished(self, cell: str, state: str, note: str = "", duration: float | None = None) -> None:
        row = self.rows[cell]
        row.state, row.note, row.duration, row.step = state, note, duration, ""
        took = f" in {human_duration(duration)}" if duration is not None and state in ("built", "failed") else ""
        self._line(cell, f"{state}{took}" + (f": {note}" if note else ""))


class LiveProgress(Progress):
    """A table redrawn in place; nothing else is printed while it runs."""

    def __init__(self, console: Console, cells: list[str]):
        super().__init__(console, cells)
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def _line(self, cell: str, text: str) -> None:
        pass  # the table shows it

    def __rich__(self) -> Table:
        width = max(40, self.console.width - 60)
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("cell", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("step", no_wrap=True, max_width=width, overflow="ellipsis")
        now = time.monotonic()
        for row in self.rows.values():
            took = row.duration
            if row.state == "building" and row.started is not None:
                took = now - row.started
            detail = _short(row.step, width) if row.state == "building" else _short(row.note, width)
            table.add_row(row.cell, Text(row.state, style=STYLE.get(row.state, "")), human_duration(took), detail)
        return table


def make_progress(console: Console, cells: list[str]) -> Progress:
    """Live view on a terminal, plain lines in CI and pipes."""
    live = console.is_terminal and not os.environ.get("CI") and not console.is_dumb_terminal
    return (LiveProgress if live else Progress)(console, cells)
