"""Candidates: a cell's image pushed from the build host by its immutable tag, for GPU runners to pull and
test by digest, and for publish to promote only that digest. Also the one push of an image to a registry
(publish pushes releases through it)."""

from __future__ import annotations

import re

from rich.console import Console

from imagematrix.core import status
from imagematrix.core.builddir import utcnow
from imagematrix.core.contract import INPUT_HASH_LABEL
from imagematrix.core.errors import ImagematrixError
from imagematrix.matrix.model import Cell
from imagematrix.matrix.plan import Plan


class RegistryError(ImagematrixError):
    """A push or pull the registry refused or never answered."""


def immutable_tag(tag: str, input_hash: str) -> str:
    """The tag that never moves: the release tag and the render's input hash (also a candidate's tag)."""
    return f"{tag}-{input_hash.removeprefix('sha256:')[:12]}"


CANDIDATE = "candidate"  # status section: where a build pushed the cell for GPU runners to test


def push_candidates(plan: Plan, client, console: Console, repository: str) -> int:
    """Push each selected cell's current local image to ``repository`` under its immutable tag (a
    candidate, named by input hash) and record the digest; GPU runners test it from there
    (`--candidates`), and `publish --candidates` promotes that digest. 1 if a cell had no current image."""
    from docker.errors import ImageNotFound

    missing = 0
    for step in plan.steps:
        cid = step.cell.id
        try:
            image = client.images.get(step.cell.ref)
        except ImageNotFound:
            image = None
        if image is None or image.labels.get(INPUT_HASH_LABEL) != step.rendered.input_hash:
            missing += 1
            console.print(
                f"no candidate for {cid}: no current image {step.cell.ref} (invoke build)",
                markup=False,
                highlight=False,
            )
            continue
        tag = immutable_tag(step.cell.tag, step.rendered.input_hash)
        digest = push_image(client, image, repository, [tag])
        status.update_cell(
            plan.build_dir,
            cid,
            CANDIDATE,
            {"repository": repository, "tag": tag, "digest": digest, "image_id": image.id, "pushed": utcnow()},
            replace=True,
        )
        console.print(f"candidate {cid}: {repository}@{digest} ({tag})", markup=False, highlight=False)
    return 1 if missing else 0


def pull_candidate(client, repository: str, cell: Cell, input_hash: str):
    """A GPU runner's copy of a cell's candidate, tagged as the cell so the suite tests it; (image, digest)."""
    tag = immutable_tag(cell.tag, input_hash)
    try:
        image = client.images.pull(repository, tag=tag)
    except Exception as exc:  # not pushed yet, registry down, no credentials: the SDK's own errors
        raise RegistryError(
            f"cannot pull candidate {repository}:{tag} for {cell.id}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Fix: push it from the build "
            "host (invoke build --push-candidates REPO), and check `docker login` for that registry"
        ) from None
    digest = next(
        (d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if d.startswith(f"{repository}@")), None
    )
    image.tag(cell.image, cell.tag)
    return image, digest


PUSHED_DIGEST = re.compile(r": digest: (sha256:[0-9a-f]{64}) size: \d+$")


def push_image(client, image, repository: str, tags: list[str]) -> str:
    """Tag ``image`` as repository:tag for each tag and push; the digest the registry answered."""
    digest = None
    for tag in tags:
        image.tag(repository, tag)
        try:
            for line in client.images.push(repository, tag, stream=True, decode=True):
                if line.get("error"):
                    raise RegistryError(
                        f"pushing {repository}:{tag} failed: {line['error']}. Fix: check that the registry answers "
                        "and that "
                        "`docker login` (or a credential helper) has its credentials; nothing more was recorded as "
                        "published"
                    )
                # The classic image store answers in "aux"; the containerd store only in the status line.
                said = PUSHED_DIGEST.search(str(line.get("status") or ""))
                digest = (line.get("aux") or {}).get("Digest") or (said.group(1) if said else None) or digest
        except RegistryError:
            raise
        except Exception as exc:  # connection refused, TLS, auth: the SDK's own errors
            raise RegistryError(
                f"cannot push {repository}:{tag}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
    if digest is None:
        raise RegistryError(f"the registry gave no digest for {repository}: nothing is recorded as published")
    return digest
