"""`imagematrix audit` in the terminal: an image's coverage in one line, then its verdict for one GPU and
driver, or a line per GPU of the catalogue. Paths and reasons come from the image's own files: each goes
through ``printable``."""

from __future__ import annotations

from imagematrix.core.text import printable
from imagematrix.core.verdict import Mark
from imagematrix.oracle.predict import coverage_line, predict, reach


def audit_lines(label: str, result, target=None, driver: str | None = None) -> tuple[list[str], bool]:
    """What `imagematrix audit` prints for one image, and whether the verdict asked for is ❌."""
    summary = result.summary()
    counts = summary.get("counts") or {}
    lines = [
        f"{printable(label, 300)}: {printable(coverage_line(summary), 600)} ({result.how}, {result.seconds:.1f}s; "
        f"{counts.get('cached', 0)} of {counts.get('objects', 0)} from the cache)"
    ]
    if target is not None and driver:
        v = predict(result.doc, target, driver)
        lines.append(
            f"  {target.name} ({target.sm}), driver {driver}: {v.mark} {printable('; '.join(v.reasons), 1000)}"
        )
        if v.fix and v.mark is not Mark.RUNS:
            lines.append(f"  fix: {printable(v.fix, 600)}")
        return lines, v.mark is Mark.FAILS
    return lines + [f"  {name:<9} {reach(row)}" for name, row in summary["prediction"].items()], False
