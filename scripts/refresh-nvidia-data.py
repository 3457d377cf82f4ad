#!/usr/bin/env python3
"""Refresh src/imagematrix/core/data/nvidia.json from NVIDIA's published pages, then show what changed.

    python3 scripts/refresh-nvidia-data.py              # fetch both pages (needs the network)
    python3 scripts/refresh-nvidia-data.py --releases releases.json --notes release-notes.html   # saved copies

Two sources, each optional (what a source does not give stays as it is):

- the datacenter driver documentation's ``releases.json``
  (https://docs.nvidia.com/datacenter/tesla/drivers/releases.json): each branch, its type and end of
  life, its releases and the CUDA version each reports;
- the CUDA Toolkit release notes' table "CUDA Toolkit and Corresponding Driver Versions"
  (https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html): the Linux x86_64 driver each
  toolkit release needs.

Both are read without trusting their shape: a row that does not parse is reported and skipped. The file is
rewritten only with --write; the snapshot date is today's. Then run the tests (tests/unit/test_nvidia_data.py
says whether every image the repository audits is covered).
"""

from __future__ import annotations

import argparse
import datetime
import html as htmllib
import json
import re
import sys
import urllib.request
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "imagematrix" / "core" / "data" / "nvidia.json"
RELEASES = "https://docs.nvidia.com/datacenter/tesla/drivers/releases.json"
NOTES = "https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html"
LIMIT = 32 << 20


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read(LIMIT)


def branches_from_releases(doc: object, notes: list[str]) -> dict[int, dict]:
    """{branch: {type, end_of_life, cuda}} from releases.json: any object naming a branch (r580, R580 or 580)
    whose entries carry a driver version and a CUDA version."""
    out: dict[int, dict] = {}
    if not isinstance(doc, dict):
        notes.append("releases.json: not an object")
        return out
    for key, value in doc.items():
        m = re.fullmatch(r"[rR]?(\d{3})", str(key))
        if not m or not isinstance(value, dict):
            continue
        branch = int(m.group(1))
        entry: dict = {}
        kind = str(value.get("type") or value.get("branch_type") or "").lower()
        entry["type"] = (
            "long-term"
            if "lts" in kind or "long" in kind
            else "production"
            if "prod" in kind
            else "new feature"
            if "feature" in kind or "nfb" in kind
            else None
        )
        eol = str(value.get("end_of_life") or value.get("eol") or "")
        entry["end_of_life"] = eol[:7] if re.match(r"\d{4}-\d{2}", eol) else None
        cudas = [
            str(r.get("cuda_version") or r.get("cuda") or "")
            for r in value.get("driver_info") or value.get("releases") or []
            if isinstance(r, dict)
        ]
        cudas = [c for c in cudas if re.fullmatch(r"\d+\.\d+", c)]
        entry["cuda"] = max(cudas, key=lambda c: tuple(map(int, c.split(".")))) if cudas else None
        out[branch] = entry
    if not out:
        notes.append("releases.json: no branch found (its shape changed?)")
    return out


def toolkits_from_notes(html: str, notes: list[str]) -> dict[str, str]:
    """{"13.2": "595.45.04", ...} from the release notes' driver table (the GA row of each minor)."""
    out: dict[str, str] = {}
    text = re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", html)))
    for m in re.finditer(r"CUDA (\d+)\.(\d+)(?:\.\d+)? GA ?>= ?(\d{3}\.\d+(?:\.\d+)?)", text):
        out.setdefault(f"{m.group(1)}.{m.group(2)}", m.group(3))
    if not out:
        notes.append("release notes: no 'CUDA X.Y GA  >= driver' row found")
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--releases", help="a saved releases.json instead of fetching it")
    p.add_argument("--notes", help="a saved copy of the CUDA Toolkit release notes instead of fetching them")
    p.add_argument("--write", action="store_true", help="rewrite nvidia.json (default: show what would change)")
    a = p.parse_args(argv)
    data = json.loads(DATA.read_text())
    notes: list[str] = []
    try:
        releases = json.loads(Path(a.releases).read_bytes() if a.releases else fetch(RELEASES))
        found = branches_from_releases(releases, notes)
    except (OSError, ValueError) as exc:
        found, _ = {}, notes.append(f"releases.json: {exc}")
    try:
        html = (Path(a.notes).read_bytes() if a.notes else fetch(NOTES)).decode("utf-8", "replace")
        toolkits = toolkits_from_notes(html, notes)
    except OSError as exc:
        toolkits, _ = {}, notes.append(f"release notes: {exc}")
    changes = []
    for minor, driver in toolkits.items():
        if data["toolkits"].get(minor) != driver:
            changes.append(f"toolkit {minor}: {data['toolkits'].get(minor)} -> {driver}")
            data["toolkits"][minor] = driver
    by_branch = {b["branch"]: b for b in data["branches"]}
    for branch, entry in sorted(found.items()):
        row = by_branch.setdefault(branch, {"branch": branch, "cuda": None, "type": None, "end_of_life": None})
        for k, v in entry.items():
            if v is not None and row.get(k) != v:
                changes.append(f"R{branch} {k}: {row.get(k)} -> {v}")
                row[k] = v
    data["branches"] = sorted(by_branch.values(), key=lambda b: b["branch"])
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    print("\n".join(changes) or "no change")
    if a.write and changes:
        data["snapshot"] = datetime.date.today().isoformat()
        DATA.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {DATA}; now run: python3 -m pytest tests/unit/test_nvidia_data.py tests/unit/test_oracle.py")
    return 1 if notes and not changes else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
