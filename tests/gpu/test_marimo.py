"""marimo targets: a small notebook runs headless, exports, and is served by `marimo run`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import gpu_host
import pytest
from gpu_support import ensure

pytestmark = [pytest.mark.marimo, pytest.mark.smoke]

NOTEBOOK = """
import marimo

app = marimo.App()


@app.cell
def _():
{first}
    return cuda, x


@app.cell
def _(cuda, x):
    total = float(sum(v * 2 for v in x))
    print(f"imagematrix-marimo total={{total}} cuda={{cuda}}")
    return (total,)


if __name__ == "__main__":
    app.run()
"""
WITH_TORCH = """    import torch

    x = torch.arange(4.0).tolist()
    cuda = torch.cuda.is_available()"""
WITHOUT_TORCH = """    x = [0.0, 1.0, 2.0, 3.0]
    cuda = None  # the cell holds no torch: nothing here asks for the GPU"""


def notebook(cell) -> str:
    """The notebook: with torch where the cell holds it (it must see the GPU), plain Python where not."""
    return NOTEBOOK.format(first=WITH_TORCH if cell.holds_torch else WITHOUT_TORCH)


def test_marimo_notebook_runs_headless_and_exports(tmp_path, gpu, cell):
    nb = tmp_path / "imagematrix_nb.py"
    nb.write_text(notebook(cell))
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / ".config"),
        XDG_CACHE_HOME=str(tmp_path / ".cache"),
    )

    rc, out, timed_out = gpu_host.run_command([sys.executable, str(nb)], timeout=240, env=env, cwd=str(tmp_path))
    ensure(
        not timed_out and rc == 0,
        f"running the notebook as a script failed (exit {rc}, timed out {timed_out}):\n{out[-3000:]}",
    )
    ensure(
        "imagematrix-marimo total=12.0" in out,
        f"the notebook ran but printed no result:\n{out[-3000:]}",
    )
    if gpu.ok and cell.holds_torch:
        ensure("cuda=True" in out, f"the notebook did not see the GPU the suite sees:\n{out[-2000:]}")

    html = tmp_path / "nb.html"
    cmd = [sys.executable, "-m", "marimo", "export", "html", str(nb), "-o", str(html)]
    rc, out, timed_out = gpu_host.run_command(cmd, timeout=240, env=env, cwd=str(tmp_path))
    ensure(
        not timed_out and rc == 0,
        f"`marimo export html` failed (exit {rc}, timed out {timed_out}):\n{out[-3000:]}",
    )
    ensure(
        html.exists() and html.stat().st_size > 1000,
        f"`marimo export html` wrote no page:\n{out[-2000:]}",
    )
    page = html.read_text(errors="replace")
    ensure("imagematrix-marimo total=12.0" in page, "the exported page holds no output of the notebook's cells")
    if gpu.ok and cell.holds_torch:  # the export ran the cells in marimo's own runtime: torch saw the GPU there too
        ensure("cuda=True" in page, f"the notebook, run by `marimo export html`, did not see the GPU:\n{page[-2000:]}")
    print(f"exported {html.stat().st_size} bytes of HTML, the cells' output in it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_marimo_server_serves_the_notebook(tmp_path, cell):
    nb = tmp_path / "imagematrix_nb.py"
    nb.write_text(notebook(cell))
    port = _free_port()
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / ".config"),
        XDG_CACHE_HOME=str(tmp_path / ".cache"),
    )
    cmd = [
        sys.executable,
        "-m",
        "marimo",
        "run",
        str(nb),
        "--headless",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-token",
    ]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path), start_new_session=True
        )
    page, why = "", ""
    try:
        deadline = time.monotonic() + 120 * gpu_host.timeout_scale()
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode(errors="replace")
                    break
            except OSError as exc:
                why = str(exc)
                time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    ensure(
        page,
        f"`marimo run --headless` did not serve http://127.0.0.1:{port}/ "
        f"(exit {proc.returncode}; last error: {why}):\n{log.read_text()[-3000:]}",
    )
    ensure("marimo" in page.lower(), f"the server answered, but not with a marimo page:\n{page[:1000]}")
    print(f"marimo run served {len(page)} bytes on port {port}")
