"""The package's layout holds: no import cycles, engines never import the command layer,
and each concept of the image contract and the build directory is defined in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "imagematrix"
COMMAND_LAYER = {"commands", "tasks", "cli"}


def _imports() -> dict[str, set[str]]:
    mods = {p.stem: p for p in PACKAGE.glob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        edges[name] = deps & set(mods)
    return edges


def test_no_import_cycle_inside_the_package():
    edges = _imports()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges[node]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])


def test_no_engine_imports_the_command_layer():
    importers = sorted(m for m, deps in _imports().items() if deps & COMMAND_LAYER and m not in COMMAND_LAYER)
    assert importers == []


def test_contract_names_and_the_lock_are_defined_once():
    sources = {p.name: p.read_text() for p in PACKAGE.glob("*.py")}
    for pattern in (r'"imagematrix\.cell"', r'f"\{LABEL_PREFIX\}\.cell"', r"^LOCK_FILE = ", r"^FEATURES = ",
                    r"^PYG_EXTENSIONS = ", r"^def utcnow\(", r"^def run_logged\(", r"^MANIFEST_PATH = "):
        where = [name for name, text in sources.items() if re.search(pattern, text, re.M)]
        assert len(where) <= 1, f"{pattern} is defined in {where}"
