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
    table = CellTable.balanced([cells[0]], buckets)
    for name in cells[1:]:
        table = table.add_cell(name)
    return table


def drain_cell(table: CellTable, name: str) -> CellTable:
    """A new table without ``name``: only its buckets move, to the other cells.

    Deterministic: the drained buckets are first counted out to the least-loaded
    remaining cells one at a time (ties to the earlier cell), which keeps every
    cell within one bucket of the balance it had; then, in ascending bucket order,
    each recipient in table order takes its count as one contiguous run, which
    keeps the recorded table short. A pure function, proposed for
    ``policies.core.cells.CellTable.remove_cell``.
    """
    if name not in table.cells:
        raise ValueError(f"cell {name!r} is not in the table")
    rest = [c for c in table.cells if c != name]
    if not rest:
        raise ValueError(f"cell {name!r} is the last cell; a table needs at least one")
    pinned = sorted(t for t, c in table.overrides.items() if c == name)
    if pinned:
        raise ValueError(f"overrides pin {pinned[0]!r} to cell {name!r}")
    counts = table.bucket_counts()
    drained = [b for b in range(table.buckets) if table.cell_of_bucket(b) == name]
    order = {c: i for i, c in enumerate(rest)}
    heap = [(counts[c], order[c], c) for c in rest]
    heapq.heapify(heap)
    quota = dict.fromkeys(rest, 0)
    for _ in drained:
        n, i, c = heapq.heappop(heap)
        quota[c] += 1
        heapq.heappush(heap, (n + 1, i, c))
    assignment = [table.cell_of_bucket(b) for b in range(table.buckets)]
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
    survivors = [c for c in recorded.cells if c in cells] if recorded is not None else []
    if recorded is None or not survivors:
        table = replay(cells, buckets)
    else:
        table = recorded.with_overrides({})
        for gone in [c for c in recorded.cells if c not in cells]:
            table = drain_cell(table, gone)
        for new in [c for c in cells if c not in table.cells]:
            table = table.add_cell(new)
    return table.with_overrides(overrides)
