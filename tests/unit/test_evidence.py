"""Signed results and SBOMs, offline: a statement signed with one key opens only with it, and each check
of `verify` refuses what it must with its own reason; an SBOM validates and reads back."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from pathlib import Path

import pytest

from imagematrix.core.errors import UsageError
from imagematrix.evidence import attest, sbom
from imagematrix.evidence.registry import Ref, RegistryError, att_tag
from imagematrix.evidence.verify import gpu_cc, verify_envelopes

DIGEST = "sha256:" + "ab" * 32
RUN = {
    "state": "passed",
    "suite": "smoke",
    "passed": 33,
    "failed": 0,
    "skipped": 36,
    "require_gpu": True,
    "key": {"value": "k" * 64, "image": DIGEST, "suite": "s" * 64, "host": "h" * 64},
    "gpu_info": {
        "driver": "580.159.04",
        "driver_cuda": "13.0",
        "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}],
    },
    "finished": "2026-12-01T02:10:00Z",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    attest.keygen(a)
    attest.keygen(b)
    return {
        "private": a / attest.PRIVATE_NAME,
        "public": a / attest.PUBLIC_NAME,
        "other": b / attest.PUBLIC_NAME,
        "other_private": b / attest.PRIVATE_NAME,
    }


def signed(keys, run=RUN, digest=DIGEST, private="private") -> dict:
    return attest.sign(
        attest.statement("127.0.0.1:5000/team/x", digest, "cu13.2-py3.13-devel", run), attest.signer(str(keys[private]))
    )


def answer(keys, envelopes, digest=DIGEST, **asked):
    return verify_envelopes(envelopes, keys["public"], digest, **asked)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(keys, tmp_path):
    assert stat.S_IMODE(os.stat(keys["private"]).st_mode) == 0o600
    assert b"PRIVATE KEY" in keys["private"].read_bytes() and b"PUBLIC KEY" in keys["public"].read_bytes()
    with pytest.raises(UsageError, match="never overwrites"):
        attest.keygen(keys["private"].parent)


def test_the_signing_key_comes_from_a_file_or_the_environment_never_elsewhere(keys, monkeypatch):
    monkeypatch.delenv(attest.KEY_ENV, raising=False)
    monkeypatch.delenv(attest.KEY_FILE_ENV, raising=False)
    assert attest.signer(None) is None
    monkeypatch.setenv(attest.KEY_ENV, keys["private"].read_text())
    from_env = attest.signer(None)
    monkeypatch.setenv(attest.KEY_FILE_ENV, str(keys["other_private"]))  # the file variable wins over the PEM one
    assert attest.signer(None).public_key.keyid != from_env.public_key.keyid
    monkeypatch.setenv(attest.KEY_ENV, "not a key")
    monkeypatch.delenv(attest.KEY_FILE_ENV)
    with pytest.raises(UsageError, match="not an unencrypted PEM private key"):
        attest.signer(None)


def test_a_passing_result_verifies_with_its_key_and_covers_its_gpu_and_driver(keys):
    got = answer(keys, [signed(keys)], cc="9.0", driver="580", suite="smoke", max_age_days=3650)
    assert got.ok, got.lines
    assert "passed the smoke suite (33 passed, 36 skipped) on NVIDIA H200 (9.0), driver 580.159.04" in got.lines[0]


@pytest.mark.parametrize(
    ("change", "asked", "part"),
    [
        ("tamper", {}, "signature"),
        ("other key", {}, "signature"),
        ("other digest", {}, "subject"),
        ("failed", {}, "result"),
        ("no --require-gpu", {}, "result"),
        ("old", {"max_age_days": 7}, "expired"),
        ("none", {"cc": "8.0"}, "gpu"),
        ("none", {"driver": "570"}, "driver"),
        ("none", {"suite": "full"}, "suite"),
        ("none", {"run_key": {"value": "x" * 64}}, "key"),
    ],
)
def test_each_check_refuses_with_its_own_reason(keys, change, asked, part):
    run, digest, private = copy.deepcopy(RUN), DIGEST, "private"
    if change == "failed":
        run.update(state="failed", failed=2)
    elif change == "no --require-gpu":
        run["require_gpu"] = None
    elif change == "old":
        run["finished"] = "2020-01-01T00:00:00Z"
    elif change == "other digest":
        digest = "sha256:" + "cd" * 32
    elif change == "other key":
        private = "other_private"
    envelope = signed(keys, run, digest, private)
    if change == "tamper":  # the predicate edited after signing: "failed" made "passed" is the attack
        doc = json.loads(base64.b64decode(envelope["payload"]))
        doc["predicate"]["passed"] = 34
        envelope["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    got = answer(keys, [envelope], **asked)
    assert not got.ok and got.lines[0].startswith(f"refused by {part}: "), got.lines


def test_no_attestation_or_only_an_sbom_is_not_a_pass(keys):
    assert answer(keys, []).lines == (f"no attestation found for {DIGEST[:19]}",)
    bom = sbom.bom("x", DIGEST, {"python": {"torch": "2.15.0"}})
    only = attest.sign(attest.sbom_statement("x", DIGEST, bom), attest.signer(str(keys["private"])))
    got = answer(keys, [only])
    assert not got.ok and "none of the 1 attestation(s) is a GPU test result" in got.lines[0]


@pytest.mark.parametrize(
    "envelope",
    [
        {},
        {"payload": "!!", "payloadType": attest.PAYLOAD_TYPE, "signatures": []},
        {"payload": 1, "payloadType": None, "signatures": "x"},
        [],
    ],
)
def test_a_damaged_envelope_is_refused_not_a_crash(keys, envelope):
    got = answer(keys, [envelope])
    assert not got.ok and got.lines[0].startswith("refused by "), got.lines


def test_a_gpu_is_named_from_the_catalogue_or_by_compute_capability():
    assert gpu_cc("H100", None) == "9.0" and gpu_cc(None, "8.6") == "8.6"
    with pytest.raises(UsageError, match="not in the catalogue"):
        gpu_cc("Voodoo5", None)
    with pytest.raises(UsageError, match="give one"):
        gpu_cc("H100", "9.0")


LISTING = {
    "python": {"torch": "2.15.0", "Jinja2": "3.1.6"},
    "debian": {"libc6": "2.41-12", "g++": "4:14.2.0-1"},
    "system": {"arch": "arm64", "id": "debian", "distro": "debian-13"},
}


def test_the_sbom_is_cyclonedx_with_purls_that_name_architecture_and_distribution():
    doc = sbom.bom("127.0.0.1:5000/team/x", DIGEST, LISTING)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6" and sbom.count(doc) == 4
    purls = sorted(c["purl"] for c in doc["components"])
    assert "pkg:deb/debian/libc6@2.41-12?arch=arm64&distro=debian-13" in purls
    assert "pkg:deb/debian/g%2B%2B@4:14.2.0-1?arch=arm64&distro=debian-13" in purls
    assert "pkg:pypi/jinja2@3.1.6" in purls
    assert sbom.packages_of(doc) == {"python": LISTING["python"], "debian": LISTING["debian"]}


def test_hostile_package_names_stay_data_in_the_sbom():
    odd = {"python": {'x"; rm -rf /': "1\n2", "<script>": "0"}, "debian": {"a b": "1"}}
    doc = sbom.bom("x", DIGEST, odd)
    assert sbom.packages_of(doc) == {"python": odd["python"], "debian": odd["debian"]}


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("127.0.0.1:5000/team/x:v1", ("127.0.0.1:5000", "team/x", "v1", None)),
        ("localhost/x@" + DIGEST, ("localhost", "x", None, DIGEST)),
        ("ghcr.io/org/name", ("ghcr.io", "org/name", None, None)),
        ("pytorch/pytorch:2.9", ("registry-1.docker.io", "pytorch/pytorch", "2.9", None)),
        ("debian", ("registry-1.docker.io", "library/debian", None, None)),
    ],
)
def test_references_are_read_as_docker_reads_them(ref, parts):
    r = Ref.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == parts


@pytest.mark.parametrize("ref", ["", "x y", "x:tag;rm", "X/Upper", "x@sha256:short", "x/../y", "a:b:c"])
def test_what_is_not_a_reference_is_refused(ref):
    with pytest.raises(RegistryError, match="is not an image reference"):
        Ref.parse(ref)


def test_cosigns_tag_for_a_digests_attestations():
    assert att_tag(DIGEST) == "sha256-" + "ab" * 32 + ".att"


def test_the_result_signed_on_the_gpu_machine_verifies_here_for_its_gpu_and_driver_only():
    """tests/gpu-machine/results: signed on the H200 (driver 580.159.04) by `gpu-machine-proof.sh oracle`."""
    results = Path(__file__).resolve().parents[1] / "gpu-machine" / "results"
    envelope = json.loads((results / "devel.smoke.intoto.json").read_text())
    image = "sha256:2a98bec54d020b07fd71d247eb81e0a3d000dc2007edfab86ff80395b3e35f83"
    key = results / "imagematrix.pub"
    got = verify_envelopes([envelope], key, image, cc="9.0", driver="580", suite="smoke")
    assert got.ok and "on NVIDIA H200 (9.0), driver 580.159.04" in got.lines[0], got.lines
    assert verify_envelopes([envelope], key, image, cc="10.0").lines[0].startswith("refused by gpu")
    assert verify_envelopes([envelope], key, image, driver="595").lines[0].startswith("refused by driver")


def test_an_envelope_path_from_a_record_is_read_only_as_a_bounded_regular_file(tmp_path):
    import os

    from imagematrix.evidence.verify import read_envelope

    fifo = tmp_path / "x.intoto.json"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not an envelope file"):
        read_envelope(fifo)  # a FIFO would block forever
    with pytest.raises(UsageError, match="not an envelope file"):
        read_envelope(Path("/dev/zero"))


# --- a result reused where a key is configured: its own attestation must verify ------------------------


def _reusable(attestation: str | None):
    from imagematrix.core.records import HistoryEvent
    from imagematrix.testing.reuse import Reusable

    body = {**RUN, **({"attestation": attestation} if attestation else {})}
    return Reusable(
        HistoryEvent.from_json({"kind": "test", "cell": "c", "at": RUN["finished"], "runner": "r", **body}, "")
    )


def test_a_reused_result_needs_an_attestation_the_runs_key_verifies(keys, tmp_path):
    from imagematrix.testing.containers import Evidence

    evidence = Evidence.load(str(keys["private"]), None)
    assert evidence.unbacked(None, DIGEST) is None
    assert "no signed attestation" in (evidence.unbacked(_reusable(None), DIGEST) or "")  # an unsigned "passed" line
    good, other = tmp_path / "good.intoto.json", tmp_path / "other.intoto.json"
    good.write_text(json.dumps(signed(keys)))
    other.write_text(json.dumps(signed(keys, private="other_private")))
    assert evidence.unbacked(_reusable(str(good)), DIGEST) is None
    assert "does not verify" in (evidence.unbacked(_reusable(str(other)), DIGEST) or "")
    assert "does not verify" in (evidence.unbacked(_reusable(str(good)), "sha256:" + "cd" * 32) or "")
    fifo = tmp_path / "fifo.intoto.json"
    os.mkfifo(fifo)
    assert "cannot be read" in (evidence.unbacked(_reusable(str(fifo)), DIGEST) or "")
    # publish.verify_key alone (no signing key on this runner) asks the same
    assert "does not verify" in (Evidence.load(None, keys["other"]).unbacked(_reusable(str(good)), DIGEST) or "")
    assert Evidence.load(None, None).unbacked(_reusable(None), DIGEST) is None  # no key anywhere: nothing asked
