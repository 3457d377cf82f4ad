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
from imagematrix.core.records import Candidate, CellRecord, SuiteRun
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


def decide(
    step: BuildStep,
    image,
    record: CellRecord,
    required: tuple[str, ...],
    *,
    candidates: str | None = None,
    unbacked: str | None = None,
) -> Decision:
    """Whether ``step``'s cell may be promoted: every gate, in order, from facts gathered before (a damaged
    record section reads as absent: untested). ``candidates``: promote the candidate pushed there, only if
    the required runs tested its digest. ``unbacked``: why no attestation by ``publish.verify_key`` backs
    the required results (None: they are backed, or no key is set)."""
    cid = step.cell.id
    candidate = record.candidate if candidates else None
    if candidates and candidate is None:
        return Decision(cid, False, f"no candidate was pushed (invoke build --push-candidates {candidates})")
    if image is None:
        return Decision(cid, False, f"never built here: no image {step.cell.ref} (invoke build)")
    if image.labels.get(INPUT_HASH_LABEL) != step.rendered.input_hash:
        return Decision(
            cid,
            False,
            "stale: matrix.yaml or a fragment changed since this image was built (invoke build, then test it)",
        )
    for name in required:
        why = _untested(record.suites.get(name), name, image.id, step.cell.python)
        if why:
            return Decision(cid, False, why)
    if candidate is not None:
        tested = {record.suites[n].digest for n in required}
        if tested != {candidate.digest}:
            shown = ", ".join(sorted(str(t)[:19] if t else "a local image" for t in tested))
            return Decision(
                cid,
                False,
                f"its GPU runs did not test candidate {candidate.digest[:19]} by digest (they tested {shown}): "
                f"test the candidate (--candidates {candidate.repository})",
            )
    if unbacked:
        return Decision(cid, False, unbacked)
    return Decision(cid, True, f"{' and '.join(required)} passed on this image with a GPU", image.id)


def _untested(run: SuiteRun | None, name: str, image_id: str, python: str) -> str | None:
    if run is None:
        return f"untested: no {name} run recorded (imagematrix test --suite {name} --python {python} --require-gpu)"
    if run.image_id != image_id:
        return f"its {name} run tested another image ({str(run.image_id)[:19]}), not {image_id[:19]}: test this one"
    if run.state != "passed":
        return f"its {name} run {run.state} ({run.finished or '?'})"
    if not run.on_gpu:
        return f"its {name} run was not on a GPU (--require-gpu): GPU checks may have skipped"
    return None


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
    from imagematrix.testing.grid import test_names

    doc = sbom.bom(repo, digest, listed)
    path = store.write_sbom(build_dir, cell, doc)
    envelopes = [
        (ptype, attest.sign(st, signer))
        for n, run in runs.items()
        for ptype, st in attest.result_statements(
            repo, digest, cell, {**run.to_json(), "suite": n}, test_names(run.junit)
        )
    ]
    envelopes.append((sbom.PREDICATE_TYPE, attest.sign(attest.sbom_statement(repo, digest, doc), signer)))
    try:
        attached = registry.attach(repo, digest, envelopes)
    except registry.RegistryError as exc:
        raise PublishError(f"{repo}@{digest[:19]} is published but its attestations are not: {exc}") from None
    return {
        "attestations": list(attached.where),
        "storage": attached.storage,
        "sbom": str(path),
        "sbom_packages": sbom.count(doc),
    }


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
    github_output: Path | None = None,
) -> int:
    """Promote every cell that passes the gate (``decide``); 1 if any was refused. With ``candidates``,
    what is promoted is the candidate's digest, and only if the required runs tested that digest. With
    ``github_output``, each promoted cell's test-result predicates and subject go to GitHub's attest action."""
    records = status.read_status(plan.build_dir)
    if records.warning():
        console.print(f"warning: {records.warning()}", markup=False, highlight=False)
    refused = 0
    for step in plan.steps:
        record = records.get(step.cell.id)
        image = _image(client, step, record, candidates)
        unbacked = _unbacked(plan, record, required, image, candidates) if plan.matrix.publish_verify_key else None
        d = decide(step, image, record, required, candidates=candidates, unbacked=unbacked)
        if not d.ok:
            refused += 1
            console.print(f"refused {d.cell}: {d.reason}", markup=False, highlight=False)
            continue
        candidate = record.candidate if candidates else None
        pushed = promote(
            plan, step, d, image, record, candidate, required, client, console, repository, dry_run, signer
        )
        if github_output is not None and pushed is not None:
            keyless_subject(plan.build_dir, step, record, required, pushed, github_output)
    if len(plan.matrix.platforms) > 1 and not dry_run:
        for line in publish_indexes(plan, repository):
            console.print(line, markup=False, highlight=False)
    dry = " (dry run)" if dry_run else ""
    console.print(
        f"publish: {len(plan.steps) - refused} promoted{dry}, {refused} refused", markup=False, highlight=False
    )
    return 1 if refused else 0


