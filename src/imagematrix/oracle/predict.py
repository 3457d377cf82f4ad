"""Will this image run on that GPU and driver? A prediction from the audit of its own binaries.

Pure functions of the audit (``scan``'s document) and the catalogue (``gpus``), with the rules of
``core.arch`` (SASS and PTX against a compute capability) and ``core.cuda_compat`` (driver tables):

- the image's **driver floor**: the newest CUDA it needs from the driver, the maximum of its CUDA
  runtime (libcudart's version) and the CUDA of every PTX ISA it embeds; a driver supports it natively,
  under minor-version compatibility (same major, no JIT of PTX newer than the driver), or not at all;
- its **GPU coverage**: each object with device code runs from SASS, or only by JIT-compiling PTX (a
  slower first start, a driver that knows the PTX's ISA), or not (CUDA error 209, no kernel image; 222,
  PTX newer than the driver).

Marks: ✅ runs; ⚠️ runs, but by PTX JIT or under minor-version compatibility; ❌ fails, with the reason
and the fix. A prediction is never a measurement: the sheet and `verify` show them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagematrix.core import nvidia
from imagematrix.core.arch import parse_arch, ptx_isa_cuda, ptx_jits_on, sass_runs_on
from imagematrix.core.cuda_compat import MINOR_COMPAT_DRIVER, branch_cuda, fmt_mm, native_driver
from imagematrix.core.verdict import Mark, Verdict
from imagematrix.oracle import jit
from imagematrix.oracle.gpus import BRANCHES, GPUS, Gpu

RUNS, WARN, FAILS = Mark.RUNS, Mark.WARNS, Mark.FAILS
NO_KERNEL, UNSUPPORTED_PTX, INSUFFICIENT_DRIVER = 209, 222, 35  # CUresult / cudaError values the failures raise
SHOWN_OBJECTS = 4


def _mm(text: str | None) -> tuple[int, int] | None:
    parts = str(text or "").split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


@dataclass(frozen=True)
class Floor:
    """The newest CUDA the image needs from the driver, and which part of the image needs it."""

    cuda: tuple[int, int] | None
    source: str
    native: str | None  # the driver that runs it natively; None: not in the table (an unknown floor)
    minor_compat: str | None  # the oldest driver of its major's branch (minor-version compatibility)

    def describe(self) -> str:
        if self.cuda is None:
            return "no CUDA runtime or PTX: the driver is not asked for anything"
        native = f"native from {self.native}" if self.native else "native driver unknown (newer than the table)"
        compat = f", minor-version compatible from {self.minor_compat} (no PTX JIT)" if self.minor_compat else ""
        return f"CUDA {fmt_mm(self.cuda)} ({self.source}): {native}{compat}"


def runtime(audit: Mapping[str, Any]) -> tuple[tuple[int, int], str] | None:
    """The newest CUDA runtime the environment loads (libcudart), and its version text."""
    found = [
        (mm, f"libcudart {lib.get('version')}")
        for lib in (audit.get("libraries") or {}).get("cudart") or []
        if (mm := _mm(lib.get("version")))
    ]
    return max(found) if found else None


LOADED = ("library", "extension", "executable", "cubin", "fatbin", "ptx")  # what a verdict covers (scan.LOADED)


def kernel_objects(audit: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The objects whose device code can run: every carrier a process loads (libraries, extension modules,
    executables, cubins, fat binaries and PTX files); a static archive (linked at build time), a stub with
    no kernel, and an object the scan could not read are left out."""
    return [
        o
        for o in audit.get("objects") or []
        if not o.get("error") and o.get("kernels") != 0 and o.get("kind", "library") in LOADED
    ]


def has_device_code(audit: Mapping[str, Any]) -> bool:
    return bool(kernel_objects(audit))


