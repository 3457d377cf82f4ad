"""The schedule in its own time zone, run by a UTC scheduler: a walk through a whole year proves, for
every zone of the time-zone database, that the gate makes every entry fire exactly when croniter says
it is due in that zone, and never otherwise, for runs started on time and up to the tolerated lateness.

Gaps and folds follow the rules in `imagematrix.core.cron`'s docstring: a time skipped by a gap fires at the
first minute after it (as croniter); a time repeated by a fold fires once, at its first occurrence
(croniter fires twice; its second firing is left out of the comparison).
"""

from __future__ import annotations

import zoneinfo
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from imagematrix.core import cron

SHEET = [  # matrix.yaml's schedule: phase 1 Mondays, 2 Wednesdays, 3 Fridays 02:00, all on the 1st
    {"cron": "0 2 * * 1", "phases": [1]},
    {"cron": "0 2 * * 3", "phases": [2]},
    {"cron": "0 2 * * 5", "phases": [3]},
    {"cron": "0 2 1 * *", "phases": [1, 2, 3, 4, 5]},
]
# One phase per entry, so the phases due say which entries were. Times chosen where zones move their
# clocks: 02:00-03:00 (most of Europe and America), midnight (several zones switch then), 01:45 (Lord
# Howe's 30-minute fold), Sundays (the usual switching day), and the sheet's first of the month.
ENTRIES = [
    {"cron": "0 2 * * 1", "phases": [1]},
    {"cron": "0 2 1 * *", "phases": [2]},
    {"cron": "30 2 * * 0", "phases": [3]},
    {"cron": "0 0 * * *", "phases": [4]},
    {"cron": "45 1 * * *", "phases": [5]},
    {"cron": "10 3 * * 6,0", "phases": [6]},
]
YEAR = datetime.now(timezone.utc).year + 1
LATENESS = (timedelta(0), timedelta(minutes=47), cron.LOOKBACK - timedelta(minutes=1))


def _between(expr: str, start: datetime, end: datetime):
    it = croniter(expr, start - timedelta(seconds=1))
    while (t := it.get_next(datetime)) < end:
        yield t


def _second_of_a_fold(t: datetime) -> bool:
    return t.fold == 1 and t.replace(fold=0).utcoffset() != t.utcoffset()


def want(entries, tz: str) -> Counter:
    """When each entry is due, read by croniter in the zone (a fold's second firing left out)."""
    zone = ZoneInfo(tz)
    start, end = datetime(YEAR, 1, 1, tzinfo=zone), datetime(YEAR + 1, 1, 1, tzinfo=zone)
    out = Counter()
    for i, e in enumerate(entries):
        for t in _between(e["cron"], start, end):
            if not _second_of_a_fold(t):
                out[(t.astimezone(timezone.utc), i)] += 1
    return out


def got(entries, tz: str, late: timedelta | tuple[timedelta, ...]) -> Counter | list[Counter]:
    """What the gate runs: every firing of the workflow's UTC crons in the year (read by croniter),
    judged ``late`` after it; one Counter per lateness when given several."""
    lates = late if isinstance(late, tuple) else (late,)
    zone = ZoneInfo(tz)
    start = datetime(YEAR, 1, 1, tzinfo=zone).astimezone(timezone.utc)
    end = datetime(YEAR + 1, 1, 1, tzinfo=zone).astimezone(timezone.utc)
    fires = [
        (fired, t)
        for fired in cron.utc_schedule(tuple(e["cron"] for e in entries), tz)
        for t in _between(fired, start, end)
    ]
    outs = []
    for lateness in lates:
        out = Counter()
        for fired, t in fires:
            phases = cron.due(entries, tz, fired, t + lateness)
            mine = [i for i, e in enumerate(entries) if cron.due_at([e], tz, t)] if phases else []
            assert set(phases) == {p for i in mine for p in entries[i]["phases"]}
            out.update((t, i) for i in mine)
        outs.append(out)
    return outs if isinstance(late, tuple) else outs[0]


def zone_groups() -> dict[tuple, list[str]]:
    """Zones by their clock in the year: the offset at its start and every change (instant, before, after)."""
    groups: dict[tuple, list[str]] = {}
    for tz in sorted(zoneinfo.available_timezones()):
        try:
            zone = ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            continue
        key = (datetime(YEAR, 1, 1, tzinfo=timezone.utc).astimezone(zone).utcoffset(), cron.transitions(tz, (YEAR,)))
        groups.setdefault(key, []).append(tz)
    return groups


GROUPS = zone_groups()
ONE_PER_GROUP = sorted(zones[0] for zones in GROUPS.values())
EVERY_ZONE = sorted(z for zones in GROUPS.values() for z in zones)


def _prove(tz: str, lates: tuple[timedelta, ...] = LATENESS) -> None:
    expected = want(ENTRIES, tz)
    assert sum(expected.values()) >= 365 * 2  # the walk saw every day of the daily entries
    for late, seen in zip(lates, got(ENTRIES, tz, lates), strict=True):
        assert seen == expected, f"{tz}, started {late} late"


