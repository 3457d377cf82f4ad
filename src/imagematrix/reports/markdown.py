"""The one writer of Markdown values: every value the sheet takes from a record, the history or the
matrix goes through ``md`` before it reaches a table cell or a line of text.

GitHub renders the sheet (the file and the job summary) with cmark-gfm. A value may hold anything: a
newline or carriage return (a new row, a heading), ``|`` (a new cell), HTML, a link, an image, an
e-mail address or ``www.`` (autolinked). ``md`` makes it one line of plain text: control characters
become spaces, every ASCII punctuation character is backslash-escaped (CommonMark allows it for all of
them, so nothing is left to start markup), ``@`` gets a word joiner in front (GFM autolinks e-mail
addresses even when escaped), and the text is cut to ``limit`` characters.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from imagematrix.core.text import CONTROL

_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")  # every ASCII punctuation character
WORD_JOINER = "\u2060"
LIMIT = 200


def md(value: object, limit: int = LIMIT) -> str:
    """``value`` as inert Markdown text: one line, no markup, at most ``limit`` characters (then …)."""
    text = " ".join(CONTROL.sub(" ", str(value)).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _PUNCT.sub(lambda m: "\\" + m.group(), text.replace("@", WORD_JOINER + "@"))
    return text


def link(text: object, path: str) -> str:
    """A link to a relative ``path`` of the sheet's own making: its text through ``md``, its destination
    percent-encoded (no ``:`` survives, so no scheme; no space, parenthesis or angle bracket ends it)."""
    return f"[{md(text)}]({quote(path, safe='/._-~')})"


def table(head: list[str], body: list[list[str]]) -> list[str]:
    """A GFM table: ``head`` is the sheet's own words; ``body`` cells are Markdown already (``md``'d)."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]