def floor(audit: Mapping[str, Any]) -> Floor:
    """The image's floor: its CUDA runtime and every PTX it embeds (a GPU with SASS for an object never
    JIT-compiles that object's PTX: ``predict`` asks only for the PTX a given GPU needs)."""
    needs: list[tuple[tuple[int, int], str]] = []
    if (rt := runtime(audit)) is not None:
        needs.append(rt)
    for obj in kernel_objects(audit):
        for arch, isa in obj.get("ptx") or []:
            cuda = ptx_isa_cuda(_mm(isa) or (0, 0))
            if cuda:
                needs.append((cuda, f"PTX {isa} ({arch}) in {obj['path']}"))
    if not needs:
        return Floor(None, "", None, None)
    cuda, source = max(needs)
    return Floor(cuda, source, native_driver(cuda), MINOR_COMPAT_DRIVER.get(cuda[0]))


def _named(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind", "library")
    return str(obj["path"]) if kind in ("library", "extension") else f"{obj['path']} ({kind})"


def _objects_line(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN_OBJECTS} more" if len(names) > SHOWN_OBJECTS else ""
    return ", ".join(names[:SHOWN_OBJECTS]) + more


def predict(audit: Mapping[str, Any], gpu: Gpu, driver: str) -> Verdict:
    """The verdict for one GPU and one driver (a version such as 580.159.04, or a branch such as 580)."""
    branch = int(driver.split(".")[0])
    if branch < gpu.min_branch:
        return Verdict(
            FAILS,
            (f"driver branch R{branch} does not know {gpu.name} ({gpu.sm}); it needs R{gpu.min_branch} or newer",),
            f"a driver of R{gpu.min_branch} or newer",
            INSUFFICIENT_DRIVER,
        )
    if gpu.max_branch is not None and branch > gpu.max_branch:
        return Verdict(
            FAILS,
            (f"driver branch R{branch} no longer supports {gpu.name}; R{gpu.max_branch} is its last",),
            f"stay on R{gpu.max_branch} for {gpu.name}",
            INSUFFICIENT_DRIVER,
        )
    driver_cuda = branch_cuda(driver)
    rt = runtime(audit)
    fl = (
        Floor(rt[0], rt[1], native_driver(rt[0]), MINOR_COMPAT_DRIVER.get(rt[0][0]))
        if rt
        else Floor(None, "", None, None)
    )
    warn: list[str] = []
    if fl.cuda is not None and driver_cuda is not None and driver_cuda < fl.cuda:
        compat_min = MINOR_COMPAT_DRIVER.get(fl.cuda[0])
        if driver_cuda[0] == fl.cuda[0] and compat_min and branch >= int(compat_min):
            warn.append(
                f"driver R{branch} (CUDA {fmt_mm(driver_cuda)}) runs the image's CUDA {fmt_mm(fl.cuda)} "
                "under minor-version compatibility: no JIT of newer PTX, some new APIs unavailable"
            )
        else:
            fix = f"a driver of {fl.native} or newer" if fl.native else f"a driver that supports CUDA {fmt_mm(fl.cuda)}"
            if compat_min and driver_cuda[0] == fl.cuda[0]:
                fix += f" (any {fl.cuda[0]}.x driver from {compat_min} runs it without PTX JIT)"
            return Verdict(
                FAILS,
                (
                    f"the image needs CUDA {fmt_mm(fl.cuda)} ({fl.source}); driver R{branch} supports "
                    f"CUDA {fmt_mm(driver_cuda)}: 'CUDA driver version is insufficient'",
                ),
                f"{fix}, or an image built for CUDA {fmt_mm(driver_cuda)}",
                INSUFFICIENT_DRIVER,
            )
    no_kernel, too_new, jit = [], [], []
    for obj in kernel_objects(audit):
        sass = [a for a in (parse_arch(s) for s in obj.get("sass") or []) if a]
        if any(sass_runs_on(a, gpu.cc) for a in sass):
            continue
        candidates = [
            (a, isa) for a, isa in ((parse_arch(p), i) for p, i in obj.get("ptx") or []) if a and ptx_jits_on(a, gpu.cc)
        ]
        if not candidates:
            no_kernel.append(_named(obj))
            continue
        jitable = [
            (a, isa)
            for a, isa in candidates
            if (c := ptx_isa_cuda(_mm(isa) or (0, 0))) is not None and driver_cuda is not None and c <= driver_cuda
        ]
        if jitable:
            jit.append(f"{_named(obj)} ({jitable[-1][0].name}, PTX {jitable[-1][1]})")
        else:
            too_new.append(f"{_named(obj)} (PTX {', '.join(i for _, i in candidates)})")
    if no_kernel:
        return Verdict(
            FAILS,
            (
                f"no kernel image for {gpu.name} ({gpu.sm}) in {_objects_line(no_kernel)}: neither SASS "
                f"for {gpu.sm} nor PTX it can JIT",
            ),
            f"build those for {gpu.sm} (TORCH_CUDA_ARCH_LIST with '{gpu.cc[0]}.{gpu.cc[1]}' for source "
            "builds, or wheels built for it), or another image",
            NO_KERNEL,
        )
    if too_new:
        need = max(
            ((ptx_isa_cuda(_mm(i.split()[-1].rstrip(")")) or (0, 0)) or (0, 0)) for i in too_new), default=(0, 0)
        )
        return Verdict(
            FAILS,
            (
                f"{gpu.name} has no SASS in {_objects_line(too_new)} and their PTX is newer than driver "
                f"R{branch} can JIT-compile",
            ),
            f"a driver of {native_driver(need) or 'a newer branch'} or newer, or SASS for {gpu.sm}",
            UNSUPPORTED_PTX,
        )
    if jit:
        warn.append(
            f"{gpu.name} has no SASS in {_objects_line(jit)}: their PTX is JIT-compiled at first use "
            "(a slow first start)"
        )
    if warn:
        return Verdict(
            WARN,
            tuple(warn),
            f"SASS for this GPU and a driver that runs the image's CUDA natively ({fl.native or 'unknown'}) make it ✅",
        )
    if not kernel_objects(audit):
        return Verdict(RUNS, ("no device code: nothing in the image runs on the GPU itself",))
    return Verdict(RUNS, (f"SASS for {gpu.name} in every object; driver R{branch} runs its CUDA natively",))


def table(
    audit: Mapping[str, Any], gpus: Sequence[Gpu] = GPUS, branches: Sequence[int] = BRANCHES
) -> dict[str, dict[str, dict]]:
    """GPU name -> branch -> verdict, for the whole catalogue; each with the JIT toolchains' verdicts under
    "jit" (``oracle.jit``), when the image has any."""
    out: dict[str, dict[str, dict]] = {}
    for g in gpus:
        out[g.name] = {}
        for b in branches:
            verdict = predict(audit, g, str(b))
            row = verdict.to_json()
            # Where the image itself cannot run (the driver is too old for its CUDA), no JIT verdict is given.
            tools = {} if verdict.code == INSUFFICIENT_DRIVER else jit.verdicts(audit, g, str(b))
            if tools:
                row["jit"] = {name: v.to_json() for name, v in tools.items()}
            out[g.name][f"R{b}"] = row
    return out


def coverage(audit: Mapping[str, Any]) -> dict[str, list[str]]:
    """The architectures the image's device code covers, over all objects: SASS and PTX."""
    sass = sorted({s for o in kernel_objects(audit) for s in o.get("sass") or []}, key=_arch_key)
    ptx = sorted({f"{p} ({isa})" for o in kernel_objects(audit) for p, isa in o.get("ptx") or []}, key=_arch_key)
    return {"sass": sass, "ptx": ptx}


def _arch_key(name: str) -> tuple:
    a = parse_arch(name.split()[0])
    return (a.major, a.minor, a.suffix) if a else (999, 0, name)


def _ordered(row: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    return sorted(
        ((b, v) for b, v in row.items() if str(b).lstrip("R").isdigit() and isinstance(v, Mapping)),
        key=lambda kv: int(str(kv[0]).lstrip("R")),
    )


def _branch(b: str, today: str | None) -> str:
    """A branch as the sheet names it: R535, with "(ended 2026-06)" once past its end of life."""
    if today:
        known = next((x for x in nvidia.BRANCH_DATA if f"R{x.branch}" == b), None)
        if known is not None and known.ended(today):
            return f"{b} (ended {known.end_of_life})"
    return b


def reach(row: Mapping[str, Mapping[str, Any]], today: str | None = None) -> str:
    """One GPU's row of the table in a few words: from which driver branch it runs, and how (a branch past
    its end of life says so, given ``today``)."""
    ordered = _ordered(row)
    marks = [(b, Mark.parse(v.get("mark"))) for b, v in ordered]
    first_ok = next((b for b, m in marks if m is RUNS), None)
    first_any = next((b for b, m in marks if m in (RUNS, WARN)), None)
    if first_any is None:  # the most telling reason: the newest branch that got past the driver checks
        telling = [v for _, v in ordered if v.get("code") != INSUFFICIENT_DRIVER] or [v for _, v in ordered]
        code = telling[-1].get("code") if telling else None
        reason = str((telling[-1].get("reasons") or [""])[0]) if telling else ""
        return f"{FAILS} " + (
            "no kernel image"
            if code == NO_KERNEL
            else "PTX too new"
            if code == UNSUPPORTED_PTX
            else f"unsupported ({reason[:100]})"
        )
    parts = []
    if first_any != first_ok:
        parts.append(f"{WARN} from {_branch(first_any, today)}")
    if first_ok:
        parts.append(f"{RUNS} from {_branch(first_ok, today)}")
    return " · ".join(parts)


def jit_reach(row: Mapping[str, Mapping[str, Any]], today: str | None = None) -> str:
    """The JIT toolchains of one GPU's row, each in a few words ("" when the image has none)."""
    names = {"torch.compile": "torch.compile", "nvrtc": "NVRTC", "cpp_extension": "cpp_extension"}
    ordered = _ordered(row)
    out = []
    for tool, label in names.items():
        per = {b: v["jit"][tool] for b, v in ordered if isinstance(v.get("jit"), Mapping) and tool in v["jit"]}
        if per:
            marks = [Mark.parse(v.get("mark")) for v in per.values()]
            if any(m in (RUNS, WARN) for m in marks):
                shown = reach(per, today)
            elif any(m is Mark.UNKNOWN for m in marks):
                shown = f"{Mark.UNKNOWN.value} unknown"
            else:  # it fails on every branch: the reason's first clause says why
                last = list(per.values())[-1]
                shown = f"{FAILS} {str((last.get('reasons') or ['?'])[0]).split(':')[0][:90]}"
            out.append(f"{label} {shown}")
    return " · ".join(out)


KIND_WORDS = {
    "library": ("library", "libraries"),
    "extension": ("extension module", "extension modules"),
    "executable": ("executable", "executables"),
    "cubin": ("cubin", "cubins"),
    "fatbin": ("fat binary", "fat binaries"),
    "ptx": ("PTX file", "PTX files"),
}


def kinds_line(counts: Mapping[str, Any]) -> str:
    """The carriers by kind, as counted by the scan ("17 libraries, 2 executables, 1 cubin")."""
    parts = []
    for kind, (one, many) in KIND_WORDS.items():
        n = counts.get(f"kind_{kind}")
        if isinstance(n, int) and n > 0:
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


def coverage_line(summary: Mapping[str, Any]) -> str:
    """An audit summary (the record's section) in one line: SASS, PTX, the driver floor and the carriers
    by kind; an image without device code says so."""
    found = summary.get("counts")
    counts: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    archives = counts.get("kind_archive") if isinstance(counts.get("kind_archive"), int) else 0
    loaded = (summary.get("objects") or 0) - (archives or 0)
    static = f"; {archives} static archive(s) with device code, linked at build time, not counted" if archives else ""
    if loaded <= 0:
        files = counts.get("files")
        return f"no device code ({files} files read){static}" if files else f"no device code{static}"
    sass = summary.get("sass") or []
    ptx = sorted({p.split("(")[-1].rstrip(")") for p in summary.get("ptx") or []})
    floor_mm = summary.get("floor")
    fl = f"CUDA {floor_mm[0]}.{floor_mm[1]} ({summary.get('floor_source')})" if floor_mm else "no CUDA runtime"
    native = summary.get("floor_native") or "unknown"
    by_kind = kinds_line(counts)
    return (
        f"SASS {' '.join(sass) or 'none'} · PTX ISA {', '.join(ptx) or 'none'} · floor {fl}, native driver {native} · "
        f"{loaded} objects with device code" + (f" ({by_kind})" if by_kind else "") + static
    )
