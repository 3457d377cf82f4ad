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


def fmt_bytes(n: int | float | None) -> str:
    """Sizes as `docker images` shows them (decimal units): '5.94 GB', '24 MB', '-' when unknown."""
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= 1e8:
        return f"{sign}{n / 1e9:.2f} GB"
    if n >= 1e5:
        return f"{sign}{n / 1e6:.0f} MB"
    return f"{sign}{n / 1e3:.0f} kB"
