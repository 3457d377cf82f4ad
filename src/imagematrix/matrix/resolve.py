"""What the schema cannot check, one section of the file at a time, and the ``Matrix`` built from it:
the target graph, references between sections, exclusions, phases, tags and the schedule. Every
problem is collected with its file, line and key path, not raised at the first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imagematrix.core import cron
from imagematrix.core.contract import FEATURES, TORCH_FEATURES
from imagematrix.core.errors import MatrixError, Problem
from imagematrix.core.reference import MAX_NAME, NAME_RE, TAG_RE, valid_reference
from imagematrix.matrix import grammar
from imagematrix.matrix.index import Index
from imagematrix.matrix.lockfile import LockError, UvLock, read_uv_lock
from imagematrix.matrix.model import (
    CI,
    Cell,
    Cuda,
    Host,
    Matrix,
    Override,
    Phase,
    ScheduleRun,
    Target,
    cell_id,
    make_cell,
    render_tag,
    tag_template_problem,
)
from imagematrix.matrix.schema import (
    CPU,
    FRAGMENT_SUFFIX,
    SCHEMA_VERSION,
    TARGET_RE,
    MatrixSpec,
    cron_problem,
    label_problem,
)


class Resolver:
    """What the schema cannot check, one section of the file at a time, and the Matrix built
    from it. Problems are collected, not raised at the first, so a file's every problem is
    listed; a broken target graph stops resolution (nothing after it can be checked)."""

    def __init__(self, spec: MatrixSpec, path: Path, loc: Index):
        self.spec, self.path, self.loc = spec, path, loc
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def bad(self, where: tuple, msg: str) -> None:
        self.problems.append(self.loc.problem(where, msg))

    def top_level(self) -> None:
        """schema, image, labels, python and cuda lists."""
        if self.spec.schema_ != SCHEMA_VERSION:
            self.bad(
                ("schema",),
                f"schema {self.spec.schema_} is not supported (this imagematrix reads schema {SCHEMA_VERSION})",
            )
        if len(self.spec.image) > MAX_NAME:
            self.bad(
                ("image",), f"the image name is {len(self.spec.image)} characters; Docker allows at most {MAX_NAME}"
            )
        elif not NAME_RE.fullmatch(self.spec.image):
            self.bad(
                ("image",),
                f"{self.spec.image!r} is not a valid image name: lowercase components of [a-z0-9._-] joined by '/', "
                "optionally after a registry host (e.g. plumiiume/cslr-exp-platform, ghcr.io/org/name); no tag here, "
                "the tag comes from 'tag'",
            )
        for key, value in self.spec.labels.items():
            why = label_problem(key, value)
            if why:  # the key path alone: the bad key itself may hold a newline
                self.problems.append(Problem(self.path, self.loc.line(("labels", key)), ("labels",), why))
        for i, v in enumerate(self.spec.python):
            if v in self.spec.python[:i]:
                self.bad(("python", i), f"python {v} is listed twice")
        if not self.spec.python:
            self.bad(("python",), "list at least one Python version")
        if not self.spec.cuda:
            self.bad(("cuda",), "list at least one CUDA version")

    def build_dirs(self) -> tuple[Path | None, Path, list[str]]:
        """The wheelhouse, the fragments directory and the fragments in it."""
        wheelhouse = (self.path.parent / self.spec.build.wheelhouse).resolve() if self.spec.build.wheelhouse else None
        if wheelhouse is not None and not wheelhouse.is_dir():
            self.bad(
                ("build", "wheelhouse"),
                f"directory {wheelhouse} does not exist (a folder of wheels and sdists for offline builds)",
            )
        fragments_dir = (self.path.parent / self.spec.build.fragments_dir).resolve()
        available = (
            sorted(p.name[: -len(FRAGMENT_SUFFIX)] for p in fragments_dir.glob(f"*{FRAGMENT_SUFFIX}"))
            if fragments_dir.is_dir()
            else []
        )
        if not fragments_dir.is_dir():
            self.bad(("build", "fragments_dir"), f"directory {fragments_dir} does not exist")
        return wheelhouse, fragments_dir, available

    def cudas(self) -> dict[str, Cuda]:
        cudas: dict[str, Cuda] = {}
        for ver, c in self.spec.cuda.items():
            for role, ref in c.bases.items():
                if not valid_reference(ref):
                    self.bad(
                        ("cuda", ver, "bases", role),
                        f"{ref!r} is not a valid image reference: name[:tag][@digest] in lowercase, e.g. "
                        "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04",
                    )
            if (ver == CPU) != (c.torch_cuda is None):
                self.bad(
                    ("cuda", ver, "torch_cuda"),
                    "the cpu family has torch_cuda: null, and only it (a CUDA family names torch's CUDA)"
                    if ver == CPU
                    else f"torch_cuda is null, which only the cpu family may be: name torch's CUDA, or rename the "
                    f"family {CPU!r}",
                )
            elif c.torch_cuda is not None and ver.split(".")[0] != c.torch_cuda.split(".")[0]:
                self.bad(
                    ("cuda", ver, "torch_cuda"),
                    f"torch_cuda {c.torch_cuda} has another major version than CUDA {ver}; torch's CUDA major must "
                    "match the toolkit's",
                )
            if ver == CPU and c.extensions == "cuda" and "extensions" in c.model_fields_set:
                self.bad(("cuda", ver, "extensions"), "the cpu family has no CUDA compiler: extensions: cpu")
            extensions = "cpu" if ver == CPU else c.extensions
            cudas[ver] = Cuda(
                ver, c.torch_cuda, c.torch_index, c.arch_list, dict(c.bases), dict(c.packages), extensions
            )
        return cudas

    def check_family(self, where: tuple, cuda: str | None, python: str | None) -> None:
        """An exclusion's or override's cuda/python name versions of the matrix (None: any)."""
        if cuda is not None and cuda not in self.spec.cuda:
            self.bad((*where, "cuda"), f"unknown CUDA version {cuda} (allowed: {', '.join(self.spec.cuda)})")
        if python is not None and python not in self.spec.python:
            self.bad((*where, "python"), f"unknown Python version {python} (allowed: {', '.join(self.spec.python)})")

    def overrides(self) -> list[Override]:
        overrides: list[Override] = []
        for i, o in enumerate(self.spec.overrides):
            where = ("overrides", i)
            self.check_family(where, o.cuda, o.python)
            if not o.bases and not o.packages:
                self.bad(where, "an override sets 'bases', 'packages' or both for the families it matches")
            for role, ref in o.bases.items():
                if not valid_reference(ref):
                    self.bad(
                        (*where, "bases", role),
                        f"{ref!r} is not a valid image reference: name[:tag][@digest] in lowercase",
                    )
            if o.platform is not None and o.platform not in self.spec.platforms:
                self.bad(
                    (*where, "platform"),
                    f"unknown platform {o.platform} (the matrix's platforms: "
                    f"{', '.join(self.spec.platforms) or 'none'})",
                )
            overrides.append(Override(o.cuda, o.python, dict(o.bases), dict(o.packages), o.platform))
        return overrides

    def family_bases(self, overrides: list[Override], ver: str, python: str) -> dict[str, str]:
        bases = dict(self.spec.cuda[ver].bases)
        for o in overrides:
            if o.matches(ver, python):
                bases.update(o.bases)
        return bases

    def graph(
        self, fragments_dir: Path, available: list[str], overrides: list[Override]
    ) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        """References, one parent relation, no cycles: the target names and each one's lineage."""
        names = list(self.spec.targets)
        for name, t in self.spec.targets.items():
            where = ("targets", name)
            if not TARGET_RE.fullmatch(name):
                self.bad(where, f"target name {name!r} must match [a-z][a-z0-9-]* (it names a Dockerfile stage)")
            if t.extends and t.slim:
                self.bad(
                    where,
                    "set either 'extends' (add to the parent image) or 'slim' (copy the parent's environment onto a "
                    "plain base), not both",
                )
            for rel in ("extends", "slim"):
                parent = getattr(t, rel)
                if parent is not None and parent not in self.spec.targets:
                    self.bad(
                        (*where, rel),
                        f"unknown target {parent!r} (allowed: {', '.join(n for n in names if n != name)})",
                    )
            if t.extends and t.base:
                self.bad(
                    (*where, "base"),
                    "a target that extends another starts from its parent, not from a base image: remove 'base'",
                )
            if not t.extends and not t.base:
                self.bad(
                    where,
                    f"a root or slim target needs 'base' (a role of cuda.*.bases, e.g. "
                    f"{', '.join(_roles(self.spec)) or 'devel'})",
                )
            if t.base:
                for ver in self.spec.cuda:
                    for pv in self.spec.python:
                        have = self.family_bases(overrides, ver, pv)
                        if t.base not in have:
                            self.bad(
                                (*where, "base"),
                                f"CUDA {ver} + Python {pv} has no base image for role {t.base!r} "
                                f"(it has: {', '.join(have) or 'none'}; set cuda.{ver}.bases or an override)",
                            )
                            break
            if t.prune and not t.slim:
                self.bad(
                    (*where, "prune"), "'prune' only applies to slim targets (it trims the parent before the copy)"
                )
            for key in ("fragments", "prune"):
                for i, frag in enumerate(getattr(t, key)):
                    if fragments_dir.is_dir() and frag not in available:
                        self.bad(
                            (*where, key, i),
                            f"no fragment {frag}{FRAGMENT_SUFFIX} in {fragments_dir} (available: "
                            f"{', '.join(available)})",
                        )
            if t.budget_gb is not None and t.budget_gb <= 0:
                self.bad((*where, "budget_gb"), "must be a positive number of GB")

        lineages: dict[str, tuple[str, ...]] = {}
        cycles: set[frozenset[str]] = set()
        for name in names:
            chain, cur = [name], name
            while True:
                t = self.spec.targets[cur]
                parent = t.extends or t.slim
                if parent is None or parent not in self.spec.targets:
                    break
                if parent in chain:
                    ring = chain[chain.index(parent) :]
                    if frozenset(ring) not in cycles:  # report each cycle once, at its first target
                        cycles.add(frozenset(ring))
                        cycle = " -> ".join([*ring, parent][::-1])
                        self.bad(
                            ("targets", name, "extends" if t.extends else "slim"),
                            f"the target graph has a cycle: {cycle} (a target cannot build on itself; "
                            "one of them must start from a 'base' instead)",
                        )
                    break
                chain.append(parent)
                cur = parent
            lineages[name] = tuple(reversed(chain))
        return names, lineages

    def targets(self, names: list[str], lineages: dict[str, tuple[str, ...]]) -> dict[str, Target]:
        """Each target with its inherited features and PyG extensions, in file order."""
        targets: dict[str, Target] = {}
        for name in sorted(names, key=lambda n: len(lineages[n])):
            t = self.spec.targets[name]
            parent = t.extends or t.slim
            inherited = targets[parent] if parent else None
            feats = set(inherited.features if inherited else ()) | set(t.features)
            feats -= set(t.drop_features)
            for f in sorted(set(t.features) - set(FEATURES)):
                self.warnings.append(
                    f"{self.path}:{self.loc.line(('targets', name, 'features'))}: targets.{name}.features: {f!r} is "
                    "not a feature the GPU suite checks "
                    f"({', '.join(FEATURES)}); it is kept in the labels and gets no checks"
                )
            targets[name] = Target(
                name=name,
                description=t.description,
                parent=parent,
                relation="extends" if t.extends else "slim" if t.slim else None,
                base=t.base,
                prune=tuple(t.prune),
                fragments=tuple(t.fragments),
                features=(*(f for f in FEATURES if f in feats), *sorted(feats - set(FEATURES))),
                pyg_extensions=tuple(
                    dict.fromkeys([*(inherited.pyg_extensions if inherited else ()), *t.pyg_extensions])
                ),
                options=dict(t.options),
                budget_gb=float(t.budget_gb) if t.budget_gb is not None else None,
                lineage=lineages[name],
                optional_libraries=tuple((o.library, o.needs, o.reason) for o in t.optional_libraries),
                uv_lock=self.uv_lock(name, t.uv_project),
                holds_torch=t.torch if t.torch is not None else inherited.holds_torch if inherited else True,
            )
            torchless = [f for f in TORCH_FEATURES if f in targets[name].features]
            if not targets[name].holds_torch and torchless:
                self.bad(
                    ("targets", name, "torch"),
                    f"target {name} holds no torch (torch: false) but declares {', '.join(torchless)}, which need "
                    "it: drop those features, or give the target torch",
                )
            locked = [n for n in lineages[name] if targets.get(n) and targets[n].uv_lock]
            if len(locked) > 1:
                self.bad(
                    ("targets", name, "uv_project"),
                    f"targets {' and '.join(locked)} of one lineage both take the "
                    "environment from a uv lock; the descendant inherits its parent's, so give it to one of them",
                )
        targets = {n: targets[n] for n in names}
        return targets

    def uv_lock(self, name: str, project: str | None) -> UvLock | None:
        if project is None:
            return None
        try:
            return read_uv_lock((self.path.parent / project).resolve())
        except LockError as exc:
            self.bad(("targets", name, "uv_project"), str(exc))
            return None

    def exclusions(self, names: list[str]) -> dict[str, str]:
        """Cell id -> the first matching exclusion's reason."""
        # Exclusions.
        excluded: dict[str, str] = {}
        for i, e in enumerate(self.spec.exclude):
            where = ("exclude", i)
            self.check_family(where, e.cuda, e.python)
            if e.target is not None and e.target not in self.spec.targets:
                self.bad((*where, "target"), f"unknown target {e.target!r} (allowed: {', '.join(names)})")
            if e.cuda is None and e.python is None and e.target is None:
                self.bad(where, "an exclusion needs at least one of cuda, python, target")
            for cv in self.spec.cuda:
                for pv in self.spec.python:
                    for tn in names:
                        if (e.cuda in (None, cv)) and (e.python in (None, pv)) and (e.target in (None, tn)):
                            excluded.setdefault(cell_id(cv, pv, tn), e.reason)
        return excluded

    def phases(self, names: list[str], excluded: dict[str, str]) -> tuple[dict[int, Phase], dict[str, list[int]]]:
        """The phases, and the phases each cell is in."""
        # Phases name existing, included cells, once each.
        phase_of: dict[str, list[int]] = {}
        phases: dict[int, Phase] = {}
        for num, ph in self.spec.phases.items():
            ids: list[str] = []
            for i, pc in enumerate(ph.cells):
                where = ("phases", num, "cells", i)
                if pc.cuda not in self.spec.cuda:
                    self.bad((*where, "cuda"), f"unknown CUDA version {pc.cuda} (allowed: {', '.join(self.spec.cuda)})")
                    continue
                if pc.python not in self.spec.python:
                    self.bad(
                        (*where, "python"),
                        f"unknown Python version {pc.python} (allowed: {', '.join(self.spec.python)})",
                    )
                    continue
                for j, tn in enumerate(pc.targets):
                    cid = cell_id(pc.cuda, pc.python, tn)
                    if tn not in self.spec.targets:
                        self.bad((*where, "targets", j), f"unknown target {tn!r} (allowed: {', '.join(names)})")
                    elif cid in excluded:
                        self.bad(
                            (*where, "targets", j),
                            f"cell {cid} is excluded ({excluded[cid]}); remove it from the phase or from 'exclude'",
                        )
                    elif cid in ids:
                        self.bad((*where, "targets", j), f"cell {cid} is listed twice in phase {num}")
                    else:
                        ids.append(cid)
                        phase_of.setdefault(cid, []).append(num)
            phases[num] = Phase(num, ph.name, tuple(ids))
            if not ph.cells:
                self.warnings.append(
                    f"{self.path}:{self.loc.line(('phases', num))}: phases.{num}: phase {num} has no cells: `invoke "
                    f"build --phase {num}` builds nothing"
                )
        return phases, phase_of

    def tag_and_schedule(self, cudas: dict[str, Cuda], names: list[str], phases: dict[int, Phase]) -> list[ScheduleRun]:
        # Tag template and schedule.
        why = tag_template_problem(self.spec.tag)
        if why:
            self.bad(("tag",), why)
        sample = (
            render_tag(self.spec.tag, next(iter(cudas.values())), self.spec.python[0], names[0])
            if cudas and self.spec.python and not why
            else ""
        )
        if sample and not TAG_RE.fullmatch(sample):
            self.bad(
                ("tag",),
                f"renders tags like {sample!r}, which Docker rejects (allowed: [A-Za-z0-9_.-], at most 128, not "
                "starting with . or -)",
            )
        why = grammar.timezone_problem(self.spec.schedule.timezone)
        if why:
            self.bad(("schedule", "timezone"), why)
        schedule: list[ScheduleRun] = []
        for i, run in enumerate(self.spec.schedule.runs):
            why = cron_problem(run.cron)
            if why:
                self.bad(("schedule", "runs", i, "cron"), f"{run.cron!r} is not a valid cron expression: {why}")
            if run.phases == "all":
                nums = tuple(phases)
            else:
                nums = tuple(run.phases)
                for j, n in enumerate(nums):
                    if n not in phases:
                        self.bad(
                            ("schedule", "runs", i, "phases", j),
                            f"unknown phase {n} (allowed: {', '.join(map(str, phases))}, or 'all')",
                        )
            schedule.append(ScheduleRun(run.cron, nums, run.retest))
        if schedule and not any(p.path[:1] == ("schedule",) for p in self.problems):
            try:
                cron.utc_schedule(tuple(r.cron for r in schedule), self.spec.schedule.timezone)
            except ValueError as exc:
                self.bad(("schedule", "runs"), str(exc))
        return schedule

    def cells(self, m: Matrix, excluded: dict[str, str], phase_of: dict[str, list[int]]) -> list[Cell]:
        """Every included cell, families in file order and targets parents first; tags unique and valid."""
        cells: list[Cell] = []
        tags: dict[str, str] = {}
        for cv, cuda in m.cudas.items():
            for pv in self.spec.python:
                for tn, platform in ((t, p) for t in m.target_order() for p in (m.platforms or (None,))):
                    cid = cell_id(cv, pv, tn)  # exclusions and phases name cells of every platform at once
                    if cid in excluded:
                        continue
                    cell = make_cell(m, cuda, pv, m.targets[tn], tuple(phase_of.get(cid, ())), platform=platform)
                    cid = cell.id
                    self.check_lock(m, cell)
                    if not TAG_RE.fullmatch(cell.tag):
                        self.bad(("tag",), f"cell {cid} renders tag {cell.tag!r}, which Docker rejects")
                    elif cell.tag in tags:
                        self.bad(
                            ("tag",),
                            f"cells {tags[cell.tag]} and {cid} both render tag {cell.tag!r}: add the missing "
                            "placeholder",
                        )
                    tags[cell.tag] = cid
                    cells.append(cell)
                    if m.phases and not cell.phases:
                        self.warnings.append(
                            f"{self.path}: cell {cid} is in no phase, so `invoke build --phase N` never builds it "
                            "(add it to a phase, or exclude it)"
                        )
        return cells

    def check_lock(self, m: Matrix, cell: Cell) -> None:
        """A locked environment agrees with its family: torch's CUDA, and no second torch pin that drifts."""
        lock = cell.uv_lock
        if lock is None or not cell.target.uv_lock:
            return
        where = ("targets", cell.target.name, "uv_project")
        if lock.torch and lock.torch_cuda != cell.cuda.torch_cuda:
            has = f"CUDA {lock.torch_cuda}" if lock.torch_cuda else "a CPU build"
            self.bad(
                where,
                f"cell {cell.id}: {lock.project.name}/uv.lock pins torch {lock.torch} ({has}) but family "
                f"{cell.cuda.version} says torch_cuda {cell.cuda.torch_cuda}: lock the torch of that family, "
                "or give the target to the family its lock is for",
            )
        pinned = {**m.packages, **cell.cuda.packages}.get("torch")
        if pinned and pinned != lock.torch:
            self.warnings.append(
                f"{self.path}: cell {cell.id}: packages.torch {pinned} is not used: the environment "
                f"comes from {lock.project.name}/uv.lock, which pins torch {lock.torch or '(none)'}"
            )


