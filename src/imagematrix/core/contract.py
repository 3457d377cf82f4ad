"""The image contract: what every image imagematrix builds says about itself, in one place.

An image carries its manifest at ``MANIFEST_PATH`` and mirrors its main facts in
labels (``imagematrix.*``). ``render`` writes both, ``build``, the test runner and
``sizes`` read the labels, and the GPU suite (``tests/gpu``, inside the image)
parses the manifest: all of them take the names, the vocabulary, the builder and
the parser from here. Stdlib only: it is mounted into images and imported by the
suite on hosts that have nothing but torch and pytest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MANIFEST_SCHEMA = 1
MANIFEST_PATH = "/etc/imagematrix/cell.json"
LABEL_PREFIX = "imagematrix"
CELL_LABEL = f"{LABEL_PREFIX}.cell"  # the cell id: which cell an image is
INPUT_HASH_LABEL = f"{LABEL_PREFIX}.input-hash"  # the render's hash
BUILD_HASH_LABEL = f"{LABEL_PREFIX}.build-hash"  # the build's skip key (added at build time)

# How the runner and the suite meet inside an image: the unprivileged uid both use (no passwd
# entry, like `docker run --user 10001`), its $USER, and the compile caches the runner points
# at a per-cell directory (the suite makes temporary ones when they are unset).
UNPRIVILEGED_UID = 10001
UNPRIVILEGED_USER = "imagematrix"
COMPILE_CACHE_VARS = ("TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")

KINDS = ("devel", "runtime", "host")  # host: a bare interpreter described by tests/gpu/describe_host.py
RELATIONS = ("extends", "slim")
EXTENSION_BUILDS = ("cuda", "cpu")  # cpu: compiled extensions were built without CUDA kernels (no nvcc)
FEATURES = ("cpp_extension", "cuda_extension", "torch_compile", "pyg", "ray", "marimo")
TORCH_FEATURES = ("cpp_extension", "cuda_extension", "torch_compile", "pyg")  # nothing to check without torch
PYG_EXTENSIONS = ("pyg_lib", "torch_scatter", "torch_sparse", "torch_cluster", "torch_spline_conv")

_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)$")
_TOOLKIT = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_TORCH_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:[a-z0-9.]*)?$")


def major_minor(version: str) -> tuple[int, int]:
    """'12.8.1' -> (12, 8); '13.0' -> (13, 0)."""
    m = re.match(r"^\s*(\d+)\.(\d+)", str(version))
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return int(m.group(1)), int(m.group(2))


# --- writing: the manifest and the labels ----------------------------------------------------


def manifest(
    *,
    id: str,
    image: str,
    tag: str,
    target: str,
    kind: str,
    parent: str | None,
    relation: str | None,
    lineage: list[str],
    cuda: str | None,
    torch_cuda: str | None,
    python: str,
    torch: str | None,
    features: list[str],
    pyg_extensions: list[str],
    extensions: str = "cuda",
    input_hash: str = "",
    **extra: Any,
) -> dict:
    """The manifest document (``MANIFEST_PATH``), keys as the parser reads them."""
    return {
        "schema": MANIFEST_SCHEMA,
        "id": id,
        "image": image,
        "tag": tag,
        "ref": f"{image}:{tag}",
        "target": target,
        "kind": kind,
        "parent": parent,
        "relation": relation,
        "lineage": list(lineage),
        "cuda": cuda,
        "torch_cuda": torch_cuda,
        "python": python,
        "torch": torch,
        "features": list(features),
        "pyg_extensions": list(pyg_extensions),
        "extensions": extensions,
        "input_hash": input_hash,
        **extra,
    }


def labels(man: Mapping[str, Any], base_image: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """The image's labels: OCI ones, the user's ``extra``, then the contract's ``imagematrix.*`` mirror."""
    out = {
        "org.opencontainers.image.title": man["image"],
        "org.opencontainers.image.version": man["tag"],
        "org.opencontainers.image.description": (
            f"{man['target']} image: {'CUDA ' + man['cuda'] if man['cuda'] else 'CPU only'}, Python {man['python']}, "
            + (f"torch {man['torch'] or 'unpinned'}" if man["torch"] is not None else "no torch")
        ),
        "org.opencontainers.image.base.name": base_image,
        **extra,
    }
    for key in ("id", "cuda", "torch_cuda", "python", "torch", "target", "kind", "parent", "input_hash"):
        name = "cell" if key == "id" else key.replace("_", "-")
        out[f"{LABEL_PREFIX}.{name}"] = man[key] or ""
    if man.get("platform"):
        out[f"{LABEL_PREFIX}.platform"] = man["platform"]
    out[f"{LABEL_PREFIX}.features"] = ",".join(man["features"])
    out[f"{LABEL_PREFIX}.pyg-extensions"] = ",".join(man["pyg_extensions"])
    out[f"{LABEL_PREFIX}.schema"] = str(MANIFEST_SCHEMA)
    return out


