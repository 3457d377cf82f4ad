"""How long verifying takes: the check of one result and its chain in-process (both statements, the SBOM,
a provenance and the audit link), and `imagematrix verify` as a command on an envelope file (interpreter
start, imports, key, check), each the median of several runs.

    python benchmarks/verify.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagematrix.evidence import attest, chain, sbom  # noqa: E402
from imagematrix.evidence.store import write_attestation  # noqa: E402
from imagematrix.evidence.verify import read_envelope, verify_envelopes  # noqa: E402

DIGEST = "sha256:" + "ab" * 32
RUN = {
    "state": "passed",
    "suite": "smoke",
    "passed": 33,
    "failed": 0,
    "skipped": 36,
    "require_gpu": True,
    "image_id": "sha256:" + "ee" * 32,
    "key": {"value": "k" * 64, "image": DIGEST, "suite": "5" * 64, "host": "7" * 64},
    "gpu_info": {
        "driver": "580.159.04",
        "driver_cuda": "13.0",
        "devices": [{"name": "H100", "compute_capability": "9.0"}],
    },
    "torch": {"version": "2.15.0", "distribution": "torch", "distribution_version": "2.15.0"},
    "finished": "2026-12-01T02:10:00Z",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imagematrix-verify-"))
    attest.keygen(work)
    signer = attest.signer(str(work / attest.PRIVATE_NAME))
    tests = {"passed": [f"test_{i}" for i in range(40)], "failed": []}
    envelopes = [attest.sign(st, signer) for _, st in attest.result_statements("r/x", DIGEST, "c", RUN, tests)]
    bom = sbom.bom("r/x", DIGEST, {"python": {"torch": "2.15.0", **{f"pkg{i}": "1.0" for i in range(300)}}})
    sbom_envelope = attest.sign(attest.sbom_statement("r/x", DIGEST, bom), signer)
    provenance = {"_type": attest.STATEMENT_TYPE, "subject": [{"digest": {"sha256": "ab" * 32}}]}
    provenance["predicateType"] = "https://slsa.dev/provenance/v0.2"
    path = write_attestation(work, "c", "smoke", "k" * 64, envelopes)

    def in_process() -> float:
        started = time.perf_counter()
        key = attest.public_key(work / attest.PUBLIC_NAME)
        answer = verify_envelopes(read_envelope(path), key, DIGEST, cc="9.0", driver="580", suite="smoke")
        assert answer.ok and answer.claim is not None, answer.lines
        links = chain.check_chain(
            DIGEST,
            answer.claim,
            attest.open_envelope(sbom_envelope, key),
            provenance,
            RUN["image_id"],
            {"digest": DIGEST, "image_id": RUN["image_id"]},
        )
        assert chain.holds(links), [link.line() for link in links]
        return time.perf_counter() - started

    in_process()  # imports and first use outside the measurement
    inside = statistics.median(in_process() for _ in range(args.runs))
    command = [sys.executable, "-m", "imagematrix", "verify", str(path), "--digest", DIGEST]
    command += ["--key", str(work / attest.PUBLIC_NAME), "--gpu", "H100", "--driver", "580"]
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stdout + done.stderr
    print(f"the check of a result and its chain, in-process: {inside * 1000:.0f} ms (median of {args.runs})")
    print(f"`imagematrix verify FILE --digest ... --key ...` as a command: {statistics.median(times):.2f} s")
    print(f"  ({done.stdout.strip().splitlines()[0][:110]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
