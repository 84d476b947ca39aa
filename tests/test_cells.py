"""Cell selection: balance bounds, add-cell movement, overrides, the file format, bad files."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.core.cells import DEFAULT_BUCKETS, CellTable, bucket_of
from policies.core.errors import ConfigError

TENANTS_50K = [f"tenant-{i}" for i in range(50_000)]


def cell_names(n: int) -> list[str]:
    return [f"cell-{i}" for i in range(1, n + 1)]


def loads(table: CellTable, tenants: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(table.cells, 0)
    for t in tenants:
        counts[table.lookup(t)] += 1
    return counts


# -- the hash ----------------------------------------------------------------------------


def test_bucket_is_crc32_of_utf8_modulo_buckets() -> None:
    # Stable across processes and Python versions: pinned values, not hash().
    assert bucket_of("acme") == zlib.crc32(b"acme") % DEFAULT_BUCKETS == 14910
    assert bucket_of("tenant-1") == 2559
    assert bucket_of("é") == zlib.crc32("é".encode()) % DEFAULT_BUCKETS


def test_bucket_is_stable_across_processes() -> None:
    code = ("from policies.core.cells import bucket_of; "
            "print(bucket_of('tenant-42'), bucket_of('ü'))")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(bucket_of("tenant-42")), str(bucket_of("ü"))]


# -- balance -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 7, 10, 20])
def test_balanced_bucket_counts_differ_by_at_most_one(n: int) -> None:
    counts = CellTable.balanced(cell_names(n)).bucket_counts()
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == DEFAULT_BUCKETS


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(min_value=3, max_value=20), seed=st.integers(0, 2**32 - 1))
def test_tenant_load_max_over_mean_is_bounded(n: int, seed: int) -> None:
    # 50k random tenant ids: at 2,500-16,700 tenants per cell the binomial spread
    # alone is a few percent, so the bound here is 1.10; the 1M-tenant figure
    # (<= 1.02) is measured in a1/bench/cells.py.
    rng = random.Random(seed)
    tenants = [f"{rng.getrandbits(64):x}" for _ in range(50_000)]
    counts = loads(CellTable.balanced(cell_names(n)), tenants)
    assert max(counts.values()) / (len(tenants) / n) <= 1.10


@pytest.mark.parametrize("n", [3, 10, 20])
def test_sequential_tenant_names_spread_evenly(n: int) -> None:
    counts = loads(CellTable.balanced(cell_names(n)), TENANTS_50K)
    assert max(counts.values()) / (len(TENANTS_50K) / n) <= 1.05


# -- adding a cell -----------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(n=st.integers(min_value=1, max_value=20), adds=st.integers(min_value=1, max_value=3))
def test_add_cell_moves_about_one_over_n_plus_one_all_to_the_new_cell(n: int, adds: int) -> None:
    table = CellTable.balanced(cell_names(n))
    for k in range(adds):
        new = f"new-{k}"
        bigger = table.add_cell(new)
        total = len(table.cells) + 1
        moved = [
            b for b in range(DEFAULT_BUCKETS) if table.cell_of_bucket(b) != bigger.cell_of_bucket(b)
        ]
        # Every moved bucket goes to the new cell, and exactly floor(B/(N+1)) move.
        assert all(bigger.cell_of_bucket(b) == new for b in moved)
        assert len(moved) == DEFAULT_BUCKETS // total
        # Still balanced to within one bucket of the ideal.
        counts = bigger.bucket_counts()
        assert max(counts.values()) - min(counts.values()) <= 1
        table = bigger


def test_add_cell_moves_tenants_only_to_the_new_cell() -> None:
    before = CellTable.balanced(cell_names(3))
    after = before.add_cell("cell-4")
    moved = [t for t in TENANTS_50K if before.lookup(t) != after.lookup(t)]
    assert {after.lookup(t) for t in moved} == {"cell-4"}
    assert abs(len(moved) / len(TENANTS_50K) - 1 / 4) < 0.01


def test_add_existing_cell_is_refused() -> None:
    with pytest.raises(ValueError, match="already exists"):
        CellTable.balanced(cell_names(2)).add_cell("cell-1")


# -- overrides ---------------------------------------------------------------------------


def test_overrides_pin_tenants_and_win_over_buckets() -> None:
    base = CellTable.balanced(cell_names(3))
    natural = base.lookup("acme")
    other = next(c for c in base.cells if c != natural)
    pinned = base.with_overrides({"acme": other})
    assert pinned.lookup("acme") == other
    assert pinned.bucket_of("acme") == base.bucket_of("acme")
    # Everybody else is untouched.
    assert all(pinned.lookup(t) == base.lookup(t) for t in TENANTS_50K[:2000])
    assert pinned.version != base.version
    # Overrides survive add_cell.
    assert pinned.add_cell("cell-4").lookup("acme") == other


def test_override_to_unknown_cell_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cells"):
        CellTable.balanced(cell_names(2)).with_overrides({"acme": "cell-9"})


# -- file round trip ---------------------------------------------------------------------


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=1, max_value=8),
    adds=st.integers(min_value=0, max_value=2),
    buckets=st.sampled_from([1, 7, 64, 1000, DEFAULT_BUCKETS]),
    overrides=st.dictionaries(st.from_regex(r"[a-z0-9][a-z0-9-]{0,11}", fullmatch=True),
                              st.integers(0, 7), max_size=4),  # keys: canonical tenant ids
)
def test_round_trip_through_dict_and_yaml(
    tmp_path: Path, n: int, adds: int, buckets: int, overrides: dict[str, int]
) -> None:
    table = CellTable.balanced(cell_names(n), buckets)
    for k in range(adds):
        table = table.add_cell(f"added-{k}")
    cells = table.cells
    table = table.with_overrides({t: cells[i % len(cells)] for t, i in overrides.items()})
    again = CellTable.from_dict(table.to_dict(), "mem")
    assert again == table and again.version == table.version
    path = tmp_path / "cells.yaml"
    table.save(path)
    loaded = CellTable.load(path)
    assert loaded.version == table.version
    assert [loaded.cell_of_bucket(b) for b in range(buckets)] == [
        table.cell_of_bucket(b) for b in range(buckets)
    ]
    assert loaded.overrides == table.overrides


def test_file_format_is_run_length(tmp_path: Path) -> None:
    path = tmp_path / "cells.yaml"
    CellTable.balanced(["a", "b"], 10).with_overrides({"acme": "b"}).save(path)
    assert yaml.safe_load(path.read_text()) == {
        "buckets": 10,
        "cells": ["a", "b"],
        "assignment": [[0, 4, "a"], [5, 9, "b"]],
        "overrides": {"acme": "b"},
    }


def test_version_is_a_content_hash() -> None:
    a = CellTable.balanced(cell_names(3))
    assert a.version == CellTable.balanced(cell_names(3)).version
    assert len(a.version) == 64
    assert a.version != CellTable.balanced(cell_names(4)).version


# -- bad files ---------------------------------------------------------------------------

GOOD = {"buckets": 4, "cells": ["a", "b"], "assignment": [[0, 1, "a"], [2, 3, "b"]]}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"buckets": "many"}, "t.yaml: buckets: must be an integer"),
        ({"buckets": 0}, "t.yaml: buckets: must be between 1"),
        ({"buckets": True}, "t.yaml: buckets: must be an integer"),
        ({"cells": []}, "t.yaml: cells: must be a non-empty list"),
        ({"cells": ["a", "a"]}, "t.yaml: cells: duplicate cell 'a'"),
        ({"cells": ["a", "b c"]}, "t.yaml: cells[1]: invalid cell name 'b c'"),
        (
            {"assignment": [[0, 1, "a"], [3, 3, "b"]]},
            "t.yaml: assignment[1][0]: run starts at bucket 3, expected 2",
        ),
        (
            {"assignment": [[0, 1, "a"], [2, 2, "b"]]},
            "t.yaml: assignment: covers buckets 0..2, expected 0..3",
        ),
        (
            {"assignment": [[0, 1, "a"], [2, 9, "b"]]},
            "t.yaml: assignment[1][1]: last bucket 9 outside [2, 3]",
        ),
        ({"assignment": [[0, 1, "a"], [2, 3, "z"]]}, "t.yaml: assignment[1][2]: unknown cell 'z'"),
        (
            {"assignment": [[0, 1, "a"], [2, "3", "b"]]},
            "t.yaml: assignment[1][1]: bucket must be an integer",
        ),
        (
            {"assignment": [[0, 1, "a"], [2, 3]]},
            "t.yaml: assignment[1]: must be [first_bucket, last_bucket, cell]",
        ),
        ({"overrides": {"acme": "z"}}, "t.yaml: overrides.acme: unknown cell 'z'"),
        ({"overrides": ["acme"]}, "t.yaml: overrides: must be a mapping"),
        ({"extra": 1}, "t.yaml: extra: unknown field"),
    ],
)
def test_bad_tables_name_the_source_and_field(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        CellTable.from_dict({**GOOD, **patch}, "t.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.code == 2


def test_missing_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^t.yaml: assignment: missing$"):
        CellTable.from_dict({"buckets": 4, "cells": ["a"]}, "t.yaml")


def test_bad_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "cells.yaml"
    path.write_text("buckets: 4\ncells: [a, b\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3:1: invalid YAML"):
        CellTable.load(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        CellTable.load(tmp_path / "nope.yaml")


def test_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cells.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=f"^{path}: expected a mapping"):
        CellTable.load(path)


def test_benchmark_runs_and_compares_with_the_ring() -> None:
    """A small run of a1/bench/cells.py: the table prints and movement is exact."""
    from a1.bench.cells import Ring, run

    lines: list[str] = []
    rows = run(20_000, [3, 10], "seq", out=lines.append)
    assert "ring = SHA-256, 150 vnodes per cell" in lines[0]
    assert [r["cells"] for r in rows] == [3, 10]
    assert all(r["a1_to_new"] == 1.0 and r["ring_to_new"] == 1.0 for r in rows)
    assert all(abs(r["a1_moved"] - 1 / (r["cells"] + 1)) < 0.01 for r in rows)
    ring = Ring(["a", "b"])
    assert {ring.lookup(t) for t in TENANTS_50K[:100]} == {"a", "b"}


def _add_cell_reference(table: CellTable, name: str) -> CellTable:
    """The rule, written the obvious way: ⌊B/(N+1)⌋ times, the fullest cell (earliest on
    ties) gives its highest bucket to ``name``."""
    owner = [table.cell_of_bucket(b) for b in range(table.buckets)]
    for _ in range(table.buckets // (len(table.cells) + 1)):
        counts = {c: owner.count(c) for c in table.cells}
        donor = max(table.cells, key=lambda c: (counts[c], -table.cells.index(c)))
        owner[max(b for b, c in enumerate(owner) if c == donor)] = name
    return CellTable(table.buckets, [*table.cells, name], owner, table.overrides)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=6), buckets=st.integers(min_value=1, max_value=400))
def test_add_cells_equals_the_reference_rule_one_cell_at_a_time(n: int, buckets: int) -> None:
    names = [f"c{i}" for i in range(n)]
    expected = CellTable.balanced(names[:1], buckets)
    for name in names[1:]:
        expected = _add_cell_reference(expected, name)
    assert CellTable.balanced(names[:1], buckets).add_cells(names[1:]) == expected


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=6), data=st.data())
def test_remove_cells_moves_only_the_removed_cells_buckets(n: int, data: st.DataObject) -> None:
    names = [f"c{i}" for i in range(n)]
    before = CellTable.balanced(names, 512)
    gone = data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=n - 1))
    after = before.remove_cells(gone)
    assert set(after.cells) == set(names) - gone
    for b in range(before.buckets):
        if before.cell_of_bucket(b) not in gone:
            assert after.cell_of_bucket(b) == before.cell_of_bucket(b)
    counts = list(after.bucket_counts().values())
    assert max(counts) - min(counts) <= 1
