"""Docker's image reference grammar (distribution/reference), split into name, tag and digest.

Stdlib only: the matrix loader checks ``image`` and ``bases`` with it, and publishing and the test
runner check a repository given on the command line (``--repository``, ``--candidates``) with it.
Patterns are used with ``fullmatch``: ``$`` alone would accept a trailing newline.
"""

from __future__ import annotations

import re

from imagematrix.core.errors import UsageError

# Docker's reference grammar (distribution/reference), split into name and tag.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME = 255  # Docker's limit on a repository name
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


def valid_reference(ref: str) -> bool:
    """True if ``ref`` is a Docker image reference: name[:tag][@digest]."""
    name, _, digest = ref.partition("@")
    if digest and not DIGEST_RE.fullmatch(digest):
        return False
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not TAG_RE.fullmatch(tag):
            return False
    return bool(NAME_RE.fullmatch(name)) and len(name) <= MAX_NAME


def repository_problem(repo: str) -> str | None:
    """Why ``repo`` (a repository to push to or pull from, without a tag) is not one, or None."""
    if len(repo) > MAX_NAME:
        return f"is {len(repo)} characters; Docker allows at most {MAX_NAME}"
    if not NAME_RE.fullmatch(repo):
        return (
            "is not a repository name: lowercase components of [a-z0-9._-] joined by '/', optionally after a "
            "registry host (e.g. 127.0.0.1:5000/team/pytorch, ghcr.io/org/name); no tag, spaces or ';'"
        )
    return None


def check_repository(flag: str, repo: str) -> str:
    why = repository_problem(repo)
    if why:
        raise UsageError(f"{flag} {repo[:80]!r} {why}")
    return repo


IMAGE_ID_RE = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")  # a local image id, whole or short


def check_image(flag: str, ref: str) -> str:
    """An image the engine is asked about: a reference (name[:tag][@digest]) or a local image id, else
    UsageError before Docker sees it (a space, ';', a leading '-', a newline or '../' is neither)."""
    if len(ref) <= MAX_NAME + 200 and (IMAGE_ID_RE.fullmatch(ref) or valid_reference(ref)):
        return ref
    return _refuse(flag, ref)


def _refuse(flag: str, ref: str) -> str:
    shown = ref[:80] + ("…" if len(ref) > 80 else "")
    raise UsageError(
        f"{flag} {shown!r} is not an image reference (name[:tag][@sha256:…], e.g. ghcr.io/org/pytorch:cu13.2-devel) "
        "nor a local image id"
    )
