"""The planner: which cells a selection picks, in which order, and what each waits for."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from imagematrix.core.errors import UsageError
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.plan import (
    Selection,
    excluded_families,
    excluded_lines,
    make_plan,
    select_cells,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def m(sheet_matrix):
    return sheet_matrix


def ids(m, **filters):
    return [c.id for c in select_cells(m, Selection(**filters))]


def test_phase_2_is_exactly_the_devel_targets_of_12_8_1_with_3_13_parents_first(m):
    plan = make_plan(m, Selection(phases=(2,)))
    assert [s.cell.id for s in plan.steps] == [
        "cu12.8.1-py3.13-devel",
        "cu12.8.1-py3.13-ray-devel",
        "cu12.8.1-py3.13-marimo-devel",
    ]
    assert [s.needs for s in plan.steps] == [
        (),
        ("cu12.8.1-py3.13-devel",),
        ("cu12.8.1-py3.13-devel", "cu12.8.1-py3.13-ray-devel"),
    ]
    assert plan.dependants("cu12.8.1-py3.13-devel") == ["cu12.8.1-py3.13-ray-devel", "cu12.8.1-py3.13-marimo-devel"]
    assert [s.context for s in plan.steps] == [Path("build") / s.cell.id for s in plan.steps]


def test_phase_1_builds_the_runtime_targets_each_from_its_own_file(m):
    plan = make_plan(m, Selection(phases=(1,)))
    assert [s.cell.id for s in plan.steps] == [
        "cu12.8.1-py3.13-runtime",
        "cu12.8.1-py3.13-ray-runtime",
        "cu12.8.1-py3.13-marimo-runtime",
    ]
    # Their devel parents are not in the plan: each multi-stage file builds them itself.
    assert all(s.needs == () for s in plan.steps)
    assert plan.steps[2].rendered.stages == (
        "devel",
        "ray-devel",
        "marimo-devel",
        "prune-marimo-runtime",
        "marimo-runtime",
    )


def test_phase_5_spans_two_families_in_the_phases_order(m):
    assert ids(m, phases=(5,)) == [
        "cu13.1.1-py3.14-devel",
        "cu13.1.1-py3.14-ray-devel",
        "cu13.1.1-py3.14-marimo-devel",
        "cu12.8.1-py3.14-devel",
        "cu12.8.1-py3.14-ray-devel",
        "cu12.8.1-py3.14-marimo-devel",
    ]


def test_two_phases_merge_into_one_family_ordered_parents_first(m):
    assert ids(m, phases=(1, 2)) == [
        "cu12.8.1-py3.13-devel",
        "cu12.8.1-py3.13-runtime",
        "cu12.8.1-py3.13-ray-devel",
        "cu12.8.1-py3.13-ray-runtime",
        "cu12.8.1-py3.13-marimo-devel",
        "cu12.8.1-py3.13-marimo-runtime",
    ]
    plan = make_plan(m, Selection(phases=(2, 1)))
    assert [s.cell.id for s in plan.steps] == ids(m, phases=(1, 2))
    assert dict((s.cell.id, s.needs) for s in plan.steps)["cu12.8.1-py3.13-marimo-runtime"] == (
        "cu12.8.1-py3.13-devel",
        "cu12.8.1-py3.13-ray-devel",
        "cu12.8.1-py3.13-marimo-devel",
    )


def test_no_filter_plans_all_18_families_in_phase_order(m):
    cells = select_cells(m, Selection())
    assert len(cells) == 18
    families = list(dict.fromkeys(c.family for c in cells))
    assert families == [("12.8.1", "3.13"), ("13.1.1", "3.14"), ("12.8.1", "3.14")]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"cudas": ("13.1.1",)}, {("13.1.1", "3.14")}),
        ({"pythons": ("3.13",)}, {("12.8.1", "3.13")}),
        ({"pythons": ("3.14",), "cudas": ("12.8.1",)}, {("12.8.1", "3.14")}),
    ],
)
def test_cuda_and_python_filters_pick_whole_families(m, filters, expected):
    cells = select_cells(m, Selection(**filters))
    assert {c.family for c in cells} == expected
    assert len(cells) == 6 * len(expected)


def test_target_filters_are_repeatable_and_combine_with_the_others(m):
    assert ids(m, targets=("runtime",)) == [
        "cu12.8.1-py3.13-runtime",
        "cu13.1.1-py3.14-runtime",
        "cu12.8.1-py3.14-runtime",
    ]
    assert ids(m, targets=("runtime", "devel"), cudas=("12.8.1",), pythons=("3.14",)) == [
        "cu12.8.1-py3.14-devel",
        "cu12.8.1-py3.14-runtime",
    ]
    assert ids(m, phases=(5,), targets=("marimo-devel",)) == [
        "cu13.1.1-py3.14-marimo-devel",
        "cu12.8.1-py3.14-marimo-devel",
    ]


def test_every_plan_puts_what_a_step_needs_before_it(m):
    """Parents before children for every combination of phases and targets."""
    for n in range(1, 3):
        for phases in itertools.combinations(sorted(m.phases), n):
            for targets in ((), ("runtime", "devel"), ("marimo-runtime", "ray-devel", "devel")):
                try:
                    plan = make_plan(m, Selection(phases=phases, targets=targets))
                except UsageError:
                    continue
                seen: set[str] = set()
                for step in plan.steps:
                    assert set(step.needs) <= seen, (phases, targets, step.cell.id)
                    seen.add(step.cell.id)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"phases": (9,)}, "unknown phase 9 (the matrix has: 1, 2, 3, 4, 5)"),
        ({"cudas": ("12.4",)}, "unknown CUDA version '12.4' (the matrix has: 12.8.1, 13.1.1)"),
        ({"pythons": ("3.12",)}, "unknown Python version '3.12' (the matrix has: 3.13, 3.14)"),
        (
            {"targets": ("slim",)},
            "unknown target 'slim' (the matrix has: devel, runtime, ray-devel, ray-runtime, marimo-devel, "
            "marimo-runtime)",
        ),
    ],
)
def test_unknown_filter_values_list_what_the_matrix_has(m, filters, message):
    with pytest.raises(UsageError) as info:
        select_cells(m, Selection(**filters))
    assert str(info.value) == message
    assert info.value.exit_code == 2


def test_a_selection_of_excluded_cells_says_why_in_one_line_per_family(m):
    with pytest.raises(UsageError) as info:
        select_cells(m, Selection(cudas=("13.1.1",), pythons=("3.13",)))
    assert str(info.value).splitlines() == [
        "no cell matches cuda 13.1.1; python 3.13 (`invoke matrix` lists every cell)",
        f"  excluded: CUDA 13.1.1 + Python 3.13 (all targets): {m.excluded['cu13.1.1-py3.13-devel']}",
    ]


def test_a_phase_and_a_filter_that_miss_each_other_show_what_the_phase_holds(m):
    with pytest.raises(UsageError) as info:
        select_cells(m, Selection(phases=(2,), pythons=("3.14",)))
    assert str(info.value).splitlines() == [
        "no cell matches phase 2; python 3.14 (`invoke matrix` lists every cell)",
        "  phase 2 holds CUDA 12.8.1 + Python 3.13: devel, ray-devel, marimo-devel",
    ]


def test_excluded_families_group_targets_under_one_reason(m):
    fams = excluded_families(m, Selection(cudas=("13.1.1",), targets=("runtime", "devel")))
    assert fams == {("13.1.1", "3.13"): {m.excluded["cu13.1.1-py3.13-runtime"]: ["runtime", "devel"]}}
    assert excluded_families(m, Selection(cudas=("12.8.1",))) == {}


def test_each_exclusion_reason_of_a_family_is_shown(tmp_path):
    root = Path(__file__).resolve().parents[2]
    text = (
        (root / "matrix.yaml")
        .read_text()
        .replace(
            "exclude:\n",
            'exclude:\n  - {cuda: "12.8.1", python: "3.14", target: ray-devel, reason: no cp314 ray wheel yet}\n'
            '  - {cuda: "12.8.1", python: "3.14", target: ray-runtime, reason: no cp314 ray wheel yet}\n'
            '  - {cuda: "12.8.1", python: "3.14", target: marimo-runtime, reason: marimo pins an older ray}\n',
        )
        .replace("fragments_dir: dockerfiles", f"fragments_dir: {root / 'dockerfiles'}")
    )
    text = text.replace("targets: [marimo-runtime, runtime, ray-runtime]}\n  5:", "targets: [runtime]}\n  5:")
    text = text.replace(
        '- {cuda: "12.8.1", python: "3.14", targets: [devel, ray-devel, marimo-devel]}',
        '- {cuda: "12.8.1", python: "3.14", targets: [devel]}',
    )
    (tmp_path / "m.yaml").write_text(text)
    m2 = load_matrix(tmp_path / "m.yaml")
    assert excluded_lines(m2, Selection(cudas=("12.8.1",), pythons=("3.14",))) == [
        "excluded: CUDA 12.8.1 + Python 3.14 (ray-devel, ray-runtime): no cp314 ray wheel yet",
        "excluded: CUDA 12.8.1 + Python 3.14 (marimo-runtime): marimo pins an older ray",
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, Selection()),
        (
            {"phase": ["2", "5"], "cuda": ["12.8.1"], "python": ["3.13"], "target": ["runtime"]},
            Selection((2, 5), ("12.8.1",), ("3.13",), ("runtime",)),
        ),
        ({"phase": None, "cuda": None}, Selection()),  # the tasks' defaults: no filter
        ({"phase": 3, "target": "devel"}, Selection((3,), (), (), ("devel",))),
        ({"python": [" 3.14 ", ""]}, Selection(pythons=("3.14",))),
    ],
)
def test_selection_from_cli_options(options, expected):
    assert Selection.from_options(**options) == expected


def test_a_phase_that_is_not_a_number_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--phase takes a phase number, not 'two'"):
        Selection.from_options(phase=["two"])


def test_selection_describes_itself():
    assert Selection().describe() == "all cells"
    assert (
        Selection((2,), (), ("3.13",), ("devel", "runtime")).describe() == "phase 2; python 3.13; target devel, runtime"
    )


ARM64_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arm64.yaml"


def test_a_platform_filter_picks_the_cells_of_that_platform_only():
    two = load_matrix(ARM64_EXAMPLE)
    arm = select_cells(two, Selection.from_options(platform="linux/arm64"))
    assert [c.id for c in arm] == ["cu13.2-py3.13-devel-arm64"] and arm[0].platform == "linux/arm64"
    both = select_cells(two, Selection.from_options(platform=["linux/amd64", "linux/arm64"]))
    assert len(both) == 2
    with pytest.raises(
        UsageError, match=r"unknown platform 'linux/riscv64' \(the matrix has: linux/amd64, linux/arm64\)"
    ):
        select_cells(two, Selection.from_options(platform="linux/riscv64"))


def test_a_platform_filter_on_a_matrix_without_platforms_says_so(m):
    with pytest.raises(UsageError, match="this matrix has no platforms axis"):
        select_cells(m, Selection.from_options(platform="linux/amd64"))
