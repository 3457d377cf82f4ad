"""Evidence other tools read: the standard in-toto test-result statement (checked against in-toto's own
protobuf definitions), Sigstore bundles v0.3 (checked against Sigstore's published schema), the layout
cosign v3, ORAS and cosign v2 look for, and `verify --chain` over a result, its SBOM, the build's
provenance and the audit. Then the tamper corpus: each altered piece of evidence is refused offline,
each with its own reason."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from imagematrix.evidence import attest, chain, registry, sbom
from imagematrix.evidence.verify import read_envelope, verify_envelopes

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
IMAGE_ID = "sha256:" + "ee" * 32
REPO = "127.0.0.1:5000/team/x"
RUN = {
    "state": "passed",
    "suite": "smoke",
    "passed": 33,
    "failed": 0,
    "skipped": 36,
    "require_gpu": True,
    "image_id": IMAGE_ID,
    "key": {"value": "k" * 64, "image": DIGEST, "suite": "5" * 64, "host": "7" * 64},
    "gpu_info": {
        "driver": "580.159.04",
        "driver_cuda": "13.0",
        "devices": [{"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}],
    },
    "torch": {"version": "2.15.0", "distribution": "torch", "distribution_version": "2.15.0", "cuda": "13.2"},
    "finished": "2026-12-01T02:10:00Z",
}
TESTS = {"passed": ["test_abi::test_cxx11_abi", "test_cuda::test_matmul"], "failed": []}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    attest.keygen(a)
    attest.keygen(b)
    return {
        "signer": attest.signer(str(a / attest.PRIVATE_NAME)),
        "other": attest.signer(str(b / attest.PRIVATE_NAME)),
        "public": attest.public_key(a / attest.PUBLIC_NAME),
        "public_path": a / attest.PUBLIC_NAME,
    }


def both(keys, run=RUN, digest=DIGEST, signer="signer", tests=TESTS) -> dict[str, dict]:
    return {
        ptype: attest.sign(st, keys[signer])
        for ptype, st in attest.result_statements(REPO, digest, "cu13.2-py3.13-devel", run, tests)
    }


def sbom_envelope(keys, torch="2.15.0", digest=DIGEST, signer="signer") -> dict:
    doc = sbom.bom(REPO, digest, {"python": {"torch": torch, "numpy": "2.3.0"} if torch else {"numpy": "2.3.0"}})
    return attest.sign(attest.sbom_statement(REPO, digest, doc), keys[signer])


def provenance(digest=DIGEST) -> dict:
    return {
        "_type": attest.STATEMENT_TYPE,
        "subject": [{"name": REPO, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "predicate": {"builder": {"id": "https://github.com/docker/buildx"}},
    }


# --- the formats ---------------------------------------------------------------------------------------


def test_the_standard_statement_is_what_in_totos_own_definitions_accept():
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    doc = attest.test_result_statement(REPO, DIGEST, "cu13.2-py3.13-devel", RUN, TESTS)
    st = Statement.copy_from_pb(json_format.ParseDict(doc, statement_pb2.Statement()))
    st.validate()  # type, a subject with a digest, a predicate type and a predicate
    assert st.pb.predicate_type == "https://in-toto.io/attestation/test-result/v0.1"
    result = json_format.ParseDict(doc["predicate"], test_result_pb2.TestResult())  # unknown fields refused
    assert result.result == "PASSED" and list(result.passed_tests) == TESTS["passed"]
    for rd in result.configuration:
        ResourceDescriptor.copy_from_pb(rd).validate()  # each has a uri, a digest or content
    suite = next(rd for rd in result.configuration if rd.name == attest.SUITE_DESCRIPTOR)
    assert suite.digest["sha256"] == "5" * 64
    assert json_format.MessageToDict(suite.annotations)["gpus"][0]["computeCapability"] == "9.0"
    assert any(rd.uri == "pkg:pypi/torch@2.15.0" for rd in result.configuration)


def test_a_failed_run_is_failed_in_the_standard_statement_with_its_failed_tests():
    doc = attest.test_result_statement(REPO, DIGEST, "c", {**RUN, "state": "failed"}, {"passed": [], "failed": ["t"]})
    assert doc["predicate"]["result"] == "FAILED" and doc["predicate"]["failedTests"] == ["t"]


def test_bundles_are_sigstore_bundles_v0_3_by_sigstores_published_schema(keys):
    from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle

    envelope = both(keys)[attest.TEST_RESULT_TYPE]
    doc = registry.bundle_of(envelope, keys["signer"].public_key.keyid)
    parsed = Bundle.from_dict(doc)  # its oneof groups (content, verification material) must hold
    assert parsed.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert parsed.verification_material.public_key.hint == keys["signer"].public_key.keyid
    assert parsed.to_dict() == doc  # nothing of ours was dropped as unknown, nothing misnamed
    assert registry.envelope_of_bundle(doc) == {k: envelope[k] for k in ("payload", "payloadType", "signatures")}


@pytest.mark.parametrize("ptype", [attest.TEST_RESULT_TYPE, attest.PREDICATE_TYPE])
def test_either_statement_verifies_and_verify_says_which_it_read(keys, ptype):
    got = verify_envelopes([both(keys)[ptype]], keys["public"], DIGEST, cc="9.0", driver="580", suite="smoke")
    assert got.ok, got.lines
    reads = "in-toto test-result/v0.1" if ptype == attest.TEST_RESULT_TYPE else "imagematrix gpu-test/v1"
    assert f"read from its {reads} statement" in got.lines[0]
    assert got.claim is not None and got.claim.torch["distribution_version"] == "2.15.0"


def test_the_chain_of_a_published_digest_holds(keys):
    got = verify_envelopes(both(keys).values(), keys["public"], DIGEST)
    sbom_ok = attest.open_envelope(sbom_envelope(keys), keys["public"])
    assert got.claim is not None
    links = chain.check_chain(
        DIGEST, got.claim, sbom_ok, provenance(), IMAGE_ID, {"digest": DIGEST, "image_id": IMAGE_ID}
    )
    assert chain.holds(links), [link.line() for link in links]
    assert [link.state for link in links] == ["holds"] * 5


def test_a_chain_without_provenance_or_audit_says_they_are_absent_not_that_they_hold(keys):
    got = verify_envelopes(both(keys).values(), keys["public"], DIGEST)
    assert got.claim is not None
    links = chain.check_chain(DIGEST, got.claim, attest.open_envelope(sbom_envelope(keys), keys["public"]))
    states = {link.name: link.state for link in links}
    assert states == {
        "test result": "holds",
        "SBOM": "holds",
        "torch": "holds",
        "provenance": "absent",
        "audit": "absent",
    }
    assert chain.holds(links)


# --- a registry held in memory: the layout attach writes, read back the way attestations_of reads it ------


class MemoryRegistry:
    """The distribution API's manifests, tags and blobs in a dict (``referrers_api``: whether it answers the
    referrers API, as a registry with one does). Stands in for ``registry.Registry``'s transport only."""

    def __init__(self, referrers_api: bool = False):
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.referrers_api = referrers_api
        self.referrers_content_type = registry.OCI_INDEX

    def seed_image(self) -> str:
        body = registry._canonical({"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST, "layers": []})
        self.manifests[registry.sha256(body)] = body
        return registry.sha256(body)

    def manifest(self, repository, reference):
        digest = self.tags.get(reference, reference)
        body = self.manifests.get(digest)
        if body is None:
            return None
        doc = json.loads(body)
        return registry.sha256(body), str(doc.get("mediaType") or ""), doc

    def resolve(self, ref):
        return ref.digest or self.tags[ref.tag]

    def blob(self, repository, digest, limit=registry.MAX_ENVELOPE):
        return self.blobs[digest]

    def push_blob(self, repository, data, media_type, annotations=None):
        self.blobs[registry.sha256(data)] = data
        out = {"mediaType": media_type, "digest": registry.sha256(data), "size": len(data)}
        return {**out, **({"annotations": dict(annotations)} if annotations else {})}

    def put_manifest(self, repository, reference, doc):
        body = registry._canonical(doc)
        self.manifests[registry.sha256(body)] = body
        if not reference.startswith("sha256:"):
            self.tags[reference] = registry.sha256(body)
        return registry.sha256(body)

    def referrers(self, repository, digest):
        if not self.referrers_api or self.referrers_content_type != registry.OCI_INDEX:
            return None  # what Registry.referrers answers for a 404 or another content type
        out = []
        for d, body in self.manifests.items():
            doc = json.loads(body)
            if (doc.get("subject") or {}).get("digest") == digest:
                out.append(
                    {"digest": d, "artifactType": doc.get("artifactType"), "annotations": doc.get("annotations")}
                )
        return out


@pytest.fixture
def memory(monkeypatch):
    reg = MemoryRegistry()
    monkeypatch.setattr(registry, "Registry", lambda host: reg)
    return reg


@pytest.mark.parametrize("api", [False, True])
def test_attach_writes_bundles_where_cosign_v3_and_oras_look_and_reads_them_back(keys, memory, api):
    memory.referrers_api = api
    image = memory.seed_image()
    envelopes = [*both(keys, digest=image).items(), (sbom.PREDICATE_TYPE, sbom_envelope(keys, digest=image))]
    attached = registry.attach(REPO, image, envelopes)
    assert attached.storage == ("referrers" if api else "referrers tag + cosign .att") and len(attached.where) == 3
    bundles = [json.loads(b) for b in memory.manifests.values() if json.loads(b).get("artifactType") == registry.BUNDLE]
    assert {m["annotations"][registry.BUNDLE_PREDICATE] for m in bundles} == {
        attest.TEST_RESULT_TYPE,
        attest.PREDICATE_TYPE,
        sbom.PREDICATE_TYPE,
    }
    assert all(m["annotations"][registry.BUNDLE_CONTENT] == "dsse-envelope" for m in bundles)
    assert all(m["subject"]["digest"] == image for m in bundles)
    if not api:
        index = json.loads(memory.manifests[memory.tags[registry.referrers_tag(image)]])
        assert index["mediaType"] == registry.OCI_INDEX and len(index["manifests"]) == 3
        assert all(d["artifactType"] == registry.BUNDLE for d in index["manifests"])
        att = json.loads(memory.manifests[memory.tags[registry.att_tag(image)]])
        assert len(att["layers"]) == 3
    registry.attach(REPO, image, envelopes)  # again: nothing added twice
    found = registry.attestations_of(f"{REPO}@{image}")
    bundles_found = [f for f in found.found if "Sigstore bundle" in f.where]
    assert len(bundles_found) == 3 and found.notes == ()
    got = verify_envelopes(found.found, keys["public"], image, suite="smoke")
    assert got.ok, got.lines


# --- the tamper corpus ----------------------------------------------------------------------------------


def _edit(envelope: dict, change) -> dict:
    """The envelope with its statement edited after signing (the signature no longer holds)."""
    out = copy.deepcopy(envelope)
    doc = json.loads(base64.b64decode(out["payload"]))
    change(doc)
    out["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    return out


def _resign(keys, ptype, change, **kwargs) -> dict:
    """A statement changed and signed again by the right key: what a signer that wrote nonsense produces."""
    st = dict(attest.result_statements(REPO, DIGEST, "c", RUN, TESTS))[ptype]
    st = copy.deepcopy(st)
    change(st)
    return attest.sign(st, keys["signer"])


STD = attest.TEST_RESULT_TYPE
OWN = attest.PREDICATE_TYPE


def _suite_entry(st):
    return next(d for d in st["predicate"]["configuration"] if d["name"] == attest.SUITE_DESCRIPTOR)


VERIFY_CORPUS = {
    "another digest": (lambda k: both(k, digest=OTHER)[STD], {}, "subject"),
    "another key": (lambda k: both(k, signer="other")[STD], {}, "signature"),
    "a stale result": (
        lambda k: both(k, run={**RUN, "finished": "2020-01-01T00:00:00Z"})[STD],
        {"max_age_days": 30},
        "expired",
    ),
    "a failed result": (lambda k: both(k, run={**RUN, "state": "failed", "failed": 1})[STD], {}, "result"),
    "another driver branch": (lambda k: both(k)[STD], {"driver": "595"}, "driver"),
    "another GPU": (lambda k: both(k)[OWN], {"cc": "10.0"}, "gpu"),
    "another suite": (lambda k: both(k)[STD], {"suite": "full"}, "suite"),
    "another run key": (lambda k: both(k)[STD], {"run_key": {"value": "x" * 64}}, "key"),
    "no --require-gpu": (lambda k: both(k, run={**RUN, "require_gpu": False})[STD], {}, "result"),
    "PASSED with a failed test": (
        lambda k: _resign(k, STD, lambda st: st["predicate"].update(failedTests=["test_cuda::test_matmul"])),
        {},
        "result",
    ),
    "a lowercase pass": (lambda k: _resign(k, STD, lambda st: st["predicate"].update(result="pass")), {}, "result"),
    "the result edited after signing": (
        lambda k: _edit(both(k)[STD], lambda st: st["predicate"].update(result="PASSED", failedTests=[])),
        {},
        "signature",
    ),
    "two suite entries": (
        lambda k: _resign(k, STD, lambda st: st["predicate"]["configuration"].append(copy.deepcopy(_suite_entry(st)))),
        {},
        "statement",
    ),
    "a descriptor with nothing to name it": (
        lambda k: _resign(k, STD, lambda st: st["predicate"]["configuration"].append({"name": "x"})),
        {},
        "statement",
    ),
    "gpus of another shape": (
        lambda k: _resign(k, STD, lambda st: _suite_entry(st)["annotations"].update(gpus="H100")),
        {},
        "statement",
    ),
    "another payload type": (lambda k: {**both(k)[STD], "payloadType": "text/plain"}, {}, "signature"),
    "a truncated envelope": (lambda k: {**both(k)[STD], "payload": both(k)[STD]["payload"][:40]}, {}, "signature"),
    "no signatures": (lambda k: {**both(k)[STD], "signatures": []}, {}, "signature"),
    "a zoneless time": (
        lambda k: both(k, run={**RUN, "finished": "2026-12-01T02:10:00"})[OWN],
        {"max_age_days": 30},
        "expired",
    ),
}


@pytest.mark.parametrize("case", sorted(VERIFY_CORPUS))
def test_the_tamper_corpus_each_refused_with_its_reason(keys, case):
    make, asked, part = VERIFY_CORPUS[case]
    got = verify_envelopes([make(keys)], keys["public"], DIGEST, **asked)
    assert not got.ok, got.lines
    assert got.lines[0].startswith(f"refused by {part}: "), got.lines


def _claim(keys, run=RUN):
    got = verify_envelopes(both(keys, run=run).values(), keys["public"], DIGEST)
    assert got.claim is not None
    return got.claim


CHAIN_CORPUS = {
    "an SBOM of another build": (dict(sbom_digest=OTHER), "SBOM", "another build"),
    "an SBOM signed by another key": (dict(sbom_signer="other"), "SBOM", "no SBOM signed by this key"),
    "a torch that differs": (dict(torch="2.14.0"), "torch", "the suite imported torch 2.15.0; the SBOM lists 2.14.0"),
    "a result that does not say its torch": (dict(run={**RUN, "torch": None}), "torch", "does not say which"),
    "a provenance of another digest": (dict(prov=provenance(OTHER)), "provenance", "not of"),
    "a provenance that is not SLSA": (
        dict(prov={**provenance(), "predicateType": "https://example.com/x"}),
        "provenance",
        "not SLSA",
    ),
    "an audit of another image": (dict(audit="sha256:" + "99" * 32), "audit", "the audit read"),
    "a publish record of another digest": (
        dict(published={"digest": OTHER, "image_id": IMAGE_ID}),
        "audit",
        "publish record",
    ),
}


@pytest.mark.parametrize("case", sorted(CHAIN_CORPUS))
def test_the_chain_corpus_each_refused_with_its_reason(keys, case):
    change, link, why = CHAIN_CORPUS[case]
    claim = _claim(keys, change.get("run", RUN))
    envelope = sbom_envelope(
        keys,
        torch=change.get("torch", "2.15.0"),
        digest=change.get("sbom_digest", DIGEST),
        signer=change.get("sbom_signer", "signer"),
    )
    try:
        verified = attest.open_envelope(envelope, keys["public"])
    except attest.VerifyError:
        verified = None  # the command finds no SBOM this key signed
    links = chain.check_chain(
        DIGEST,
        claim,
        verified,
        change.get("prov", provenance()),
        change.get("audit", IMAGE_ID),
        change.get("published", {"digest": DIGEST, "image_id": IMAGE_ID}),
    )
    refused = {link.name: link.detail for link in links if link.state == "refused"}
    assert list(refused) == [link] and why in refused[link], [x.line() for x in links]
    assert not chain.holds(links)


REGISTRY_CORPUS = {
    "a referrers answer with the wrong content type": "wrong content type",
    "a referrers tag index that points back at the image itself": "the image itself",
    "a referrers tag that is not an index": "not an OCI index",
    "a bundle referrer of another image": "names another subject",
    "a listed referrer missing from the registry": "not in the registry",
    "a bundle referrer holding something else": "holds no Sigstore bundle",
}


@pytest.mark.parametrize("case", sorted(REGISTRY_CORPUS))
def test_the_registry_corpus_reads_nothing_it_should_not(keys, memory, case):
    image = memory.seed_image()
    registry.attach(REPO, image, list(both(keys).items()))
    tag = registry.referrers_tag(image)
    index = json.loads(memory.manifests[memory.tags[tag]])
    if case == "a referrers answer with the wrong content type":
        memory.referrers_api, memory.referrers_content_type = True, "text/html"
        del memory.tags[tag]  # the API's answer is not read; with no tag either, nothing is found there
    elif case == "a referrers tag index that points back at the image itself":
        index["manifests"] = [{"mediaType": registry.OCI_MANIFEST, "digest": image, "artifactType": registry.BUNDLE}]
        memory.put_manifest(REPO, tag, index)
    elif case == "a referrers tag that is not an index":
        memory.put_manifest(REPO, tag, {"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST, "layers": []})
    elif case == "a bundle referrer of another image":
        first = json.loads(memory.manifests[index["manifests"][0]["digest"]])
        first["subject"]["digest"] = OTHER
        index["manifests"] = [{**index["manifests"][0], "digest": memory.put_manifest(REPO, "sha256:x", first)}]
        memory.put_manifest(REPO, tag, index)
    elif case == "a listed referrer missing from the registry":
        index["manifests"] = [{**index["manifests"][0], "digest": OTHER}]
        memory.put_manifest(REPO, tag, index)
    elif case == "a bundle referrer holding something else":
        first = json.loads(memory.manifests[index["manifests"][0]["digest"]])
        first["layers"] = [memory.push_blob(REPO, b'{"mediaType": "text/plain"}', registry.BUNDLE)]
        index["manifests"] = [{**index["manifests"][0], "digest": memory.put_manifest(REPO, "sha256:y", first)}]
        memory.put_manifest(REPO, tag, index)
    del memory.tags[registry.att_tag(image)]  # cosign v2's tag would still hold the envelopes: set it aside
    found = registry.attestations_of(f"{REPO}@{image}")
    assert not [f for f in found.found if "Sigstore bundle" in f.where]
    if case != "a referrers answer with the wrong content type":
        assert any(REGISTRY_CORPUS[case] in note for note in found.notes), found.notes
    assert not verify_envelopes(found.found, keys["public"], image).ok


def test_an_oversized_or_truncated_envelope_file_is_refused_before_it_is_parsed(tmp_path):
    from imagematrix.core import files
    from imagematrix.core.errors import UsageError

    big = tmp_path / "big.intoto.json"
    with open(big, "wb") as f:
        f.truncate(files.LIMITS["envelope"] + 1)
    with pytest.raises(UsageError, match="not an envelope file"):
        read_envelope(big)
    cut = tmp_path / "cut.intoto.jsonl"
    cut.write_text('{"payload": "eyJ')
    with pytest.raises(UsageError):
        read_envelope(cut)


def test_the_corpus_is_at_least_twenty_cases():
    assert len(VERIFY_CORPUS) + len(CHAIN_CORPUS) + len(REGISTRY_CORPUS) + 2 >= 20


def test_a_result_file_from_a_run_holds_both_statements(keys, tmp_path):
    from imagematrix.evidence.store import write_attestation

    path = write_attestation(tmp_path, "c", "smoke", "k" * 64, list(both(keys).values()))
    assert path.name == "c.smoke.kkkkkkkkkkkkkkkk.intoto.jsonl"
    read = read_envelope(path)
    assert [json.loads(base64.b64decode(e["payload"]))["predicateType"] for e in read] == [STD, OWN]
    assert verify_envelopes(read, keys["public"], DIGEST).ok
    assert Path(path).read_text().count("\n") == 2


# --- the keyless path's step outputs: the one writer of $GITHUB_OUTPUT ------------------------------


def test_the_step_outputs_name_the_subject_and_a_predicate_file(tmp_path):
    from imagematrix.evidence import github

    out = tmp_path / "out"
    digest = "sha256:" + "a" * 64
    values = github.write_subject(
        tmp_path / "build",
        out,
        "devel",
        "cu13.0-py3.12-devel",
        "ghcr.io/acme/t",
        digest,
        {"smoke": {"result": "PASSED"}},
    )
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert lines == values and lines["devel-digest"] == digest and lines["devel-name"] == "ghcr.io/acme/t"
    assert json.loads(Path(lines["devel-smoke-predicate"]).read_text()) == {"result": "PASSED"}


@pytest.mark.parametrize(
    ("repo", "digest", "build"),
    [
        ("ghcr.io/acme/t\nother-digest=sha256:" + "b" * 64, "sha256:" + "a" * 64, "build"),
        ("ghcr.io/acme/t", "sha256:" + "a" * 63 + "\n", "build"),
        ("ghcr.io/acme/t", "sha512:" + "a" * 64, "build"),
        ("ghcr.io/acme/t", "sha256:" + "a" * 64, "bu\nild"),
        ("ghcr.io/acme/t", "sha256:" + "a" * 64, "bu\x1b[2Jild"),
    ],
)
def test_a_value_that_could_open_another_output_is_refused_and_nothing_is_written(tmp_path, repo, digest, build):
    from imagematrix.core.errors import UsageError
    from imagematrix.evidence import github

    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"refusing the step output|not a repository and a sha256 digest"):
        github.write_subject(tmp_path / build, out, "devel", "c", repo, digest, {"smoke": {}})
    assert not out.exists()


def test_an_output_name_the_workflow_never_uses_is_refused(tmp_path):
    from imagematrix.core.errors import UsageError
    from imagematrix.evidence import github

    for name in ("Devel-digest", "a b", "x=y", ""):
        with pytest.raises(UsageError):
            github.write_outputs(tmp_path / "out", {name: "v"})
    assert not (tmp_path / "out").exists()
