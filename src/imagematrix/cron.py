"""The schedule in the matrix's time zone, run by a scheduler that only knows UTC.

GitHub Actions reads cron in UTC. An entry such as "0 2 1 * *" in Asia/Tokyo (the
1st of each month, 02:00) is 17:00 UTC on the last day of the previous month, which
no single UTC cron says. ``utc_crons`` gives UTC crons that fire at least whenever
the entry is due (for every UTC offset the zone has); ``due`` is the gate that runs
first in each scheduled run and decides, from the cron that fired and the clock in
the matrix's zone, which entries are due. Stdlib only: the workflow's gate job
runs it with nothing installed (`python3 -m imagematrix.cron due`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
LOOKBACK = timedelta(hours=12)  # GitHub starts scheduled runs late, sometimes by an hour or more
MAX_UTC_CRONS = 24


def field_values(text: str, lo: int, hi: int) -> frozenset[int]:
    """One cron field as the set of values it allows (day of week 7 is Sunday, 0)."""
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
    if hi == 7:
        out = {0 if v == 7 else v for v in out}
    return frozenset(out)


class Cron:
    """A parsed 5-field cron expression with the usual day rule: when both day fields are
    restricted, a day matches either one."""

    def __init__(self, expr: str):
        self.expr = " ".join(expr.split())
        parts = self.expr.split()
        if len(parts) != 5:
            raise ValueError(f"{expr!r}: cron needs 5 fields")
        self.minute, self.hour, self.dom, self.month, self.dow = (
            field_values(p, lo, hi) for p, (_, lo, hi) in zip(parts, FIELDS, strict=True))
        self.dom_any, self.dow_any = parts[2] == "*", parts[4] == "*"

    def day_matches(self, d: datetime) -> bool:
        dom, dow = d.day in self.dom, (d.isoweekday() % 7) in self.dow
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return t.minute in self.minute and t.hour in self.hour and t.month in self.month and self.day_matches(t)


def _fmt(values: Iterable[int], lo: int, hi: int) -> str:
    vals = sorted(set(values))
    if vals == list(range(lo, hi + 1)):
        return "*"
    return ",".join(map(str, vals))


@functools.lru_cache(maxsize=64)
def offsets(tz: str) -> list[timedelta]:
    """Every UTC offset the zone uses from last year to three years ahead (one for Asia/Tokyo,
    two with daylight saving)."""
    zone = ZoneInfo(tz)
    seen = set()
    this_year = datetime.now(timezone.utc).year
    for year in range(this_year - 1, this_year + 4):
        day = datetime(year, 1, 1, 12, tzinfo=timezone.utc)
        while day.year == year:
            seen.add(day.astimezone(zone).utcoffset())
            day += timedelta(days=1)
    return sorted(seen)


@functools.lru_cache(maxsize=256)
def utc_crons(expr: str, tz: str) -> tuple[str, ...]:
    """UTC crons that fire at every instant ``expr`` is due in ``tz`` (and maybe more: the gate decides)."""
    local = Cron(expr)
    parts = local.expr.split()
    groups: dict[tuple[int, int], set[int]] = {}  # (day shift, UTC hour) -> UTC minutes
    for off in offsets(tz):
        for h in local.hour:
            for m in local.minute:
                total = h * 60 + m - int(off.total_seconds() // 60)
                shift, minute_of_day = divmod(total, 24 * 60)
                groups.setdefault((shift, minute_of_day // 60), set()).add(minute_of_day % 60)
    out: list[str] = []
    for (shift, hour), minutes in sorted(groups.items()):
        if shift == 0:
            days = parts[2:]
        else:
            months = "*" if local.month == frozenset(range(1, 13)) else _fmt(
                {((m - 1 + s) % 12) + 1 for m in local.month for s in (0, shift)}, 1, 12)
            if not local.dom_any and local.dow_any:
                dom = {d + shift for d in local.dom if 1 <= d + shift <= 31}
                if shift < 0 and 1 in local.dom:
                    dom |= {28, 29, 30, 31}  # the last day of the previous month
                if shift > 0 and max(local.dom) >= 28:
                    dom.add(1)
                days = [_fmt(dom, 1, 31), months, "*"]
            elif local.dom_any and not local.dow_any:
                days = ["*", months, _fmt({(d + shift) % 7 for d in local.dow}, 0, 6)]
            else:
                days = ["*", months, "*"]
        out.append(" ".join([_fmt(minutes, 0, 59), str(hour), *days]))
    if len(out) > MAX_UTC_CRONS:
        raise ValueError(f"{expr!r} needs {len(out)} UTC crons; give the schedule fixed hours")
    return tuple(dict.fromkeys(out))


def fired_at(utc_cron: str, now: datetime) -> datetime | None:
    """The latest minute up to ``now`` (UTC) at which ``utc_cron`` fired, within LOOKBACK."""
    cron = Cron(utc_cron)
    t = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    end = t - LOOKBACK
    while t > end:
        if cron.matches(t):
            return t
        t -= timedelta(minutes=1)
    return None


def due(entries: Sequence[dict], tz: str, fired: str, now: datetime) -> list[int]:
    """Phases due in a run started by UTC cron ``fired``: entries (``{"cron", "phases"}``, local
    to ``tz``) whose cron fired this UTC cron and whose local cron matches the local time it fired."""
    at = fired_at(fired, now) if fired.strip() else None
    if at is None:
        return []
    local = at.astimezone(ZoneInfo(tz))
    phases: list[int] = []
    for entry in entries:
        if fired in utc_crons(entry["cron"], tz) and Cron(entry["cron"]).matches(local):
            phases += [p for p in entry["phases"] if p not in phases]
    return phases


ANY = "all"  # a workflow_dispatch choice that selects everything


def plan_jobs(families: dict[str, list[list[str]]], phases: Sequence[int] | None, cuda: str = ANY, python: str = ANY,
              target: str = ANY) -> list[dict[str, str]]:
    """One job per (CUDA, Python) family holding cells of the given phases (None: every cell): its
    build and test arguments. ``families`` maps each phase, and "*", to its families ([cuda, python])."""
    chosen: dict[tuple[str, str], list[int]] = {}
    for ph in ["*"] if phases is None else phases:
        for c, py in families.get(str(ph), []):
            if cuda in (ANY, c) and python in (ANY, py):
                chosen.setdefault((c, py), []).extend([] if ph == "*" else [ph])
    jobs = []
    for (c, py), phs in chosen.items():
        sel = [a for ph in phs for a in ("--phase", str(ph))] + ["--cuda", c]
        sel += [] if target == ANY else ["--target", target]
        jobs.append({
            "name": f"CUDA {c}, Python {py}" + (f" (phase {', '.join(map(str, phs))})" if phs else ""),
            "id": f"{c if c == 'cpu' else 'cu' + c}-py{py}",
            "build": " ".join([*sel, "--python", py]),
            "session": f"gpu_smoke-{py}",  # the session names the Python; the rest narrows within it
            "test": " ".join(sel),
        })
    return jobs


def main(argv: Sequence[str]) -> int:
    """`python -m imagematrix.cron plan`: the workflow's gate. Reads IMAGEMATRIX_SCHEDULE (JSON: timezone,
    runs, families per phase), FIRED (the cron that started a scheduled run, empty otherwise) and the
    dispatch inputs PHASE, CUDA, PYTHON, TARGET; prints `jobs=[...]` for $GITHUB_OUTPUT."""
    if list(argv) != ["plan"]:
        print("usage: python -m imagematrix.cron plan  (env: IMAGEMATRIX_SCHEDULE, FIRED, PHASE, CUDA, PYTHON, TARGET)",
              file=sys.stderr)
        return 2
    sched = json.loads(os.environ["IMAGEMATRIX_SCHEDULE"])
    fired = os.environ.get("FIRED", "")
    if fired:
        phases = due(sched["runs"], sched["timezone"], fired, datetime.now(timezone.utc))
        jobs = plan_jobs(sched["families"], phases)
        print(f"scheduled run ({fired} UTC): phases due {phases or 'none'}", file=sys.stderr)
    else:
        choice = {k: os.environ.get(k.upper(), "") or ANY for k in ("phase", "cuda", "python", "target")}
        for key, value in choice.items():
            if value != ANY and value not in sched["choices"][key]:
                print(f"{key} {value!r} is not in the matrix (choices: {', '.join(sched['choices'][key])})",
                      file=sys.stderr)
                return 2
        phases = None if choice["phase"] == ANY else [int(choice["phase"])]
        jobs = plan_jobs(sched["families"], phases, choice["cuda"], choice["python"], choice["target"])
    print(f"jobs={json.dumps(jobs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
