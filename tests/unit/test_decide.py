"""The runner's one decision per cell, as a table: the oracle's prediction, what the history holds for
the exact key, whether its attestation verifies, and the options decide; nothing else does. And the
history's side of it: only a result that holds up is found for reuse; anything else says why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from imagematrix.core import history
from imagematrix.core.records import HistoryEvent
from imagematrix.testing import reuse
from imagematrix.testing.decide import Action, decide

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
FAILS = {"mark": "❌", "reasons": ["no kernel image for H100 (sm_90)"], "fix": "SASS for sm_90"}
WARNS = {"mark": "⚠️", "reasons": ["PTX JIT at first use"], "fix": ""}
RUNS = {"mark": "✅", "reasons": ["SASS"], "fix": ""}


def _found(**run) -> reuse.Lookup:
    body = {"state": "passed", "passed": 18, "skipped": 3, "finished": "2026-12-07T10:00:00Z", **run}
    event = HistoryEvent.from_json({"kind": "test", "cell": "c", "at": body["finished"], "runner": "r", **body}, "t")
    return reuse.Lookup(reuse.Reusable(event))


NOT_REUSABLE = reuse.Lookup(None, "not reused: its last run failed")

TABLE = [
    # prediction, lookup, unbacked, run_anyway, action, a note that must be there
    (None, None, None, False, Action.RUN, None),
    (RUNS, None, None, False, Action.RUN, None),
    (FAILS, None, None, False, Action.REFUSE, None),
    (FAILS, _found(), None, False, Action.REFUSE, None),  # a prediction of ❌ wins over a stored pass
    (FAILS, None, None, True, Action.RUN, None),  # --run-anyway
    (WARNS, None, None, False, Action.RUN, "predicted ⚠️: PTX JIT at first use"),
    (None, _found(), None, False, Action.REUSE, "reused from r"),
    (WARNS, _found(), None, False, Action.REUSE, "predicted ⚠️"),
    (None, _found(), "its run carries no signed attestation", False, Action.RUN, "not reused: its run carries no"),
    (None, NOT_REUSABLE, None, False, Action.RUN, "not reused: its last run failed"),
    (None, reuse.Lookup(), None, False, Action.RUN, None),
]


@pytest.mark.parametrize(("prediction", "lookup", "unbacked", "run_anyway", "action", "note"), TABLE)
def test_the_decision_table(prediction, lookup, unbacked, run_anyway, action, note):
    d = decide(prediction, lookup, unbacked, run_anyway=run_anyway)
    assert d.action is action
    if note:
        assert any(note in n for n in d.notes), d.notes
    if action is Action.REFUSE:
        assert "no kernel image" in d.refusal and "--run-anyway" in d.refusal
    assert (d.reused is not None) == (action is Action.REUSE)


def test_a_stale_image_is_said_whatever_is_decided():
    for lookup in (None, _found()):
        d = decide(None, lookup, None, stale="stale: built from other inputs")
        assert "stale: built from other inputs" in d.notes


# --- what the history offers: only a result that holds up ---------------------------------------------

BROKEN = {
    "failures counted": ({"failed": 3, "errors": 2}, "3 failed, 2 errors"),
    "a negative count": ({"passed": -1}, "-1 passed"),
    "nothing passed": ({"passed": 0}, "0 passed"),
    "no count at all": ({"passed": None}, "None passed"),
    "in the future": ({"finished": "2027-01-01T00:00:00Z"}, "in the future"),
    "no zone": ({"finished": "2026-12-07T10:00:00"}, "not an ISO time with a zone"),
    "not a time": ({"finished": "yesterday"}, "not an ISO time with a zone"),
    "too old": ({"finished": "2026-10-01T00:00:00Z"}, "more than 30 days ago"),
    "a reuse itself": ({"reused_from": {"runner": "x"}}, "itself reused"),
    "failed": ({"state": "failed"}, "its last run failed"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_result_that_does_not_hold_up_is_not_reused_and_says_why(case):
    change, why = BROKEN[case]
    run = {"state": "passed", "passed": 18, "failed": 0, "errors": 0, "finished": "2026-12-07T10:00:00Z", **change}
    event = HistoryEvent.from_json(
        {"kind": "test", "cell": "c", "at": "2026-12-07T10:00:00Z", "runner": "r", **run}, ""
    )
    assert event.test is not None
    assert why in (reuse.why_not_reusable(event.test, event.at, 30, NOW) or "")


def test_a_few_minutes_of_clock_skew_are_allowed():
    run = HistoryEvent.from_json(
        {
            "kind": "test",
            "cell": "c",
            "at": "",
            "runner": "r",
            "state": "passed",
            "passed": 1,
            "finished": (NOW + timedelta(minutes=2)).isoformat(),
        },
        "",
    ).test
    assert run is not None and reuse.why_not_reusable(run, "", 30, NOW) is None


def test_the_newest_run_of_the_key_decides_and_the_grid_is_told_why(tmp_path, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    key = reuse.Key("sha256:" + "a" * 64, {"s": 1}, {"h": 1})
    good = {"state": "passed", "passed": 18, "skipped": 3, "require_gpu": True, "key": key.to_json()}
    history.append(tmp_path, "test", "c", {**good, "finished": "2026-12-07T09:00:00Z"})
    assert reuse.lookup(tmp_path, "c", key, now=NOW).found is not None
    forged = {**good, "failed": 3, "errors": 2, "finished": "2026-12-07T10:00:00Z"}
    history.append(tmp_path, "test", "c", forged)
    found = reuse.lookup(tmp_path, "c", key, now=NOW)
    assert found.found is None and "3 failed, 2 errors" in found.why_not
    d = decide(None, found, None)
    assert d.action is Action.RUN and any("3 failed, 2 errors" in n for n in d.notes)
