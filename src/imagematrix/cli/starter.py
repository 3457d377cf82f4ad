"""`imagematrix init`: a new project from a bundled example — its matrix.yaml and the fragments it renders."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from imagematrix.core.errors import UsageError
from imagematrix.core.resources import shipped
from imagematrix.core.text import printable
from imagematrix.matrix.grammar import DEBIAN_PINS

FRAGMENTS_LINE = re.compile(r"^(\s*fragments_dir:\s*).*$", re.M)


def examples() -> dict[str, Path]:
    return {p.stem: p for p in sorted(shipped("examples").glob("*.yaml"))}


def init_project(directory: Path, example: str, console) -> int:
    """Write the example's matrix.yaml, the fragments and what it reads beside it into ``directory``, all or
    nothing: everything is made in a temporary directory there and moved into place at the end."""
    found = examples()
    if example not in found:
        raise UsageError(f"no bundled example {example!r}; choose one of: {', '.join(found)}")
    text = found[example].read_text()
    if not FRAGMENTS_LINE.search(text):
        raise UsageError(f"example {example!r} names no build.fragments_dir")
    extras = sorted(p for p in found[example].parent.glob(f"{example}.*") if p.is_dir())
    names = ["matrix.yaml", "dockerfiles", *(p.name for p in extras)]
    there = [directory / n for n in names if os.path.lexists(directory / n)]  # a dangling link too
    if there:
        raise UsageError(
            f"{', '.join(map(str, there))} already exist(s) (or is a link); init never overwrites a project and never "
            "writes through a link. Fix: run it in an empty directory (--directory DIR), or move those aside"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".imagematrix-init-", dir=directory))
    except OSError as exc:
        raise UsageError(f"cannot write into {directory}: {exc.strerror}; choose another --directory") from None
    moved: list[Path] = []
    try:
        shutil.copytree(
            shipped("fragments"), staging / "dockerfiles", ignore=shutil.ignore_patterns("__pycache__", "__init__.py")
        )
        for extra in extras:
            # What the example's build reads beside it (a uv project, a wheelhouse's place); wheels are
            # fetched, not copied.
            shutil.copytree(
                extra, staging / extra.name, ignore=shutil.ignore_patterns("*.whl", "*.tar.gz", "__pycache__")
            )
        (staging / "matrix.yaml").write_text(FRAGMENTS_LINE.sub(r"\1dockerfiles", text, count=1))
        from imagematrix.matrix.load import (
            load_matrix,  # the project must load as written, or init has a bug
        )

        load_matrix(staging / "matrix.yaml")
        for name in names:
            if os.path.lexists(directory / name):
                raise UsageError(f"{directory / name} appeared while init was writing; nothing was written")
            (staging / name).rename(directory / name)
            moved.append(directory / name)
    except OSError as exc:
        for done in reversed(moved):  # all or nothing: what was moved goes back
            with contextlib.suppress(OSError):
                done.rename(staging / done.name)
        raise UsageError(
            f"could not write the project into {directory}: {exc.strerror or exc}; nothing was "
            "written (free disk space, or choose another --directory)"
        ) from None
    except BaseException:
        for done in reversed(moved):
            with contextlib.suppress(OSError):
                done.rename(staging / done.name)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    matrix, fragments = directory / "matrix.yaml", directory / "dockerfiles"
    m = load_matrix(matrix)
    out = console
    out.print(
        f"wrote {matrix} ({len(m.cells)} cells of {m.image}) and {fragments}/ "
        f"({len(list(fragments.glob('*.Dockerfile')))} fragments)",
        markup=False,
        highlight=False,
    )
    if m.wheelhouse is not None and not any(m.wheelhouse.glob("*.whl")):
        pins = [f"{name}=={version}" for name, version in m.packages.items() if name not in DEBIAN_PINS]
        argv = ["python3", "-m", "pip", "download", "--only-binary", ":all:", "--python-version", m.pythons[0]]
        argv += ["--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform"]
        argv += ["manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(m.wheelhouse), *pins]
        out.print(
            f"first: fill {printable(m.wheelhouse.name, 200)}/ (builds install from it alone, and wheels are not "
            f"copied): {printable(shlex.join(argv), 2000)}",
            markup=False,
            highlight=False,
        )
    out.print(
        "next: imagematrix doctor --build-only; imagematrix build; imagematrix test; imagematrix status",
        markup=False,
        highlight=False,
    )
    return 0
