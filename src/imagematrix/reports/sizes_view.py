"""`imagematrix sizes` in the terminal: one table of every measured cell, then each image's buckets, layers,
biggest directories and saving against its devel parent."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from imagematrix.reports import sizes
from imagematrix.terminal import styled


def print_sizes(reports: list[sizes.CellReport], console) -> None:
    table = Table(title="image sizes (decimal GB, as `docker images`)", title_justify="left")
    for col in ("cell", "size", "budget", "state", "vs devel", "env", "layer overhead", "biggest directory"):
        table.add_column(col, no_wrap=True)
    style = {"ok": "green", "over": "bold red", "missing": "yellow", "no budget": "dim"}
    for r in reports:
        meas, b = r.meas, r.cell.target.budget_gb
        saved = "-"
        if r.parent and not r.parent.get("missing"):
            saved = (
                f"-{sizes.fmt_bytes(r.parent['saved_bytes'])}"
                if r.parent["saved_bytes"] >= 0
                else f"+{sizes.fmt_bytes(-r.parent['saved_bytes'])}"
            )
        elif r.parent:
            saved = "devel not built"
        top = "-"
        if meas and meas.dirs:
            d, n = meas.dirs[0]
            top = f"{sizes.short_path(d, meas.site_dirs)} {sizes.fmt_bytes(n)}"
        table.add_row(
            r.cell.id,
            sizes.fmt_bytes(meas.size_bytes) if meas else "-",
            f"{b:g} GB" if b is not None else "-",
            Text(r.verdict.state, style=style.get(r.verdict.state, "")),
            saved,
            sizes.fmt_bytes(meas.env_bytes) if meas else "-",
            sizes.fmt_bytes(meas.layer_overhead_bytes) if meas else "-",
            top,
        )
    console.print(table)
    for r in reports:
        print_details(r, console)


def print_details(r: sizes.CellReport, console) -> None:
    """One image's buckets, layers, biggest directories and saving against its devel parent."""
    meas = r.meas
    if meas is None:
        console.print(
            styled(("missing", "yellow"), f" {r.cell.id}: {r.cell.ref} was never built; build it: {r.rebuild}"),
            soft_wrap=True,
        )
        return
    console.print(styled("\n", (r.cell.id, "bold"), f" {r.cell.ref}: {r.verdict.summary}"))
    console.print("  buckets: " + " · ".join(f"{k} {sizes.fmt_bytes(v)}" for k, v in meas.buckets.items() if v))
    for i, layer in enumerate(meas.layers):
        console.print(
            f"  {'layers:' if i == 0 else '':8} {sizes.fmt_bytes(layer['bytes']):>8}  {layer['command']}",
            soft_wrap=True,
        )
    for i, (d, n) in enumerate(meas.dirs):
        console.print(f"  {'dirs:' if i == 0 else '':8} {sizes.fmt_bytes(n):>8}  {sizes.short_path(d, meas.site_dirs)}")
    p = r.parent
    if p and p.get("missing"):
        console.print(f"  vs devel: {p['cell']} was never built ({p['build']})")
    elif p:
        moved = ", ".join(f"{k} {sizes.fmt_bytes(v)}" for k, v in p["buckets_saved"].items() if abs(v) >= 1e6)
        console.print(
            f"  vs devel: {p['cell']} {sizes.fmt_bytes(p['size_bytes'])} -> {sizes.fmt_bytes(meas.size_bytes)}: "
            f"saves {sizes.fmt_bytes(p['saved_bytes'])} (env {sizes.fmt_bytes(p['env_saved_bytes'])}; by bucket: "
            f"{moved or 'none'})"
        )
    for note in meas.notes:
        console.print(f"  note: {note}")
