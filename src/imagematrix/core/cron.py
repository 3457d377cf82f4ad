"""The schedule in the matrix's time zone, run by a scheduler that only knows UTC.

GitHub Actions reads cron in UTC. An entry such as "0 2 1 * *" in Asia/Tokyo (the 1st of each
month, 02:00) is 17:00 UTC on the last day of the previous month, which no single UTC cron says,
and a zone with daylight saving moves every entry twice a year. So:

- ``utc_schedule`` gives the workflow's UTC crons: **one cron per UTC time of day** at which any
  entry can be due (for every UTC offset the zone uses, and at the end of every DST gap an entry
  falls into). One time of day per cron means a cron fires at most once a day, so the gate can tell
  from the cron that fired (``github.event.schedule``) and the clock exactly which instant started
  the run, even when GitHub starts it hours late (up to ``LOOKBACK``).
- ``due`` is the gate: it judges every entry at that instant, in the matrix's zone.

What "due" means in the matrix's zone, as croniter and Vixie cron read it:
- a local time that exists once is due when the cron matches it;
- a local time skipped by a DST gap (Europe/Berlin 02:30 on the spring-forward day) is due at the
  first minute after the gap (03:00 there), once, however many skipped minutes match;
- a local time that occurs twice in a DST fold is due at its first occurrence only. croniter fires
  at both; a build matrix must not build and test twice (Vixie cron also runs such a job once).

Stdlib only: the workflow's gate job runs it with nothing else installed (`python3 -m imagematrix.core.cron plan`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

# (name, lowest, highest) of the five fields as GitHub Actions reads them (day of week 0-6, Sunday 0).
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
LOOKBACK = timedelta(hours=12)  # the lateness tolerated: GitHub starts scheduled runs late, sometimes by hours
MAX_TIMES_PER_DAY = 24  # local times of day one entry may name; a build matrix runs a few times a day
MAX_UTC_CRONS = 48  # the workflow's UTC crons (times of day) for the whole schedule
MIN_GAP_MINUTES = 5  # GitHub runs a schedule at most every 5 minutes
_EXPR = re.compile(r"[0-9*,/-]{1,100}(?: [0-9*,/-]{1,100}){4}")
_ITEM = re.compile(r"(?:\*|(\d{1,2})(?:-(\d{1,2}))?)(?:/(\d{1,2}))?")
YEARS = 3  # the window the zone's offsets and transitions are read from: this year and the next two
ANY = "all"  # a workflow_dispatch choice that selects everything


def field_values(text: str, lo: int, hi: int) -> frozenset[int]:
    """One (checked) cron field as the set of values it allows."""
    out: set[int] = set()
    for item in text.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            a, b = lo, hi
        elif "-" in body:
            a, b = (int(x) for x in body.split("-", 1))
        else:
            a = b = int(body)
            if step:
                b = hi
        out.update(range(a, b + 1, int(step) if step else 1))
    return frozenset(out)


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a 5-field numeric cron expression this schedule can run, or None."""
    if not isinstance(expr, str) or not _EXPR.fullmatch(expr):
        fields = expr.split() if isinstance(expr, str) else []
        if isinstance(expr, str) and len(fields) == 5 and " ".join(fields) != expr:
            return "separate the five fields by single spaces (no tabs, newlines or leading spaces)"
        if len(fields) != 5:
            return (
                f'has {len(fields)} fields; cron needs 5: minute hour day-of-month month day-of-week (e.g. "0 2 * * 1")'
            )
        return "only digits, *, ',', '-' and '/' are allowed (e.g. \"0 2 * * 1\")"
    for text, (name, lo, hi) in zip(expr.split(), FIELDS, strict=True):
        for item in text.split(","):
            m = _ITEM.fullmatch(item)
            if not m:
                return f"{name} field {text!r} is not *, N, N-M, a list of those, or any of them with /STEP"
            a, b, step = m.groups()
            for n in filter(None, (a, b)):
                if not lo <= int(n) <= hi:
                    return f"{name} {n} is out of range {lo}-{hi}"
            if a is not None and b is not None and int(a) > int(b):
                return f"{name} range {a}-{b} runs backwards; write {b}-{a}"
            if step is not None and int(step) == 0:
                return f"{name} step /0 is not allowed"
    c = Cron(expr)
    times = sorted(h * 60 + m for h in c.hour for m in c.minute)
    gap = min((b - a for a, b in zip(times, [*times[1:], times[0] + 1440], strict=True)), default=1440)
    if len(times) > 1 and gap < MIN_GAP_MINUTES:
        return f"fires every {gap} minute(s); GitHub runs a schedule at most every {MIN_GAP_MINUTES} minutes"
    if len(times) > MAX_TIMES_PER_DAY:
        return (
            f"fires at {len(times)} times of day; a build schedule may name at most "
            f'{MAX_TIMES_PER_DAY} (e.g. "0 2 * * *", "0 */6 * * *")'
        )
    if not any(c.day_matches(date(2024, 1, 1) + timedelta(days=i)) for i in range(366 * 8)):
        return "is never due (no date has that day of month in that month, e.g. 30 February); fix the day or month"
    return None


