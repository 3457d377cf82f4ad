"""NVIDIA's published facts about drivers and toolkits, as data: ``core/data/nvidia.json`` (a dated
snapshot; ``scripts/refresh-nvidia-data.py`` rewrites it). The driver rules (``cuda_compat``), the SASS
and PTX rules (``arch``) and the oracle's catalogue of driver branches read it from here; nothing else
keeps a copy. A value the snapshot lacks is None: the callers say "unknown", never guess. Stdlib only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "nvidia.json"
_DATA = json.loads(DATA_FILE.read_text(encoding="utf-8"))
SNAPSHOT: str = _DATA["snapshot"]


def mm(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


# CUDA minor -> the Linux x86_64 driver that runs it natively (None: a release whose driver was not read).
TOOLKITS: dict[tuple[int, int], str | None] = {mm(k): v for k, v in _DATA["toolkits"].items()}
NATIVE_DRIVER: dict[tuple[int, int], str] = {k: v for k, v in TOOLKITS.items() if v}
MINOR_COMPAT_DRIVER: dict[int, str] = {int(k): v for k, v in _DATA["minor_compat"].items()}
# PTX ISA version -> the CUDA release that introduced it.
PTX_ISA_CUDA: dict[tuple[int, int], tuple[int, int]] = {mm(k): mm(v) for k, v in _DATA["ptx_isa"].items()}


@dataclass(frozen=True)
class Branch:
    branch: int
    cuda: tuple[int, int] | None  # the CUDA it runs natively (None: not in the snapshot)
    type: str | None  # "long-term", "production", "new feature" (None: not read)
    end_of_life: str | None  # "YYYY-MM" (None: supported, or not read)

    def ended(self, today: str) -> bool:
        """Past its end of life on ``today`` (YYYY-MM-DD)."""
        return bool(self.end_of_life) and today[:7] > str(self.end_of_life)


BRANCH_DATA: tuple[Branch, ...] = tuple(
    Branch(b["branch"], mm(b["cuda"]) if b.get("cuda") else None, b.get("type"), b.get("end_of_life"))
    for b in _DATA["branches"]
)


@dataclass(frozen=True)
class ArchSupport:
    since: tuple[int, int]  # the first toolkit whose compilers target it
    until: tuple[int, int] | None  # the last one (None: still targeted)


ARCHES: dict[str, ArchSupport] = {
    name: ArchSupport(mm(v["since"]), mm(v["until"]) if v.get("until") else None) for name, v in _DATA["arches"].items()
}


def toolkit_targets(toolkit: tuple[int, int], cc: tuple[int, int]) -> bool | None:
    """Whether compilers of CUDA ``toolkit`` (nvcc, ptxas, NVRTC) generate code for compute capability
    ``cc``; None when the snapshot does not know the architecture."""
    support = ARCHES.get(f"sm_{cc[0]}{cc[1]}")
    if support is None:
        return None
    return support.since <= toolkit and (support.until is None or toolkit <= support.until)
