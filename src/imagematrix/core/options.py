"""Command-line values that are not plain strings, parsed once with a message that names the flag."""

from __future__ import annotations

import math
import shlex

from imagematrix.core.errors import UsageError


def number(flag: str, value: object, *, minimum: float | None = None, integer: bool = False) -> float:
    """``value`` as a finite number (an integer with ``integer``) of at least ``minimum``, or exit 2."""
    kind = "a whole number" if integer else "a number"
    bound = f" >= {minimum:g}" if minimum is not None else ""
    try:
        n = float(str(value).strip())
    except ValueError:
        raise UsageError(f"{flag} takes {kind}{bound}, not {str(value)[:40]!r}") from None
    if not math.isfinite(n) or (integer and n != int(n)) or (minimum is not None and n < minimum):
        raise UsageError(f"{flag} takes {kind}{bound}, not {str(value)[:40]!r}")
    return int(n) if integer else n


def words(flag: str, value: str) -> list[str]:
    """A shell-quoted argument string (``--pytest '-k abi -x'``) as its words, or exit 2."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"{flag} {value[:60]!r}: {exc} (quote it as a shell would)") from None
