"""`invoke publish` against a real registry: only an image whose required suite passed on a GPU,
on that very image, reaches its tags; everything else is refused with its reason."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from imagematrix.core import history, status
from imagematrix.testing.suite import SUITES_SECTION

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CELL = "cu1.0-py3.13-plain"
H200 = {
    "driver": "580.159.04",
    "driver_cuda": "13.0",
    "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}],
}


@pytest.fixture(scope="module")
def built(invoke, image_namespace, tmp_path_factory, docker_client, hardening_matrix):
    """The tiny 'plain' cell built for real; its build directory and image id."""
    root = tmp_path_factory.mktemp("publish")
    matrix = hardening_matrix(root, f"{image_namespace}-publish/tiny")
    out = root / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    image_id = status.read_raw(out)[CELL]["build"]["image_id"]
    return {"matrix": matrix, "out": out, "image_id": image_id, "root": root}


def _gpu_run(out: Path, image_id: str, **overrides) -> None:
    """The smoke record a GPU runner's `nox -s gpu_smoke-3.13 -- --require-gpu` leaves (this host has no GPU)."""
    run = {
        "state": "passed",
        "image_id": image_id,
        "require_gpu": True,
        "gpu": "nvidia runtime gpu 0",
        "gpu_info": H200,
        "finished": "2026-11-30T02:10:00Z",
        "passed": 33,
        "failed": 0,
        "skipped": 36,
        **overrides,
    }
    status.update_cell(out, CELL, SUITES_SECTION, {"smoke": run})


def _publish(invoke, built, *extra: str):
    return invoke("publish", "--matrix", str(built["matrix"]), "--out", str(built["out"]), "--target", "plain", *extra)


def _registry_digest(registry: str, repo: str, tag: str) -> str:
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    return urllib.request.urlopen(req, timeout=10).headers["Docker-Content-Digest"]


def test_refusals_name_the_reason_and_push_nothing(invoke, built, registry):
    repo = f"{registry}/refused/tiny"
    done = _publish(invoke, built, "--repository", repo)
    assert done.returncode == 1 and f"refused {CELL}: untested: no smoke run recorded" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], require_gpu=None, gpu="none", gpu_info=None)
    done = _publish(invoke, built, "--repository", repo)
    assert "was not on a GPU (--require-gpu)" in done.stdout, done.stdout
    _gpu_run(built["out"], "sha256:" + "0" * 64)
    done = _publish(invoke, built, "--repository", repo)
    assert "tested another image" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], state="failed", failed=2)
    done = _publish(invoke, built, "--repository", repo)
    assert "its smoke run failed" in done.stdout, done.stdout
    (built["root"] / "stale").mkdir(exist_ok=True)
    doc = yaml.safe_load(built["matrix"].read_text())
    doc["targets"]["plain"]["fragments"] = ["tiny-quick", "tiny-noisy"]  # another render, the same tag
    stale = built["root"] / "stale" / "matrix.yaml"
    stale.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = invoke(
        "publish", "--matrix", str(stale), "--out", str(built["out"]), "--target", "plain", "--repository", repo
    )
    assert "stale: matrix.yaml or a fragment changed" in done.stdout, done.stdout
    with pytest.raises(urllib.error.HTTPError):
        _registry_digest(registry, "refused/tiny", "cu1.0-py3.13-plain")
    assert "publish" not in status.read_raw(built["out"])[CELL]


