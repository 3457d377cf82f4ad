"""Select cells with the CLI's filters and order them into a build plan.

The plan is the single answer to "what would be built, in which order, from
which files": the CLI, nox sessions and CI all call ``make_plan``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imagematrix.core.errors import UsageError
from imagematrix.matrix.model import Cell, Matrix, cell_id
from imagematrix.matrix.render import Rendered, render_cell


@dataclass(frozen=True)
class Selection:
    """CLI filters; empty tuples mean "any"."""

    phases: tuple[int, ...] = ()
    cudas: tuple[str, ...] = ()
    pythons: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, phase=(), cuda=(), python=(), target=(), platform=()) -> Selection:
        def norm(values) -> tuple[str, ...]:
            if values is None:
                return ()
            if isinstance(values, (str, int)):
                values = [values]
            return tuple(str(v).strip() for v in values if str(v).strip())

        phases: list[int] = []
        for p in norm(phase):
            try:
                phases.append(int(p))
            except ValueError:
                raise UsageError(f"--phase takes a phase number, not {p!r}") from None
        return cls(tuple(phases), norm(cuda), norm(python), norm(target), norm(platform))

    def describe(self) -> str:
        parts = [
            f"{name} {', '.join(map(str, vals))}"
            for name, vals in (
                ("phase", self.phases),
                ("cuda", self.cudas),
                ("python", self.pythons),
                ("target", self.targets),
                ("platform", self.platforms),
            )
            if vals
        ]
        return "; ".join(parts) or "all cells"


def _check_values(kind: str, given: Iterable, allowed: Iterable) -> None:
    allowed = list(allowed)
    for v in given:
        if v not in allowed:
            raise UsageError(f"unknown {kind} {v!r} (the matrix has: {', '.join(map(str, allowed)) or 'none'})")


def select_cells(m: Matrix, sel: Selection) -> list[Cell]:
    """Cells matching every filter, families in phase (or matrix) order, parents first."""
    _check_values("phase", sel.phases, m.phases)
    _check_values("CUDA version", sel.cudas, m.cudas)
    _check_values("Python version", sel.pythons, m.pythons)
    _check_values("target", sel.targets, m.targets)
    if sel.platforms and not m.platforms:
        raise UsageError(
            f"--platform {', '.join(sel.platforms)}: this matrix has no platforms axis (every cell builds "
            "for the builder's own platform)"
        )
    _check_values("platform", sel.platforms, m.platforms)
    chosen = [
        c
        for c in m.cells
        if (not sel.phases or set(c.phases) & set(sel.phases))
        and (not sel.cudas or c.cuda.version in sel.cudas)
        and (not sel.pythons or c.python in sel.pythons)
        and (not sel.targets or c.target.name in sel.targets)
        and (not sel.platforms or c.platform in sel.platforms)
    ]
    if not chosen:
        raise UsageError(_nothing_matches(m, sel))
    family_rank: dict[tuple[str, str], int] = {}
    for num in sorted(sel.phases or m.phases):
        for cid in m.phases[num].cells:
            family_rank.setdefault(m.cell(cid).family, len(family_rank))
    for c in m.cells:
        family_rank.setdefault(c.family, len(family_rank))
    order = m.target_order()
    return sorted(chosen, key=lambda c: (family_rank[c.family], order.index(c.target.name)))


def excluded_families(m: Matrix, sel: Selection) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(CUDA, Python) -> {reason: excluded targets} for the families the filters touch."""
    fams: dict[tuple[str, str], dict[str, list[str]]] = {}
    for cuda in sel.cudas or m.cudas:
        for python in sel.pythons or m.pythons:
            for t in sel.targets or m.targets:
                why = m.excluded.get(cell_id(cuda, python, t))
                if why:
                    fams.setdefault((cuda, python), {}).setdefault(why, []).append(t)
    return fams


def _nothing_matches(m: Matrix, sel: Selection) -> str:
    """Why a selection is empty: what each phase holds, which families are excluded."""
    lines = [f"no cell matches {sel.describe()} (`invoke matrix` lists every cell)"]
    for num in sel.phases:
        fams: dict[tuple[str, str], list[str]] = {}
        for cid in m.phases[num].cells:
            c = m.cell(cid)
            fams.setdefault(c.family, []).append(c.target.name)
        held = "; ".join(f"CUDA {cu} + Python {py}: {', '.join(ts)}" for (cu, py), ts in fams.items())
        lines.append(f"  phase {num} holds {held or 'no cells'}")
    if sel.cudas or sel.pythons:
        lines += [f"  {line}" for line in excluded_lines(m, sel)]
    return "\n".join(lines)


def excluded_lines(m: Matrix, sel: Selection) -> list[str]:
    """One line per excluded family and reason the filters touch."""
    lines = []
    for (cuda, python), reasons in excluded_families(m, sel).items():
        for why, targets in reasons.items():
            which = "all targets" if len(targets) == len(m.targets) else ", ".join(targets)
            lines.append(f"excluded: CUDA {cuda} + Python {python} ({which}): {why}")
    return lines


@dataclass(frozen=True)
class BuildStep:
    cell: Cell
    rendered: Rendered
    context: Path
    needs: tuple[str, ...] = field(default=())  # planned cells this one builds on (its ancestors)

    @property
    def dockerfile(self) -> Path:
        return self.context / "Dockerfile"


@dataclass(frozen=True)
class Plan:
    matrix: Matrix
    selection: Selection
    steps: tuple[BuildStep, ...]
    build_dir: Path

    def dependants(self, cid: str) -> list[str]:
        """Planned cells that cannot be built if ``cid`` fails."""
        return [s.cell.id for s in self.steps if cid in s.needs]


def make_plan(m: Matrix, sel: Selection, build_dir: Path = Path("build")) -> Plan:
    cells = select_cells(m, sel)
    ids = {c.id for c in cells}
    steps = []
    for c in cells:
        ancestors = [m.stage_cell(c, t).id for t in c.target.lineage[:-1]]
        steps.append(
            BuildStep(
                cell=c,
                rendered=render_cell(m, c),
                context=build_dir / c.id,
                needs=tuple(a for a in ancestors if a in ids),
            )
        )
    return Plan(m, sel, tuple(steps), build_dir)
