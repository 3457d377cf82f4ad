"""Hostile or absurd matrix files: a clean error (exit 2, file:line, no traceback) within seconds.

Each case here used to hang, exhaust memory or end in a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagematrix.errors import MatrixError
from imagematrix.matrix import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    load_matrix,
    tag_template_problem,
)

ROOT = Path(__file__).resolve().parents[2]


def alias_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\nschema: 1\n"


HOSTILE = {
    "alias-bomb": (alias_bomb(), f"more than {MAX_NODES:,} YAML nodes"),
    "deep-list": ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    "deep-map": ("a: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    # libyaml's own recursion would crash the process (SIGSEGV) at this depth.
    "deeper-list": ("a: " + "[" * 200_000 + "]" * 200_000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
    "deep-block": ("".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + f"{'  ' * (MAX_DEPTH + 5)}v\n",
                   f"nested deeper than {MAX_DEPTH} levels"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_yaml_is_refused_with_a_located_message(tmp_path, name):
    text, needle = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_a_file_that_is_not_a_regular_file_is_not_read():
    with pytest.raises(MatrixError, match="not a regular file"):
        load_matrix("/dev/zero")


def test_a_file_too_big_for_a_matrix_is_not_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(MatrixError, match="too big for a matrix file"):
        load_matrix(path)


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{cuda.foo}-{target}", "unknown placeholder {cuda.foo}"),
        ("{cuda[0]}-{target}", "unknown placeholder {cuda[0]}"),
        ("{cuda:>1500000000}{target}", "placeholder {cuda} takes no format spec"),
        ("{cuda!r}{target}", "placeholder {cuda} takes no format spec or conversion"),
        ("{cuda", "not a valid template"),
        ("x" * 2000, "a Docker tag has at most 128"),
    ],
)
def test_tag_templates_take_plain_placeholders_only(template, needle):
    assert needle in tag_template_problem(template)


def test_plain_tag_templates_pass():
    assert tag_template_problem("cu{cuda}-py{python}-{target}") is None
    assert tag_template_problem("{{literal}}-{target}") is None


def test_a_tag_longer_than_docker_allows_is_refused(tmp_path):
    text = (ROOT / "examples" / "matrix.yaml").read_text().replace(
        'tag: "cu{cuda}-py{python}-{target}"', 'tag: "' + "x" * 125 + '-{target}"'
    ).replace("fragments_dir: ../dockerfiles", f"fragments_dir: {ROOT / 'dockerfiles'}")
    path = tmp_path / "long-tag.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError, match="which Docker rejects"):
        load_matrix(path)


@pytest.mark.parametrize("name", ["alias-bomb", "deeper-list"])
def test_the_cli_exits_2_without_a_traceback(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(HOSTILE[name][0])
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "matrix", "--matrix", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and HOSTILE[name][1] in proc.stderr