def test_a_cell_tested_on_a_gpu_is_pushed_with_an_immutable_tag_and_its_digest_recorded(
    invoke, built, registry, docker_client
):
    _gpu_run(built["out"], built["image_id"])
    repo = f"{registry}/team/tiny"
    done = _publish(invoke, built, "--repository", repo, "--dry-run")
    assert done.returncode == 0 and f"would publish {CELL}" in done.stdout, done.stdout
    done = _publish(invoke, built, "--repository", repo)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(built["out"])[CELL]["publish"]
    assert rec["image_id"] == built["image_id"] and rec["tags"][0] == "cu1.0-py3.13-plain"
    assert rec["tags"][1].startswith("cu1.0-py3.13-plain-") and len(rec["tags"][1]) == len("cu1.0-py3.13-plain-") + 12
    for tag in rec["tags"]:
        assert _registry_digest(registry, "team/tiny", tag) == rec["digest"]
    tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/team/tiny/tags/list", timeout=10))["tags"]
    assert sorted(tags) == sorted([*rec["tags"], rec["record_tag"]])
    assert rec["record_tag"] == rec["tags"][1] + ".imagematrix"
    pulled = docker_client.images.pull(f"{repo}@{rec['digest']}")  # by digest, as a GPU runner would
    assert pulled.id == built["image_id"]
    # What travels with it: the test record and the package list, in a one-file image beside it.
    assert not docker_client.images.list(name=f"{repo}:{rec['record_tag']}")  # publish leaves no local copy of it
    record_image = docker_client.images.pull(repo, tag=rec["record_tag"])
    assert record_image.labels["imagematrix.record-of"] == f"{repo}@{rec['digest']}"
    box = docker_client.containers.create(record_image.id, command=["x"])
    try:
        bits, _ = box.get_archive("/imagematrix.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            doc = json.load(tar.extractfile("imagematrix.json"))
    finally:
        box.remove()
        docker_client.images.remove(record_image.id, force=True)
    assert doc["image"] == f"{repo}@{rec['digest']}" and doc["suites"]["smoke"]["require_gpu"] is True
    assert "libc6" in doc["packages"]["debian"]  # the tiny image has no Python: its Debian packages only


def test_the_keyless_path_hands_github_attest_the_published_digest_and_a_standard_predicate(
    invoke, built, registry, tmp_path, monkeypatch
):
    """What the generated workflow's attest steps read: the subject and the in-toto test-result predicate
    of the digest that was pushed, as step outputs; without a step-output file, nothing is pushed."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2

    from imagematrix.matrix.workflow import step_outputs

    _gpu_run(built["out"], built["image_id"])
    repo = f"{registry}/keyless/tiny"
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    done = _publish(invoke, built, "--repository", repo, "--attest-github")
    assert done.returncode == 2 and "$GITHUB_OUTPUT is not set" in done.stderr + done.stdout, done.stderr
    with pytest.raises(urllib.error.HTTPError):  # nothing was pushed
        urllib.request.urlopen(f"http://{registry}/v2/keyless/tiny/tags/list", timeout=10)
    outputs = tmp_path / "github-output"
    outputs.write_text("plan=earlier step's line\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    done = _publish(invoke, built, "--repository", repo, "--attest-github")
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(built["out"])[CELL]["publish"]
    lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    names = step_outputs("plain", "smoke")
    assert lines[names["name"]] == repo and lines[names["digest"]] == rec["digest"]
    assert lines["plan"] == "earlier step's line"  # appended, never truncated
    predicate = json.loads(Path(lines[names["predicate"]]).read_text())
    parsed = json_format.ParseDict(predicate, test_result_pb2.TestResult())  # in-toto's schema, nothing unknown
    assert parsed.result == "PASSED" and parsed.configuration[0].annotations["cell"] == CELL


def test_a_registry_that_is_down_is_a_clean_error_and_nothing_is_recorded(invoke, built):
    _gpu_run(built["out"], built["image_id"])
    record_before = status.read_raw(built["out"])[CELL].get("publish")
    done = _publish(invoke, built, "--repository", "127.0.0.1:9/down/tiny")
    assert (
        done.returncode == 1 and "pushing 127.0.0.1:9/down/tiny:cu1.0-py3.13-plain-" in done.stderr
    )  # the immutable tag first
    assert "connection refused" in done.stderr and "nothing more was recorded as published" in done.stderr
    assert "Traceback" not in done.stderr
    assert status.read_raw(built["out"])[CELL].get("publish") == record_before


def test_a_real_cpu_smoke_run_records_its_suite_and_is_refused(example_images, tmp_path):
    """A real run without --require-gpu (this host has no GPU) is recorded per suite and never counts."""
    env = {k: v for k, v in os.environ.items() if k != history.STATE_ENV}
    out = tmp_path / "b"
    example = str(ROOT / "examples" / "matrix.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "imagematrix.testing", "--matrix", example, "--out", str(out), "--target", "runtime"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    run = status.read_raw(out)["cu13.2-py3.13-runtime"][SUITES_SECTION]["smoke"]
    assert run["state"] == "passed" and "require_gpu" not in run
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "--search-root",
            str(ROOT),
            "publish",
            "--matrix",
            example,
            "--out",
            str(out),
            "--target",
            "runtime",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "was not on a GPU" in done.stdout, done.stdout


def test_candidates_are_pushed_by_the_build_tested_by_digest_on_a_runner_and_promoted_as_tested(
    invoke, built, registry, docker_client, tmp_path
):
    cand = f"{registry}/cand/tiny"
    done = invoke(
        "build",
        "--matrix",
        str(built["matrix"]),
        "--out",
        str(built["out"]),
        "--target",
        "plain",
        "--push-candidates",
        cand,
    )
    assert done.returncode == 0 and f"candidate {CELL}: {cand}@sha256:" in done.stdout, (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
    candidate = status.read_raw(built["out"])[CELL]["candidate"]
    assert candidate["tag"].startswith("cu1.0-py3.13-plain-") and candidate["image_id"] == built["image_id"]
    assert _registry_digest(registry, "cand/tiny", candidate["tag"]) == candidate["digest"]

    # A GPU runner without the image: the suite pulls the candidate, tests it, and records its digest.
    ref = yaml.safe_load(built["matrix"].read_text())["image"] + ":" + CELL
    docker_client.images.remove(ref)  # the tag only: the candidate's tag still holds the image
    runner = tmp_path / "runner"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "imagematrix.testing",
            "--matrix",
            str(built["matrix"]),
            "--out",
            str(runner),
            "--target",
            "plain",
            "--candidates",
            cand,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    run = status.read_raw(runner)[CELL][SUITES_SECTION]["smoke"]
    assert run["digest"] == candidate["digest"] and run["image_id"] == built["image_id"]
    assert docker_client.images.get(ref).id == built["image_id"]

    # Publishing the candidate: only when the GPU runs tested that digest; then its digest is what the tags get.
    rel = f"{registry}/rel/tiny"
    _gpu_run(built["out"], built["image_id"])  # tested on a GPU, but the local image, not the candidate
    done = _publish(invoke, built, "--candidates", cand, "--repository", rel)
    assert done.returncode == 1 and "did not test candidate" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], digest=candidate["digest"])
    done = _publish(invoke, built, "--candidates", cand, "--repository", rel)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(built["out"])[CELL]["publish"]
    assert rec["digest"] == rec["candidate"] == candidate["digest"]
    for tag in rec["tags"]:
        assert _registry_digest(registry, "rel/tiny", tag) == candidate["digest"]


ARM64_BASE = "imagematrix-base/debian-arm64:trixie-slim"


def test_a_two_platform_release_tag_becomes_one_index_over_the_tested_digests(
    invoke, image_namespace, tmp_path, docker_client, hardening_matrix, registry
):
    """linux/amd64 and linux/arm64 (under QEMU) cells of one tag: each published, then one index for the tag."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(ARM64_BASE)
    except ImageNotFound:
        pytest.fail(
            f"{ARM64_BASE} is missing: IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh", pytrace=False
        )
    matrix = hardening_matrix(
        tmp_path,
        f"{image_namespace}-multi/tiny",
        platforms=["linux/amd64", "linux/arm64"],
        overrides=[{"platform": "linux/arm64", "bases": {"devel": ARM64_BASE}}],
    )
    out = tmp_path / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    cells = {"linux/amd64": f"{CELL}-amd64", "linux/arm64": f"{CELL}-arm64"}
    for platform, cid in cells.items():
        image = docker_client.images.get(status.read_raw(out)[cid]["build"]["image_id"])
        assert (
            image.attrs["Architecture"] == platform.split("/")[1] and image.labels["imagematrix.platform"] == platform
        )
        status.update_cell(
            out, cid, SUITES_SECTION, {"smoke": {"state": "passed", "image_id": image.id, "require_gpu": True}}
        )
    repo = f"{registry}/multi/tiny"
    done = invoke("publish", "--matrix", str(matrix), "--out", str(out), "--target", "plain", "--repository", repo)
    assert done.returncode == 0 and f"index {repo}:{CELL}: linux/amd64, linux/arm64" in done.stdout, (
        done.stdout + done.stderr
    )
    req = urllib.request.Request(
        f"http://{registry}/v2/multi/tiny/manifests/{CELL}",
        headers={
            "Accept": ", ".join(
                ["application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"]
            )
        },
    )
    index = json.load(urllib.request.urlopen(req, timeout=10))
    got = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    records = status.read_raw(out)
    assert got == {p: records[cid]["publish"]["digest"] for p, cid in cells.items()}


# --- evidence: signed results and an SBOM beside the published digest ------------------------------

ATT_TYPES = [
    "https://in-toto.io/attestation/test-result/v0.1",
    "https://imagematrix.dev/attestation/gpu-test/v1",
    "https://cyclonedx.org/bom",
]
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
RUN_KEY = {"value": "e" * 64, "image": "i" * 64, "suite": "s" * 64, "host": "h" * 64}


def _get(registry: str, path: str, accept: str | None = None) -> bytes:
    req = urllib.request.Request(f"http://{registry}{path}", headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(req, timeout=10).read()


def _keys(invoke, where: Path) -> tuple[Path, Path]:
    done = invoke("keygen", "--out", str(where))
    assert done.returncode == 0, done.stdout + done.stderr
    return where / "imagematrix.key", where / "imagematrix.pub"


def _verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagematrix", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_a_signed_publish_puts_the_result_and_an_sbom_beside_the_digest_where_verify_and_a_registry_walk_find_them(
    invoke, built, registry, tmp_path
):
    private, public = _keys(invoke, tmp_path / "keys")
    _, other = _keys(invoke, tmp_path / "other")
    _gpu_run(built["out"], built["image_id"], key=RUN_KEY)
    repo = f"{registry}/signed/tiny"
    done = _publish(invoke, built, "--repository", repo, "--signing-key", str(private))
    assert done.returncode == 0 and f"signed {CELL}: 1 test result(s) and an SBOM of " in done.stdout, (
        done.stdout + done.stderr
    )
    rec = status.read_raw(built["out"])[CELL]["publish"]
    att = rec["digest"].replace(":", "-") + ".att"
    assert rec["storage"] == "referrers tag + cosign .att"  # distribution 2.8 has no referrers API

    # Another client (oras-py) finds them through the OCI referrers tag schema: the index under
    # sha256-<hex>, one Sigstore bundle v0.3 manifest per statement, each naming the image as its subject.
    import oras.client
    from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle

    oras_client = oras.client.OrasClient(hostname=registry, insecure=True)
    assert rec["digest"].replace(":", "-") in oras_client.get_tags(f"{registry}/signed/tiny")
    index = oras_client.get_manifest(
        f"{registry}/signed/tiny:{rec['digest'].replace(':', '-')}",
        allowed_media_type=["application/vnd.oci.image.index.v1+json"],
    )
    assert [d["artifactType"] for d in index["manifests"]] == [BUNDLE] * 3
    assert [d["annotations"]["dev.sigstore.bundle.predicateType"] for d in index["manifests"]] == ATT_TYPES
    for d in index["manifests"]:
        m = oras_client.get_manifest(f"{registry}/signed/tiny@{d['digest']}")
        assert m["subject"]["digest"] == rec["digest"] and m["artifactType"] == BUNDLE
        blob = oras_client.download_blob(f"{registry}/signed/tiny", m["layers"][0]["digest"], str(tmp_path / "b"))
        doc = json.loads(Path(blob).read_text())
        assert Bundle.from_dict(doc).to_dict() == doc  # Sigstore's schema, nothing dropped
        assert doc["verificationMaterial"]["publicKey"]["hint"]

    # A plain walk of the registry API: cosign v2's tag, one OCI manifest, a DSSE layer per statement.
    tags = json.loads(_get(registry, "/v2/signed/tiny/tags/list"))["tags"]
    assert att in tags
    manifest = json.loads(
        _get(registry, f"/v2/signed/tiny/manifests/{att}", "application/vnd.oci.image.manifest.v1+json")
    )
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.dsse.envelope.v1+json"] * 3
    assert [layer["annotations"]["predicateType"] for layer in manifest["layers"]] == ATT_TYPES
    envelope = json.loads(_get(registry, f"/v2/signed/tiny/blobs/{manifest['layers'][2]['digest']}"))
    import base64

    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == rec["digest"].removeprefix("sha256:")
    purls = [c["purl"] for c in statement["predicate"]["components"]]
    assert any(
        p.startswith("pkg:deb/debian/libc6@") and "arch=amd64" in p and "distro=debian-13" in p for p in purls
    ), purls
    assert rec["sbom_packages"] == len(purls) and Path(rec["sbom"]).is_file()

    # verify: by tag, against the GPU and driver branch measured; refused for another GPU or another key.
    ref = f"{repo}:{rec['tags'][0]}"
    done = _verify(ref, "--key", str(public), "--gpu", "H200", "--driver", "580", "--suite", "smoke")
    assert done.returncode == 0 and done.stdout.startswith(f"verified: {rec['digest'][:19]} passed the smoke suite"), (
        done.stdout
    )
    assert "Sigstore bundle" in done.stdout and "read from its in-toto test-result/v0.1 statement" in done.stdout
    # --chain: the result, the signed SBOM and the audit name one image, and the SBOM's torch is the suite's
    done = _verify(ref, "--key", str(public), "--chain", "--out", str(built["out"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain: test result: holds" in done.stdout and "chain: SBOM: holds" in done.stdout, done.stdout
    assert "chain: torch: holds: neither the SBOM nor the result has torch" in done.stdout, done.stdout
    assert "chain: provenance: absent" in done.stdout, done.stdout
    done = _verify(ref, "--key", str(public), "--cc", "8.0")
    assert (
        done.returncode == 1
        and "refused by gpu: measured on NVIDIA H200 (9.0), not on compute capability 8.0" in done.stdout
    )
    done = _verify(ref, "--key", str(other))
    assert done.returncode == 1 and "refused by signature" in done.stdout, done.stdout

    # The sheet links the SBOM; --diff-packages reads it like an image.
    done = invoke("report", "--matrix", str(built["matrix"]), "--out", str(built["out"]), "--target", "plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"(../sbom/{CELL}.cdx.json)" in (built["out"] / "reports" / "BUILD_MATRIX.md").read_text()
    done = invoke("report", "--diff-packages", rec["sbom"], "--diff-packages", built["image_id"])
    assert done.returncode == 0 and "0 difference(s)" in done.stdout, done.stdout + done.stderr


def test_verify_refuses_a_tampered_predicate_another_digest_another_key_a_failed_and_an_expired_result(
    invoke, built, registry, tmp_path, docker_client
):
    import base64

    from imagematrix.evidence import attest
    from imagematrix.evidence import registry as oci

    private, public = _keys(invoke, tmp_path / "keys")
    other_private, _ = _keys(invoke, tmp_path / "other")
    repo = f"{registry}/forged/tiny"
    image = docker_client.images.get(built["image_id"])
    image.tag(repo, "v1")
    digest = next(
        line
        for line in docker_client.images.push(repo, "v1", stream=True, decode=True)
        if (line.get("aux") or {}).get("Digest")
    )["aux"]["Digest"]
    run = {
        "state": "passed",
        "suite": "smoke",
        "passed": 33,
        "failed": 0,
        "skipped": 36,
        "require_gpu": True,
        "gpu_info": H200,
        "finished": "2026-11-30T02:10:00Z",
    }

    def signed(key: Path, subject: str = digest, **change) -> dict:
        return attest.sign(attest.statement(repo, subject, CELL, {**run, **change}), attest.signer(str(key)))

    tampered = signed(private, state="failed", failed=1)
    doc = json.loads(base64.b64decode(tampered["payload"]))
    doc["predicate"].update(result="passed", failed=0)
    tampered["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    forged = [
        tampered,
        signed(private, subject="sha256:" + "0" * 64),
        signed(other_private),
        signed(private, state="failed", failed=2),
        signed(private, finished="2025-01-01T00:00:00Z"),
    ]
    oci.attach(repo, digest, [(attest.PREDICATE_TYPE, e) for e in forged])
    done = _verify(f"{repo}:v1", "--key", str(public), "--max-age", "90")
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    reasons = ["refused by signature", "refused by subject", "refused by signature", "refused by result"]
    reasons.append("refused by expired")
    # each forgery is read twice, as a Sigstore bundle (the referrers tag) and as a layer of cosign v2's .att
    bundles = [line for line in lines if "Sigstore bundle" in line]
    layers = [line for line in lines if ".att, layer" in line]
    assert [line.split(":")[0] for line in bundles] == reasons, done.stdout
    assert [line.split(":")[0] for line in layers] == reasons, done.stdout
    assert "the smoke suite failed" in bundles[3] and "more than 90 days ago" in bundles[4]
    oci.attach(repo, digest, [(attest.PREDICATE_TYPE, signed(private))])  # the real one, beside the forgeries
    done = _verify(f"{repo}@{digest}", "--key", str(public), "--max-age", "90")
    assert done.returncode == 0 and "Sigstore bundle" in done.stdout, done.stdout


def test_publish_with_a_verify_key_refuses_a_result_no_attestation_by_that_key_backs(invoke, built, registry, tmp_path):
    from imagematrix.evidence import attest

    private, public = _keys(invoke, tmp_path / "keys")
    other_private, _ = _keys(invoke, tmp_path / "other")
    doc = yaml.safe_load(built["matrix"].read_text())
    doc["publish"] = {"require": ["smoke"], "verify_key": str(public)}
    (tmp_path / "m").mkdir()
    matrix = tmp_path / "m" / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(doc, sort_keys=False))
    repo = f"{registry}/keyed/tiny"

    def publish(attestation: Path | None = None):
        _gpu_run(
            built["out"], built["image_id"], key=RUN_KEY, **({"attestation": str(attestation)} if attestation else {})
        )
        return invoke(
            "publish", "--matrix", str(matrix), "--out", str(built["out"]), "--target", "plain", "--repository", repo
        )

    done = publish()  # a "passed" line alone, as a merged or edited record would have it
    assert done.returncode == 1 and "no attestation by imagematrix.pub backs its smoke result" in done.stdout, (
        done.stdout
    )
    run = {**status.read_raw(built["out"])[CELL][SUITES_SECTION]["smoke"], "suite": "smoke"}  # as the runner signs it
    for key, expect in ((other_private, "refused by signature"), (private, None)):
        path = tmp_path / f"{key.parent.name}.intoto.json"
        path.write_text(
            json.dumps(attest.sign(attest.statement(repo, built["image_id"], CELL, run), attest.signer(str(key))))
        )
        done = publish(path)
        if expect:
            assert done.returncode == 1 and expect in done.stdout, done.stdout
        else:
            assert done.returncode == 0 and f"published {CELL}" in done.stdout, done.stdout + done.stderr
