"""The bucket → cell table a spec stands for: derived, never hand-written.

The rule (docs/platform-spec.md, "The bucket table"):

* With no ``cell-table.yaml`` in the spec directory, the table is a pure
  function of the ordered cell list: ``balanced([cells[0]])``, then
  ``add_cell`` for each next cell. Appending a cell therefore moves only the
  buckets the new cell takes (⌊B/(N+1)⌋ of them), all to the new cell.
* ``cell-table.yaml`` records the table last derived (``a1 cells add/remove``
  write it). When present, the table is that record reconciled with the list:
  cells gone from the list are drained (:func:`drain_cell`), then cells new to
  the list are added with ``add_cell`` in list order. Removing any cell,
  not only the last one, thus moves only that cell's buckets.

Both inputs are files in the directory, so every replica derives the same table.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from policies.core.cells import CellTable


def replay(cells: Sequence[str], buckets: int) -> CellTable:
    """``balanced([cells[0]])`` then ``add_cell`` for each next cell."""
    return add_cells(CellTable.balanced([cells[0]], buckets), cells[1:])


def add_cells(table: CellTable, names: Sequence[str]) -> CellTable:
    """``table.add_cell(n)`` for each of ``names`` in turn, with the same result, in
    O(B log B) rather than O(B) per cell: the owner lists are kept between steps
    instead of being rebuilt from the whole table each time (256 cells over 2^20
    buckets would otherwise take minutes, on every load)."""
    if not names:
        return table
    cells = list(table.cells)
    assignment = [table.cell_of_bucket(b) for b in range(table.buckets)]
    owned: dict[str, list[int]] = {c: [] for c in cells}
    for b, c in enumerate(assignment):
        owned[c].append(b)
    for name in names:
        if name in owned:
            raise ValueError(f"cell {name!r} already exists")
        take = table.buckets // (len(cells) + 1)
        heap = [(-len(owned[c]), i, c) for i, c in enumerate(cells)]
        heapq.heapify(heap)
        got: list[int] = []
        for _ in range(take):
            neg, i, c = heapq.heappop(heap)
            b = owned[c].pop()  # each list is ascending: the donor's highest bucket
            assignment[b] = name
            got.append(b)
            heapq.heappush(heap, (neg + 1, i, c))
        got.sort()
        owned[name] = got
        cells.append(name)
    return CellTable(table.buckets, cells, assignment, table.overrides)


def drain_cell(table: CellTable, name: str) -> CellTable:
    """A new table without ``name``: only its buckets move, to the other cells."""
    return drain_cells(table, [name])


def drain_cells(table: CellTable, names: Sequence[str]) -> CellTable:
    """A new table without ``names``: only their buckets move, to the remaining cells.

    Deterministic, in one pass: the drained buckets are first counted out to the
    least-loaded remaining cells one at a time (ties to the earlier cell), which
    keeps every cell within one bucket of the balance it had; then, in ascending
    bucket order, each recipient in table order takes its count as one contiguous
    run, which keeps the recorded table short. A pure function, proposed for
    ``policies.core.cells.CellTable.remove_cell``.
    """
    gone = set(names)
    missing = sorted(gone - set(table.cells))
    if missing:
        raise ValueError(f"cell {missing[0]!r} is not in the table")
    rest = [c for c in table.cells if c not in gone]
    if not rest:
        raise ValueError(f"cell {sorted(gone)[0]!r} is the last cell; a table needs at "
                         "least one")
    pinned = sorted(t for t, c in table.overrides.items() if c in gone)
    if pinned:
        raise ValueError(f"overrides pin {pinned[0]!r} to cell {table.overrides[pinned[0]]!r}")
    counts = table.bucket_counts()
    assignment = [table.cell_of_bucket(b) for b in range(table.buckets)]
    drained = [b for b, c in enumerate(assignment) if c in gone]
    heap = [(counts[c], i, c) for i, c in enumerate(rest)]
    heapq.heapify(heap)
    quota = dict.fromkeys(rest, 0)
    for _ in drained:
        n, i, c = heapq.heappop(heap)
        quota[c] += 1
        heapq.heappush(heap, (n + 1, i, c))
    it = iter(drained)
    for c in rest:
        for _ in range(quota[c]):
            assignment[next(it)] = c
    return CellTable(table.buckets, rest, assignment, table.overrides)


def derive(cells: Sequence[str], buckets: int, overrides: Mapping[str, str],
           recorded: CellTable | None) -> CellTable:
    """The table for ``cells`` (in order of addition), given the recorded one if any.

    ``recorded`` must have ``buckets`` buckets (the loader checks it).
    """
    wanted = set(cells)
    survivors = [c for c in recorded.cells if c in wanted] if recorded is not None else []
    if recorded is None or not survivors:
        table = replay(cells, buckets)
    else:
        table = recorded.with_overrides({})
        gone = [c for c in recorded.cells if c not in wanted]
        if gone:
            table = drain_cells(table, gone)
        have = set(table.cells)
        table = add_cells(table, [c for c in cells if c not in have])
    return table.with_overrides(overrides)
