"""Signed test attestations: in-toto Statements whose subject is an image digest and whose predicate is a
GPU suite's result, in DSSE envelopes signed with the team's ed25519 key (securesystemslib).

Each result is said twice, both signed with the same key: in in-toto's standard test-result predicate
(``TEST_RESULT_TYPE``), which policy engines and ``gh attestation verify --predicate-type`` read, with
what only this project knows (the suite's hash, the GPUs, the driver, the reuse key, the torch imported)
as annotations of its ``configuration``; and in the project's own predicate (``PREDICATE_TYPE``), which
says the same in fields of its own. ``claim_of`` reads either into one ``Claim``; ``check`` holds a
claim to what is asked. docs/publishing.md shows both. The private key comes from a file
(``--signing-key``) or the environment (``IMAGEMATRIX_SIGNING_KEY``: the PEM itself, or
``IMAGEMATRIX_SIGNING_KEY_FILE``), never from the matrix; the public key is what `verify` and
`publish` are given.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from imagematrix.core import files
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.version import __version__

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://imagematrix.dev/attestation/gpu-test/v1"
TEST_RESULT_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
RESULT_TYPES = (TEST_RESULT_TYPE, PREDICATE_TYPE)
SUITE_DESCRIPTOR = "imagematrix-gpu-suite"  # the configuration entry of a test-result that carries our facts
TORCH_DESCRIPTOR = "torch"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
KEY_ENV, KEY_FILE_ENV = "IMAGEMATRIX_SIGNING_KEY", "IMAGEMATRIX_SIGNING_KEY_FILE"
PRIVATE_NAME, PUBLIC_NAME = "imagematrix.key", "imagematrix.pub"


class VerifyError(ImagematrixError):
    """An attestation that does not hold; ``part`` says which check refused it."""

    def __init__(self, part: str, message: str):
        self.part, self.detail = part, message
        super().__init__(f"{part}: {message}")


def keygen(directory: Path) -> tuple[Path, Path]:
    """A new ed25519 pair: ``imagematrix.key`` (PKCS#8 PEM, mode 0600) and ``imagematrix.pub``; never overwrites."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    there = [p for p in (private, public) if os.path.lexists(p)]
    if there:
        raise UsageError(f"{', '.join(map(str, there))} already exist(s); keygen never overwrites a key")
    key = Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def _crypto():
    try:
        from cryptography.hazmat.primitives.serialization import (
            load_pem_private_key,
            load_pem_public_key,
        )
        from securesystemslib.signer import CryptoSigner, SSlibKey
    except ImportError as exc:
        raise UsageError(
            f"signing and verifying need cryptography and securesystemslib ({exc}): "
            "pip install imagematrix (they are its dependencies)"
        ) from None
    return load_pem_private_key, load_pem_public_key, CryptoSigner, SSlibKey


def signer(path: str | None = None):
    """The signer from ``path``, else from the environment; None when no key is configured."""
    pem: bytes | None = None
    source = path or os.environ.get(KEY_FILE_ENV)
    if source:
        pem = _key_bytes(source, "the signing key")
    elif os.environ.get(KEY_ENV):
        pem = os.environ[KEY_ENV].encode()
    if pem is None:
        return None
    load_pem_private_key, _, CryptoSigner, SSlibKey = _crypto()
    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"the signing key ({source or KEY_ENV}) is not an unencrypted PEM private key: {exc}"
        ) from None
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))  # type: ignore[arg-type]


def _key_bytes(path: str | os.PathLike[str], what: str) -> bytes:
    """A key file, read as a file we did not write: a regular file of at most 64 KiB (never a FIFO or a
    device: ``/dev/zero`` would grow without end), else UsageError naming it."""
    try:
        return files.read_bytes(path, "key", f"{what} {os.fspath(path)[:200]}")
    except FileNotFoundError:
        raise UsageError(f"cannot read {what} {os.fspath(path)[:200]}: no such file") from None
    except files.Unreadable as exc:
        raise UsageError(str(exc)) from None


def public_key(path: Path):
    _, load_pem_public_key, _, SSlibKey = _crypto()
    pem = _key_bytes(path, "the public key")
    try:
        return SSlibKey.from_crypto(load_pem_public_key(pem))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not a PEM public key: {exc}") from None