class Cron:
    """A parsed 5-field cron expression with the usual day rule: when both day fields are
    restricted, a day matches either one."""

    def __init__(self, expr: str):
        self.expr = " ".join(expr.split())
        parts = self.expr.split()
        if len(parts) != 5:
            raise ValueError(f"{expr!r}: cron needs 5 fields")
        self.minute, self.hour, self.dom, self.month, self.dow = (
            field_values(p, lo, hi) for p, (_, lo, hi) in zip(parts, FIELDS, strict=True)
        )
        self.dom_any, self.dow_any, self.month_any = parts[2] == "*", parts[4] == "*", parts[3] == "*"

    def day_matches(self, d: date) -> bool:
        if d.month not in self.month:
            return False
        dom, dow = d.day in self.dom, (d.isoweekday() % 7) in self.dow
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return t.minute in self.minute and t.hour in self.hour and self.day_matches(t)


@functools.lru_cache(maxsize=256)
def parsed(expr: str) -> Cron:
    return Cron(expr)


def _fmt(values: Iterable[int], lo: int, hi: int) -> str:
    vals = sorted(set(values))
    return "*" if vals == list(range(lo, hi + 1)) else ",".join(map(str, vals))


def _years() -> range:
    this = datetime.now(timezone.utc).year
    return range(this - 1, this + YEARS)


@functools.lru_cache(maxsize=1024)
def transitions(tz: str, years: tuple[int, ...] | None = None) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """The zone's UTC-offset changes in ``years`` (default: last year to YEARS ahead), to the minute:
    (instant in UTC, offset before, offset after)."""
    zone = ZoneInfo(tz)
    span = years or tuple(_years())
    t = datetime(span[0], 1, 1, tzinfo=timezone.utc)
    end = datetime(span[-1] + 1, 1, 1, tzinfo=timezone.utc)
    out: list[tuple[datetime, timedelta, timedelta]] = []
    off = t.astimezone(zone).utcoffset() or timedelta(0)
    step = timedelta(hours=1)
    while t < end:
        nxt = t + step
        new = nxt.astimezone(zone).utcoffset() or timedelta(0)
        if new != off:
            lo, hi = t, nxt  # the change is in (lo, hi]: bisect to the minute
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) // 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                lo, hi = (mid, hi) if mid.astimezone(zone).utcoffset() == off else (lo, mid)
            out.append((hi, off, new))
            off = new
        t = nxt
    return tuple(out)


@functools.lru_cache(maxsize=256)
def offsets(tz: str) -> tuple[timedelta, ...]:
    """Every UTC offset the zone uses in the window (one for Asia/Tokyo, two with daylight saving)."""
    zone = ZoneInfo(tz)
    start = datetime(_years()[0], 1, 1, tzinfo=timezone.utc)
    seen = {start.astimezone(zone).utcoffset() or timedelta(0)}
    seen |= {after for _, _, after in transitions(tz)}
    return tuple(sorted(seen))


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _day_spec(c: Cron, shift: int) -> tuple[str, frozenset[int]] | None:
    """The UTC days a local entry's days become when its time moves ``shift`` days (None: any day)."""
    if shift == 0 and c.month_any and c.dom_any and not c.dow_any:
        return "dow", c.dow
    if shift == 0 and c.month_any and c.dow_any and not c.dom_any:
        return "dom", c.dom
    if not c.month_any or not (c.dom_any or c.dow_any):
        return None  # months, or both day fields: let the gate judge every day
    if not c.dow_any:
        return "dow", frozenset((d + shift) % 7 for d in c.dow)
    if c.dom_any:
        return "all", frozenset()
    dom = {d + shift for d in c.dom if 1 <= d + shift <= 31}
    if shift < 0 and 1 in c.dom:
        dom |= {28, 29, 30, 31}  # the last day of the previous month, whichever it is
    if shift > 0 and max(c.dom) >= 28:
        dom.add(1)
    return "dom", frozenset(dom)