def resolve(spec: MatrixSpec, path: Path, loc: Index) -> Matrix:
    r = Resolver(spec, path, loc)
    r.top_level()
    wheelhouse, fragments_dir, available = r.build_dirs()
    cudas = r.cudas()
    overrides = r.overrides()
    names, lineages = r.graph(fragments_dir, available, overrides)
    if any(p.path[:1] == ("targets",) for p in r.problems):
        raise MatrixError(r.problems)  # a broken target graph cannot be resolved further; the rest is collected on
    targets = r.targets(names, lineages)
    excluded = r.exclusions(names)
    phases, phase_of = r.phases(names, excluded)
    schedule = r.tag_and_schedule(cudas, names, phases)
    if r.problems:
        raise MatrixError(r.problems)
    m = Matrix(
        path=path,
        image=spec.image,
        tag_template=spec.tag,
        labels=dict(spec.labels),
        pythons=tuple(spec.python),
        cudas=cudas,
        targets=targets,
        excluded=excluded,
        packages=dict(spec.packages),
        overrides=tuple(overrides),
        phases=phases,
        timezone=spec.schedule.timezone,
        schedule=tuple(schedule),
        host=Host(spec.host.buildkit, float(spec.host.min_free_disk_gb), float(spec.host.min_memory_gb)),
        fragments_dir=fragments_dir,
        ca_cert=(path.parent / spec.build.ca_cert) if spec.build.ca_cert else None,
        wheelhouse=wheelhouse,
        ci=CI(
            path.parent / spec.ci.workflow,
            tuple(spec.ci.runs_on),
            spec.ci.gate_runs_on,
            spec.ci.timeout_minutes,
            spec.ci.artifact_retention_days,
            spec.ci.state_dir,
            spec.ci.keep_images,
            spec.ci.cache_hours,
            spec.ci.install,
            tuple(dict.fromkeys(spec.ci.publish.attest)) if spec.ci.publish else (),
        ),
        publish_require=tuple(dict.fromkeys(spec.publish.require)),
        publish_verify_key=(path.parent / spec.publish.verify_key) if spec.publish.verify_key else None,
        publish_max_age_days=spec.publish.max_age_days,
        platforms=tuple(dict.fromkeys(spec.platforms)),
        cells=(),
    )
    cells = r.cells(m, excluded, phase_of)
    if r.problems:
        raise MatrixError(r.problems)
    if len(m.platforms) > 1:  # a phase names cells once; it holds them for every platform
        per_base: dict[str, list[str]] = {}
        for c in cells:
            per_base.setdefault(cell_id(c.cuda.version, c.python, c.target.name), []).append(c.id)
        m = replace(
            m,
            phases={
                n: replace(ph, cells=tuple(i for b in ph.cells for i in per_base.get(b, [])))
                for n, ph in m.phases.items()
            },
        )
    return replace(m, cells=tuple(cells), warnings=tuple(r.warnings))


def _roles(spec: MatrixSpec) -> list[str]:
    return sorted({r for c in spec.cuda.values() for r in c.bases})
