"""`invoke bake`: the plan `invoke build` executes, as a `docker-bake.json` any BuildKit builder runs.

One bake target per cell (its context, Dockerfile, stage, tag, labels with the
build hash, args, the CA secret, cache settings) and a group per phase, so a
remote, kubernetes or hosted builder can build the matrix with `docker buildx
bake`. The build-hash label is the same one `invoke build` writes, so what bake
built is recognised as up to date: `invoke build` skips it and `nox` tests it.
What bake does not do, and imagematrix does: run past a failed cell while
blocking only its dependants, resume, record each cell, test the images on a GPU
and gate publishing on those tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from imagematrix.build.buildkit import BuildOptions, csv_fields, describe_builder, proxy_build_args
from imagematrix.build.executor import Executor
from imagematrix.core.builddir import build_lock
from imagematrix.matrix.plan import Plan
from imagematrix.matrix.render import CA_SECRET_ID, write_context

BAKE_FILE = "docker-bake.json"  # under the build directory


def target_name(cell_id: str) -> str:
    """Bake target names allow [A-Za-z0-9_-]: the cell id with '.' as '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", cell_id)


def bake_document(plan: Plan, options: BuildOptions, client) -> dict:
    builder = describe_builder()
    options = replace(options, build_args=tuple(dict.fromkeys((*options.build_args, *proxy_build_args({})))))
    ex = Executor(plan, options, builder, client, progress=None)
    targets: dict[str, dict] = {}
    for step in plan.steps:
        opts, _ = ex.command(step, ex.digest(step))
        t: dict = {
            "context": str(step.context),
            "dockerfile": step.dockerfile.name,  # relative to the context
            "target": step.rendered.stage,
            "tags": [step.cell.ref],
            "labels": dict(sorted(opts.labels.items())),
            "output": ["type=docker"],
        }
        args = dict(a.split("=", 1) for a in opts.build_args if "=" in a)
        if args:
            t["args"] = args
        if opts.ca_cert is not None:
            t["secret"] = [csv_fields(f"id={CA_SECRET_ID}", f"src={opts.ca_cert}")]
        if opts.cache_from:
            t["cache-from"] = list(opts.cache_from)
        if opts.cache_to:
            t["cache-to"] = list(opts.cache_to)
        if opts.no_cache:
            t["no-cache"] = True
        if opts.pull:
            t["pull"] = True
        targets[target_name(step.cell.id)] = t
    planned = {s.cell.id for s in plan.steps}
    groups = {"default": {"targets": list(targets)}}
    for number, phase in sorted(plan.matrix.phases.items()):
        mine = [target_name(c) for c in phase.cells if c in planned]
        if mine:
            groups[f"phase-{number}"] = {"targets": mine}
    return {"group": groups, "target": targets}


def write_bake(plan: Plan, options: BuildOptions, client) -> Path:
    """Write every planned cell's context and the bake file; returns the bake file's path."""
    with build_lock(plan.build_dir, "invoke bake"):
        for step in plan.steps:
            write_context(step.rendered, plan.build_dir)
        doc = bake_document(plan, options, client)
        out = plan.build_dir / BAKE_FILE
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out
