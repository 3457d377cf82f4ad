"""Files imagematrix ships beside its code, found from the installed package, never the working directory.

The repository keeps them where people edit them (``tests/gpu``, ``dockerfiles``, ``examples``);
the wheel carries them as ``imagematrix.gpu_suite``, ``.fragments`` and ``.examples``
(``pyproject.toml`` maps one onto the other). With ``PYTHONPATH=src`` and nothing installed (host
mode on a bare GPU machine) they are read from the repository beside ``src``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from imagematrix.core.errors import ImagematrixError

# packaged name -> directory in the repository
SHIPPED = {"gpu_suite": "tests/gpu", "fragments": "dockerfiles", "examples": "examples"}
_REPO = Path(__file__).resolve().parents[3]


def shipped(name: str) -> Path:
    """The directory of a shipped resource: ``gpu_suite`` (the GPU suite), ``fragments``, ``examples``."""
    try:
        spec = importlib.util.find_spec(f"imagematrix.{name}")
    except ImportError:
        spec = None
    for where in (spec.submodule_search_locations or []) if spec else []:
        if Path(where).is_dir():
            return Path(where)
    repo = _REPO / SHIPPED[name]
    if repo.is_dir():
        return repo
    raise ImagematrixError(
        f"imagematrix's {name} ({SHIPPED[name]}) is not installed with the package; "
        "reinstall it: pip install --force-reinstall imagematrix (or pip install -e . in its repository)"
    )


def gpu_suite() -> Path:
    return shipped("gpu_suite")