@functools.lru_cache(maxsize=256)
def utc_schedule(exprs: tuple[str, ...], tz: str) -> tuple[str, ...]:
    """The workflow's UTC crons for local entries ``exprs`` in ``tz``: one per UTC time of day."""
    days: dict[int, list[tuple[str, frozenset[int]] | None]] = {}  # UTC minute of day -> day specs
    for expr in exprs:
        c = parsed(expr)
        local_times = {h * 60 + m for h in c.hour for m in c.minute}
        for off in offsets(tz):
            for lt in local_times:
                shift, mod = divmod(lt - _minutes(off), 24 * 60)
                days.setdefault(mod, []).append(_day_spec(c, shift))
        for instant, before, after in transitions(tz):
            if after <= before:
                continue  # a fold: every local time still exists
            start = (instant + before).replace(tzinfo=None)  # the first wall time the gap skips
            if any(c.matches(start + timedelta(minutes=k)) for k in range(_minutes(after - before))):
                # Due at the gap's end, on that UTC day.
                days.setdefault(instant.hour * 60 + instant.minute, []).append(
                    ("dow", frozenset({instant.isoweekday() % 7}))
                )
    out = []
    for mod in sorted(days):
        specs = days[mod]
        kinds = {s[0] for s in specs if s is not None}
        if None in specs or "all" in kinds or len(kinds) != 1:
            dom, dow = "*", "*"
        else:
            union = frozenset().union(*(s[1] for s in specs if s is not None))
            dom, dow = (_fmt(union, 1, 31), "*") if kinds == {"dom"} else ("*", _fmt(union, 0, 6))
        out.append(f"{mod % 60} {mod // 60} {dom} * {dow}")
    if len(out) > MAX_UTC_CRONS:
        raise ValueError(
            f"the schedule needs {len(out)} UTC times of day in {tz}; at most {MAX_UTC_CRONS}: "
            "give its entries fewer hours"
        )
    return tuple(out)


def fired_at(utc_cron: str, now: datetime) -> datetime | None:
    """The latest minute up to ``now`` (UTC) at which ``utc_cron`` fired, within LOOKBACK."""
    cron = parsed(utc_cron)
    t = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    end = t - LOOKBACK
    if len(cron.hour) == 1 and len(cron.minute) == 1:  # one time of day (utc_schedule's): today's or yesterday's
        (hour,), (minute,) = cron.hour, cron.minute
        at = t.replace(hour=hour, minute=minute)
        for candidate in (at, at - timedelta(days=1)):
            if end < candidate <= t and cron.day_matches(candidate):
                return candidate
        return None
    while t > end:
        if cron.matches(t):
            return t
        t -= timedelta(minutes=1)
    return None


def due_at(entries: Sequence[dict], tz: str, t: datetime) -> list[int]:
    """Phases of the entries (``{"cron", "phases"}``, local to ``tz``) due at instant ``t``."""
    return [p for p, _ in due_entries(entries, tz, t)]


