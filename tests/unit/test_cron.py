"""The schedule in its own time zone, run by a UTC scheduler: a walk through whole years proves
that the gate makes every entry fire exactly when it is due, and never otherwise."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from imagematrix import cron

SHEET = [  # matrix.yaml's schedule: phase 1 Mondays, 2 Wednesdays, 3 Fridays 02:00, all on the 1st
    {"cron": "0 2 * * 1", "phases": [1]},
    {"cron": "0 2 * * 3", "phases": [2]},
    {"cron": "0 2 * * 5", "phases": [3]},
    {"cron": "0 2 1 * *", "phases": [1, 2, 3, 4, 5]},
]


def _between(expr: str, start: datetime, end: datetime):
    it = croniter(expr, start - timedelta(seconds=1))
    while (t := it.get_next(datetime)) < end:
        yield t


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "Europe/Berlin", "America/New_York", "UTC"])
@pytest.mark.parametrize("late", [timedelta(0), timedelta(minutes=47)])  # GitHub starts scheduled runs late
def test_a_year_of_scheduled_runs_fires_every_entry_exactly_when_due(tz, late):
    zone = ZoneInfo(tz)
    start, end = datetime(2027, 1, 1, tzinfo=zone), datetime(2028, 1, 1, tzinfo=zone)
    want = Counter()
    for e in SHEET:  # when each entry is due, read by croniter in the matrix's zone
        for t in _between(e["cron"], start, end):
            want[(t.astimezone(timezone.utc), tuple(e["phases"]))] += 1
    got = Counter()
    for fired in sorted({c for e in SHEET for c in cron.utc_crons(e["cron"], tz)}):
        for t in _between(fired, start.astimezone(timezone.utc), end.astimezone(timezone.utc)):
            for e in SHEET:
                if fired in cron.utc_crons(e["cron"], tz) and e["phases"][0] in cron.due([e], tz, fired, t + late):
                    got[(t, tuple(e["phases"]))] += 1
    assert got == want
    assert sum(want.values()) >= 52 * 3 + 12  # the walk saw every Monday, Wednesday, Friday and 1st


def test_the_sheets_first_of_the_month_in_tokyo_is_the_last_day_of_the_previous_month_in_utc():
    assert cron.utc_crons("0 2 1 * *", "Asia/Tokyo") == ("0 17 28,29,30,31 * *",)
    assert cron.utc_crons("0 2 * * 1", "Asia/Tokyo") == ("0 17 * * 0",)
    # 17:00 UTC on 30 Nov 2026 is 02:00 on 1 Dec in Tokyo: due. On 28, 29 Nov it is not.
    assert cron.due(SHEET, "Asia/Tokyo", "0 17 28,29,30,31 * *", datetime(2026, 11, 30, 17, 5, tzinfo=timezone.utc)) == [1, 2, 3, 4, 5]
    assert cron.due(SHEET, "Asia/Tokyo", "0 17 28,29,30,31 * *", datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)) == []
    # 30 Nov 2026 is a Monday in UTC, 1 Dec a Tuesday in Tokyo: Sunday 17:00 UTC is Monday's phase 1.
    assert cron.due(SHEET, "Asia/Tokyo", "0 17 * * 0", datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)) == [1]


def test_daylight_saving_zones_get_one_utc_cron_per_offset():
    assert cron.utc_crons("0 2 * * 1", "Europe/Berlin") == ("0 0 * * 1", "0 1 * * 1")
    # Monday 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer; the other one is not due.
    assert cron.due(SHEET, "Europe/Berlin", "0 1 * * 1", datetime(2027, 1, 4, 1, 0, tzinfo=timezone.utc)) == [1]
    assert cron.due(SHEET, "Europe/Berlin", "0 0 * * 1", datetime(2027, 1, 4, 0, 0, tzinfo=timezone.utc)) == []
    assert cron.due(SHEET, "Europe/Berlin", "0 0 * * 1", datetime(2027, 7, 5, 0, 0, tzinfo=timezone.utc)) == [1]


def test_a_run_that_starts_too_late_or_from_another_cron_runs_nothing():
    assert cron.due(SHEET, "Asia/Tokyo", "0 17 * * 0", datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)) == []
    assert cron.due(SHEET, "Asia/Tokyo", "", datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc)) == []  # not scheduled
    assert cron.due(SHEET, "Asia/Tokyo", "0 3 * * *", datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)) == []
