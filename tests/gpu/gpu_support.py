"""Assertions shared by the suite's test modules: probe results to pass/fail."""

from __future__ import annotations

import pytest
from gpu_host import ProbeResult
from gpu_policy import failure_hint


def require(result: ProbeResult) -> dict:
    """The probe's report, or a failure showing how it died and its last output."""
    if result.crashed:
        pytest.fail(f"{result.why()}; its last output:\n{result.tail()}", pytrace=False)
    fatal = result.data.get("info", {}).get("fatal")
    if fatal:
        tb = result.data["info"].get("traceback", "")
        hint = failure_hint(fatal + tb)
        fix = f"\nFix: {hint}" if hint else ""
        pytest.fail(
            f"probe {result.name!r} ({result.user}) failed before its checks: {fatal}{fix}\n{tb}",
            pytrace=False,
        )
    return result.data


def expect(result: ProbeResult, check: str, fix: str = "") -> str:
    """Fail unless the probe's `check` passed; the failure shows its detail and the fix."""
    data = require(result)
    entry = data["checks"].get(check)
    if entry is None:
        pytest.fail(
            f"probe {result.name!r} did not run check {check!r} (ran: {', '.join(data['checks']) or 'none'})",
            pytrace=False,
        )
    if not entry["ok"]:
        text = entry["detail"]
        if fix:
            text += f"\n{fix}"
        if entry.get("traceback"):
            text += f"\n--- traceback (uid {data['info'].get('uid')}) ---\n{entry['traceback']}"
        pytest.fail(text, pytrace=False)
    return entry["detail"]


def ensure(ok: object, message: str) -> None:
    """Fail with `message` alone (what, why, fix), without pytest's assertion introspection."""
    if not ok:
        pytest.fail(message, pytrace=False)
