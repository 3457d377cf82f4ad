"""Where evidence lives beside the record: ``build/attestations/<cell>.<suite>.intoto.json`` (signed
results) and ``build/sbom/<cell>.cdx.json`` (the SBOM of what was published)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ATTESTATIONS_DIR = "attestations"
SBOM_DIR = "sbom"


def _write(out: Path, doc: dict[str, Any]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def write_sbom(build_dir: Path, cell: str, bom: dict[str, Any]) -> Path:
    return _write(Path(build_dir) / SBOM_DIR / f"{cell}.cdx.json", bom)


def write_attestation(build_dir: Path, cell: str, suite: str, envelope: dict[str, Any]) -> Path:
    return _write(Path(build_dir) / ATTESTATIONS_DIR / f"{cell}.{suite}.intoto.json", envelope)
