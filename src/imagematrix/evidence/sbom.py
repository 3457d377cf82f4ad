"""A CycloneDX SBOM of an image, from the package manifest imagematrix already reads (``reports.packages``:
Python distributions and Debian packages), written with cyclonedx-python-lib and checked against its
bundled schema, offline. Debian packages get ``pkg:deb`` purls with the image's architecture and
distribution (``dpkg --print-architecture``, ``/etc/os-release``), as the purl spec asks.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

from imagematrix.core.errors import ImagematrixError

PREDICATE_TYPE = "https://cyclonedx.org/bom"  # what cosign calls --type cyclonedx


class SbomError(ImagematrixError):
    pass


def bom(image: str, version: str, listing: Mapping[str, Any]) -> dict[str, Any]:
    """The SBOM document (CycloneDX 1.6 JSON) of the image ``image`` at ``version`` (its tag or digest)."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    doc = Bom()
    doc.metadata.component = Component(
        name=image, version=version, type=ComponentType.CONTAINER, bom_ref=f"image/{image}"
    )
    system = listing.get("system") or {}
    qualifiers = {k: v for k, v in (("arch", system.get("arch")), ("distro", system.get("distro"))) if v}
    for name, ver in sorted((listing.get("python") or {}).items()):
        doc.components.add(
            Component(
                name=name,
                version=ver,
                type=ComponentType.LIBRARY,
                bom_ref=f"pypi/{name}@{ver}",
                purl=PackageURL("pypi", name=name.lower(), version=ver),
            )
        )
    namespace = system.get("id") or "debian"
    for name, ver in sorted((listing.get("debian") or {}).items()):
        doc.components.add(
            Component(
                name=name,
                version=ver,
                type=ComponentType.LIBRARY,
                bom_ref=f"deb/{name}@{ver}",
                purl=PackageURL("deb", namespace, name, ver, qualifiers or None),
            )
        )
    with warnings.catch_warnings():  # the image is the root; its packages are not a dependency graph
        warnings.simplefilter("ignore")
        text = JsonV1Dot6(doc).output_as_string(indent=None)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"the SBOM of {image} does not validate against CycloneDX 1.6: {error}")
    return json.loads(text)


def packages_of(sbom: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """An SBOM back to the package manifest (``report --diff-packages`` reads SBOMs as well as images)."""
    out: dict[str, dict[str, str]] = {"python": {}, "debian": {}}
    for c in sbom.get("components") or []:
        purl = str(c.get("purl") or "")
        kind = "python" if purl.startswith("pkg:pypi/") else "debian" if purl.startswith("pkg:deb/") else None
        if kind and isinstance(c.get("name"), str) and isinstance(c.get("version"), str):
            out[kind][c["name"]] = c["version"]
    return out


def count(sbom: Mapping[str, Any]) -> int:
    return len(sbom.get("components") or [])
