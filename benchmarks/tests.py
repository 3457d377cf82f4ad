"""The test command's time by tier, and what each tier collects (so a change that drops a test shows).

    python benchmarks/tests.py                 # collected counts, the fast and the whole unit tier
    python benchmarks/tests.py --integration   # ... and the integration tier as scripts/test.sh runs it

Each tier runs as scripts/test.sh runs it (unit: -n 2; integration: -n 2 --dist loadfile, with
IMAGEMATRIX_REQUIRE_DOCKER=1, so it needs the prerequisites scripts/test.sh makes). Prints one line per
tier: wall time, outcome counts and the 5 slowest tests.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = {
    "unit, fast (the inner loop)": ["tests/unit", "-m", "not slow", "-n", "2"],
    "unit, all": ["tests/unit", "-n", "2"],
    "integration": ["tests/integration", "-n", "2", "--dist", "loadfile"],
}
MARKERS = ("slow", "docker", "not slow and not docker")


def pytest(*args: str) -> tuple[float, str]:
    env = {**os.environ, "IMAGEMATRIX_REQUIRE_DOCKER": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:randomly"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - started, done.stdout + done.stderr


def collected(*args: str) -> int:
    _, out = pytest("--collect-only", "-q", *args)
    found = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", out)
    return int(found.group(1)) if found else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--integration", action="store_true", help="also run the integration tier (minutes)")
    args = parser.parse_args()
    print(f"collected: {collected('tests/unit', 'tests/integration')} tests in all")
    for marker in MARKERS:
        print(f"  -m {marker!r}: {collected('tests/unit', 'tests/integration', '-m', marker)}")
    failed = False
    for name, tier in TIERS.items():
        if name == "integration" and not args.integration:
            print(f"{name}: not run (--integration)")
            continue
        seconds, out = pytest(*tier, "-q", "--durations=5")
        ends = re.findall(r"^=*\s*(\d+ (?:passed|failed|error).*?)\s*=*$", out, re.MULTILINE)
        summary = ends[-1] if ends else "no summary: " + (out.strip().splitlines() or ["no output"])[-1][:200]
        failed |= " failed" in summary or " error" in summary
        print(f"{name}: {seconds:.0f}s  ({summary})")
        slowest = re.findall(r"^\s*([\d.]+s) (call|setup|teardown)\s+(\S+)", out, re.MULTILINE)
        for took, phase, test in slowest[:5]:
            print(f"    {took:>8} {phase:<8} {test}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
