"""Text for people: sizes and durations as the tools show them, and text taken from a file made safe
for a terminal. Stdlib only (the test grid prints through it on bare GPU hosts)."""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL (newlines, escape sequences, NUL, BEL), and the invisible ones that
# change what a line seems to say: bidirectional overrides and isolates (a signed GPU name that reads
# backwards), zero-width spaces and joiners, line and paragraph separators, the byte-order mark.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(value: object, limit: int = 2000, lines: bool = False) -> str:
    """Text from a file (a record, a log, a history line) for a terminal: control characters become
    ``?`` (an escape sequence from status.json cannot move the cursor or retitle the window), cut to
    ``limit``; with ``lines``, newlines stay (a message of several lines)."""
    text = str(value)
    text = "\n".join(CONTROL.sub("?", line) for line in text.split("\n")) if lines else CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"