# --- reading: the parser the suite checks an image against -----------------------------------


class ManifestError(ValueError):
    """The cell manifest is missing or malformed; the text says where and how to fix it."""


@dataclass(frozen=True)
class Manifest:
    """What the image claims about itself (the subset the suite checks)."""

    id: str
    kind: str
    python: str
    cuda: str | None  # the cell's toolkit X.Y.Z; None only in a CPU-only host description
    torch_cuda: str | None  # X.Y torch was built with
    torch: str | None  # pinned torch version, None when the matrix does not pin it
    features: frozenset[str]
    pyg_extensions: tuple[str, ...]
    target: str = ""
    source: str = ""
    extensions: str = "cuda"
    optional_libraries: tuple[tuple[str, str, str], ...] = ()  # (library glob, needs glob, reason)
    environment_lock: str | None = None  # the uv.lock in the image the environment was synced from
    holds_torch: bool = True  # "torch": null says the image holds no torch (targets.<name>.torch: false)
    keep_tests: bool = False  # targets.<name>.options.keep_tests: test directories stay on purpose
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def declares(self, feature: str) -> bool:
        # A CUDA extension build needs the C++ toolchain too.
        if feature == "cpp_extension" and "cuda_extension" in self.features:
            return True
        return feature in self.features

    @property
    def unchecked_features(self) -> tuple[str, ...]:
        """Features the image declares that no check of the suite covers (a team's own names)."""
        return tuple(sorted(self.features - set(FEATURES)))

    def skip_reason(self, feature: str) -> str:
        return f"cell {self.id} declares no {feature!r} feature"

    @property
    def cuda_mm(self) -> tuple[int, int] | None:
        return major_minor(self.cuda) if self.cuda else None

    @property
    def torch_cuda_mm(self) -> tuple[int, int] | None:
        return major_minor(self.torch_cuda) if self.torch_cuda else None