@pytest.mark.parametrize("tz", ONE_PER_GROUP)
def test_the_gate_agrees_with_croniter_for_one_zone_of_each_clock(tz):
    # The fast tier takes each lateness in turn across the groups; the slow tier takes all of them everywhere.
    _prove(tz, (LATENESS[ONE_PER_GROUP.index(tz) % len(LATENESS)],))


@pytest.mark.slow
@pytest.mark.parametrize("tz", EVERY_ZONE)
def test_the_gate_agrees_with_croniter_in_every_zone(tz):
    _prove(tz)


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_the_sheets_schedule_fires_exactly_when_due(tz):
    assert got(SHEET, tz, LATENESS) == [want(SHEET, tz)] * len(LATENESS)


def test_the_zones_are_grouped_and_the_groups_cover_the_database():
    assert len(EVERY_ZONE) >= 400 and len(ONE_PER_GROUP) < len(EVERY_ZONE)
    assert "Australia/Lord_Howe" in EVERY_ZONE and "Europe/Berlin" in EVERY_ZONE


def test_a_gap_fires_at_its_first_minute_and_a_fold_once():
    berlin = "Europe/Berlin"
    entries = [{"cron": "30 2 * * *", "phases": [1]}]
    # 28 March 2027: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and is due at 03:00 (01:00 UTC).
    assert cron.due_at(entries, berlin, datetime(2027, 3, 28, 1, 0, tzinfo=timezone.utc)) == [1]
    assert cron.due_at(entries, berlin, datetime(2027, 3, 28, 0, 30, tzinfo=timezone.utc)) == []
    # 31 October 2027: 02:30 happens twice (00:30 and 01:30 UTC); it is due the first time only.
    assert cron.due_at(entries, berlin, datetime(2027, 10, 31, 0, 30, tzinfo=timezone.utc)) == [1]
    assert cron.due_at(entries, berlin, datetime(2027, 10, 31, 1, 30, tzinfo=timezone.utc)) == []
    assert "0 1 * * 0" in cron.utc_schedule(("30 2 * * *",), berlin)  # the gap's end (a Sunday) is one of the crons


def test_lord_howe_loses_no_run_to_its_thirty_minute_shift():
    """Lord Howe moves its clock by 30 minutes: a run GitHub starts 31 or more minutes late used to be
    judged at the other cron's minute and dropped (182 days of 2027)."""
    entries = [{"cron": "0 2 * * *", "phases": [1]}]
    assert cron.utc_schedule(("0 2 * * *",), "Australia/Lord_Howe") == ("0 15 * * *", "30 15 * * *")
    expected = want(entries, "Australia/Lord_Howe")
    assert got(entries, "Australia/Lord_Howe", timedelta(minutes=40)) == expected
    assert sum(expected.values()) == 365


def test_the_sheets_first_of_the_month_in_tokyo_is_the_last_day_of_the_previous_month_in_utc():
    assert cron.utc_schedule(("0 2 1 * *",), "Asia/Tokyo") == ("0 17 28,29,30,31 * *",)
    assert cron.utc_schedule(("0 2 * * 1",), "Asia/Tokyo") == ("0 17 * * 0",)
    fired = "0 17 * * *"  # the whole sheet: one time of day
    # 17:00 UTC on 30 Nov 2026 is 02:00 on 1 Dec in Tokyo: due. On 28, 29 Nov it is not.
    assert cron.due(SHEET, "Asia/Tokyo", fired, datetime(2026, 11, 30, 17, 5, tzinfo=timezone.utc)) == [1, 2, 3, 4, 5]
    assert cron.due(SHEET, "Asia/Tokyo", fired, datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)) == []
    # 29 Nov 2026 17:00 UTC is Monday 02:00 in Tokyo: phase 1.
    assert cron.due(SHEET, "Asia/Tokyo", fired, datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)) == [1]


def test_daylight_saving_zones_get_one_utc_cron_per_time_of_day():
    assert cron.utc_schedule(("0 2 * * 1",), "Europe/Berlin") == ("0 0 * * 1", "0 1 * * 1")
    # Monday 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer; the other one is not due.
    assert cron.due(SHEET[:1], "Europe/Berlin", "0 1 * * 1", datetime(2027, 1, 4, 1, 0, tzinfo=timezone.utc)) == [1]
    assert cron.due(SHEET[:1], "Europe/Berlin", "0 0 * * 1", datetime(2027, 1, 4, 0, 0, tzinfo=timezone.utc)) == []
    assert cron.due(SHEET[:1], "Europe/Berlin", "0 0 * * 1", datetime(2027, 7, 5, 0, 0, tzinfo=timezone.utc)) == [1]


def test_a_run_that_starts_too_late_or_from_another_cron_runs_nothing():
    fired = "0 17 * * *"
    too_late = datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc) + cron.LOOKBACK + timedelta(minutes=1)
    assert cron.due(SHEET, "Asia/Tokyo", fired, too_late) == []
    assert cron.due(SHEET, "Asia/Tokyo", "", datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)) == []  # not scheduled
    assert cron.due(SHEET, "Asia/Tokyo", "0 3 * * *", datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)) == []
