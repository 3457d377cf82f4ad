"""The package's layout holds: its tiers are rules, not docstrings.

- ``core`` imports only the standard library and ``core``, anywhere in its modules;
- ``imagematrix/__init__.py``, ``core`` and ``testing`` import only the standard library (and the
  package itself) at module level: test containers mount the package into images that have nothing
  else, and a test imports each of them with site-packages hidden;
- the pipeline's order, read from docs/architecture.md: a module imports only its own tier and the tiers
  before it, wherever the import is (module level, inside a function, under ``TYPE_CHECKING``);
- nothing imports ``cli`` (the command layer) but ``cli``;
- no import cycles between modules, ``TYPE_CHECKING`` imports included; each concept of the image
  contract is defined once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "imagematrix"
ARCHITECTURE = PACKAGE.parents[1] / "docs" / "architecture.md"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
PACKAGES = ("core", "matrix", "build", "testing", "reports", "release", "oracle", "evidence", "cli")
# The docker backend of the test runner talks to the engine through the docker SDK, which it imports lazily.
STDLIB_AT_TOP = ("__init__", "core", "testing")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path, top_level_only: bool = False, type_checking: bool = False) -> set[str]:
    """Absolute names a module imports (relative imports resolved): everywhere, or at module level only
    (``type_checking``: with the ``if TYPE_CHECKING:`` blocks there). ``from pkg import module`` names
    the module, not the package."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    if top_level_only:
        nodes = []
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                nodes += node.body if type_checking else []
            else:
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    modules = _modules()
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            submodules = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules}
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(mod)
    return found


def pipeline_order() -> list[str]:
    """The tiers in order, as docs/architecture.md states them on its one line that starts with "Order:"."""
    lines = [line for line in ARCHITECTURE.read_text().splitlines() if line.startswith("Order:")]
    assert len(lines) == 1, "docs/architecture.md states the order on one line starting with 'Order:'"
    return re.findall(r"`([\w.]+)`", lines[0])


def _tier(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank_tier(name: str) -> str:
    """The tier a module counts in for the order: its package, ``terminal``, or the package root (its
    ``__init__`` is the public API, ``__main__`` the command's entry point): ``imagematrix``."""
    tier = _tier(name)
    return "imagematrix" if tier in ("__init__", "__main__") else tier


def test_the_packages_are_the_ones_the_architecture_names():
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert found <= set(PACKAGES), sorted(found - set(PACKAGES))
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "terminal"], top  # everything else lives in a package


def test_core_imports_only_the_standard_library_and_core():
    bad = {}
    for name, path in _modules().items():
        if _tier(name) != "core":
            continue
        outside = {m for m in _imports(path) if m.split(".")[0] not in STDLIB and not m.startswith("imagematrix.core")}
        if outside:
            bad[name] = sorted(outside)
    assert bad == {}


@pytest.mark.parametrize("tier", STDLIB_AT_TOP)
def test_what_test_containers_mount_imports_only_the_standard_library_at_module_level(tier):
    bad = {}
    for name, path in _modules().items():
        if _tier(name) != tier or name == "imagematrix.testing.containers":
            continue
        allowed = ("imagematrix.core", "imagematrix.testing") if tier == "testing" else ("imagematrix.core",)
        outside = {
            m
            for m in _imports(path, top_level_only=True)
            if m.split(".")[0] not in STDLIB and not m.startswith(allowed) and m != "imagematrix"
        }
        if outside:
            bad[name] = sorted(outside)
    assert bad == {}


def test_core_and_testing_import_with_site_packages_hidden():
    """As in a test container: `python -S` sees only the standard library and the package."""
    names = [
        n
        for n in _modules()
        if _tier(n) in ("core", "testing", "__init__")
        and n != "imagematrix.testing.containers"
        and not n.endswith("__main__")
    ]
    code = (
        "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint('ok', len(sys.argv) - 1)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, *names],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(names)}"


def test_the_order_covers_every_tier():
    order = pipeline_order()
    tiers = {_rank_tier(n) for n in _modules()}
    assert sorted(order) == sorted(tiers), f"docs/architecture.md's order {order} against the tiers {sorted(tiers)}"


def test_every_import_follows_the_pipeline_order():
    """Lazy imports and TYPE_CHECKING ones too: an import inside a function is still a dependency."""
    rank = {tier: i for i, tier in enumerate(pipeline_order())}
    bad = {}
    for name, path in _modules().items():
        mine = rank[_rank_tier(name)]
        later = sorted(m for m in _imports(path) if m.split(".")[0] == "imagematrix" and rank[_rank_tier(m)] > mine)
        if later:
            bad[name] = later
    assert bad == {}


def test_nothing_imports_the_command_layer():
    importers = sorted(
        n
        for n, p in _modules().items()  # `python -m imagematrix` is the command's own entry point
        if _tier(n) != "cli"
        and n != "imagematrix.__main__"
        and any(_tier(m) == "cli" for m in _imports(p) if m.startswith("imagematrix."))
    )
    assert importers == []


def test_no_import_cycle_between_modules():
    modules = _modules()
    edges = {
        n: {m for m in _imports(p, top_level_only=True, type_checking=True) if m in modules and m != n}
        for n, p in modules.items()
    }
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


def test_contract_names_and_the_lock_are_defined_once():
    sources = {n: p.read_text() for n, p in _modules().items()}
    for pattern in (
        r'"imagematrix\.cell"',
        r'f"\{LABEL_PREFIX\}\.cell"',
        r"^LOCK_FILE = ",
        r"^FEATURES = ",
        r"^PYG_EXTENSIONS = ",
        r"^def utcnow\(",
        r"^def run_logged\(",
        r"^MANIFEST_PATH = ",
        r"^def sass_runs_on\(",
        r"^class Option\b",
    ):
        where = [name for name, text in sources.items() if re.search(pattern, text, re.M)]
        assert len(where) <= 1, f"{pattern} is defined in {where}"


def test_every_package_is_in_the_wheel():
    text = (PACKAGE.parents[1] / "pyproject.toml").read_text()
    for d in PACKAGE.iterdir():
        if (d / "__init__.py").is_file():
            assert f'"imagematrix.{d.name}"' in text, f"imagematrix.{d.name} is missing from pyproject's packages"


def test_every_name_a_benchmark_or_script_imports_from_the_package_exists():
    """benchmarks/ and scripts/ are run by hand, not by the tests: a refactor that moves a name breaks
    them silently (benchmarks/platform_twin.py and sizes.py still imported docker_client from its old home)."""
    import ast
    import importlib

    missing = []
    for path in sorted(
        [*(PACKAGE.parents[1] / "benchmarks").glob("*.py"), *(PACKAGE.parents[1] / "scripts").glob("*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imagematrix"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        continue
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(
                            f"{path.relative_to(PACKAGE.parents[1])}: from {node.module} import {alias.name}"
                        )
    assert missing == []
