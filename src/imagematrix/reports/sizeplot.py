"""The size plot: one stacked bar per cell (base, Python, its biggest packages, other), drawn from status.json.

Drawn from the recorded "sizes" sections, not from a live run, so a partial run
still shows every measured cell. matplotlib is imported here only (Agg, no display).
"""

from __future__ import annotations

from pathlib import Path

from imagematrix.core.status import Records, read_status
from imagematrix.reports.sizes import FIXED, GB, OTHER, bucket_order

PLOT_PATH = Path("reports") / "sizes.png"  # under the build directory
FIXED_COLORS = {"base": "#9e9e9e", "Python": "#4e79a7", OTHER: "#d4c9be"}
PACKAGE_COLORS = (
    "#e15759",
    "#76b041",
    "#f28e2b",
    "#b07aa1",
    "#59a9d8",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#86bcb6",
    "#8cd17d",
    "#b6992d",
    "#d37295",
)


def colors(order: list[str]) -> dict[str, str]:
    """base, Python and other keep theirs; packages take the palette in legend order."""
    packages = [b for b in order if b not in (*FIXED, OTHER)]
    return {**FIXED_COLORS, **{b: PACKAGE_COLORS[i % len(PACKAGE_COLORS)] for i, b in enumerate(packages)}}


def bars(records: Records, cell_ids: list[str]) -> list[tuple[str, dict[str, float], float | None, str]]:
    """(cell, GB per bucket, budget GB, state) for each cell with a measurement, in the given order."""
    out = []
    for cid in cell_ids:
        sec = records.get(cid).sizes
        if sec is None or not sec.buckets:
            continue
        budget = sec.extra.get("budget_gb")
        budget = float(budget) if isinstance(budget, (int, float)) and not isinstance(budget, bool) else None
        out.append((cid, {b: v / GB for b, v in sec.buckets.items()}, budget, sec.state or ""))
    order = bucket_order(r[1] for r in out)
    return [(cid, {b: gb.get(b, 0.0) for b in order}, budget, state) for cid, gb, budget, state in out]


def plot_records(build_dir: Path, cell_ids: list[str], out: Path) -> int:
    """Draw the selected cells' recorded sizes into ``out`` (PNG); returns how many bars were drawn."""
    rows = bars(read_status(build_dir), cell_ids)
    if not rows:
        out.unlink(missing_ok=True)  # an old plot would show sizes that are no longer measured
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 2.2 + 0.42 * len(rows)), dpi=110, layout="constrained")
    labels = [r[0] for r in rows]
    y = list(range(len(rows)))[::-1]  # first cell on top
    left = [0.0] * len(rows)
    order = list(rows[0][1])  # bars() gives every row every bucket, in legend order
    palette = colors(order)
    for bucket in order:
        widths = [r[1][bucket] for r in rows]
        ax.barh(
            y, widths, left=left, height=0.62, color=palette[bucket], label=bucket, edgecolor="white", linewidth=0.5
        )
        left = [a + w for a, w in zip(left, widths, strict=True)]
    xmax = max(left + [r[2] or 0 for r in rows]) * 1.3
    for yi, total, (_, _, budget, state) in zip(y, left, rows, strict=True):
        if budget:
            ax.plot([budget, budget], [yi - 0.42, yi + 0.42], color="black", linewidth=2)
        over = state == "over"
        text = f"{total:.2f} GB" + (f" (budget {budget:g})" if budget else "") + (" OVER" if over else "")
        ax.text(
            max(total, budget or 0) + xmax * 0.01,
            yi,
            text,
            va="center",
            fontsize=8,
            color="#c00000" if over else "black",
        )
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("GB (decimal, as `docker images`); black tick: the target's budget_gb", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    handles, names = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        names,
        ncol=len(names),
        fontsize=8,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0,
    )
    fig.suptitle("imagematrix: image size by content", x=0.01, ha="left", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)  # a reader never sees half a PNG
    return len(rows)
