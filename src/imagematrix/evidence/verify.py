"""`imagematrix verify`: did this image pass the GPU suite, on a GPU and driver like mine, by our key?

Offline against the registry that holds the image: its digest, its attestations (an OCI referrer, or the
``sha256-<hex>.att`` tag cosign uses), each envelope's signature against the given public key, the
statement's subject against the digest, and the result against what is asked (suite, compute
capability, driver branch, age). The answer names the first check that refused, for each attestation
found; "covers" means measured on the same compute capability and driver branch, never predicted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imagematrix.core import files
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.evidence import attest
from imagematrix.evidence.registry import Found


@dataclass(frozen=True)
class Answer:
    ok: bool
    digest: str
    lines: tuple[str, ...]
    claim: attest.Claim | None = None  # what the statement that held says


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
            if verified.statement.get("predicateType") not in attest.RESULT_TYPES:
                continue  # an SBOM or another attestation: not a test result
            c = attest.check(
                verified, digest, cc=cc, driver=driver, suite=suite, max_age_days=max_age_days, run_key=run_key
            )
        except attest.VerifyError as exc:
            refusals.append(f"refused by {exc.part}: {exc.detail}{where}")
            continue
        gpus = ", ".join(f"{n} ({g_cc})" for n, g_cc in c.gpus) or "no GPU"
        return Answer(
            True,
            digest,
            (
                f"verified: {digest[:19]} passed the {c.suite} suite "
                f"({c.passed_count} passed, {c.skipped_count} skipped) on {gpus}, driver "
                f"{c.driver} (CUDA {c.driver_cuda}), {c.finished}; read from its {c.reads} statement, signed by "
                f"key {verified.keyid[:16]}{where}",
            ),
            c,
        )
    if not found:
        return Answer(False, digest, (f"no attestation found for {digest[:19]}",))
    return Answer(False, digest, tuple(refusals) or (f"none of the {found} attestation(s) is a GPU test result",))


def verify_asked(
    ref: str,
    key: str | None,
    *,
    digest: str | None = None,
    cc: str | None = None,
    driver: str | None = None,
    suite: str | None = None,
    max_age_days: float | None = None,
) -> Answer:
    """`imagematrix verify`: ``ref`` is an image in a registry (its attestations are fetched) or a signed
    envelope file (then ``digest`` names the image its statement must be about)."""
    if not key:
        raise UsageError("--key FILE: the public key the results must be signed with")
    public = attest.public_key(Path(key))  # read and checked before anything is fetched
    asked: dict[str, Any] = {"cc": cc, "driver": driver, "suite": suite, "max_age_days": max_age_days}
    if ref.endswith((".json", ".jsonl")) and Path(ref).is_file():  # a signed envelope file, e.g. from a GPU runner
        if not digest:
            raise UsageError(
                f"{ref} is an envelope file: give --digest, the image digest (or local image id) its "
                "statement must be about"
            )
        return verify_envelopes(read_envelope(Path(ref)), public, digest, **asked)
    if not ref:
        raise UsageError(
            "give the image to verify: imagematrix verify REF --key FILE (or an envelope FILE --digest SHA256)"
        )
    from imagematrix.evidence.registry import attestations_of

    discovered = attestations_of(ref)
    answer = verify_envelopes(discovered.found, public, discovered.digest, **asked)
    return replace(answer, lines=(*answer.lines, *(f"note: {n}" for n in discovered.notes)))


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


def read_envelope(path: Path) -> list[dict]:
    """The envelopes in a file (one JSON document, or JSON lines), read as a file we did not write
    (``core.files``): a regular file of bounded size, never a FIFO or a device, JSON within its depth."""
    try:
        data = files.read_bytes(path, "envelope", "it")
        if Path(path).suffix == ".jsonl":
            return [files.parse_json(line, "a line") for line in data.splitlines() if line.strip()]
        return [files.parse_json(data, "it")]
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except files.Unreadable as exc:
        raise UsageError(f"{path} is not an envelope file ({exc})") from None


def verify_chain(ref: str, key: str | None, out: Path, **asked: Any) -> tuple[bool, list[str]]:
    """`imagematrix verify REF --chain`: the result as `verify` checks it, then the links between it, the
    signed SBOM, the build's provenance and the audit (``evidence.chain``); (ok, lines)."""
    from imagematrix.core import status
    from imagematrix.evidence import chain
    from imagematrix.evidence.registry import attestations_of, provenance_of
    from imagematrix.evidence.sbom import PREDICATE_TYPE as CYCLONEDX
    from imagematrix.oracle.audit import load as load_audit

    if not key:
        raise UsageError("--key FILE: the public key the results must be signed with")
    if not ref or (ref.endswith((".json", ".jsonl")) and Path(ref).is_file()):
        raise UsageError(
            "--chain reads the evidence beside an image in its registry: give its reference (REPO@sha256:...)"
        )
    public = attest.public_key(Path(key))
    discovered = attestations_of(ref)
    answer = verify_envelopes(discovered.found, public, discovered.digest, **asked)
    lines = [*answer.lines, *(f"note: {n}" for n in discovered.notes)]
    if not answer.ok or answer.claim is None:
        return False, lines
    sboms = []
    for f in discovered.found:
        try:
            v = attest.open_envelope(f.envelope, public)
        except attest.VerifyError:
            continue
        if v.statement.get("predicateType") == CYCLONEDX:
            sboms.append(v)
    named = [
        v
        for v in sboms
        if any(
            s.get("digest", {}).get("sha256") == discovered.digest.removeprefix("sha256:")
            for s in v.statement.get("subject") or []
            if isinstance(s, dict)
        )
    ]
    sbom = (named or sboms)[0] if (named or sboms) else None
    found = provenance_of(ref, discovered.digest)
    provenance, platforms = found.statement, found.platforms
    published, audit_image = None, None
    try:
        records = status.read_status(out)
    except (ImagematrixError, OSError):
        records = None
    for rec in records.cells.values() if records else ():
        if rec.publish is not None and rec.publish.digest == discovered.digest:
            published = {"digest": rec.publish.digest, "image_id": rec.publish.image_id}
            if rec.publish.image_id and load_audit(out, rec.publish.image_id) is not None:
                audit_image = rec.publish.image_id
    links = chain.check_chain(discovered.digest, answer.claim, sbom, provenance, audit_image, published, platforms)
    return chain.holds(links), [*lines, *(f"chain: {link.line()}" for link in links)]
