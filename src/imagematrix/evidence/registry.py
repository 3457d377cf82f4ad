"""Attestations beside an image in its registry, over the OCI distribution API (stdlib HTTP only).

Where they go (``attach``): one manifest per signed statement, whose ``subject`` is the image and whose
one layer is a Sigstore bundle v0.3 holding the DSSE envelope (artifact type
``application/vnd.dev.sigstore.bundle.v0.3+json``, annotations ``dev.sigstore.bundle.content`` and
``dev.sigstore.bundle.predicateType``: cosign v3's layout). A registry that answers the referrers API
lists them itself; where it does not (Debian's docker-registry 2.8, GHCR), they are also listed in the
OCI referrers tag schema's index (``<repo>:sha256-<hex>``), which ORAS, notation and
go-containerregistry read, and the envelopes are added as layers of cosign v2's ``sha256-<hex>.att``.
``attestations_of`` reads all of these back, and only what names the image as its subject.

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
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_CONTENT = "dev.sigstore.bundle.content"  # the annotations cosign v3 writes and looks for
BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
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
    """cosign v2's tag for the attestations of ``digest``."""
    return digest.replace(":", "-") + ".att"


def referrers_tag(digest: str) -> str:
    """The OCI referrers tag schema's tag for ``digest`` (an index of its referrers, where a registry has
    no referrers API): ``sha256-<hex>``."""
    return digest.replace(":", "-")


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def bundle_of(envelope: Mapping[str, Any], hint: str) -> dict[str, Any]:
    """A DSSE envelope as a Sigstore bundle v0.3 signed by a key (no certificate, no transparency log:
    the key path works offline and air-gapped); ``hint`` names the key."""
    return {
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": {
            "payload": envelope.get("payload"),
            "payloadType": envelope.get("payloadType"),
            "signatures": [
                {"sig": sig.get("sig"), **({"keyid": sig["keyid"]} if sig.get("keyid") else {})}
                for sig in envelope.get("signatures") or []
                if isinstance(sig, dict)
            ],
        },
    }


def envelope_of_bundle(doc: Any) -> dict[str, Any] | None:
    """The DSSE envelope a Sigstore bundle holds (None: not a v0.3 bundle of a DSSE envelope)."""
    if not isinstance(doc, dict) or doc.get("mediaType") != BUNDLE or not isinstance(doc.get("dsseEnvelope"), dict):
        return None
    env = doc["dsseEnvelope"]
    if not isinstance(env.get("payload"), str) or not isinstance(env.get("signatures"), list):
        return None
    return {"payload": env["payload"], "payloadType": env.get("payloadType"), "signatures": env["signatures"]}


@dataclass(frozen=True)
class Found:
    envelope: dict
    predicate_type: str
    where: str  # e.g. "127.0.0.1:5000/team/x@sha256:… (Sigstore bundle, referrers tag)"


@dataclass(frozen=True)
class Attached:
    where: tuple[str, ...]  # each statement's place, in the order given
    storage: str  # "referrers" (the registry's API) or "referrers tag + cosign .att"


@dataclass(frozen=True)
class Discovered:
    digest: str
    found: tuple[Found, ...]
    notes: tuple[str, ...]  # what was there but not read, and why
    storage: str  # where the referrers were listed: "referrers API", "referrers tag", or "none"


def _dsse_layers(reg: Registry, repository: str, manifest: Mapping[str, Any], where: str) -> list[Found]:
    """cosign v2's layout (and this project's before bundles): DSSE envelopes as layers."""
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


def _listed(reg: Registry, repository: str, digest: str) -> tuple[list[dict], str, list[str]]:
    """The referrers of ``digest``: from the API where the registry answers it, else from the referrers
    tag's index; (descriptors, where they were listed, notes)."""
    notes: list[str] = []
    api = reg.referrers(repository, digest)
    if api is not None:
        return api, "referrers API", notes
    got = reg.manifest(repository, referrers_tag(digest))
    if got is None:
        return [], "none", notes
    _, media, doc = got
    if media != OCI_INDEX or not isinstance(doc.get("manifests"), list):
        notes.append(
            f"the tag {referrers_tag(digest)} is not an OCI index ({str(media)[:80] or 'no media type'}): not read"
        )
        return [], "none", notes
    return [m for m in doc["manifests"][:MAX_LAYERS] if isinstance(m, dict)], "referrers tag", notes


