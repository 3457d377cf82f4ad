"""The one Console every command prints through.

Markup is off: paths, cell ids, image names, log lines and error messages are
printed as the text they are (``--out 'x[red]y'`` stays ``x[red]y``). Styling is
explicit, with ``styled()``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.text import Text


def console(stderr: bool = False) -> Console:
    # Wide enough for one row per cell when piped into a CI log.
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160, highlight=False, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (text, style) pairs as one line; nothing in them is read as markup."""
    return Text.assemble(*parts)


@contextlib.contextmanager
def status_line(console: Console, label: str) -> Iterator[Callable[[str], None]]:
    """One line that updates while long work runs (what it is doing, how long so far), on a terminal; in a
    log (no terminal), nothing until the caller prints its result. Yields the function that updates it."""
    if not console.is_terminal:
        yield lambda text: None
        return
    t0 = time.monotonic()
    with console.status(Text(label), spinner="dots") as status:

        def update(text: str) -> None:
            status.update(Text(f"{label}: {text} ({time.monotonic() - t0:.0f}s)"))

        yield update
