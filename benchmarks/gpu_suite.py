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
import json
import os
import shutil
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


def run_once(args, suite: str, workers: str, caches: Path, label: str) -> dict:
    env = dict(os.environ)
    for var in CACHE_VARS:
        env[var] = str(caches / var.lower())
    junit = args.out / f"{label}.xml"
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
    ]
    if workers != "0":
        cmd += ["-n", workers, "--dist", "loadgroup"]
    cmd += args.pytest_args
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=args.run_timeout
        )
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = (
            "timeout",
            f"{exc.stdout or ''}{exc.stderr or ''}\n[killed after {args.run_timeout}s]",
        )
        out = out if isinstance(out, str) else out.decode(errors="replace")
    wall = time.monotonic() - start
    (args.out / f"{label}.log").write_text(" ".join(cmd) + "\n\n" + out)
    row = {
        "suite": suite,
        "workers": workers,
        "cache": label.rsplit("-", 1)[-1],
        "seconds": round(wall, 1),
        "rc": proc.returncode,
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
    parser.add_argument(
        "--suites", default="smoke,full", help="comma list of smoke, full (default: both)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("gpu-bench"),
        help="logs, JUnit XML, results.json and the caches",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=900, help="kill one pytest run after this many seconds"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
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
            f"| {r['suite']} | {r['workers']} | {r['cache']} | {r['seconds']} | {r.get('passed')} | {r.get('skipped')} | {r.get('failures')} | {r.get('errors')} |"
        )
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
