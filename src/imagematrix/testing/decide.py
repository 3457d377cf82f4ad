"""One decision per cell before any container: refuse what the oracle predicts to fail on this host,
reuse a result of the very same image, suite and host that holds up, or run.

Pure: a function of the oracle's prediction for this host, what the history holds for the cell's exact
key (``reuse.lookup``), whether the attestation of that run verifies where evidence is required, and
the options. The runner gathers those facts and carries the decision out; ``tests/unit/test_decide.py``
holds the table. Stdlib only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagematrix.core.verdict import Mark
from imagematrix.testing.reuse import Lookup, Reusable


class Action(enum.Enum):
    """What happens to a cell; the value is the record's ``decision``."""

    RUN = "ran"
    REUSE = "reused"
    REFUSE = "incompatible"


@dataclass(frozen=True)
class Decision:
    action: Action
    notes: tuple[str, ...] = ()  # for the grid's note, in order
    reused: Reusable | None = None  # the run whose result stands (REUSE)
    refusal: str = ""  # why the cell is predicted to fail here (REFUSE)


def decide(
    prediction: Mapping[str, Any] | None,
    lookup: Lookup | None,
    unbacked: str | None = None,
    *,
    run_anyway: bool = False,
    stale: str = "",
) -> Decision:
    """The cell's decision.

    ``prediction``: the oracle's verdict for the GPU this container gets and the host's driver (None: no
    audit or no GPU). ``lookup``: the history for the exact key (None: reuse is off). ``unbacked``: why
    the found run's attestation does not verify, where the runner signs or publish verifies (None: it
    does, or none is required). ``stale``: why the image is not what the matrix renders now.
    """
    notes = [stale] if stale else []
    mark = Mark.parse((prediction or {}).get("mark"))
    if mark is Mark.FAILS and not run_anyway:
        reasons = "; ".join(str(r) for r in (prediction or {}).get("reasons") or ())
        fix = (prediction or {}).get("fix") or "another GPU, driver or image"
        return Decision(
            Action.REFUSE,
            tuple(notes),
            refusal=f"predicted to fail here: {reasons}. Fix: {fix} (--run-anyway tests it all the same)",
        )
    if mark is Mark.WARNS:
        notes.append(f"predicted ⚠️: {((prediction or {}).get('reasons') or ['?'])[0]}")
    if lookup is not None and lookup.found is not None:
        if unbacked is None:
            return Decision(Action.REUSE, (lookup.found.describe(), *notes), reused=lookup.found)
        notes.insert(0, f"not reused: {unbacked}")
    elif lookup is not None and lookup.why_not:
        notes.insert(0, lookup.why_not)
    return Decision(Action.RUN, tuple(notes))
