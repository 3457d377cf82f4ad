"""Where each key of ``matrix.yaml`` sits: line numbers and the text as written, for every message that
names a key. Built by ``load`` from the composed YAML nodes, read by ``resolve`` and ``load``'s schema
messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from imagematrix.core.errors import MatrixError, Problem

MAX_NODES = 100_000  # YAML aliases expand: nine levels of nine aliases are 387 million nodes
MAX_DEPTH = 64


class Index:
    """Where each key path sits in the file, and the text the user wrote there.

    Built from the composed YAML nodes before anything is converted, so a
    message can quote ``3.10`` even though YAML turned it into ``3.1``.
    Duplicate keys are found here too: PyYAML would silently keep the last one.
    The walk is iterative and bounded (MAX_NODES, MAX_DEPTH): it is the first
    thing to see every node, so an alias bomb or absurd nesting stops here.
    """

    def __init__(self, file: Path, root: yaml.Node):
        self.file = file
        self.lines: dict[tuple[str, ...], int] = {}
        self.texts: dict[tuple[str, ...], str] = {}  # scalar values as written
        self.key_texts: dict[tuple[str, ...], str] = {}  # mapping keys as written
        self.duplicates: list[Problem] = []
        self._keys = yaml.SafeLoader("")  # converts keys the way the real load will
        self._walk(root)

    def _walk(self, root: yaml.Node) -> None:
        stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
        visited = 0
        while stack:
            node, path = stack.pop()
            visited += 1
            if visited > MAX_NODES:
                raise MatrixError(
                    [
                        Problem(
                            self.file,
                            node.start_mark.line + 1,
                            (),
                            f"the file expands to more than {MAX_NODES:,} YAML nodes (through aliases such as *name); "
                            "a matrix is far smaller: write the values out, or use fewer nested aliases",
                        )
                    ]
                )
            if len(path) > MAX_DEPTH:
                raise MatrixError(
                    [
                        Problem(
                            self.file,
                            node.start_mark.line + 1,
                            (),
                            f"nested deeper than {MAX_DEPTH} levels; a matrix file needs fewer than ten",
                        )
                    ]
                )
            self.lines.setdefault(path, node.start_mark.line + 1)
            if isinstance(node, yaml.ScalarNode):
                self.texts[path] = node.value
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((v, (*path, str(i))) for i, v in reversed(list(enumerate(node.value))))
            elif isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                children = []
                for k, v in node.value:
                    if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self._keys.construct_object(k)
                    p, line = (*path, str(key)), k.start_mark.line + 1
                    if key in seen:
                        self.duplicates.append(
                            Problem(
                                self.file,
                                line,
                                p,
                                f"duplicate key {k.value!r} (first at line {seen[key]}); "
                                "YAML would silently keep only the last one: merge them or rename one",
                            )
                        )
                        continue
                    seen[key] = line
                    self.lines[p] = line
                    self.key_texts[p] = k.value
                    children.append((v, p))
                stack.extend(reversed(children))

    def line(self, path: tuple) -> int | None:
        p = tuple(str(x) for x in path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p)

    def problem(self, path: tuple, message: str) -> Problem:
        return Problem(self.file, self.line(path), tuple(path), message)
