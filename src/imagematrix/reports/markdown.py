"""The one writer of Markdown values: every value the sheet takes from a record, the history or the
matrix goes through ``md`` before it reaches a table cell, a list item or a heading.

GitHub renders the sheet (the file and the job summary) with cmark-gfm; people read it raw in a pull
request's diff and in a terminal. So a value is escaped where a character would change the structure,
and nowhere else: a version, a date, a path or a tag reads as written (``2026-12-07 20:52``,
``cu12.9-py3.11-notebook-slim``, ``acme/notebooks``).

- one line: control characters (newlines, carriage returns, escapes) become spaces; at most ``limit``
  characters;
- inline markup anywhere: ``\\`` ``\\``` ``*`` ``_`` ``[`` ``]`` ``<`` ``~`` ``$`` (GitHub's math) and
  ``|`` (a new table cell) are backslash-escaped, and ``&`` where it would start an entity (``&amp;``);
- autolinks: ``@`` (an e-mail address), ``www.`` and ``://`` get a word joiner (U+2060) inside them,
  which GFM does not link across and a reader does not see;
- the start of a block (``start=True``: a list item, a line of its own): a heading's ``#``, a list's
  ``-``, ``+``, ``*`` or ``1.``, a quote's ``>``, a fence's ````` or ``~~~``, a setext underline are
  escaped; a trailing ``#`` (a heading's closing sequence) always is.

tests/unit/test_markdown.py and the fuzz test render the result with cmark-gfm and check the structure.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from imagematrix.core.text import CONTROL

_INLINE = re.compile(r"[\\`*_\[\]<~$|]")
_ENTITY = re.compile(r"&(?=#\d{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")
_BLOCK = re.compile(r"^(?:#{1,6}(?=\s|$)|[-+*>](?=\s|$)|>|=+\s*$|-+\s*$|```|~~~)")
_ORDERED = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
WORD_JOINER = "\u2060"
LIMIT = 200


def md(value: object, limit: int = LIMIT, start: bool = False) -> str:
    """``value`` as inert Markdown text: one line, no markup, at most ``limit`` characters (then …);
    ``start``: it begins a block (a list item's text, a line of its own)."""
    text = " ".join(CONTROL.sub(" ", str(value)).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _INLINE.sub(lambda m: "\\" + m.group(), text)
    text = _ENTITY.sub("\\&", text)
    text = text.replace("@", WORD_JOINER + "@").replace("://", ":" + WORD_JOINER + "//")
    text = re.sub(r"(?i)\bwww\.", lambda m: m.group()[:3] + WORD_JOINER + ".", text)
    if start:
        text = _ORDERED.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
        if _BLOCK.match(text):
            text = "\\" + text
    if text.endswith("#"):
        text = text[:-1] + "\\#"
    return text


def link(text: object, path: str) -> str:
    """A link to a relative ``path`` of the sheet's own making: its text through ``md``, its destination
    percent-encoded (no ``:`` survives, so no scheme; no space, parenthesis or angle bracket ends it)."""
    return f"[{md(text)}]({quote(path, safe='/._-~')})"


def table(head: list[str], body: list[list[str]]) -> list[str]:
    """A GFM table: ``head`` is the sheet's own words; ``body`` cells are Markdown already (``md``'d)."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]
