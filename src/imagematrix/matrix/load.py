"""Load ``matrix.yaml``, the one source of truth: read it within limits, parse the YAML, index where
each key sits, check its shape against the schema (``schema``), then resolve it (``resolve``) into the
frozen ``Matrix`` (``model``) that every other module works on. Every problem is reported with its
file, line and key path."""

from __future__ import annotations

import re
import stat
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from imagematrix.core.errors import MatrixError, Problem
from imagematrix.matrix.index import MAX_DEPTH, Index
from imagematrix.matrix.model import Matrix
from imagematrix.matrix.resolve import resolve
from imagematrix.matrix.schema import MatrixSpec, UnquotedVersion

# --- loading -------------------------------------------------------------------------


# Limits on what a matrix file may be: a real one is a few KB, a few hundred nodes, under ten levels deep
# (the node and depth limits are the index's: index.MAX_NODES, index.MAX_DEPTH).
MAX_FILE_BYTES = 5 * 1024 * 1024
# What YAML 1.1 refuses in a stream (PyYAML raises a ReaderError without a line): C0 controls but tab,
# newline and carriage return, DEL, C1 controls but NEL, surrogates and the two non-characters.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


# libyaml parses ~6x faster; the pure-Python loader words errors the same on every host.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """YAML text -> (data, root node); syntax errors become a located problem."""
    depth, line = _flow_depth(text)
    if depth > MAX_DEPTH:
        # libyaml's composer recurses in C: far deeper flow nesting crashes the process, so refuse it before parsing.
        raise MatrixError(
            [Problem(path, line, (), f"nested deeper than {MAX_DEPTH} levels; a matrix file needs fewer than ten")]
        )
    try:
        return _parse_yaml(path, text)
    except RecursionError:
        raise MatrixError(
            [
                Problem(
                    path,
                    None,
                    (),
                    f"nested too deeply to parse; a matrix file needs fewer than ten levels (the limit is {MAX_DEPTH})",
                )
            ]
        ) from None


def _flow_depth(text: str) -> tuple[int, int]:
    """Deepest nesting of flow collections ([...] and {...}) and its line; quotes and comments skipped.

    Approximate (no full YAML lexing), but only a file with more than MAX_DEPTH open brackets trips it.
    """
    depth = deepest = 0
    line = deepest_line = 1
    quote = ""
    comment = False
    prev = "\n"
    for ch in text:
        if ch == "\n":
            line += 1
            comment = False
        elif comment:
            pass
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and (prev in " \t\n[{:,-"):
            quote = ch
        elif ch == "#" and prev in " \t\n":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
                if deepest > MAX_DEPTH:
                    break
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
    return deepest, deepest_line


