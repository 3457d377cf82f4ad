"""Plain progress lines (CI logs): cell events, steps, and a heartbeat during long steps."""

import io

from rich.console import Console

from imagematrix.build import progress
from imagematrix.build.buildkit import Vertex
from imagematrix.core.text import fmt_bytes, human_duration


def plain(cells):
    out = io.StringIO()
    return progress.make_progress(Console(file=out, width=200), cells), out


def test_plain_lines_name_the_cell_the_step_and_the_outcome():
    p, out = plain(["a", "b"])
    assert type(p) is progress.Progress  # not a terminal: no live view
    with p:
        p.started("a", "build/logs/a.log")
        p.step("a", Vertex(7, "[devel 4/5] RUN pip install torch"))
        p.step("a", Vertex(8, "[internal] load build context"))  # BuildKit's own work: not shown
        p.finished("a", "built", "4 steps run, 0 cached", 75.0)
        p.finished("b", "blocked", "a failed")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("a: building (1/2), log build/logs/a.log")
    assert lines[1].endswith("a: #7 [devel 4/5] RUN pip install torch")
    assert lines[2].endswith("a: built in 1m15s: 4 steps run, 0 cached")
    assert lines[3].endswith("b: blocked: a failed")
    assert len(lines) == 4


def test_a_long_step_prints_a_heartbeat(monkeypatch):
    p, out = plain(["a"])
    p.started("a", "log")
    p.step("a", Vertex(7, "[devel 4/5] RUN pip install torch"))
    p.tick("a")
    assert "still running" not in out.getvalue()
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)
    p.tick("a")
    assert "a: still running #7 [devel 4/5] RUN pip install torch (0s so far)" in out.getvalue()


def test_durations_and_sizes_read_like_a_person_wrote_them():
    assert [human_duration(s) for s in (None, 0.4, 59, 61, 3725)] == ["-", "0s", "59s", "1m01s", "1h02m"]
    assert fmt_bytes(5_940_000_000) == "5.94 GB" and fmt_bytes(24_000_000) == "24 MB" and fmt_bytes(None) == "-"
