"""Attestations beside an image in its registry, over the OCI distribution API (stdlib HTTP only).

Where they go: an OCI referrer (a manifest whose ``subject`` is the image) where the registry answers the
referrers API; otherwise the tag scheme cosign uses, ``<repo>:sha256-<hex>.att``, one OCI manifest whose
layers are DSSE envelopes (media type ``application/vnd.dsse.envelope.v1+json``, annotation
``predicateType``), so ``cosign verify-attestation --key`` reads them. Debian's docker-registry 2.8
answers the referrers API with 404, so there it is the tag.

Registries on localhost (127.0.0.1, ::1) are spoken to over HTTP, every other over HTTPS, as Docker does.
Credentials come from Docker's config (``~/.docker/config.json`` or ``$DOCKER_CONFIG``: ``auths`` or a
credential helper), for a Bearer or Basic challenge. What the registry answers is read with limits
and assumes no shape: a manifest that is not one is a clear error, never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagematrix.core import files
from imagematrix.core.errors import ImagematrixError
from imagematrix.core.reference import DIGEST_RE, NAME_RE, TAG_RE

DSSE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPES = (
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST = 4 << 20  # the distribution spec's own limit
MAX_ENVELOPE = 16 << 20
MAX_LAYERS = 256
TIMEOUT = 30
DOCKER_HUB = "registry-1.docker.io"


class RegistryError(ImagematrixError):
    pass


@dataclass(frozen=True)
class Ref:
    registry: str  # host[:port]
    repository: str  # path in that registry
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> Ref:
        """``[host[:port]/]path[:tag][@sha256:hex]``, as Docker reads it (Docker Hub when no host)."""
        name, _, digest = ref.partition("@")
        tag = None
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
        if (
            not NAME_RE.fullmatch(name)
            or (tag is not None and not TAG_RE.fullmatch(tag))
            or (digest and not DIGEST_RE.fullmatch(digest))
        ):
            raise RegistryError(f"{ref[:200]!r} is not an image reference (registry/repository:tag or @sha256:...)")
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name if rest else f"library/{name}"
        return cls(registry, repository, tag, digest or None)

    def __str__(self) -> str:
        return (
            f"{self.registry}/{self.repository}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def _local(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return h.strip("[]") in ("localhost", "127.0.0.1", "::1")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _docker_config() -> dict:
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        doc = files.read_json(path, "config")
    except (OSError, ValueError):  # absent, a FIFO, too big, not JSON: no stored credentials
        return {}
    return doc if isinstance(doc, dict) else {}


def credentials(host: str) -> tuple[str, str] | None:
    """Docker's stored credentials for ``host``: a helper (credHelpers, credsStore) or ``auths``."""
    config = _docker_config()
    names = [host, f"https://{host}", f"http://{host}"] + (
        ["https://index.docker.io/v1/"] if host == DOCKER_HUB else []
    )
    helpers: dict = config["credHelpers"] if isinstance(config.get("credHelpers"), dict) else {}
    helper = next((helpers[n] for n in names if isinstance(helpers.get(n), str)), None) or config.get("credsStore")
    if isinstance(helper, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
        try:
            done = subprocess.run(
                [f"docker-credential-{helper}", "get"],
                input=host,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            got = files.parse_json(done.stdout[: 1 << 20], "the helper's answer") if done.returncode == 0 else None
            if isinstance(got, dict) and isinstance(got.get("Secret"), str):
                return str(got.get("Username") or ""), got["Secret"]
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    auths: dict = config["auths"] if isinstance(config.get("auths"), dict) else {}
    for n in names:
        entry = auths.get(n)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return user, secret
    return None


class Registry:
    """One registry host: GET/HEAD/PUT/POST with the challenge answered once per scope."""

    def __init__(self, host: str):
        self.host = host
        self.base = f"{'http' if _local(host) else 'https'}://{host}"
        self._auth: dict[str, str] = {}  # scope -> Authorization header

    def request(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        push: bool = False,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_MANIFEST,
        ok: Iterable[int] = (200,),
    ):
        url = path if path.startswith("http") else self.base + path
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        for attempt in (0, 1):
            h = dict(headers or {})
            if scope in self._auth:
                h["Authorization"] = self._auth[scope]
            req = urllib.request.Request(url, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                    body = resp.read(limit + 1)
                    if len(body) > limit:
                        raise RegistryError(f"{self.host} answered {method} {path[:120]} with more than {limit} bytes")
                    return resp.status, resp.headers, body
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and self._answer(exc.headers.get("WWW-Authenticate") or "", scope):
                    continue
                if exc.code in tuple(ok):
                    return exc.code, exc.headers, b""
                detail = exc.read(2000).decode(errors="replace").strip()
                raise RegistryError(
                    f"{self.host} answered {exc.code} to {method} {path[:160]}"
                    + (f": {detail[:300]}" if detail else "")
                    + (". Fix: `docker login " + self.host + "`" if exc.code in (401, 403) else "")
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(
                    f"cannot reach the registry {self.host} ({reason}). Fix: check that it runs and "
                    "that this host can reach it"
                ) from None
        raise RegistryError(f"{self.host} refused the credentials for {scope}. Fix: `docker login {self.host}`")

    def _answer(self, challenge: str, scope: str) -> bool:
        kind, _, params = challenge.partition(" ")
        creds = credentials(self.host)
        if kind.lower() == "basic":
            if not creds:
                return False
            self._auth[scope] = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return True
        if kind.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            return False
        query = {"service": fields.get("service", ""), "scope": scope}
        req = urllib.request.Request(realm + "?" + urllib.parse.urlencode(query))
        if creds:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                doc = files.parse_json(resp.read(1 << 20), "the token answer")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            return False
        self._auth[scope] = f"Bearer {token}"
        return True

    # --- the distribution API ----------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> tuple[str, str, dict] | None:
        """(digest, media type, document) of a manifest; None if there is none."""
        status, headers, body = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            ok=(200, 404),
        )
        if status == 404:
            return None
        digest = sha256(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{self.host} answered a manifest for {reference[:19]} whose content is {digest[:19]}")
        try:
            doc = files.parse_json(body, "the manifest")
        except ValueError:
            raise RegistryError(f"the manifest {repository}:{reference[:80]} is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"the manifest {repository}:{reference[:80]} is not an object")
        return digest, str(doc.get("mediaType") or headers.get("Content-Type") or ""), doc

    def resolve(self, ref: Ref) -> str:
        if ref.digest:
            return ref.digest
        got = self.manifest(ref.repository, ref.tag or "latest")
        if got is None:
            raise RegistryError(f"{ref} is not in the registry (no manifest for tag {ref.tag or 'latest'})")
        return got[0]

    def blob(self, repository: str, digest: str, limit: int = MAX_ENVELOPE) -> bytes:
        _, _, body = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository=repository, limit=limit)
        if sha256(body) != digest:
            raise RegistryError(f"the blob {digest[:19]} of {repository} does not match its digest")
        return body

    def push_blob(
        self, repository: str, data: bytes, media_type: str, annotations: Mapping[str, str] | None = None
    ) -> dict:
        digest = sha256(data)
        status, _, _ = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", repository=repository, push=True, ok=(200, 404)
        )
        if status != 200:
            _, headers, _ = self.request(
                "POST", f"/v2/{repository}/blobs/uploads/", repository=repository, push=True, data=b"", ok=(202,)
            )
            location = headers.get("Location") or ""
            if not location:
                raise RegistryError(f"{self.host} gave no upload location for {repository}")
            url = location if location.startswith("http") else self.base + location
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
            self.request(
                "PUT",
                url,
                repository=repository,
                push=True,
                data=data,
                ok=(201,),
                headers={"Content-Type": "application/octet-stream"},
            )
        return {
            "mediaType": media_type,
            "digest": digest,
            "size": len(data),
            **({"annotations": dict(annotations)} if annotations else {}),
        }

    def put_manifest(self, repository: str, reference: str, doc: Mapping[str, Any]) -> str:
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            push=True,
            data=body,
            ok=(201,),
            headers={"Content-Type": str(doc["mediaType"])},
        )
        return sha256(body)

    def referrers(self, repository: str, digest: str) -> list[dict] | None:
        """The referrers of ``digest`` (OCI 1.1); None where the registry does not answer the API."""
        status, headers, body = self.request(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            repository=repository,
            headers={"Accept": OCI_INDEX},
            ok=(200, 404, 400, 405),
        )
        if status != 200 or not (headers.get("Content-Type") or "").startswith(OCI_INDEX):
            return None
        try:
            doc = files.parse_json(body, "the referrers answer")
        except ValueError:
            return None
        found = doc.get("manifests") if isinstance(doc, dict) else None
        return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else None


def att_tag(digest: str) -> str:
    """cosign's tag for the attestations of ``digest``."""
    return digest.replace(":", "-") + ".att"


@dataclass(frozen=True)
class Found:
    envelope: dict
    predicate_type: str
    where: str  # e.g. "127.0.0.1:5000/team/x:sha256-….att, layer 2"


def _envelopes_of(reg: Registry, repository: str, manifest: Mapping[str, Any], where: str) -> list[Found]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    out = []
    for i, layer in enumerate(layers[:MAX_LAYERS], start=1):
        if not isinstance(layer, dict) or layer.get("mediaType") != DSSE or not isinstance(layer.get("digest"), str):
            continue
        if not DIGEST_RE.fullmatch(layer["digest"]):
            continue
        try:
            envelope = files.parse_json(reg.blob(repository, layer["digest"]), "an envelope")
        except ValueError:
            continue
        if isinstance(envelope, dict):
            annotations: dict = layer["annotations"] if isinstance(layer.get("annotations"), dict) else {}
            out.append(Found(envelope, str(annotations.get("predicateType") or ""), f"{where}, layer {i}"))
    return out


def attestations_of(ref: str) -> tuple[str, list[Found]]:
    """The digest ``ref`` names in its registry and every DSSE envelope attached to it (referrers and the .att tag)."""
    r = Ref.parse(ref)
    reg = Registry(r.registry)
    digest = reg.resolve(r)
    found: list[Found] = []
    for m in reg.referrers(r.repository, digest) or []:
        if m.get("artifactType") == DSSE and isinstance(m.get("digest"), str) and DIGEST_RE.fullmatch(m["digest"]):
            got = reg.manifest(r.repository, m["digest"])
            if got:
                found += _envelopes_of(
                    reg, r.repository, got[2], f"{r.registry}/{r.repository}@{m['digest'][:19]} (referrer)"
                )
    got = reg.manifest(r.repository, att_tag(digest))
    if got:
        found += _envelopes_of(reg, r.repository, got[2], f"{r.registry}/{r.repository}:{att_tag(digest)}")
    return digest, found


def attach(repository: str, digest: str, envelopes: Iterable[tuple[str, dict]]) -> list[str]:
    """Attach each (predicate type, envelope) to ``repository@digest``; where each went. As a referrer
    where the API is answered, else added to the ``.att`` tag's manifest (cosign's scheme, which keeps
    what was there: an envelope already attached is not added twice)."""
    r = Ref.parse(f"{repository}@{digest}")
    reg = Registry(r.registry)
    subject = reg.manifest(r.repository, digest)
    if subject is None:
        raise RegistryError(
            f"{repository}@{digest[:19]} is not in the registry: push the image before its attestations"
        )
    items = [(ptype, json.dumps(env, separators=(",", ":"), sort_keys=True).encode()) for ptype, env in envelopes]
    where = []
    if reg.referrers(r.repository, digest) is not None:
        empty = reg.push_blob(r.repository, b"{}", OCI_EMPTY)
        raw = json.dumps(subject[2], separators=(",", ":"), sort_keys=True).encode()
        for ptype, data in items:
            layer = reg.push_blob(r.repository, data, DSSE, {"predicateType": ptype})
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": DSSE,
                "config": empty,
                "layers": [layer],
                "subject": {"mediaType": subject[1] or OCI_MANIFEST, "digest": digest, "size": len(raw)},
                "annotations": {"predicateType": ptype},
            }
            m = reg.put_manifest(
                r.repository, sha256(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()), doc
            )
            where.append(f"{r.registry}/{r.repository}@{m} (referrer of {digest[:19]})")
        return where
    tag = att_tag(digest)
    existing = reg.manifest(r.repository, tag)
    layers = [layer for layer in (existing[2].get("layers") or [] if existing else []) if isinstance(layer, dict)]
    for ptype, data in items:
        layer = reg.push_blob(r.repository, data, DSSE, {"predicateType": ptype})
        if layer["digest"] not in {x.get("digest") for x in layers}:
            layers.append(layer)
        where.append(
            f"{r.registry}/{r.repository}:{tag}, layer {[x.get('digest') for x in layers].index(layer['digest']) + 1}"
        )
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [x.get("digest") for x in layers]},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": reg.push_blob(r.repository, config, OCI_CONFIG),
        "layers": layers,
    }
    reg.put_manifest(r.repository, tag, doc)
    return where