def statement(subject: str, digest: str, cell: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The Statement for one suite run (a record's ``suites`` entry) of the image ``subject@digest``."""
    info = run.get("gpu_info") or {}
    key = run.get("key") or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": run.get("state"),
            "suite": run.get("suite"),
            "cell": cell,
            "passed": run.get("passed", 0),
            "failed": run.get("failed", 0),
            "skipped": run.get("skipped", 0),
            "requireGpu": bool(run.get("require_gpu")),
            "suiteHash": key.get("suite"),
            "key": key,
            "gpus": [
                {"name": d.get("name"), "computeCapability": d.get("compute_capability")}
                for d in info.get("devices") or []
            ],
            "driver": info.get("driver"),
            "driverCuda": info.get("driver_cuda"),
            "libcuda": info.get("libcuda"),
            "imageId": run.get("image_id"),
            "finished": run.get("finished"),
            "reusedFrom": run.get("reused_from"),
            "torch": run.get("torch"),
            "imagematrix": __version__,
        },
    }


def test_result_statement(
    subject: str, digest: str, cell: str, run: Mapping[str, Any], tests: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The same run in in-toto's test-result/v0.1. ``result`` is "PASSED" or "FAILED" (docs/publishing.md
    says why that spelling); every fact of ours rides in the annotations of the suite's configuration
    entry, whose digest is the suite's hash; the torch imported is an entry of its own (a purl)."""
    info = run.get("gpu_info") or {}
    key = run.get("key") or {}
    suite_hash = str(key.get("suite") or "")
    facts = {
        "suite": run.get("suite"),
        "cell": cell,
        "requireGpu": bool(run.get("require_gpu")),
        "runKey": key.get("value"),
        "passed": run.get("passed", 0),
        "failed": run.get("failed", 0),
        "skipped": run.get("skipped", 0),
        "gpus": [
            {"name": d.get("name"), "computeCapability": d.get("compute_capability")} for d in info.get("devices") or []
        ],
        "driver": info.get("driver"),
        "driverCuda": info.get("driver_cuda"),
        "libcuda": info.get("libcuda"),
        "imageId": run.get("image_id"),
        "finished": run.get("finished"),
        "imagematrix": __version__,
    }
    suite_entry: dict[str, Any] = {
        "name": SUITE_DESCRIPTOR,
        "uri": f"pkg:pypi/imagematrix@{__version__}",
        "annotations": {k: v for k, v in facts.items() if v is not None},
    }
    if len(suite_hash) == 64:
        suite_entry["digest"] = {"sha256": suite_hash}
    configuration = [suite_entry]
    torch = run.get("torch") or {}
    if torch.get("distribution_version"):
        configuration.append(
            {
                "name": TORCH_DESCRIPTOR,
                "uri": f"pkg:pypi/torch@{torch['distribution_version']}",
                "annotations": {k: v for k, v in torch.items() if isinstance(v, str)},
            }
        )
    tests = tests or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": TEST_RESULT_TYPE,
        "predicate": {
            "result": "PASSED" if run.get("state") == "passed" else "FAILED",
            "configuration": configuration,
            "passedTests": list(tests.get("passed", [])),
            "warnedTests": [],
            "failedTests": list(tests.get("failed", [])),
        },
    }


