"""The pure parts of `invoke sizes`: listing parsing, buckets, directories, layers, budgets, formatting, plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagematrix.core import status
from imagematrix.reports import sizeplot, sizes
from imagematrix.reports.sizes import (
    Entry,
    Layout,
    Measurement,
    advice,
    biggest_dirs,
    biggest_layers,
    bucket_bytes,
    classify,
    counted,
    dir_bytes,
    fmt_bytes,
    judge_budget,
    package_bucket,
    package_name,
    parse_listing,
    short_command,
    short_path,
)

SITE = "/opt/venv/lib/python3.13/site-packages"
VENV = Layout(
    prefix="/opt/venv",
    base_prefix="/usr",
    site=(SITE,),
    stdlib=("/usr/lib/python3.13",),
    include="/usr/include/python3.13",
    executable="/usr/bin/python3.13",
    libpython="/usr/lib/x86_64-linux-gnu/libpython3.13.so.1.0",
    version="3.13.5",
)
# uv's standalone interpreter in /opt/python (the real matrix): all of it is Python.
UV = Layout(
    prefix="/opt/venv",
    base_prefix="/opt/python/cpython-3.13.9-linux-x86_64-gnu",
    site=(SITE,),
    stdlib=("/opt/python/cpython-3.13.9-linux-x86_64-gnu/lib/python3.13",),
    include="/opt/python/cpython-3.13.9-linux-x86_64-gnu/include/python3.13",
    executable="/opt/python/cpython-3.13.9-linux-x86_64-gnu/bin/python3.13",
)


def f(path: str, size: int, links: int = 1, inode: int | None = None, kind: str = "f") -> Entry:
    return Entry(kind, size, links, inode if inode is not None else hash(path) & 0xFFFFFF, path)


# --- the listing ---


def test_parse_listing_reads_nul_separated_records_with_spaces_in_paths():
    raw = b"f 10 1 5 /a/b c.txt\0l 7 1 6 /opt/venv/bin/python\0garbage\0f x 1 7 /bad\0"
    assert parse_listing(raw) == [
        Entry("f", 10, 1, 5, "/a/b c.txt"),
        Entry("l", 7, 1, 6, "/opt/venv/bin/python"),
    ]


def test_counted_takes_each_hard_linked_inode_once_and_skips_symlinks():
    entries = [f("/a", 100, links=2, inode=9), f("/b", 100, links=2, inode=9), f("/c", 5), f("/l", 30, kind="l")]
    assert [e.path for e in counted(entries)] == ["/a", "/c"]


# --- buckets ---


@pytest.mark.parametrize(
    ("entry", "name", "bucket"),
    [
        ("torch", "torch", "torch"),
        ("torch-2.15.0.dist-info", "torch", "torch"),
        ("functorch", "functorch", "torch"),
        ("torchgen", "torchgen", "torch"),
        ("torchvision.libs", "torchvision", "torch"),
        ("nvidia", "nvidia", "nvidia"),
        ("nvidia_cublas-13.1.0.3.dist-info", "nvidia_cublas", "nvidia"),
        ("cuda", "cuda", "nvidia"),
        ("cuda_bindings-13.0.3.dist-info", "cuda_bindings", "nvidia"),
        ("triton", "triton", "triton"),  # its own top-level name
        ("torch_geometric", "torch_geometric", "PyG"),
        ("torch_scatter.libs", "torch_scatter", "PyG"),
        ("pyg_lib-0.5.0+pt211cu128.dist-info", "pyg_lib", "PyG"),
        ("ray", "ray", "ray"),
        ("marimo-0.25.2.dist-info", "marimo", "marimo"),
        ("sympy", "sympy", "sympy"),
        ("typing_extensions.py", "typing_extensions", "typing_extensions"),
        ("Zope.Interface-5.0.dist-info", "zope_interface", "zope_interface"),
        ("_cffi_backend.cpython-313-x86_64-linux-gnu.so", "_cffi_backend", "_cffi_backend"),
    ],
)
def test_site_packages_entries_fall_into_buckets(entry, name, bucket):
    assert package_name(entry) == name
    assert package_bucket(entry) == bucket


@pytest.mark.parametrize(
    ("path", "layout", "bucket"),
    [
        (f"{SITE}/torch/lib/libtorch_cuda.so", VENV, "torch"),
        (f"{SITE}/nvidia/cu13/lib/libcublasLt.so.13", VENV, "nvidia"),
        (f"{SITE}/sympy/core/basic.py", VENV, "sympy"),
        ("/opt/venv/bin/torchrun", VENV, "Python"),  # the venv around site-packages
        ("/usr/lib/python3.13/os.py", VENV, "Python"),
        ("/usr/include/python3.13/Python.h", VENV, "Python"),
        ("/usr/lib/x86_64-linux-gnu/libpython3.13.so.1.0", VENV, "Python"),
        ("/usr/lib/gcc/x86_64-linux-gnu/14/cc1plus", VENV, "other"),
        ("/opt/python/cpython-3.13.9-linux-x86_64-gnu/lib/libpython3.13.so", UV, "Python"),
        ("/opt/python/cpython-3.13.9-linux-x86_64-gnu/share/terminfo/x/xterm", UV, "Python"),
        (f"{SITE}/triton/_C/libtriton.so", UV, "triton"),
    ],
)
def test_classify_by_path(path, layout, bucket):
    assert classify(path, layout) == bucket


def test_files_the_base_image_has_are_base_even_in_python_dirs():
    assert classify("/usr/lib/python3.13/os.py", VENV, {"/usr/lib/python3.13/os.py"}) == "base"
    assert classify("/usr/bin/ls", VENV, {"/usr/bin/ls"}) == "base"


def test_an_image_without_python_puts_everything_outside_base_in_other():
    assert classify(f"{SITE}/torch/__init__.py", Layout()) == "other"


def test_bucket_bytes_adds_up_every_counted_file():
    entries = [
        f("/usr/bin/ls", 100),
        f(f"{SITE}/torch/x.so", 1000),
        f(f"{SITE}/nvidia/y.so", 3000),
        f(f"{SITE}/nvidia/z.so", 3000, links=2, inode=1),
        f(f"{SITE}/nvidia/z2.so", 3000, links=2, inode=1),
        f("/usr/lib/python3.13/os.py", 50),
        f("/usr/bin/g++", 7),
    ]
    got = bucket_bytes(entries, VENV, {"/usr/bin/ls"})
    assert list(got) == ["base", "Python", "nvidia", "torch", "other"]  # packages biggest first
    assert got == {"base": 100, "Python": 50, "torch": 1000, "nvidia": 6000, "other": 7}


def test_buckets_come_from_what_is_installed_and_small_packages_join_other():
    entries = [
        f(f"{SITE}/{name}/x.py", size)
        for name, size in [("team_models", 900), ("numpy", 500), ("pandas", 400), ("tiny", 3)]
    ]
    got = bucket_bytes(entries, VENV, keep=2)
    assert got == {"base": 0, "Python": 0, "team_models": 900, "numpy": 500, "other": 403}
    assert sizes.bucket_order([got, {"ray": 2000, "other": 1}]) == [
        "base",
        "Python",
        "ray",
        "team_models",
        "numpy",
        "other",
    ]


# --- directories and layers ---


def test_dir_bytes_rolls_files_up_to_a_depth():
    sizes = dir_bytes([f("/opt/venv/a/b/c.so", 10), f("/opt/x", 5)], max_depth=2)
    assert sizes == {"/": 15, "/opt": 15, "/opt/venv": 10}


def test_biggest_dirs_lists_the_child_that_fills_its_parent_not_the_parent():
    sizes = {
        "/": 1000,
        "/opt": 900,
        "/opt/venv": 900,
        "/opt/venv/nvidia": 500,
        "/opt/venv/nvidia/lib": 480,
        "/opt/venv/torch": 400,
        "/opt/venv/torch/lib": 200,
        "/opt/venv/torch/include": 150,
        "/usr": 100,
    }
    got = biggest_dirs(sizes, n=4, skip={"/opt", "/opt/venv"})
    # /opt/venv/nvidia is 96% lib: only lib is worth a line; torch splits, so torch itself is listed.
    assert got == [
        ("/opt/venv/nvidia/lib", 480),
        ("/opt/venv/torch", 400),
        ("/opt/venv/torch/lib", 200),
        ("/opt/venv/torch/include", 150),
    ]
    assert ("/", 1000) not in biggest_dirs(sizes, n=20)


def test_biggest_layers_names_the_base_and_drops_empty_layers():
    history = [  # newest first, as the engine returns it
        {"CreatedBy": "LABEL a=b", "Size": 0},
        {"CreatedBy": "COPY /opt/venv /opt/venv # buildkit", "Size": 5_450_000_000},
        {"CreatedBy": "RUN /bin/sh -c apt-get update &&   apt-get install -y g++", "Size": 330_000_000},
        {"CreatedBy": "", "Size": 120_000_000},
    ]
    assert biggest_layers(history, n=2, base="debian:trixie-slim") == [
        {"bytes": 5_450_000_000, "command": "COPY /opt/venv /opt/venv"},
        {"bytes": 330_000_000, "command": "RUN apt-get update && apt-get install -y g++"},
    ]
    assert biggest_layers(history, n=5, base="debian:trixie-slim")[-1]["command"] == "(base image debian:trixie-slim)"


def test_short_command_strips_the_shell_and_cuts_long_lines():
    assert short_command("/bin/sh -c #(nop)  ENV A=1") == "ENV A=1"
    assert len(short_command("RUN " + "x" * 300, width=40)) == 40


def test_short_path_shows_site_packages_relative():
    assert short_path(f"{SITE}/nvidia/cu13", [SITE]) == "site-packages/nvidia/cu13"
    assert short_path("/usr/lib", [SITE]) == "/usr/lib"


# --- budgets, advice, formatting ---


@pytest.mark.parametrize(
    ("size", "budget", "state", "summary"),
    [
        (5_900_000_000, 7, "ok", "5.90 GB of 7 GB (84%)"),
        (7_000_000_000, 7, "ok", "7.00 GB of 7 GB (100%)"),  # the budget itself still fits
        (7_000_000_001, 7, "over", "7.00 GB OVER budget 7 GB (100%)"),
        (13_400_000_000, 12, "over", "13.40 GB OVER budget 12 GB (112%)"),
        (5_900_000_000, None, "no budget", "5.90 GB (no budget_gb)"),
        (None, 7, "missing", "not built"),
    ],
)
def test_judge_budget(size, budget, state, summary):
    v = judge_budget(size, budget)
    assert (v.state, v.summary) == (state, summary)
    assert v.failed == (state == "over")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0 kB"),
        (567, "1 kB"),
        (2_400_000, "2 MB"),
        (67_000_000, "67 MB"),
        (120_000_000, "0.12 GB"),
        (5_899_421_732, "5.90 GB"),
        (-170_000_000, "-0.17 GB"),
    ],
)
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


def measurement(**kw) -> Measurement:
    base = dict(
        cell="c",
        ref="r",
        image_id="sha256:x",
        size_bytes=8_000_000_000,
        fs_bytes=7_990_000_000,
        layer_overhead_bytes=10_000_000,
        env_bytes=7_000_000_000,
        static_lib_bytes=180_000_000,
        env_roots=["/opt/venv"],
        site_dirs=[SITE],
        base="debian:trixie-slim",
        base_bytes=120_000_000,
        buckets={"base": 0, "Python": 0, "other": 0},
        layers=[{"bytes": 7_000_000_000, "command": "COPY /opt/venv /opt/venv"}],
        dirs=[[f"{SITE}/nvidia", 3_200_000_000]],
        python="3.13.5",
    )
    return Measurement(**{**base, **kw})


def test_advice_names_the_biggest_layer_dirs_and_the_knobs_still_off():
    tips = advice(measurement(), {"strip_debug": False, "drop_static_libs": False}, 7, "runtime")
    assert tips[0] == "biggest layer 7.00 GB: COPY /opt/venv /opt/venv"
    assert tips[1] == f"biggest directories: {SITE}/nvidia 3.20 GB"
    assert any("targets.runtime.options.drop_static_libs: true (saves 0.18 GB)" in t for t in tips)
    assert any("targets.runtime.options.strip_debug: true" in t for t in tips)
    assert tips[-1].startswith("or raise targets.runtime.budget_gb (7)")
    assert not any("hidden in the final filesystem" in t for t in tips)  # 10 MB of 8 GB is tar noise


def test_advice_names_only_knobs_the_fragments_implement():
    tips = advice(measurement(), {}, 7, "runtime", knobs=["strip_debug"])
    assert any("options.strip_debug" in t for t in tips) and not any("drop_static_libs" in t for t in tips)
    assert not any("options." in t for t in advice(measurement(), {}, 7, "runtime", knobs=[]))


def test_the_knobs_a_cell_can_use_are_read_from_its_fragments(tmp_path):
    from imagematrix.matrix.load import load_matrix

    m = load_matrix(Path(__file__).resolve().parents[2] / "examples" / "matrix.yaml")
    runtime = m.cell("cu13.2-py3.13-runtime")
    assert sizes.implemented_knobs(m, runtime) == ("drop_static_libs", "strip_debug")  # prune-env reads both
    assert sizes.implemented_knobs(m, m.cell("cu13.2-py3.13-devel")) == ()


def test_advice_skips_knobs_already_on_and_flags_layer_duplication():
    tips = advice(
        measurement(layer_overhead_bytes=2_000_000_000), {"strip_debug": True, "drop_static_libs": True}, 7, "rt"
    )
    assert not any("options." in t for t in tips)
    assert any("2.00 GB are stored in layers but hidden" in t for t in tips)


# --- the plot ---


def test_plot_draws_recorded_cells_in_order_and_skips_unmeasured_ones(tmp_path):
    gb = 1_000_000_000
    status.update_cell(
        tmp_path,
        "a-runtime",
        "sizes",
        {
            "state": "ok",
            "budget_gb": 7,
            "buckets": {"base": gb // 10, "Python": 0, "nvidia": 3 * gb, "other": 0},
        },
    )
    status.update_cell(
        tmp_path,
        "b-devel",
        "sizes",
        {
            "state": "over",
            "budget_gb": 2,
            "buckets": {"base": 0, "Python": 0, "ray": 2 * gb, "torch": gb, "other": 0},
        },
    )
    status.update_cell(tmp_path, "c-missing", "sizes", {"state": "missing"})
    rows = sizeplot.bars(status.read_status(tmp_path), ["b-devel", "c-missing", "a-runtime", "never-seen"])
    assert [r[0] for r in rows] == ["b-devel", "a-runtime"]
    assert rows[0][1]["ray"] == 2.0 and rows[0][2] == 2 and rows[0][3] == "over"
    assert list(rows[0][1]) == list(rows[1][1]) == ["base", "Python", "nvidia", "ray", "torch", "other"]  # one legend
    out = tmp_path / "reports" / "sizes.png"
    assert sizeplot.plot_records(tmp_path, ["a-runtime", "b-devel", "c-missing"], out) == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing measured any more: the old plot goes instead of showing stale sizes.
    assert sizeplot.plot_records(tmp_path, ["c-missing"], out) == 0
    assert not out.exists()
