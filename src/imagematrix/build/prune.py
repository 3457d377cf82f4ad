"""`invoke prune`: runner hygiene. Old images of each cell and old build cache go; tagged images,
images a container uses, and images imagematrix did not build stay.

A cell's superseded image is normally removed right after its rebuild (build.py);
one that a container was using then, or one left by an interrupted run, stays as
an untagged image labelled with its cell. This keeps the newest ``keep`` images
per cell (the tagged one always) and asks BuildKit to drop cache unused for
``cache_hours``.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

from rich.console import Console

from imagematrix.core.contract import CELL_LABEL
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.text import fmt_bytes


def prune(client, keep: int, cache_hours: float | None, console: Console, dry_run: bool = False) -> int:
    from docker.errors import APIError

    if keep < 1:
        raise ImagematrixError(f"--keep takes a number of images per cell >= 1 (the tagged one), not {keep}")
    by_cell = defaultdict(list)
    for image in client.images.list(filters={"label": CELL_LABEL}):
        by_cell[image.labels.get(CELL_LABEL)].append(image)
    freed, removed = 0, 0
    for cell, images in sorted(by_cell.items()):
        images.sort(key=lambda i: (bool(i.tags), i.attrs.get("Created", "")), reverse=True)  # tagged first, then newest
        for image in images[keep:]:
            if image.tags:
                continue  # a tag is someone's name for it
            size = image.attrs.get("Size") or 0
            if dry_run:
                console.print(
                    f"would remove {cell}: {image.short_id.removeprefix('sha256:')} ({fmt_bytes(size)}, "
                    f"{image.attrs.get('Created', '')[:19]})",
                    markup=False,
                )
                continue
            try:
                client.images.remove(image.id)
            except APIError as exc:
                console.print(f"kept {cell}: {image.short_id}: {exc.explanation or exc}", markup=False)
                continue
            freed, removed = freed + size, removed + 1
            console.print(f"removed {cell}: {image.short_id.removeprefix('sha256:')} ({fmt_bytes(size)})", markup=False)
    console.print(
        f"images: {removed} removed, {fmt_bytes(freed) if freed else 'nothing'} freed "
        f"(kept the newest {keep} per cell)",
        markup=False,
    )
    if cache_hours is not None:
        argv = ["docker", "builder", "prune", "--force", "--filter", f"until={cache_hours:g}h"]
        if dry_run:
            console.print(f"would run: {' '.join(argv)}", markup=False)
        else:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
            if done.returncode != 0:
                raise ImagematrixError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-400:]}")
            last = (done.stdout.strip().splitlines() or ["(nothing reported)"])[-1]
            console.print(f"build cache unused for {cache_hours:g} h: {last}", markup=False)
    return 0
