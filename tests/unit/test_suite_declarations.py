"""No check of the GPU suite can fail on a module its cell did not declare, whatever the cell's shape.

The proof is general, not by example: every shape of the contract (a CUDA axis that names a version or is
`cpu`; torch held or not; each feature on or off; devel, runtime or a slim runtime), each through the
suite's own collection rule (``gpu_policy.collection_skip``, the one the suite's conftest applies), against
what each check needs, read from its source: the modules it imports, in its body, in the fixtures and
helpers it calls, and in the probes it starts (``gpu_host.run_python("name")`` runs ``gpu_probe.PROBES``).
An import inside ``try: … except ImportError`` is optional; a module's own top-level imports count for
all its checks (collection imports them). A check that runs for a shape must need only what the shape
declares."""

from __future__ import annotations

import ast
import itertools
import sys
from functools import cache
from pathlib import Path

import pytest

from imagematrix.core import contract

SUITE = Path(__file__).resolve().parents[2] / "tests" / "gpu"
sys.path.insert(0, str(SUITE))
import gpu_policy  # noqa: E402

# What a module needs declared: torch (targets.<name>.torch), a feature, or a PyG extension.
NEEDS = {
    "torch": "torch",
    "torchvision": "torch",
    "triton": "torch_compile",
    "torch_geometric": "pyg",
    "ray": "ray",
    "marimo": "marimo",
    **{ext: f"pyg_extension:{ext}" for ext in contract.PYG_EXTENSIONS},
}
HELPERS = ("gpu_host", "gpu_support", "gpu_policy", "gpu_probe")


@cache
def _tree(name: str) -> ast.Module:
    return ast.parse((SUITE / f"{name}.py").read_text())


@cache
def _functions(name: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in _tree(name).body if isinstance(n, ast.FunctionDef)}


def _optional(tree: ast.AST) -> set[int]:
    """ids of the import nodes that cannot fail for want of a declaration: under a `try` that catches
    ImportError (or anything), or under an `if` on the cell's own declaration (``holds_torch``, ``declares``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(w in ast.unparse(node.test) for w in ("holds_torch", "declares(")):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
        if isinstance(node, ast.Try) and any(
            h.type is None or any(n in ast.unparse(h.type) for n in ("ImportError", "ModuleNotFoundError", "Exception"))
            for h in node.handlers
        ):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
    return out


def _imports(node: ast.AST) -> set[str]:
    optional = _optional(node)
    found: set[str] = set()
    for n in ast.walk(node):
        if id(n) in optional:
            continue
        if isinstance(n, ast.Import):
            found |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            found.add(n.module.split(".")[0])
    return found & set(NEEDS)


def _probes() -> dict[str, str]:
    """gpu_probe.PROBES: probe name -> its function's name."""
    for node in _tree("gpu_probe").body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PROBES" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            return {
                k.value: v.id
                for k, v in zip(node.value.keys, node.value.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(v, ast.Name)
            }
    raise AssertionError("gpu_probe has no PROBES")