def attestations_of(ref: str) -> Discovered:
    """The digest ``ref`` names in its registry and every attestation attached to it: Sigstore bundles and
    DSSE manifests listed as its referrers (the API, or the referrers tag where there is none), and the
    layers of cosign v2's ``.att`` tag. A listed manifest is read only if its own ``subject`` is the image."""
    r = Ref.parse(ref)
    reg = Registry(r.registry)
    digest = reg.resolve(r)
    listed, storage, notes = _listed(reg, r.repository, digest)
    found: list[Found] = []
    for m in listed:
        at = m.get("digest")
        if not isinstance(at, str) or not DIGEST_RE.fullmatch(at):
            notes.append("a referrer without a sha256 digest: not read")
            continue
        if at == digest:
            notes.append(f"a referrer that is the image itself ({at[:19]}): not read")
            continue
        if m.get("artifactType") not in (BUNDLE, DSSE):
            continue  # another kind of referrer (a signature, an SBOM of another tool)
        got = reg.manifest(r.repository, at)
        if got is None:
            notes.append(f"the referrer {at[:19]} is listed but not in the registry")
            continue
        manifest = got[2]
        subject = manifest.get("subject")
        if not isinstance(subject, dict) or subject.get("digest") != digest:
            notes.append(f"the referrer {at[:19]} names another subject: not read")
            continue
        where = f"{r.registry}/{r.repository}@{at[:19]} ({storage})"
        if m.get("artifactType") == DSSE:
            found += _dsse_layers(reg, r.repository, manifest, where)
            continue
        layers = manifest.get("layers")
        layer = layers[0] if isinstance(layers, list) and len(layers) == 1 and isinstance(layers[0], dict) else {}
        if layer.get("mediaType") != BUNDLE or not DIGEST_RE.fullmatch(str(layer.get("digest") or "")):
            notes.append(f"the bundle referrer {at[:19]} does not hold one bundle layer: not read")
            continue
        try:
            envelope = envelope_of_bundle(files.parse_json(reg.blob(r.repository, layer["digest"]), "a bundle"))
        except ValueError:
            envelope = None
        if envelope is None:
            notes.append(f"the bundle referrer {at[:19]} holds no Sigstore bundle v0.3 of a DSSE envelope")
            continue
        annotations = manifest.get("annotations")
        ptype = annotations.get(BUNDLE_PREDICATE) if isinstance(annotations, dict) else None
        found.append(Found(envelope, str(ptype or ""), f"{where}, Sigstore bundle"))
    got = reg.manifest(r.repository, att_tag(digest))
    if got:
        found += _dsse_layers(reg, r.repository, got[2], f"{r.registry}/{r.repository}:{att_tag(digest)}")
    return Discovered(digest, tuple(found), tuple(notes), storage)


def attach(repository: str, digest: str, envelopes: Iterable[tuple[str, dict]], hint: str = "") -> Attached:
    """Attach each (predicate type, envelope) to ``repository@digest`` where common clients look:
    a Sigstore bundle v0.3 referrer per statement (cosign v3's layout: artifact type and annotations as
    cosign writes them), found through the registry's referrers API; where the registry has none, also
    listed in the referrers tag's index (``sha256-<hex>``, the OCI tag schema ORAS, notation and
    go-containerregistry read) and added to cosign v2's ``.att`` tag (its DSSE layers). Idempotent: a
    statement already attached is not added twice."""
    r = Ref.parse(f"{repository}@{digest}")
    reg = Registry(r.registry)
    subject = reg.manifest(r.repository, digest)
    if subject is None:
        raise RegistryError(
            f"{repository}@{digest[:19]} is not in the registry: push the image before its attestations"
        )
    items = [(ptype, dict(env)) for ptype, env in envelopes]
    subject_desc = {"mediaType": subject[1] or OCI_MANIFEST, "digest": digest, "size": len(_canonical(subject[2]))}
    empty = reg.push_blob(r.repository, b"{}", OCI_EMPTY)
    descriptors, where = [], []
    for ptype, env in items:
        sig = (env.get("signatures") or [{}])[0]
        layer = reg.push_blob(r.repository, _canonical(bundle_of(env, hint or str(sig.get("keyid") or ""))), BUNDLE)
        annotations = {BUNDLE_CONTENT: "dsse-envelope", BUNDLE_PREDICATE: ptype}
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE,
            "config": empty,
            "layers": [layer],
            "subject": subject_desc,
            "annotations": annotations,
        }
        m = reg.put_manifest(r.repository, sha256(_canonical(doc)), doc)
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": m,
                "size": len(_canonical(doc)),
                "artifactType": BUNDLE,
                "annotations": annotations,
            }
        )
        where.append(f"{r.registry}/{r.repository}@{m[:19]} (Sigstore bundle, referrer of {digest[:19]})")
    if reg.referrers(r.repository, digest) is not None:
        return Attached(tuple(where), "referrers")
    _add_to_referrers_tag(reg, r.repository, digest, descriptors)
    _add_to_att_tag(reg, r.repository, digest, items)
    return Attached(tuple(where), "referrers tag + cosign .att")


