"""Variant ``foreign-tenant-cell``: a cell whose accept check accepts every tenant.

The product cell answers 421 to a tenant its cell table does not map to it (and to
no table it must also accept during a move); this one serves it, reading and
writing the foreign tenant's rows in its own store. Caught by I-5: a ``misroute``
op, sent straight to a cell that does not own the tenant, gets 200 instead of 421.

``python -m conformance.variants.foreign_tenant_cell <a1.cell arguments>``
"""

from __future__ import annotations

from conformance.variants.wrapper import Entry, run


def patch() -> None:
    from a1 import cell

    def accepts_every_tenant(self: object, tenant: str, name: str) -> bool:
        return True

    cell.TableWatcher.accepts = accepts_every_tenant  # type: ignore[method-assign]
    cell.XdsTables.accepts = accepts_every_tenant  # type: ignore[method-assign]


def entry() -> Entry:
    from a1.cell import main

    return main


if __name__ == "__main__":
    run(patch, entry)
