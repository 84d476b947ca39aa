"""The bucket → cell table a spec stands for: derived, never hand-written.

The rule (docs/platform-spec.md, "The bucket table"):

* With no ``cell-table.yaml`` in the spec directory, the table is a pure
  function of the ordered cell list: ``balanced([cells[0]])``, then
  ``add_cell`` for each next cell. Appending a cell therefore moves only the
  buckets the new cell takes (⌊B/(N+1)⌋ of them), all to the new cell.
* ``cell-table.yaml`` records the table last derived (``a1 cells add/remove``
  write it). When present, the table is that record reconciled with the list:
  cells gone from the list are drained (``CellTable.remove_cells``), then cells new to
  the list are added with ``CellTable.add_cells`` in list order. Removing any cell,
  not only the last one, thus moves only that cell's buckets.

Both inputs are files in the directory, so every replica derives the same table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policies.core.cells import CellTable


def replay(cells: Sequence[str], buckets: int) -> CellTable:
    """``balanced([cells[0]])`` then ``add_cell`` for each next cell."""
    return CellTable.balanced([cells[0]], buckets).add_cells(cells[1:])


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
            table = table.remove_cells(gone)
        have = set(table.cells)
        table = table.add_cells([c for c in cells if c not in have])
    return table.with_overrides(overrides)