def due_entries(entries: Sequence[dict], tz: str, t: datetime) -> list[tuple[int, bool]]:
    """(phase, retest) for each phase due at instant ``t``: retest when any entry that makes it due asks."""
    zone = ZoneInfo(tz)
    t = t.astimezone(timezone.utc).replace(second=0, microsecond=0)
    here = t.astimezone(zone)
    wall = here.replace(tzinfo=None)
    before = (t - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
    second_time = here.fold == 1 and here.replace(fold=0).utcoffset() != here.utcoffset()  # a fold's repeat
    skipped = []
    if wall - before > timedelta(minutes=1):  # a gap: the wall times it skipped are due now
        skipped = [before + timedelta(minutes=k) for k in range(1, min(_minutes(wall - before), 1440))]
    phases: dict[int, bool] = {}
    for entry in entries:
        c = parsed(entry["cron"])
        if (c.matches(wall) and not second_time) or any(c.matches(s) for s in skipped):
            for p in entry["phases"]:
                phases[p] = phases.get(p, False) or entry.get("retest") is True
    return list(phases.items())


def due(entries: Sequence[dict], tz: str, fired: str, now: datetime) -> list[int]:
    """Phases due in a run started by UTC cron ``fired`` and running at ``now``: the entries due at the
    instant that cron fired (its latest firing, at most LOOKBACK ago). A cron that is not this
    schedule's starts nothing."""
    return [p for p, _ in due_with_retest(entries, tz, fired, now)]


def due_with_retest(entries: Sequence[dict], tz: str, fired: str, now: datetime) -> list[tuple[int, bool]]:
    if fired.strip() not in utc_schedule(tuple(e["cron"] for e in entries), tz):
        return []
    at = fired_at(fired, now)
    return [] if at is None else due_entries(entries, tz, at)


def plan_jobs(
    families: dict[str, list[list[str]]],
    phases: Sequence[int] | None,
    cuda: str = ANY,
    python: str = ANY,
    target: str = ANY,
    retest: Sequence[int] = (),
) -> list[dict[str, str]]:
    """One job per (CUDA, Python) family holding cells of the given phases (None: every cell): its
    selection, each value a field of its own (the workflow hands them to the tool as separate arguments)."""
    chosen: dict[tuple[str, str], list[int]] = {}
    for ph in ["*"] if phases is None else phases:
        for c, py in families.get(str(ph), []):
            if cuda in (ANY, c) and python in (ANY, py):
                chosen.setdefault((c, py), []).extend([] if ph == "*" else [int(ph)])
    jobs = []
    for (c, py), phs in chosen.items():
        jobs.append(
            {
                "name": f"CUDA {c}, Python {py}" + (f" (phase {', '.join(map(str, phs))})" if phs else ""),
                "id": f"{c if c == 'cpu' else 'cu' + c}-py{py}",
                "cuda": c,
                "python": py,
                "phases": " ".join(map(str, phs)),
                "target": "" if target == ANY else target,
                "retest": "1" if set(phs) & set(retest) else "",
            }
        )
    return jobs


def schedule(text: str) -> tuple[list, str, dict, dict]:
    """The gate's schedule from its JSON (runs, a zone this host knows, families per phase, choices), every
    part checked before use: a hand-edited workflow is refused with the reason, never a traceback."""
    try:
        sched = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(sched, dict):
        raise ValueError("not a JSON object")
    entries, tz, families, choices = (sched.get(k) for k in ("runs", "timezone", "families", "choices"))
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'runs' is not a list of objects")
    if not isinstance(families, dict) or not isinstance(choices, dict):
        raise ValueError("'families' and 'choices' are not objects")
    if not all(isinstance(choices.get(k), list) for k in ("phase", "cuda", "python", "target")):
        raise ValueError("'choices' lacks a list for phase, cuda, python or target")
    try:
        ZoneInfo(tz)  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"time zone {str(tz)[:60]!r} is not one this host knows ({type(exc).__name__})") from None
    for e in entries:
        problem = cron_problem(str(e.get("cron", ""))) if isinstance(e.get("cron"), str) else "no cron string"
        if problem or not isinstance(e.get("phases"), list):
            raise ValueError(f"run {str(e)[:80]!r}: {problem or 'no list of phases'}")
    return entries, str(tz), families, choices


def main(argv: Sequence[str]) -> int:
    """`python -m imagematrix.core.cron plan`: the workflow's gate. Reads IMAGEMATRIX_SCHEDULE (JSON: timezone,
    runs, families per phase, choices), FIRED (the cron that started a scheduled run, empty otherwise) and
    the dispatch inputs PHASE, CUDA, PYTHON, TARGET; prints `jobs=[...]` for $GITHUB_OUTPUT."""
    usage = (
        "usage: python -m imagematrix.core.cron plan  (env: IMAGEMATRIX_SCHEDULE, FIRED, PHASE, CUDA, PYTHON, TARGET)"
    )
    if list(argv) in (["--help"], ["-h"]):
        print(usage)
        return 0
    if list(argv) != ["plan"]:
        print(usage, file=sys.stderr)
        return 2
    try:
        entries, tz, families, choices = schedule(os.environ.get("IMAGEMATRIX_SCHEDULE", ""))
    except ValueError as exc:
        print(
            f"IMAGEMATRIX_SCHEDULE is not the schedule `invoke ci` writes ({exc}); regenerate the workflow with "
            "`invoke ci`",
            file=sys.stderr,
        )
        return 2
    fired = os.environ.get("FIRED", "")
    if fired:
        found = due_with_retest(entries, tz, fired, datetime.now(timezone.utc))
        phases = [p for p, _ in found]
        jobs = plan_jobs(families, phases, retest=[p for p, again in found if again])
        print(f"scheduled run ({fired[:40]!r} UTC): phases due {phases or 'none'}", file=sys.stderr)
    else:
        choice = {k: os.environ.get(k.upper(), "") or ANY for k in ("phase", "cuda", "python", "target")}
        for key, value in choice.items():
            if value != ANY and value not in choices[key]:
                print(
                    f"{key} {value[:40]!r} is not in the matrix (choices: {', '.join(choices[key])})", file=sys.stderr
                )
                return 2
        asked = None if choice["phase"] == ANY else [int(choice["phase"])]
        jobs = plan_jobs(families, asked, choice["cuda"], choice["python"], choice["target"])
    print(f"jobs={json.dumps(jobs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
