"""`invoke clean`: remove a build directory imagematrix made, and the selected cells' images.

Only a directory that carries the build directory's marker (or, from before the marker, a record
beside a build lock) is removed; never through a symbolic link, and nothing outside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from rich.console import Console

from imagematrix import terminal as output
from imagematrix.build.engine import docker_client
from imagematrix.build.executor import local_image
from imagematrix.core.builddir import MARKER, BuildLocked, is_marked, lock_holder, mark
from imagematrix.core.contract import CELL_LABEL
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.history import HISTORY_FILE, HISTORY_LOCK


def clean(build_dir: Path, cells: list | None = None, console: Console | None = None, history: bool = False) -> int:
    """Remove ``build_dir`` but its history (unless ``history``); with ``cells``, also remove those
    cells' images (only images that carry their label). Only a directory imagematrix made is removed
    (builddir.MARKER), never through a symbolic link, and nothing outside it."""
    console = console or output.console()
    build_dir = Path(build_dir)
    refuse = f"refusing to remove {build_dir}"
    if build_dir.is_symlink():
        raise UsageError(
            f"{refuse}: it is a symbolic link (to {os.readlink(build_dir)}); clean never deletes through "
            "a link. Pass the build directory itself (--out DIR); nothing was removed"
        )
    if build_dir.exists() and not build_dir.is_dir():
        raise UsageError(f"{refuse}: it is not a directory; nothing was removed")
    if build_dir.exists() and not is_marked(build_dir):
        raise UsageError(
            f"{refuse}: it is not a build directory imagematrix made (it has no {MARKER}, and no "
            "status.json beside a build lock); nothing was removed. Pass the build directory (--out DIR), "
            "or remove this one yourself if you mean it"
        )
    holder = lock_holder(build_dir)
    if holder:
        raise BuildLocked(f"a build is running in {build_dir} ({holder}); clean after it finishes")
    resolved = build_dir.resolve()
    if (
        resolved == Path(resolved.anchor)
        or resolved in Path.cwd().resolve().parents
        or resolved == Path.cwd().resolve()
    ):
        raise UsageError(f"{refuse}: it is / or holds the current directory; pass the build directory (--out)")
    if cells:
        client = docker_client()
        from docker.errors import APIError

        for cell in cells:
            image = local_image(client, cell.ref)
            if image is None:
                continue
            owner = image.labels.get(CELL_LABEL)
            if owner != cell.id:
                console.print(
                    f"kept {cell.ref}: its label {CELL_LABEL} is {owner!r}, not {cell.id!r} (not built by imagematrix)",
                    markup=False,
                )
                continue
            try:
                client.images.remove(cell.ref)
            except APIError as exc:
                raise ImagematrixError(
                    f"could not remove {cell.ref}: {exc.explanation or exc}; a container may still use it "
                    f"(docker ps -a --filter ancestor={cell.ref})"
                ) from None
            console.print(f"removed image {cell.ref} ({image.short_id})", markup=False)
    if not build_dir.exists():
        console.print(f"{build_dir}/ does not exist; nothing to remove there", markup=False)
        return 0
    keep = set() if history else {HISTORY_FILE, HISTORY_LOCK}
    kept = []
    try:
        with os.scandir(build_dir) as entries:
            for entry in list(entries):
                if entry.name in keep:
                    kept.append(entry.name)
                elif entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # fd-based on Linux: links inside are removed, never followed
                else:
                    os.unlink(entry.path)
        if HISTORY_FILE in kept:
            mark(build_dir)  # what is left is still ours to clean later
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(build_dir / MARKER)
            build_dir.rmdir()
    except OSError as exc:
        raise ImagematrixError(
            f"could not remove everything in {build_dir}: {exc.strerror} ({exc.filename}); "
            "what was removed is gone, the rest is as it was"
        ) from None
    console.print(f"removed {build_dir}/ (contexts, logs, status.json)", markup=False)
    if HISTORY_FILE in kept:
        console.print(
            f"kept {build_dir / HISTORY_FILE} (the build and test history; --history removes it too)", markup=False
        )
    return 0
