"""The oracle's verdicts, one type: what code compares and what the sheet and the terminal print are the
same values. A prediction read back from a record is parsed (``Mark.parse``); text that is no mark is
None, never a verdict. Stdlib only (the runner decides with it on bare GPU hosts)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mark(str, enum.Enum):
    RUNS = "✅"  # runs: SASS for the GPU, a driver that runs the image's CUDA natively
    WARNS = "⚠️"  # runs, but by PTX JIT at first use or under minor-version compatibility
    FAILS = "❌"  # fails, with a reason and a fix
    UNKNOWN = "?"  # not checked: what would decide it was not read

    @classmethod
    def parse(cls, value: object) -> Mark | None:
        try:
            return cls(value)
        except ValueError:
            return None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """One prediction: the mark, why, how to make it ✅, and the CUDA error the failure shows up as."""

    mark: Mark
    reasons: tuple[str, ...]
    fix: str = ""
    code: int | None = None

    def to_json(self) -> dict:
        return {"mark": self.mark.value, "reasons": list(self.reasons), "fix": self.fix, "code": self.code}
