"""`imagematrix verify --chain`: the evidence of one published digest tells one story. The signed test
result, the signed SBOM, the build's provenance (when the builder made one) and the audit (when the build
directory that published it is at hand) must all name the same image, and the torch the suite imported
must be the torch the SBOM lists.

Pure: every input is already read and, where signed, verified (``evidence.verify``); this module only
compares. Each link says ``holds``, ``refused`` (with why) or ``absent`` (with why that is not a refusal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagematrix.evidence import attest

HOLDS, REFUSED, ABSENT = "holds", "refused", "absent"
SLSA_PROVENANCE = ("https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1")


@dataclass(frozen=True)
class Link:
    name: str
    state: str
    detail: str

    def line(self) -> str:
        return f"{self.name}: {self.state}: {self.detail}"


def _subjects(statement: Mapping[str, Any]) -> list[str]:
    out = []
    for s in statement.get("subject") or []:
        if isinstance(s, dict) and isinstance(s.get("digest"), dict) and isinstance(s["digest"].get("sha256"), str):
            out.append("sha256:" + s["digest"]["sha256"])
    return out


def sbom_torch(bom: Mapping[str, Any]) -> list[str]:
    """The versions of torch an SBOM lists (a purl ``pkg:pypi/torch@X``)."""
    found = []
    for c in bom.get("components") or []:
        purl = c.get("purl") if isinstance(c, dict) else None
        if isinstance(purl, str) and purl.split("?")[0].split("@")[0] == "pkg:pypi/torch":
            found.append(str(c.get("version") or purl.split("@", 1)[-1].split("?")[0]))
    return found


def check_chain(
    digest: str,
    result: attest.Claim,
    sbom: attest.Verified | None,
    provenance: Mapping[str, Any] | None = None,
    audit_image: str | None = None,
    published: Mapping[str, Any] | None = None,
    platforms: frozenset[str] = frozenset(),
) -> list[Link]:
    """The links between a verified result (``result``, already held to ``digest`` by ``attest.check``)
    and the rest: ``sbom`` (a verified CycloneDX statement, or None when none verified), ``provenance``
    (an in-toto SLSA statement from the build, unsigned as BuildKit writes it, or None), ``audit_image``
    (the image id the audit read), ``published`` (the publish record: digest and image id) and
    ``platforms`` (the manifests an index at ``digest`` lists: a provenance names those)."""
    links = [Link("test result", HOLDS, f"its {result.reads} statement names {digest[:19]}")]
    # the SBOM
    bom: Mapping[str, Any] = {}
    if sbom is None:
        links.append(Link("SBOM", REFUSED, "no SBOM signed by this key is attached to this digest"))
    elif sbom.statement.get("predicateType") != "https://cyclonedx.org/bom":
        links.append(
            Link("SBOM", REFUSED, f"the statement is a {sbom.statement.get('predicateType')!r}, not CycloneDX")
        )
    elif digest not in _subjects(sbom.statement):
        other = ", ".join(d[:19] for d in _subjects(sbom.statement)) or "no digest"
        links.append(Link("SBOM", REFUSED, f"it describes {other}, not {digest[:19]} (an SBOM of another build)"))
    else:
        bom = sbom.predicate
        links.append(Link("SBOM", HOLDS, f"signed, names {digest[:19]}, {len(bom.get('components') or [])} components"))
    # torch: what the suite imported against what the SBOM lists
    imported = result.torch.get("distribution_version") or result.torch.get("version")
    listed = sbom_torch(bom) if bom else []
    if not bom:
        links.append(Link("torch", ABSENT, "no SBOM to compare with"))
    elif not listed and not imported:
        links.append(Link("torch", HOLDS, "neither the SBOM nor the result has torch (a cell without it)"))
    elif not imported:
        links.append(
            Link(
                "torch",
                REFUSED,
                f"the SBOM lists torch {', '.join(listed)}; the result does not say which the suite imported",
            )
        )
    elif imported not in listed:
        shown = ", ".join(listed) or "no torch"
        links.append(Link("torch", REFUSED, f"the suite imported torch {imported}; the SBOM lists {shown}"))
    else:
        links.append(Link("torch", HOLDS, f"the suite imported torch {imported}, the one the SBOM lists"))
    # the build's provenance
    if provenance is None:
        links.append(
            Link(
                "provenance",
                ABSENT,
                "none attached (the build kept none: the docker driver keeps it only with the containerd image store)",
            )
        )
    elif provenance.get("predicateType") not in SLSA_PROVENANCE:
        links.append(
            Link(
                "provenance", REFUSED, f"a {str(provenance.get('predicateType'))[:80]!r} statement, not SLSA provenance"
            )
        )
    elif not {digest, *platforms} & set(_subjects(provenance)):
        other = ", ".join(d[:19] for d in _subjects(provenance)) or "no digest"
        links.append(Link("provenance", REFUSED, f"it is the provenance of {other}, not of {digest[:19]}"))
    else:
        links.append(Link("provenance", HOLDS, f"BuildKit's SLSA provenance names {digest[:19]}"))
    # the audit: the image the audit read is the one published as this digest and the one the suite ran
    if published is None:
        links.append(Link("audit", ABSENT, "no publish record of this digest in the build directory (--out)"))
    elif published.get("digest") != digest:
        links.append(
            Link("audit", REFUSED, f"the publish record is of {str(published.get('digest'))[:19]}, not {digest[:19]}")
        )
    elif audit_image is None:
        links.append(Link("audit", ABSENT, f"no audit of {str(published.get('image_id'))[:19]} in the build directory"))
    elif audit_image != published.get("image_id"):
        links.append(
            Link(
                "audit",
                REFUSED,
                f"the audit read {audit_image[:19]}; {digest[:19]} was published from "
                f"{str(published.get('image_id'))[:19]}",
            )
        )
    elif result.image_id and result.image_id != audit_image:
        links.append(Link("audit", REFUSED, f"the suite ran {result.image_id[:19]}, the audit read {audit_image[:19]}"))
    else:
        links.append(Link("audit", HOLDS, f"the audit read {audit_image[:19]}, the image published as {digest[:19]}"))
    return links


def holds(links: list[Link]) -> bool:
    return not any(link.state == REFUSED for link in links)