def _probe_names(node: ast.AST) -> set[str]:
    """Probes a body starts: gpu_host.run_python("name", ...) and the *_PROBE constants of gpu_policy."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("run_python") and n.args:
            first = n.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
            elif isinstance(first, ast.Starred) and isinstance(first.value, ast.Attribute):
                const = getattr(gpu_policy, first.value.attr, None)
                if isinstance(const, tuple) and const and isinstance(const[0], str):
                    names.add(const[0])
            elif isinstance(first, ast.Starred) and isinstance(first.value, ast.Call):
                names |= _returned_probes(ast.unparse(first.value.func).split(".")[-1])
    return names


def _returned_probes(function: str) -> set[str]:
    """The probe names a gpu_policy function returns first in a tuple (``pyg_probe`` -> {"pyg", ...})."""
    fn = _functions("gpu_policy").get(function)
    out: set[str] = set()
    for n in ast.walk(fn) if fn else ():
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Tuple) and n.value.elts:
            first = n.value.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.add(first.value)
    return out


@cache
def needs_of(module: str, function: str) -> frozenset[str]:
    """What a function of the suite needs: its imports, the fixtures it takes, the helpers it calls (same
    module or the suite's helper modules), the probes it starts; transitively."""
    fn = _functions(module).get(function)
    if fn is None:
        return frozenset()
    found = set(_imports(fn))
    for arg in fn.args.args:
        for where in (module, "conftest"):
            if arg.arg in _fixtures(where):
                found |= needs_of(where, arg.arg)
    for n in ast.walk(fn):
        if isinstance(n, ast.Call):
            callee = n.func
            if isinstance(callee, ast.Name) and callee.id in _functions(module) and callee.id != function:
                found |= needs_of(module, callee.id)
            elif (
                isinstance(callee, ast.Attribute)
                and isinstance(callee.value, ast.Name)
                and callee.value.id in HELPERS
                and callee.attr in _functions(callee.value.id)
            ):
                found |= needs_of(callee.value.id, callee.attr)
    for probe in _probe_names(fn):
        found |= needs_of("gpu_probe", _probes()[probe])
    return frozenset(found)


@cache
def _fixtures(module: str) -> frozenset[str]:
    return frozenset(
        name for name, fn in _functions(module).items() if any("fixture" in ast.unparse(d) for d in fn.decorator_list)
    )


def _markers(decorators: list[ast.expr]) -> tuple[set[str], str | None]:
    names, ext = set(), None
    for d in decorators:
        text = ast.unparse(d)
        if text.startswith("pytest.mark."):
            name = text.removeprefix("pytest.mark.").split("(")[0]
            names.add(name)
            if name == "pyg_extension" and isinstance(d, ast.Call) and d.args:
                arg = d.args[0]
                ext = arg.value if isinstance(arg, ast.Constant) else None
    return names, ext


def checks() -> list[tuple[str, set[str], str | None, frozenset[str]]]:
    """(node id, markers, PyG extension, needs) of every check of the suite."""
    out = []
    for path in sorted(SUITE.glob("test_*.py")):
        module = path.stem
        tree = _tree(module)
        module_marks: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                values = node.value.elts if isinstance(node.value, ast.List) else [node.value]
                module_marks |= _markers(values)[0]
        top = {
            n
            for n in _imports(
                ast.Module(body=[s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)], type_ignores=[])
            )
        }
        for name, fn in _functions(module).items():
            if not name.startswith("test_"):
                continue
            marks, ext = _markers(fn.decorator_list)
            out.append((f"{path.name}::{name}", module_marks | marks, ext, needs_of(module, name) | top))
    return out


def _shapes():
    features = contract.FEATURES
    for cuda, torch, kind, on in itertools.product(
        ("13.0.2", None),
        (True, False),
        ("devel", "runtime", "slim"),
        itertools.product((False, True), repeat=len(features)),
    ):
        declared = [f for f, flag in zip(features, on, strict=True) if flag]
        yield cuda, torch, kind, declared


def _cell(cuda, torch, kind, declared):
    doc = contract.manifest(
        id="shape",
        image="x",
        tag="t",
        target="t",
        kind="runtime" if kind == "slim" else kind,
        parent="devel" if kind == "slim" else None,
        relation="slim" if kind == "slim" else None,
        lineage=[],
        cuda=cuda,
        torch_cuda="13.0" if cuda else None,
        python="3.13",
        torch="2.11.0" if torch else None,
        features=declared,
        pyg_extensions=["torch_scatter", "torch_sparse"] if "pyg" in declared else [],
    )
    if not torch:
        doc["torch"] = None
        doc["holds_torch"] = False
    try:
        return contract.parse_manifest(doc)
    except contract.ManifestError:
        return None  # a shape the contract refuses cannot be an image


def available(cell) -> set[str]:
    have = {"torch"} if cell.holds_torch else set()
    have |= {f for f in contract.FEATURES if cell.declares(f)}
    have |= {f"pyg_extension:{e}" for e in cell.pyg_extensions}
    return have


def test_no_check_can_fail_on_a_module_its_cell_did_not_declare():
    found = checks()
    assert len(found) > 50, len(found)
    shapes = problems = 0
    bad: dict[str, str] = {}
    for shape in _shapes():
        cell = _cell(*shape)
        if cell is None:
            continue
        shapes += 1
        have = available(cell)
        for node, marks, ext, needs in found:
            if gpu_policy.collection_skip(marks, ext, cell) is not None:
                continue
            missing = {NEEDS[m] for m in needs} - have
            if missing:
                problems += 1
                bad.setdefault(node, f"needs {', '.join(sorted(missing))} but runs where it is not declared: {shape}")
    assert shapes > 200, shapes
    assert bad == {}, f"{problems} check-shape pairs"


@pytest.mark.parametrize(
    ("node", "need"),
    [
        ("test_cuda.py::test_loaded_cudart_matches_torch", "torch"),
        ("test_ray.py::test_ray_runs_a_task", "ray"),
        ("test_ray.py::test_ray_runs_a_gpu_task", "torch"),
        ("test_pyg.py::test_import_torch_geometric_without_warnings", "pyg"),
    ],
)
def test_the_analysis_sees_what_a_check_imports(node, need):
    """The analysis is not vacuous: it finds imports made in helpers, fixtures and probes."""
    needs = {n: {NEEDS[m] for m in ns} for n, _, _, ns in checks()}
    assert node in needs and need in needs[node], needs.get(node)
