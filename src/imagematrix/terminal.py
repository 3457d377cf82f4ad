"""The one Console every command prints through.

Markup is off: paths, cell ids, image names, log lines and error messages are
printed as the text they are (``--out 'x[red]y'`` stays ``x[red]y``). Styling is
explicit, with ``styled()``.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text


def console(stderr: bool = False) -> Console:
    # Wide enough for one row per cell when piped into a CI log.
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160, highlight=False, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (text, style) pairs as one line; nothing in them is read as markup."""
    return Text.assemble(*parts)
