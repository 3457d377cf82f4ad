"""Markdown as GitHub shows it: rendered by cmark-gfm (GitHub's own renderer, from PyPI), then read
back as headings, tables of cell texts and plain text, so tests assert what a reader sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import cmarkgfm


@dataclass
class Page:
    html: str
    headings: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    text: str = ""
    links: list[str] = field(default_factory=list)  # href and src of every <a> and <img>
    tags: set[str] = field(default_factory=set)


class _Reader(HTMLParser):
    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page, self.cell, self.heading, self.parts = page, None, None, []

    def handle_starttag(self, tag, attrs):
        self.page.tags.add(tag)
        if tag in ("a", "img"):
            self.page.links += [v for k, v in attrs if k in ("href", "src") and v]
        if tag == "table":
            self.page.tables.append([])
        elif tag == "tr":
            self.page.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.page.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag.startswith("h") and tag[1:].isdigit() and self.heading is not None:
            self.page.headings.append("".join(self.heading).strip())
            self.heading = None

    def handle_data(self, data):
        self.parts.append(data)
        for target in (self.cell, self.heading):
            if target is not None:
                target.append(data)


def render(markdown: str) -> Page:
    html = cmarkgfm.github_flavored_markdown_to_html(markdown)
    page = Page(html)
    reader = _Reader(page)
    reader.feed(html)
    page.text = "".join(reader.parts).replace("\u2060", "")
    page.tables = [[[c.replace("\u2060", "") for c in row] for row in t] for t in page.tables]
    return page