def _parse_yaml(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    loader = _FAST_LOADER(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.YAMLError:
        pass  # parse again below, for the portable message
    finally:
        loader.dispose()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = f"not valid YAML: {exc.problem or exc}"
        ctx = exc.context_mark
        if exc.context and ctx and mark and ctx.line != mark.line:
            msg += f" ({exc.context} that starts at line {ctx.line + 1})"
        if "\\t" in msg or "\t" in msg:
            msg += "; indent with spaces, YAML does not allow tabs there"
        raise MatrixError([Problem(path, mark.line + 1 if mark else None, (), msg)]) from None
    finally:
        loader.dispose()


def load_matrix(path: str | Path) -> Matrix:
    """Read, check and resolve a matrix file; raise ``MatrixError`` listing every problem."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise MatrixError(
                [
                    Problem(
                        path, None, (), "not a regular file (a device, pipe or directory); pass the matrix's YAML file"
                    )
                ]
            )
        if info.st_size > MAX_FILE_BYTES:
            raise MatrixError(
                [
                    Problem(
                        path,
                        None,
                        (),
                        f"{info.st_size:,} bytes is too big for a matrix file (the limit is {MAX_FILE_BYTES:,}); is "
                        "this the right file?",
                    )
                ]
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MatrixError(
            [Problem(path, None, (), "no such file (pass --matrix FILE, or run from the project's top directory)")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MatrixError([Problem(path, None, (), f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    bad = _BAD_CHAR.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise MatrixError(
            [
                Problem(
                    path,
                    line,
                    (),
                    f"holds the control character U+{ord(bad.group()):04X}, which YAML does not "
                    "allow; is this the right file? (a matrix is plain text)",
                )
            ]
        )
    data, node = _parse(path, text)
    if not isinstance(data, dict) or node is None:
        raise MatrixError(
            [Problem(path, 1, (), "expected a mapping of keys (schema, image, python, cuda, targets, ...)")]
        )
    loc = Index(path, node)
    if loc.duplicates:
        raise MatrixError(loc.duplicates)
    try:
        spec = MatrixSpec.model_validate(data)
    except ValidationError as exc:
        raise MatrixError(_schema_problems(loc, [dict(e) for e in exc.errors()])) from None
    return resolve(spec, path, loc)


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys allowed at the mapping that holds ``loc[-1]`` (for 'unknown key' messages)."""
    ann: Any = MatrixSpec
    for part in loc[:-1]:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            f = next((f for n, f in ann.model_fields.items() if (f.alias or n) == part), None)
            if f is None:
                return []
            ann = f.annotation
        elif typing.get_origin(ann) is dict:
            ann = typing.get_args(ann)[1]
        elif typing.get_origin(ann) is list:
            ann = typing.get_args(ann)[0]
    ann = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [f.alias or n for n, f in ann.model_fields.items()]
    return []


def _unwrap(ann: Any) -> Any:
    """Strip Optional/Union down to the one model or container inside."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        for a in args:
            if (isinstance(a, type) and issubclass(a, BaseModel)) or typing.get_origin(a) in (dict, list):
                return a
        return args[0] if args else ann
    return ann


# What a type error expected, in words (pydantic's error type -> phrase).
_EXPECTED = {
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _schema_problems(loc: Index, errors: list[dict]) -> list[Problem]:
    """pydantic errors -> one problem per key path (a union's failed members merged)."""
    groups: dict[tuple, list[dict]] = {}
    for err in errors:
        is_key = "[key]" in err["loc"]
        where = tuple(p for p in err["loc"] if p != "[key]")
        # pydantic names union members in loc (e.g. 'list[int]'); they are not keys.
        where = tuple(
            p for p in where if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool")))
        )
        where = tuple("schema" if p == "schema_" else p for p in where)
        groups.setdefault((where, is_key), []).append(err)
    problems = []
    for (where, is_key), errs in groups.items():
        kinds = [e["type"] for e in errs]
        if len(errs) > 1 and all(k in _EXPECTED or k == "literal_error" for k in kinds):
            wanted = [_EXPECTED.get(k) or _literal(e) for k, e in zip(kinds, errs, strict=True)]
            if "a number" in wanted and "an integer" in wanted:
                wanted.remove("an integer")
            wanted = list(dict.fromkeys(wanted))
            words = ", ".join(wanted[:-1]) + " or " + wanted[-1] if len(wanted) > 1 else wanted[0]
            problems.append(loc.problem(where, f"expected {words} (got {_shown(errs[0].get('input'))})"))
            continue
        for err in errs:
            problems.append(_schema_problem(loc, where, is_key, err))
    return problems


def _literal(err: dict) -> str:
    expected = err["ctx"]["expected"]
    return expected if " or " not in expected else "one of " + expected


def _schema_problem(loc: Index, where: tuple, is_key: bool, err: dict) -> Problem:
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(where)
        msg = f"unknown key {where[-1]!r}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    elif kind == "missing":
        parent = where[:-1]
        msg = f"required key {where[-1]!r} is missing" + ("" if parent else " (top level)")
        where = where[:-1]
    elif kind == "value_error" and isinstance(err["ctx"]["error"], UnquotedVersion):
        p = tuple(map(str, where))
        text = (loc.key_texts if is_key else loc.texts).get(p, str(got))
        if text != str(got):
            msg = f'write versions as quoted strings: "{text}" (YAML reads the unquoted {text} as the number {got!r})'
        else:
            msg = (
                f'write versions as quoted strings: "{text}" '
                "(YAML reads unquoted versions as numbers: 3.10 would become 3.1)"
            )
    elif kind == "value_error":
        msg = str(err["ctx"]["error"])
    elif kind == "literal_error":
        allowed = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        msg = f"unknown value {_shown(got)} (allowed: {allowed})"
    elif kind in _EXPECTED:
        msg = f"expected {_EXPECTED[kind]} (got {_shown(got)})"
    else:
        msg = f"{err['msg']} (got {_shown(got)})"
    return loc.problem(where, msg)
