"""Print a cell manifest that describes this host's interpreter ("host mode").

Runners without Docker run the GPU suite against the current interpreter:

    python tests/gpu/describe_host.py --cuda 13.0.2 --out /tmp/cell.json
    python -m pytest tests/gpu --cell /tmp/cell.json

Needs only the stdlib and torch. Features are what is installed here: nvcc
-> cuda_extension, a C++ compiler + Python.h + torch headers -> cpp_extension,
triton -> torch_compile, torch_geometric -> pyg, ray, marimo. PyG extensions
are listed when installed (found on sys.path), not only when they import, so
a broken one fails the suite instead of being left out silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    from imagematrix.core import contract
except ImportError:  # run from a checkout without the package installed: its source is beside
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from imagematrix.core import contract

PYG_EXTENSIONS = contract.PYG_EXTENSIONS


def _nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)


def nvcc_version(nvcc: str | None) -> str | None:
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\bV(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def describe(cuda: str | None, python: str | None, torch_cuda: str | None, cell_id: str | None) -> dict:
    import torch

    found = {
        name: importlib.util.find_spec(name) is not None for name in ("triton", "torch_geometric", "ray", "marimo")
    }
    nvcc = _nvcc()
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    python_h = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    torch_h = Path(torch.__file__).parent.joinpath("include", "torch", "extension.h").exists()
    has_cuda = torch.version.cuda is not None

    features = []
    if cxx and python_h and torch_h:
        features.append("cpp_extension")
    if nvcc and has_cuda and "cpp_extension" in features:
        features.append("cuda_extension")
    if found["triton"]:
        features.append("torch_compile")
    if found["torch_geometric"]:
        features.append("pyg")
    features += [f for f in ("ray", "marimo") if found[f]]
    pyg_ext = [e for e in PYG_EXTENSIONS if found["torch_geometric"] and importlib.util.find_spec(e) is not None]

    py = python or f"{sys.version_info[0]}.{sys.version_info[1]}"
    tcuda = torch_cuda or torch.version.cuda
    # A CPU-only torch makes a CPU-only description (cuda: null) whatever nvcc is around.
    toolkit = (cuda or nvcc_version(nvcc) or f"{tcuda}.0") if tcuda else None
    # Not an image: the slim-image checks (pruned tests, no second CUDA copy) do not apply.
    kind = "host"
    ident = cell_id or (f"host-cu{toolkit}-py{py}" if toolkit else f"host-cpu-py{py}")
    return contract.manifest(
        id=ident,
        image="host",
        tag=ident,
        target="host",
        kind=kind,
        parent=None,
        relation=None,
        lineage=[],
        cuda=toolkit,
        torch_cuda=tcuda,
        python=py,
        torch=torch.__version__.split("+", 1)[0],
        features=features,
        pyg_extensions=pyg_ext,
        host={"executable": sys.executable, "nvcc": nvcc, "torch": torch.__version__},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cuda",
        help="the CUDA toolkit X.Y.Z this host provides (default: nvcc's version, else torch's)",
    )
    parser.add_argument("--python", help="override the Python major.minor (to test the suite's failure path)")
    parser.add_argument("--torch-cuda", help="override torch's CUDA X.Y (to test the suite's failure path)")
    parser.add_argument("--id", help="the cell id to write (default: host-cuX.Y.Z-pyX.Y)")
    parser.add_argument("--out", help="write here instead of stdout")
    args = parser.parse_args(argv)
    if args.cuda and not re.match(r"^\d+\.\d+(\.\d+)?$", args.cuda):
        parser.error(f"--cuda {args.cuda!r} is not a version like 13.0.2")
    cell = describe(args.cuda, args.python, args.torch_cuda, args.id)
    text = json.dumps(cell, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(
            f"wrote {args.out}: {cell['id']} features={','.join(cell['features']) or '-'}",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
