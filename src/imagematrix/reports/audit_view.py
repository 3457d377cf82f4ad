"""`imagematrix audit` in the terminal: an image's coverage in one line, then its verdict for one GPU and
driver, or a line per GPU of the catalogue. Paths and reasons come from the image's own files: each goes
through ``printable``."""

from __future__ import annotations

from datetime import date

from imagematrix.core.text import printable
from imagematrix.core.verdict import Mark
from imagematrix.oracle import jit
from imagematrix.oracle.predict import coverage_line, has_device_code, jit_reach, predict, reach


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
        for tool, t in jit.verdicts(result.doc, target, driver).items():
            lines.append(f"  JIT {tool}: {t.mark} {printable('; '.join(t.reasons), 600)}")
            if t.fix and t.mark is not Mark.RUNS:
                lines.append(f"    fix: {printable(t.fix, 400)}")
        return lines, v.mark is Mark.FAILS
    if not has_device_code(result.doc):
        return [*lines, "  no device code: nothing in it runs on a GPU, so no GPU or driver can fail it"], False
    today = date.today().isoformat()
    for name, row in summary["prediction"].items():
        tools = jit_reach(row, today)
        lines.append(f"  {name:<9} {reach(row, today)}" + (f"  |  JIT: {tools}" if tools else ""))
    return lines, False
