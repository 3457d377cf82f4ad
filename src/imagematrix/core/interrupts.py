"""SIGTERM handled like Ctrl-C, so every ``finally`` (records, container removal) runs.

Stdlib only: host-mode test runs import it on machines without the package's dependencies.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `kill`): unwinds like Ctrl-C; str() is "SIGTERM"."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated``; outside the main thread nothing changes."""

    def handler(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
