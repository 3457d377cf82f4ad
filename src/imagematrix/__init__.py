"""imagematrix: build, test and report matrices of PyTorch + CUDA Docker images.

The public API, in one place. Names are imported on first use (PEP 562): test containers mount
this package into images that have only the standard library, so importing ``imagematrix`` must
not import pydantic, jinja2 or the docker SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imagematrix.core.version import __version__

# name -> the module that defines it
_API = {
    "load_matrix": "imagematrix.matrix.load",
    "Matrix": "imagematrix.matrix.model",
    "Cell": "imagematrix.matrix.model",
    "Target": "imagematrix.matrix.model",
    "Cuda": "imagematrix.matrix.model",
    "cell_id": "imagematrix.matrix.model",
    "Selection": "imagematrix.matrix.plan",
    "select_cells": "imagematrix.matrix.plan",
    "make_plan": "imagematrix.matrix.plan",
    "Plan": "imagematrix.matrix.plan",
    "BuildStep": "imagematrix.matrix.plan",
    "render_cell": "imagematrix.matrix.render",
    "write_context": "imagematrix.matrix.render",
    "Rendered": "imagematrix.matrix.render",
    "run_build": "imagematrix.build.executor",
    "BuildOptions": "imagematrix.build.buildkit",
    "Manifest": "imagematrix.core.contract",
    "parse_manifest": "imagematrix.core.contract",
    "ImagematrixError": "imagematrix.core.errors",
    "UsageError": "imagematrix.core.errors",
    "read_status": "imagematrix.core.status",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use (__getattr__)
    from imagematrix.build.buildkit import BuildOptions  # noqa: F401
    from imagematrix.build.executor import run_build  # noqa: F401
    from imagematrix.core.contract import Manifest, parse_manifest  # noqa: F401
    from imagematrix.core.errors import ImagematrixError, UsageError  # noqa: F401
    from imagematrix.core.status import read_status  # noqa: F401
    from imagematrix.matrix.load import load_matrix  # noqa: F401
    from imagematrix.matrix.model import Cell, Cuda, Matrix, Target, cell_id  # noqa: F401
    from imagematrix.matrix.plan import BuildStep, Plan, Selection, make_plan, select_cells  # noqa: F401
    from imagematrix.matrix.render import Rendered, render_cell, write_context  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'imagematrix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
