"""`invoke publish`: an image reaches its release tags only after its GPU suite passed on it.

A cell is promoted when its local image is the one the current render builds
(its input-hash label equals the render's), and every suite the matrix requires
(``publish.require``, smoke by default) passed **on that image id** in a run
with ``--require-gpu`` (a run where GPU checks could skip never counts). Anything
else is refused, with the reason, per cell. Promotion pushes the tested image
under its release tag and an immutable one (``<tag>-<input hash>``), and records
the pushed digest. Credentials come from the docker config and its credential
helpers, never from the matrix or the command line.

With ``publish.verify_key`` in the matrix, each required result must also be backed by an attestation
that key verifies, for that image and that run's key (a "passed" line merged from another runner's
history unlocks nothing by itself). With a signing key (``--signing-key`` or the environment), each
published digest gets its signed test results and a signed CycloneDX SBOM beside it in the registry
(evidence.registry). The record image (``<immutable tag>.imagematrix``) stays: an unsigned mirror any
``docker pull`` reads; the attestations are what to trust.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagematrix.build.candidates import immutable_tag, pull_candidate, push_image
from imagematrix.core import status
from imagematrix.core.builddir import utcnow
from imagematrix.core.contract import INPUT_HASH_LABEL
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.records import CellRecord
from imagematrix.core.text import fmt_bytes
from imagematrix.matrix.plan import BuildStep, Plan
from imagematrix.reports import packages

SECTION = "publish"
LAYER_LIMIT = 10 * 10**9  # GHCR refuses a layer over 10 GB


class PublishError(ImagematrixError):
    pass


@dataclass(frozen=True)
class Decision:
    cell: str
    ok: bool
    reason: str
    image_id: str | None = None


def decide(step: BuildStep, image, record: CellRecord, required: tuple[str, ...]) -> Decision:
    """Whether ``step``'s cell may be promoted, from its local image and its record (a damaged record
    section reads as absent: untested)."""
    cid = step.cell.id
    if image is None:
        return Decision(cid, False, f"never built here: no image {step.cell.ref} (invoke build)")
    if image.labels.get(INPUT_HASH_LABEL) != step.rendered.input_hash:
        return Decision(
            cid,
            False,
            "stale: matrix.yaml or a fragment changed since this image was built (invoke build, then test it)",
        )
    for name in required:
        run = record.suites.get(name)
        if run is None:
            return Decision(
                cid,
                False,
                f"untested: no {name} run recorded (imagematrix test --suite {name} "
                f"--python {step.cell.python} --require-gpu)",
            )
        if run.image_id != image.id:
            return Decision(
                cid,
                False,
                f"its {name} run tested another image ({str(run.image_id)[:19]}), not {image.id[:19]}: test this one",
            )
        if run.state != "passed":
            return Decision(cid, False, f"its {name} run {run.state} ({run.finished or '?'})")
        if not run.on_gpu:
            return Decision(cid, False, f"its {name} run was not on a GPU (--require-gpu): GPU checks may have skipped")
    return Decision(cid, True, f"{' and '.join(required)} passed on this image with a GPU", image.id)


def big_layers(image) -> list[str]:
    return [
        f"{fmt_bytes(h.get('Size'))} {str(h.get('CreatedBy', ''))[:80]}"
        for h in image.history()
        if (h.get("Size") or 0) > LAYER_LIMIT
    ]


RECORD_SUFFIX = ".imagematrix"  # <immutable tag>.imagematrix: what travels with a published image


def push_record(client, repository: str, tag: str, document: dict) -> str:
    """Push ``document`` beside the image as a one-file image (FROM scratch, /imagematrix.json) under
    ``tag``; its digest. Any registry takes it (no referrers API needed) and `docker pull` reads it; an
    annotation on the image itself would change the tested digest."""
    import io
    import tarfile

    files = {
        "Dockerfile": b"FROM scratch\nCOPY imagematrix.json /imagematrix.json\n",
        "imagematrix.json": (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    try:
        record_image, _ = client.images.build(
            fileobj=buf,
            custom_context=True,
            tag=f"{repository}:{tag}",
            rm=True,
            labels={"imagematrix.record-of": document["image"]},
        )
    except Exception as exc:  # the engine's build errors
        raise PublishError(f"cannot make the record image {repository}:{tag}: {exc}") from None
    try:
        return push_image(client, record_image, repository, [tag])
    finally:  # it lives in the registry; a local copy per release would only pile up
        with contextlib.suppress(Exception):
            client.images.remove(record_image.id, force=True)


def unbacked(
    record: CellRecord,
    required: tuple[str, ...],
    digest: str,
    key: Path,
    max_age_days: int | None,
    envelopes: list | None = None,
) -> str | None:
    """Why the required results of ``record`` are not each backed by an attestation ``key`` verifies for
    ``digest`` and the recorded run key; None when they are. ``envelopes``: the registry's (a candidate);
    otherwise the signed files the GPU runs left beside the record."""
    from imagematrix.core.errors import UsageError
    from imagematrix.evidence import verify as check

    for n in required:
        run = record.suites[n]
        items = envelopes
        if items is None:
            try:
                items = check.read_envelope(Path(run.attestation)) if run.attestation else []
            except UsageError:
                items = []
        answer = check.verify_envelopes(items, key, digest, suite=n, max_age_days=max_age_days, run_key=run.key)
        if not answer.ok:
            return (
                f"no attestation by {key.name} backs its {n} result ({'; '.join(answer.lines)}). Fix: run the "
                f"suite with --signing-key on the GPU runner (or drop publish.verify_key)"
            )
    return None


def attest_release(build_dir: Path, repo: str, digest: str, cell: str, runs: dict, listed: dict, signer) -> dict:
    """Sign each required result and the SBOM for ``repo@digest`` and attach them there; what to record."""
    from imagematrix.evidence import attest, registry, sbom, store

    doc = sbom.bom(repo, digest, listed)
    path = store.write_sbom(build_dir, cell, doc)
    envelopes = [
        (
            attest.PREDICATE_TYPE,
            attest.sign(attest.statement(repo, digest, cell, {**run.to_json(), "suite": n}), signer),
        )
        for n, run in runs.items()
    ]
    envelopes.append((sbom.PREDICATE_TYPE, attest.sign(attest.sbom_statement(repo, digest, doc), signer)))
    try:
        where = registry.attach(repo, digest, envelopes)
    except registry.RegistryError as exc:
        raise PublishError(f"{repo}@{digest[:19]} is published but its attestations are not: {exc}") from None
    return {"attestations": where, "sbom": str(path), "sbom_packages": sbom.count(doc)}


def run_publish(
    plan: Plan,
    required: tuple[str, ...],
    client,
    console: Console,
    *,
    repository: str | None = None,
    dry_run: bool = False,
    candidates: str | None = None,
    signer=None,
) -> int:
    """Promote every cell that passes the gate; 1 if any was refused. With ``candidates``, what is
    promoted is the candidate's digest, and only if the required runs tested that digest."""
    from docker.errors import ImageNotFound

    from imagematrix.evidence.registry import RegistryError, attestations_of

    records = status.read_status(plan.build_dir)
    if records.warning():
        console.print(f"warning: {records.warning()}", markup=False, highlight=False)
    refused = 0
    for step in plan.steps:
        record = records.get(step.cell.id)
        candidate = record.candidate if candidates else None
        if candidates and not candidate:
            refused += 1
            console.print(
                f"refused {step.cell.id}: no candidate was pushed (invoke build --push-candidates {candidates})",
                markup=False,
                highlight=False,
            )
            continue
        if candidate:  # the digest a GPU runner tested, from the registry: no rebuild, no local copy needed
            image, _ = pull_candidate(client, candidate.repository, step.cell, step.rendered.input_hash)
        else:
            try:
                image = client.images.get(step.cell.ref)
            except ImageNotFound:
                image = None
        d = decide(step, image, record, required)
        if d.ok and candidate:
            tested = {record.suites[n].digest for n in required}
            if tested != {candidate.digest}:
                d = Decision(
                    d.cell,
                    False,
                    f"its GPU runs did not test candidate {candidate.digest[:19]} by digest "
                    f"(they tested {', '.join(sorted(str(t)[:19] if t else 'a local image' for t in tested))}): test "
                    "the candidate "
                    f"(--candidates {candidate.repository})",
                )
        if d.ok and plan.matrix.publish_verify_key:
            envelopes = None
            if candidate:
                try:
                    envelopes = attestations_of(f"{candidate.repository}@{candidate.digest}")[1]
                except RegistryError as exc:
                    d = Decision(d.cell, False, f"its attestations cannot be read: {exc}")
            if d.ok:
                why = unbacked(
                    record,
                    required,
                    candidate.digest if candidate else image.id,
                    plan.matrix.publish_verify_key,
                    plan.matrix.publish_max_age_days,
                    envelopes,
                )
                d = Decision(d.cell, False, why) if why else d
        if not d.ok:
            refused += 1
            console.print(f"refused {d.cell}: {d.reason}", markup=False, highlight=False)
            continue
        repo = repository or step.cell.image
        tags = [step.cell.tag, immutable_tag(step.cell.tag, step.rendered.input_hash)]
        for layer in big_layers(image):
            console.print(
                f"warning {d.cell}: a layer over 10 GB ({layer}); GHCR refuses those. Split the environment "
                "copy (several COPY steps) or slim the environment",
                markup=False,
                highlight=False,
            )
        if dry_run:
            console.print(
                f"would publish {d.cell}: {image.id[:19]} as {', '.join(f'{repo}:{t}' for t in tags)} ({d.reason})",
                markup=False,
                highlight=False,
            )
            continue
        listed = packages.manifest(client, image.id)  # before any push: a failure here leaves the registry untouched
        digest = push_image(
            client, image, repo, tags[::-1]
        )  # the immutable tag first: a moving tag never runs ahead of it
        if candidate and digest != candidate.digest:
            raise PublishError(
                f"{repo} answered digest {digest} for {d.cell}, not the tested candidate's "
                f"{candidate.digest}: the registry rewrote the manifest; nothing more was recorded"
            )
        document = {
            "image": f"{repo}@{digest}",
            "cell": d.cell,
            "tags": tags,
            "image_id": image.id,
            "suites": {n: record.suites[n].to_json() for n in required},
            "packages": listed,
        }
        record_tag = tags[1] + RECORD_SUFFIX
        push_record(client, repo, record_tag, document)
        published = {
            "repository": repo,
            "tags": tags,
            "digest": digest,
            "image_id": image.id,
            "published": utcnow(),
            "record_tag": record_tag,
            **({"candidate": candidate.digest} if candidate else {}),
        }
        status.update_cell(plan.build_dir, d.cell, SECTION, published, replace=True)
        console.print(
            f"published {d.cell}: {repo}@{digest} as {', '.join(tags)}; its test record and packages: "
            f"{repo}:{record_tag}",
            markup=False,
            highlight=False,
        )
        if signer is not None:
            evidence = attest_release(
                plan.build_dir, repo, digest, d.cell, {n: record.suites[n] for n in required}, listed, signer
            )
            status.update_cell(plan.build_dir, d.cell, SECTION, {**published, **evidence}, replace=True)
            console.print(
                f"signed {d.cell}: {len(required)} test result(s) and an SBOM of {evidence['sbom_packages']} "
                f"packages, in {evidence['attestations'][0].rsplit(',', 1)[0]}",
                markup=False,
                highlight=False,
            )
    if len(plan.matrix.platforms) > 1 and not dry_run:
        for line in publish_indexes(plan, repository):
            console.print(line, markup=False, highlight=False)
    console.print(
        f"publish: {len(plan.steps) - refused} promoted{' (dry run)' if dry_run else ''}, {refused} refused",
        markup=False,
        highlight=False,
    )
    return 1 if refused else 0


