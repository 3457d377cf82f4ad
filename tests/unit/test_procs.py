"""The one process runner: log, callback, deadline, SIGINT then SIGKILL of the whole group."""

from __future__ import annotations

import os
import time

import pytest

from imagematrix.core.procs import run_logged


def test_output_goes_to_the_log_and_the_callback_line_by_line(tmp_path):
    lines: list[str] = []
    rc, timed_out = run_logged(
        ["sh", "-c", "echo one; echo two >&2; exit 3"], dict(os.environ), tmp_path / "x.log", on_line=lines.append
    )
    assert (rc, timed_out) == (3, False)
    assert lines == ["one\n", "two\n"]
    text = (tmp_path / "x.log").read_text().splitlines()
    assert text[0].startswith("# ") and text[0].endswith("sh -c 'echo one; echo two >&2; exit 3'")
    assert text[1:] == ["one", "two"]


@pytest.mark.slow
def test_a_deadline_stops_the_whole_group_even_a_child_that_ignores_sigint(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = f"trap '' INT; sleep 300 & echo $! > {pidfile}; wait"
    start = time.monotonic()
    rc, timed_out = run_logged(["sh", "-c", script], dict(os.environ), tmp_path / "x.log", limit=1, grace=1)
    assert timed_out and rc is not None and rc < 0
    assert time.monotonic() - start < 30
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the grandchild outlived the deadline: the group was not killed")
