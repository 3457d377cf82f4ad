"""Hostile or absurd matrix files: a clean error (exit 2, file:line, no traceback) within seconds.

Each case here used to hang, exhaust memory or end in a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagematrix.core.errors import MatrixError
from imagematrix.matrix.index import MAX_DEPTH, MAX_NODES
from imagematrix.matrix.load import MAX_FILE_BYTES, load_matrix
from imagematrix.matrix.model import tag_template_problem

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
    "deep-block": (
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + f"{'  ' * (MAX_DEPTH + 5)}v\n",
        f"nested deeper than {MAX_DEPTH} levels",
    ),
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
    text = (
        (ROOT / "examples" / "matrix.yaml")
        .read_text()
        .replace('tag: "cu{cuda}-py{python}-{target}"', 'tag: "' + "x" * 125 + '-{target}"')
        .replace("fragments_dir: ../dockerfiles", f"fragments_dir: {ROOT / 'dockerfiles'}")
    )
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
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and HOSTILE[name][1] in proc.stderr


# --- values that would reach a RUN line, a Dockerfile comment, a workflow or a path ------------------


def _example(tmp_path, edit) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "examples" / "matrix.yaml").read_text())
    data["build"]["fragments_dir"] = str(ROOT / "dockerfiles")
    edit(data)
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(data):
        d = data
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value

    return edit


INJECTIONS = {
    "torch pin into a RUN line": (_set("packages", "torch", "2.9.0;touch${IFS}/tmp/pwned;#"), "packages"),
    "a pin with a newline into a comment": (_set("packages", "torch", "2.15.0\nRUN touch /pwned"), "packages"),
    "a family's pin": (_set("cuda", "13.2", "packages", {"ray": "2.60.0 && curl x"}), "cuda.13.2.packages"),
    "a Debian suffix": (_set("packages", "gxx", "14; rm -rf /"), "packages"),
    "a package name": (_set("packages", "ray$(id)", "2.60.0"), "packages"),
    "torch_index with a command": (
        _set("cuda", "13.2", "torch_index", "https://x/simple $(touch pwned)"),
        "torch_index",
    ),
    "torch_index that is not http": (_set("cuda", "13.2", "torch_index", "file:///etc/passwd"), "torch_index"),
    "arch_list with a command": (_set("cuda", "13.2", "arch_list", "8.0;$(touch pwned)"), "arch_list"),
    "arch_list with a newline": (_set("cuda", "13.2", "arch_list", "8.0\nRUN id"), "arch_list"),
    "an option with a quote": (
        _set("targets", "runtime", "options", "drop_packages", "x' ; touch pwned ; '"),
        "options",
    ),
    "env_dir that climbs": (_set("targets", "runtime", "options", "env_dir", "/opt/../etc"), "options"),
    "a PyG extension name": (_set("targets", "devel", "pyg_extensions", ["torch_scatter;id"]), "pyg_extensions"),
    "a description with a newline": (_set("targets", "devel", "description", "x\n## heading"), "description"),
    "a phase name with an escape": (_set("phases", 1, "name", "x\x1b[2J"), "phases.1.name"),
    "image with a trailing newline": (_set("image", "imagematrix/example\n"), "image"),
    "python with a trailing newline": (_set("python", ["3.13\n"]), "python"),
    "a label key with a trailing newline": (_set("labels", {"org.example.x\n": "v"}), "labels"),
    "an image name over 255 characters": (_set("image", "a/" + "b" * 260), "image"),
    "a budget that is not a number": (_set("targets", "devel", "budget_gb", float("nan")), "budget_gb"),
    "a time zone that is a directory": (_set("schedule", "timezone", "America"), "schedule.timezone"),
    "a time zone of 300 characters": (_set("schedule", "timezone", "A" * 300), "schedule.timezone"),
    "a uv project named like an instruction": (_set("targets", "devel", "uv_project", "x/uv\nRUN id"), "uv_project"),
}


@pytest.mark.parametrize("case", INJECTIONS)
def test_a_value_that_would_escape_its_sink_is_refused_at_load(tmp_path, case):
    edit, where = INJECTIONS[case]
    path = _example(tmp_path, edit)
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    text = str(err.value)
    assert f"{path}:" in text and where in text, text
    assert "Traceback" not in text


def test_a_target_name_with_a_trailing_newline_is_refused(tmp_path):
    def edit(data):
        data["targets"]["devel\n"] = data["targets"].pop("devel")

    with pytest.raises(MatrixError, match="targets"):
        load_matrix(_example(tmp_path, edit))


@pytest.mark.parametrize("byte", ["\x00", "\x07", "\x1b"])
def test_a_matrix_file_holding_a_control_byte_is_a_located_error(tmp_path, byte):
    path = tmp_path / "m.yaml"
    path.write_text(f"schema: 1\nimage: x{byte}y\n")
    with pytest.raises(MatrixError, match=r"m.yaml:2: .*control character U\+00"):
        load_matrix(path)


def test_pins_that_are_pep_440_stay_valid(tmp_path):
    def edit(data):
        data["packages"].update({"torch_scatter": "2.1.2+pt28cu128", "ray": "2.60.0rc1", "gxx": "14"})

    m = load_matrix(_example(tmp_path, edit))
    assert m.packages["torch_scatter"] == "2.1.2+pt28cu128"
