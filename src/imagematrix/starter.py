"""`imagematrix init`: a new project from a bundled example — its matrix.yaml and the fragments it renders."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .errors import UsageError
from .resources import shipped

FRAGMENTS_LINE = re.compile(r"^(\s*fragments_dir:\s*).*$", re.M)


def examples() -> dict[str, Path]:
    return {p.stem: p for p in sorted(shipped("examples").glob("*.yaml"))}


def init_project(directory: Path, example: str, console) -> int:
    found = examples()
    if example not in found:
        raise UsageError(f"no bundled example {example!r}; choose one of: {', '.join(found)}")
    matrix, fragments = directory / "matrix.yaml", directory / "dockerfiles"
    there = [p for p in (matrix, fragments) if p.exists()]
    if there:
        raise UsageError(
            f"{' and '.join(map(str, there))} already exist(s); init never overwrites a project. "
            "Fix: run it in an empty directory (--directory DIR), or move those aside"
        )
    text = found[example].read_text()
    if not FRAGMENTS_LINE.search(text):
        raise UsageError(f"example {example!r} names no build.fragments_dir")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(shipped("fragments"), fragments, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    for extra in sorted(p for p in found[example].parent.glob(f"{example}.*") if p.is_dir()):
        # What the example's build reads beside it (a uv project, a wheelhouse's place); wheels are fetched, not copied.
        shutil.copytree(extra, directory / extra.name, ignore=shutil.ignore_patterns("*.whl", "*.tar.gz", "__pycache__"))
    matrix.write_text(FRAGMENTS_LINE.sub(r"\1dockerfiles", text, count=1))
    from .matrix import load_matrix  # the project must load as written, or init has a bug

    m = load_matrix(matrix)
    out = console
    out.print(f"wrote {matrix} ({len(m.cells)} cells of {m.image}) and {fragments}/ "
              f"({len(list(fragments.glob('*.Dockerfile')))} fragments)", markup=False, highlight=False)
    if m.wheelhouse is not None and not any(m.wheelhouse.glob("*.whl")):
        torch = m.packages.get("torch")
        want = f"torch=={torch}" if torch else "<the packages it pins>"
        out.print(f"first: fill {m.wheelhouse.name}/ (builds install from it alone, and wheels are not copied): "
                  f"python3 -m pip download --only-binary :all: --python-version {m.pythons[0]} --implementation cp "
                  f"-d {m.wheelhouse} {want}", markup=False, highlight=False)
    out.print("next: imagematrix doctor --no-gpu; imagematrix build; imagematrix test; imagematrix status",
              markup=False, highlight=False)
    return 0