def parse_manifest(data: Any, source: str = "cell.json") -> Manifest:
    """Validate a decoded manifest; raise ManifestError listing every problem."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object, got {type(data).__name__}")
    problems: list[str] = []

    def bad(key: str, text: str) -> None:
        problems.append(f"{source}: key {key!r}: {text}")

    schema = data.get("schema")
    if schema != MANIFEST_SCHEMA:
        bad("schema", f"{schema!r} is not supported (this suite reads schema {MANIFEST_SCHEMA})")
    cell_id = data.get("id")
    if not isinstance(cell_id, str) or not cell_id:
        bad("id", "missing or empty (a string like 'cu12.8.1-py3.13-runtime')")
        cell_id = "?"
    kind = data.get("kind")
    if kind not in KINDS:
        bad("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    relation = data.get("relation")
    if relation is not None and relation not in RELATIONS:
        bad("relation", f"{relation!r} is not one of {', '.join(RELATIONS)} or null")
    python = data.get("python")
    if not isinstance(python, str) or not _MAJOR_MINOR.match(python):
        bad("python", f"{python!r} is not a major.minor version like '3.13'")

    cuda = data.get("cuda")
    torch_cuda = data.get("torch_cuda")
    if cuda in (None, ""):
        cuda = None
        if torch_cuda not in (None, ""):
            bad("torch_cuda", f"{torch_cuda!r} given but 'cuda' is null (a CPU-only description)")
        torch_cuda = None
    else:
        if not isinstance(cuda, str) or not _TOOLKIT.match(cuda):
            bad("cuda", f"{cuda!r} is not a toolkit version like '12.8.1'")
        if not isinstance(torch_cuda, str) or not _MAJOR_MINOR.match(torch_cuda):
            bad("torch_cuda", f"{torch_cuda!r} is not a major.minor version like '12.8'")
        elif isinstance(cuda, str) and _TOOLKIT.match(cuda) and major_minor(cuda)[0] != major_minor(torch_cuda)[0]:
            bad(
                "torch_cuda",
                f"{torch_cuda} has another CUDA major than the toolkit {cuda}: "
                "nvcc's major must equal torch's (extensions built by nvcc link torch's runtime)",
            )

    holds_torch = "torch" not in data or data["torch"] is not None
    torch_version = data.get("torch")
    if torch_version in (None, ""):
        torch_version = None
    elif not isinstance(torch_version, str) or not _TORCH_VERSION.match(torch_version):
        bad("torch", f"{torch_version!r} is not a version like '2.9.1' (or empty when unpinned)")

    features = data.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        bad("features", "must be a list of strings")
        features = []
    # A team's own feature names are allowed: the suite has no checks for them (Manifest.unchecked_features).
    if cuda is None and "cuda_extension" in features:
        bad("features", "'cuda_extension' needs a CUDA toolkit but 'cuda' is null")
    needing = [f for f in TORCH_FEATURES if f in features]
    if not holds_torch and needing:
        bad("features", f"{', '.join(needing)} need torch, but the image holds none ('torch': null)")

    pyg_ext = data.get("pyg_extensions", [])
    if pyg_ext is None:
        pyg_ext = []
    if not isinstance(pyg_ext, list) or not all(isinstance(e, str) for e in pyg_ext):
        bad("pyg_extensions", "must be a list of strings")
        pyg_ext = []
    unknown = sorted(set(pyg_ext) - set(PYG_EXTENSIONS))
    if unknown:
        bad("pyg_extensions", f"unknown {', '.join(unknown)} (allowed: {', '.join(PYG_EXTENSIONS)})")
    if pyg_ext and "pyg" not in features:
        bad("pyg_extensions", "lists PyG extensions but 'features' has no 'pyg'")
    extensions = data.get("extensions", "cuda")
    if extensions not in EXTENSION_BUILDS:
        bad("extensions", f"{extensions!r} is not one of {', '.join(EXTENSION_BUILDS)}")
    elif extensions == "cpu" and "cuda_extension" in features:
        bad("features", "'cuda_extension' contradicts extensions: cpu (no CUDA compiler in this family)")

    optional = data.get("optional_libraries", [])
    if not isinstance(optional, list) or not all(
        isinstance(o, list) and len(o) == 3 and all(isinstance(x, str) for x in o) for o in optional
    ):
        bad("optional_libraries", "must be a list of [library glob, needs glob, reason]")
        optional = []

    environment = data.get("environment")
    lock = environment.get("lock") if isinstance(environment, dict) else None
    if environment is not None and not (isinstance(lock, str) and lock.startswith("/")):
        bad("environment", "must be {lock: /absolute/path/to/uv.lock, sha256: ...}")
        lock = None

    if problems:
        raise ManifestError("invalid cell manifest:\n  " + "\n  ".join(problems))
    return Manifest(
        id=cell_id,
        kind=str(kind),
        python=str(python),
        cuda=cuda,
        torch_cuda=torch_cuda,
        torch=torch_version,
        features=frozenset(features),
        pyg_extensions=tuple(e for e in PYG_EXTENSIONS if e in pyg_ext),
        target=str(data.get("target") or ""),
        source=source,
        extensions=extensions if extensions in EXTENSION_BUILDS else "cuda",
        optional_libraries=tuple(tuple(o) for o in optional),
        environment_lock=lock,
        holds_torch=holds_torch,
        keep_tests=isinstance(data.get("policy"), dict) and data["policy"].get("keep_tests") is True,
        raw=data,
    )


def parse_manifest_text(text: str, source: str) -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_manifest(data, source)
