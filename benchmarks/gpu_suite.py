"""Wall time of the GPU suite: smoke and full, cold and warm, with pytest-xdist.

    python benchmarks/gpu_suite.py --cell cell.json --workers 4,auto --out bench/

cold = empty TORCH_EXTENSIONS_DIR / TRITON_CACHE_DIR / TORCHINDUCTOR_CACHE_DIR;
warm = the same dirs again right after (what a runner that persists them
sees). "full" is the whole suite (smoke and full markers). The OS page cache
stays warm throughout: cold means compile caches, not disk. Stdlib only, so it
runs with the interpreter under test (no imagematrix install needed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "tests" / "gpu"
SELECT = {"smoke": "smoke", "full": "smoke or full"}
CACHE_VARS = ("TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")


def counts(junit: Path) -> dict[str, int]:
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {k: 0 for k in ("tests", "failures", "errors", "skipped")}
    for s in suites:
        for k in total:
            total[k] += int(s.get(k, 0))
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (probes run in their own sessions, so a group kill misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def run_once(args, suite: str, workers: str, caches: Path, label: str) -> dict:
    env = dict(os.environ)
    for var in CACHE_VARS:
        env[var] = str(caches / var.lower())
    junit = args.out / f"{label}.xml"
    junit.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE),
        "-m",
        SELECT[suite],
        "--cell",
        str(args.cell),
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        "-o",
        "junit_logging=system-out",
        "--durations=12",
    ]
    if workers != "0":
        cmd += ["-n", workers, "--dist", "loadgroup"]
    cmd += args.pytest_args
    start = time.monotonic()
    with (args.out / f"{label}.log").open("w") as sink:
        sink.write(" ".join(cmd) + "\n\n")
        sink.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            for pid in [*descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
            sink.write(f"\n[killed after {args.run_timeout}s]\n")
    wall = time.monotonic() - start
    row = {
        "suite": suite,
        "workers": workers,
        "cache": label.rsplit("-", 1)[-1],
        "seconds": round(wall, 1),
        "rc": rc,
        **counts(junit),
    }
    print(
        f"{suite:5} -n {workers:4} {row['cache']:4} {wall:7.1f}s  rc={rc} passed={row.get('passed')} "
        f"skipped={row.get('skipped')} failed={row.get('failures')} errors={row.get('errors')}",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cell",
        type=Path,
        required=True,
        help="cell manifest (describe_host.py output in host mode)",
    )
    parser.add_argument(
        "--workers",
        default="auto",
        help="comma list of -n values; 0 runs without xdist (default: auto)",
    )
    parser.add_argument("--suites", default="smoke,full", help="comma list of smoke, full (default: both)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("gpu-bench"),
        help="logs, JUnit XML, results.json and the caches",
    )
    parser.add_argument("--run-timeout", type=float, default=900, help="kill one pytest run after this many seconds")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.out.chmod(0o755)  # the suite builds as an unprivileged uid below it when run as root
    rows = []
    for workers in args.workers.split(","):
        for suite in args.suites.split(","):
            if suite not in SELECT:
                parser.error(f"--suites: {suite!r} is not one of {', '.join(SELECT)}")
            caches = args.out / f"cache-{suite}-n{workers}"
            shutil.rmtree(caches, ignore_errors=True)
            caches.mkdir(parents=True)
            caches.chmod(0o755)  # the suite builds as an unprivileged uid when run as root
            for temp in ("cold", "warm"):
                rows.append(run_once(args, suite, workers, caches, f"{suite}-n{workers}-{temp}"))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| suite | -n | caches | wall s | passed | skipped | failed | errors |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['suite']} | {r['workers']} | {r['cache']} | {r['seconds']} | {r.get('passed')} | "
            f"{r.get('skipped')} | {r.get('failures')} | {r.get('errors')} |"
        )
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