def _add_to_referrers_tag(reg: Registry, repository: str, digest: str, descriptors: list[dict]) -> None:
    tag = referrers_tag(digest)
    got = reg.manifest(repository, tag)
    kept = []
    if got is not None and got[1] == OCI_INDEX and isinstance(got[2].get("manifests"), list):
        kept = [m for m in got[2]["manifests"] if isinstance(m, dict) and m.get("digest") != digest]
    seen = {m.get("digest") for m in kept}
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": kept + [d for d in descriptors if d["digest"] not in seen],
    }
    reg.put_manifest(repository, tag, index)


def _add_to_att_tag(reg: Registry, repository: str, digest: str, items: list[tuple[str, dict]]) -> None:
    tag = att_tag(digest)
    existing = reg.manifest(repository, tag)
    layers = [layer for layer in (existing[2].get("layers") or [] if existing else []) if isinstance(layer, dict)]
    for ptype, env in items:
        layer = reg.push_blob(repository, _canonical(env), DSSE, {"predicateType": ptype})
        if layer["digest"] not in {x.get("digest") for x in layers}:
            layers.append(layer)
    config = _canonical(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [x.get("digest") for x in layers]},
        }
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": reg.push_blob(repository, config, OCI_CONFIG),
        "layers": layers,
    }
    reg.put_manifest(repository, tag, doc)


def _annotations(item: Any) -> dict:
    """A descriptor's annotations, or {} for anything else (a registry's answer assumes no shape)."""
    got = item.get("annotations") if isinstance(item, dict) else None
    return got if isinstance(got, dict) else {}


@dataclass(frozen=True)
class Provenance:
    """BuildKit's SLSA provenance statement as an image index carries it (None: none), the platform
    manifests the index lists (its subjects), and the attestation manifest that holds it."""

    statement: dict | None
    platforms: frozenset[str]
    manifest: str = ""


def provenance_of(ref: str, digest: str) -> Provenance:
    """BuildKit's SLSA provenance of ``digest`` where its builder attached one (an image index whose
    ``attestation-manifest`` entries hold in-toto layers), and the platform manifests the index lists
    (the provenance's subjects are those); no statement for an image without."""
    r = Ref.parse(ref)
    reg = Registry(r.registry)
    got = reg.manifest(r.repository, digest)
    if got is None or got[1] not in (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"):
        return Provenance(None, frozenset())
    entries = [m for m in (got[2].get("manifests") or [])[:MAX_LAYERS] if isinstance(m, dict)]
    platforms = frozenset(
        str(m.get("digest"))
        for m in entries
        if _annotations(m).get("vnd.docker.reference.type") != "attestation-manifest"
    )
    for m in entries:
        if _annotations(m).get("vnd.docker.reference.type") != "attestation-manifest":
            continue
        if not DIGEST_RE.fullmatch(str(m.get("digest") or "")):
            continue
        att = reg.manifest(r.repository, m["digest"])
        for layer in (att[2].get("layers") or [])[:MAX_LAYERS] if att else []:
            ptype = (
                (layer.get("annotations") or {}).get("in-toto.io/predicate-type") if isinstance(layer, dict) else None
            )
            if not str(ptype).startswith("https://slsa.dev/provenance/"):
                continue
            try:
                doc = files.parse_json(reg.blob(r.repository, str(layer.get("digest"))), "a provenance")
            except (ValueError, RegistryError):
                continue
            if isinstance(doc, dict):
                return Provenance(doc, platforms, m["digest"])
    return Provenance(None, platforms)