def _image(client, step: BuildStep, record: CellRecord, candidates: str | None):
    """The image to promote: the candidate's (pulled by digest: no rebuild, no local copy needed), or the
    local one; None when there is none."""
    from docker.errors import ImageNotFound

    candidate = record.candidate if candidates else None
    if candidates and candidate is None:
        return None
    if candidate is not None:
        return pull_candidate(client, candidate.repository, step.cell, step.rendered.input_hash)[0]
    try:
        return client.images.get(step.cell.ref)
    except ImageNotFound:
        return None


def _unbacked(plan: Plan, record: CellRecord, required: tuple[str, ...], image, candidates: str | None) -> str | None:
    """Why publish.verify_key backs no required result (None: each is backed, or an earlier gate refuses)."""
    from imagematrix.evidence.registry import RegistryError, attestations_of

    candidate = record.candidate if candidates else None
    if image is None or any(n not in record.suites for n in required):
        return None  # decide refuses it earlier, with its own reason
    envelopes = None
    if candidate is not None:
        try:
            envelopes = list(attestations_of(f"{candidate.repository}@{candidate.digest}").found)
        except RegistryError as exc:
            return f"its attestations cannot be read: {exc}"
    digest = candidate.digest if candidate else image.id
    assert plan.matrix.publish_verify_key is not None
    return unbacked(
        record, required, digest, plan.matrix.publish_verify_key, plan.matrix.publish_max_age_days, envelopes
    )


def promote(
    plan: Plan,
    step: BuildStep,
    d: Decision,
    image,
    record: CellRecord,
    candidate: Candidate | None,
    required: tuple[str, ...],
    client,
    console: Console,
    repository: str | None,
    dry_run: bool,
    signer,
) -> dict | None:
    """Push one cell that passed the gate under its tags, its record image beside it and, with a signer,
    its evidence; the publish record written once, and returned (None: a dry run)."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    repo = repository or step.cell.image
    tags = [step.cell.tag, immutable_tag(step.cell.tag, step.rendered.input_hash)]
    for layer in big_layers(image):
        say(
            f"warning {d.cell}: a layer over 10 GB ({layer}); GHCR refuses those. Split the environment copy "
            "(several COPY steps) or slim the environment"
        )
    if dry_run:
        say(f"would publish {d.cell}: {image.id[:19]} as {', '.join(f'{repo}:{t}' for t in tags)} ({d.reason})")
        return None
    listed = packages.manifest(client, image.id)  # before any push: a failure here leaves the registry untouched
    digest = push_image(client, image, repo, tags[::-1])  # the immutable tag first: never behind a moving one
    if candidate and digest != candidate.digest:
        raise PublishError(
            f"{repo} answered digest {digest} for {d.cell}, not the tested candidate's "
            f"{candidate.digest}: the registry rewrote the manifest; nothing more was recorded"
        )
    runs = {n: record.suites[n] for n in required}
    document = {"image": f"{repo}@{digest}", "cell": d.cell, "tags": tags, "image_id": image.id}
    document |= {"suites": {n: r.to_json() for n, r in runs.items()}, "packages": listed}
    record_tag = tags[1] + RECORD_SUFFIX
    push_record(client, repo, record_tag, document)
    published = {"repository": repo, "tags": tags, "digest": digest, "image_id": image.id, "published": utcnow()}
    published |= {"record_tag": record_tag, **({"candidate": candidate.digest} if candidate else {})}
    say(f"published {d.cell}: {repo}@{digest} as {', '.join(tags)}; its test record and packages: {repo}:{record_tag}")
    try:
        published |= provenance_record(repo, digest)
        if signer is not None:
            published |= attest_release(plan.build_dir, repo, digest, d.cell, runs, listed, signer)
            say(
                f"signed {d.cell}: {len(required)} test result(s) and an SBOM of {published['sbom_packages']} "
                f"packages, in {published['attestations'][0].rsplit(',', 1)[0]}"
            )
    finally:  # published, signed or not: the record says so before any error travels on
        status.update_cell(plan.build_dir, d.cell, SECTION, published, replace=True)
    return published


def provenance_record(repo: str, digest: str) -> dict:
    """Where BuildKit's SLSA provenance of the pushed digest is (its attestation manifest), when the build
    kept one: what the publish record says, never more than the registry answered."""
    from imagematrix.evidence.registry import RegistryError, provenance_of

    try:
        found = provenance_of(f"{repo}@{digest}", digest)
    except RegistryError as exc:
        return {"provenance": None, "provenance_note": f"the registry did not say: {exc}"[:500]}
    return {"provenance": found.manifest or None}


def keyless_subject(
    build_dir: Path, step: BuildStep, record: CellRecord, required: tuple[str, ...], pushed: dict, output: Path
) -> None:
    """The published digest's test-result predicates and subject, as the workflow's attest steps read them."""
    from imagematrix.evidence import attest, github
    from imagematrix.matrix.workflow import output_slot
    from imagematrix.testing.grid import test_names

    repo, digest = pushed["repository"], pushed["digest"]
    predicates = {
        n: attest.test_result_statement(
            repo, digest, step.cell.id, {**record.suites[n].to_json(), "suite": n}, test_names(record.suites[n].junit)
        )["predicate"]
        for n in required
    }
    github.write_subject(build_dir, output, output_slot(step.cell), step.cell.id, repo, digest, predicates)


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
