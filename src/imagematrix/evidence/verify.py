"""`imagematrix verify`: did this image pass the GPU suite, on a GPU and driver like mine, by our key?

Offline against the registry that holds the image: its digest, its attestations (an OCI referrer, or the
``sha256-<hex>.att`` tag cosign uses), each envelope's signature against the given public key, the
statement's subject against the digest, and the result against what is asked (suite, compute
capability, driver branch, age). The answer names the first check that refused, for each attestation
found; "covers" means measured on the same compute capability and driver branch, never predicted.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagematrix.core.errors import UsageError
from imagematrix.evidence import attest
from imagematrix.evidence.registry import Found


@dataclass(frozen=True)
class Answer:
    ok: bool
    digest: str
    lines: tuple[str, ...]


def verify_envelopes(
    envelopes: Iterable[Mapping[str, Any] | Found],
    key_path: Path | Any,
    digest: str,
    *,
    cc: str | None = None,
    driver: str | None = None,
    suite: str | None = None,
    max_age_days: float | None = None,
    run_key: Mapping[str, Any] | None = None,
) -> Answer:
    """The first envelope that holds for everything asked, or why each did not (with where it was found).
    ``key_path``: a public key file, or a key already read (``attest.public_key``, a signer's public key)."""
    key = attest.public_key(Path(key_path)) if isinstance(key_path, (str, Path)) else key_path
    refusals: list[str] = []
    found = 0
    for item in envelopes:
        found += 1
        envelope, where = (item.envelope, f" ({item.where})") if isinstance(item, Found) else (item, "")
        try:
            verified = attest.open_envelope(envelope, key)
            if verified.statement.get("predicateType") != attest.PREDICATE_TYPE:
                continue  # an SBOM or another attestation: not a test result
            attest.check(
                verified, digest, cc=cc, driver=driver, suite=suite, max_age_days=max_age_days, run_key=run_key
            )
        except attest.VerifyError as exc:
            refusals.append(f"refused by {exc.part}: {exc.detail}{where}")
            continue
        p = verified.predicate
        gpus = ", ".join(f"{g.get('name')} ({g.get('computeCapability')})" for g in p.get("gpus") or []) or "no GPU"
        return Answer(
            True,
            digest,
            (
                f"verified: {digest[:19]} passed the {p.get('suite')} suite "
                f"({p.get('passed')} passed, {p.get('skipped')} skipped) on {gpus}, driver "
                f"{p.get('driver')} (CUDA {p.get('driverCuda')}), {p.get('finished')}; signed by "
                f"key {verified.keyid[:16]}{where}",
            ),
        )
    if not found:
        return Answer(False, digest, (f"no attestation found for {digest[:19]}",))
    return Answer(False, digest, tuple(refusals) or (f"none of the {found} attestation(s) is a GPU test result",))


def gpu_cc(gpu: str | None, cc: str | None) -> str | None:
    if gpu and cc:
        raise UsageError("--gpu and --cc name the same thing; give one")
    if gpu:
        from imagematrix.oracle.gpus import gpu as find

        try:
            g = find(gpu)
        except KeyError:
            raise UsageError(f"--gpu {gpu!r} is not in the catalogue; give its compute capability with --cc") from None
        return f"{g.cc[0]}.{g.cc[1]}"
    return cc


MAX_ENVELOPE_FILE = 64 << 20


def read_envelope(path: Path) -> list[dict]:
    """The envelopes in a file (one JSON document, or JSON lines); a path a record names is read with
    the same limits: a regular file of bounded size (never a FIFO or a device)."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENVELOPE_FILE:
            raise UsageError(
                f"{path} is not an envelope file (not a regular file, or over {MAX_ENVELOPE_FILE >> 20} MiB)"
            )
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else [json.loads(text)]
        )
    except ValueError as exc:
        raise UsageError(f"{path} is not a JSON envelope: {exc}") from None