def index_groups(plan: Plan) -> dict[str, list[BuildStep]]:
    """Release tag without the architecture -> its cells, one per platform, for the selected cells."""
    groups: dict[str, list[BuildStep]] = {}
    for step in plan.steps:
        if step.cell.arch_suffix:
            groups.setdefault(step.cell.tag.removesuffix(step.cell.arch_suffix), []).append(step)
    return groups


def publish_indexes(plan: Plan, repository: str | None) -> list[str]:
    """One multi-platform index per release tag, over the digests of its published platforms
    (``docker buildx imagetools create``: no image is pulled or rebuilt). A tag whose platforms are
    not all published now is left alone, with the reason."""
    import subprocess

    records = status.read_status(plan.build_dir)
    lines = []
    for tag, steps in index_groups(plan).items():
        published = [records.get(s.cell.id).publish for s in steps]
        current = [
            p
            for p, s in zip(published, steps, strict=True)
            if p and p.image_id and immutable_tag(s.cell.tag, s.rendered.input_hash) in p.tags
        ]
        missing = [s.cell.id for s, p in zip(steps, published, strict=True) if p not in current]
        if missing or len(steps) < len(plan.matrix.platforms):
            lines.append(
                f"no index {tag}: not every platform is published from this render "
                f"({', '.join(missing) or 'platforms not selected'})"
            )
            continue
        repo = repository or steps[0].cell.image
        sources = [f"{p.repository}@{p.digest}" for p in current]
        argv = ["docker", "buildx", "imagetools", "create", "--tag", f"{repo}:{tag}", *sources]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise PublishError(
                f"the index {repo}:{tag} could not be made (`{' '.join(argv)}`): "
                f"{(done.stderr or done.stdout).strip()[-400:]}"
            )
        lines.append(f"index {repo}:{tag}: {', '.join(s.cell.platform or '?' for s in steps)}")
        for s in steps:
            status.update_cell(plan.build_dir, s.cell.id, SECTION, {"index": f"{repo}:{tag}"})
    return lines