def result_statements(
    subject: str, digest: str, cell: str, run: Mapping[str, Any], tests: Mapping[str, list[str]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Both statements of one run, as (predicate type, statement), the standard one first."""
    return [
        (TEST_RESULT_TYPE, test_result_statement(subject, digest, cell, run, tests)),
        (PREDICATE_TYPE, statement(subject, digest, cell, run)),
    ]


def sbom_statement(subject: str, digest: str, bom: Mapping[str, Any]) -> dict[str, Any]:
    """The Statement that carries an image's CycloneDX SBOM (cosign's ``--type cyclonedx``)."""
    from imagematrix.evidence.sbom import PREDICATE_TYPE as CYCLONEDX

    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": CYCLONEDX,
        "predicate": dict(bom),
    }


def sign(doc: Mapping[str, Any], key, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """``doc`` as a DSSE envelope signed by ``key`` (a securesystemslib signer)."""
    from securesystemslib.dsse import Envelope

    envelope = Envelope(
        payload=json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(),
        payload_type=payload_type,
        signatures={},
    )
    envelope.sign(key)
    return envelope.to_dict()


@dataclass(frozen=True)
class Verified:
    statement: dict[str, Any]
    keyid: str

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement.get("predicate") or {}


def open_envelope(envelope: Mapping[str, Any], key) -> Verified:
    """The Statement inside ``envelope`` if ``key`` signed it; VerifyError("signature") otherwise."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    try:
        env = Envelope.from_dict(copy.deepcopy(dict(envelope)))  # from_dict takes its input apart
        env.verify([key], 1)
    except VerificationError as exc:
        raise VerifyError("signature", f"not signed by this key ({key.keyid[:16]}): {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # securesystemslib assumes the shape it reads
        raise VerifyError("envelope", f"not a DSSE envelope ({type(exc).__name__}: {exc})") from None
    if env.payload_type != PAYLOAD_TYPE:
        raise VerifyError("envelope", f"payload type {env.payload_type!r}, not {PAYLOAD_TYPE}")
    try:
        doc = json.loads(env.payload)
    except ValueError as exc:
        raise VerifyError("statement", f"the signed payload is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise VerifyError("statement", "the signed payload is not an in-toto Statement v1")
    shape = _statement_shape(doc)
    if shape:
        raise VerifyError("statement", f"signed by this key, but not a statement of the shape verify reads: {shape}")
    return Verified(doc, key.keyid)


def _statement_shape(doc: dict[str, Any]) -> str | None:
    """Why a signed statement is not of the shape the checks read (None: it is). A signature proves who
    signed, not that the signer wrote what we expect: each field is typed before it is used."""
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not all(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) and isinstance(s["digest"].get("sha256", ""), str)
        for s in subjects
    ):
        return "'subject' is not a list of objects with a sha256 digest"
    if not isinstance(doc.get("predicateType"), str) or not isinstance(doc.get("predicate"), dict):
        return "'predicateType' is not a string or 'predicate' not an object"
    p = doc["predicate"]
    if doc["predicateType"] == TEST_RESULT_TYPE:
        return _test_result_shape(p)
    gpus = p.get("gpus", [])
    if not isinstance(gpus, list) or not all(
        isinstance(g, dict) and all(isinstance(g.get(k), (str, type(None))) for k in ("name", "computeCapability"))
        for g in gpus
    ):
        return "'gpus' is not a list of objects with a name and a compute capability"
    if not isinstance(p.get("key", {}), dict):
        return "'key' is not an object"
    for name in ("result", "suite", "driver", "driverCuda", "finished"):
        if not isinstance(p.get(name), (str, type(None))):
            return f"{name!r} is not a string"
    return None


def _test_result_shape(p: dict[str, Any]) -> str | None:
    """in-toto's test-result/v0.1 as its spec and protobuf define it: ``result`` a string, ``configuration``
    a list of ResourceDescriptors (each with a uri, a digest or content), the test lists of strings; and
    our entry's annotations typed as ``statement`` types its fields."""
    if not isinstance(p.get("result"), str):
        return "'result' is not a string"
    config = p.get("configuration")
    if not isinstance(config, list) or not config:
        return "'configuration' is not a non-empty list"
    for i, d in enumerate(config):
        if not isinstance(d, dict) or not any(
            isinstance(d.get(k), (str, dict)) and d.get(k) for k in ("uri", "digest", "content")
        ):
            return f"configuration[{i}] is not a resource descriptor (it needs a uri, a digest or content)"
        if not isinstance(d.get("annotations", {}), dict) or not isinstance(d.get("digest", {}), dict):
            return f"configuration[{i}]: 'annotations' or 'digest' is not an object"
    for name in ("passedTests", "warnedTests", "failedTests"):
        tests = p.get(name, [])
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            return f"{name!r} is not a list of strings"
    ours = [d for d in config if d.get("name") == SUITE_DESCRIPTOR]
    if len(ours) > 1:
        return f"{len(ours)} configuration entries named {SUITE_DESCRIPTOR!r}: which one holds is ambiguous"
    if ours:
        return _statement_shape(
            {"subject": [], "predicateType": PREDICATE_TYPE, "predicate": ours[0].get("annotations") or {}}
        )
    return None


@dataclass(frozen=True)
class Claim:
    """What a verified result statement says, whichever predicate says it."""

    predicate_type: str
    passed: bool  # the result is a pass ("passed" or "PASSED")
    result: str  # as written
    require_gpu: bool
    suite: str | None
    run_key: str | None
    gpus: tuple[tuple[str | None, str | None], ...]  # (name, compute capability)
    driver: str | None
    driver_cuda: str | None
    finished: str | None
    passed_count: Any
    skipped_count: Any
    torch: dict[str, str]
    image_id: str | None = None  # the local image id the suite ran

    @property
    def standard(self) -> bool:
        return self.predicate_type == TEST_RESULT_TYPE

    @property
    def reads(self) -> str:
        return "in-toto test-result/v0.1" if self.standard else "imagematrix gpu-test/v1"


def claim_of(verified: Verified) -> Claim:
    """The claim of a result statement (either predicate); VerifyError("predicate") for another kind."""
    st, p = verified.statement, verified.predicate
    ptype = st.get("predicateType")
    if ptype == TEST_RESULT_TYPE:
        config = p.get("configuration") or []
        facts = next((d.get("annotations") or {} for d in config if d.get("name") == SUITE_DESCRIPTOR), {})
        torch_entry = next((d for d in config if d.get("name") == TORCH_DESCRIPTOR), None)
        torch = {k: v for k, v in ((torch_entry or {}).get("annotations") or {}).items() if isinstance(v, str)}
        result = str(p.get("result"))
        passed = result == "PASSED" and not p.get("failedTests") and not p.get("warnedTests")
    elif ptype == PREDICATE_TYPE:
        facts = p
        torch = (
            {k: v for k, v in (p.get("torch") or {}).items() if isinstance(v, str)}
            if isinstance(p.get("torch"), dict)
            else {}
        )
        result = str(p.get("result"))
        passed = result == "passed"
    else:
        raise VerifyError("predicate", f"type {str(ptype)[:120]!r} is not a GPU test result")
    key = facts.get("runKey") if ptype == TEST_RESULT_TYPE else (facts.get("key") or {}).get("value")
    return Claim(
        predicate_type=ptype,
        passed=passed,
        result=result,
        require_gpu=facts.get("requireGpu") is True,
        suite=facts.get("suite"),
        run_key=key if isinstance(key, str) else None,
        gpus=tuple((g.get("name"), g.get("computeCapability")) for g in facts.get("gpus") or []),
        driver=facts.get("driver"),
        driver_cuda=facts.get("driverCuda"),
        finished=facts.get("finished"),
        passed_count=facts.get("passed"),
        skipped_count=facts.get("skipped"),
        torch=torch,
        image_id=facts.get("imageId") if isinstance(facts.get("imageId"), str) else None,
    )


def check(
    verified: Verified,
    digest: str,
    *,
    cc: str | None = None,
    driver: str | None = None,
    suite: str | None = None,
    max_age_days: float | None = None,
    run_key: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Claim:
    """That a verified test attestation (either predicate) covers what is asked: the subject is ``digest``,
    the result passed with the GPU checks required, on the same compute capability and driver branch, of
    the suite asked, not older than ``max_age_days``, for the reuse key ``run_key`` (image, suite and host)
    when given. "Covers" means measured: a prediction never counts. Returns the claim it held."""
    st = verified.statement
    c = claim_of(verified)
    want = digest.removeprefix("sha256:")
    subjects = [s.get("digest", {}).get("sha256") for s in st.get("subject") or [] if isinstance(s, dict)]
    if want not in subjects:
        raise VerifyError(
            "subject",
            f"the statement is for {', '.join(f'sha256:{s[:12]}' for s in subjects if s)}, not sha256:{want[:12]}",
        )
    if not c.passed or not c.require_gpu:
        raise VerifyError(
            "result",
            f"the {c.suite} suite {c.result}"
            + ("" if c.require_gpu else " without --require-gpu (GPU checks may have skipped)"),
        )
    if suite and c.suite != suite:
        raise VerifyError("suite", f"the attestation is for the {c.suite} suite, not {suite}")
    if run_key is not None and c.run_key != run_key.get("value"):
        raise VerifyError(
            "key",
            f"the attestation is for run key {str(c.run_key)[:12]}, not the "
            f"recorded {str(run_key.get('value'))[:12]} (another image, suite or host)",
        )
    if cc and not any(g_cc == cc for _, g_cc in c.gpus):
        seen = ", ".join(f"{n} ({g_cc})" for n, g_cc in c.gpus) or "no GPU"
        raise VerifyError("gpu", f"measured on {seen}, not on compute capability {cc}")
    if driver and str(c.driver or "").split(".")[0] != driver.split(".")[0]:
        raise VerifyError("driver", f"measured with driver {c.driver}, not the {driver.split('.')[0]} branch")
    if max_age_days is not None:
        finished = str(c.finished or "")
        try:
            when = datetime.fromisoformat(finished.replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            raise VerifyError("expired", f"no time of the run ({finished[:40]!r})") from None
        if when.tzinfo is None:
            raise VerifyError("expired", f"the run's time {finished[:40]!r} has no zone: its age is unknown")
        if (now or datetime.now(timezone.utc)) - when > timedelta(days=max_age_days):
            raise VerifyError("expired", f"measured {finished}, more than {max_age_days:g} days ago")
    return c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
