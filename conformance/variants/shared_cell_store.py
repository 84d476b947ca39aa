"""Variant ``shared-cell-store``: cells that share one SQLite store instead of one each.

The cell's store opens ``shared-store.db`` next to the file its ``--db`` names,
so every cell started through this wrapper (with its database in the same
directory) reads and writes one file. Nothing else changes: tenants stay apart
by their column, so every request still succeeds. Caught by I-5 with the store
fault (``conformance.variants.store.store_fault``): locking the victim cell's store
locks the bystanders' too, and their writes fail.

``python -m conformance.variants.shared_cell_store <a1.cell arguments>``
"""

from __future__ import annotations

from pathlib import Path

from conformance.variants.wrapper import Entry, run

SHARED_NAME = "shared-store.db"


def shared_path(db: Path) -> Path:
    """The one store every wrapped cell whose database lives in ``db``'s directory opens."""
    return db.parent / SHARED_NAME


def patch() -> None:
    from a1 import cell

    original = cell.Store.__init__

    def open_shared(self: cell.Store, path: Path) -> None:
        original(self, shared_path(Path(path)))

    cell.Store.__init__ = open_shared  # type: ignore[method-assign]


def entry() -> Entry:
    from a1.cell import main

    return main


if __name__ == "__main__":
    run(patch, entry)
