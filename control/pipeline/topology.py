"""Make-before-break topology changes: the phases from one cell table to another.

A cell-table change (a cell added or removed, buckets or overrides moved) spans
three parties that update independently: Envoy (clusters, routes), the cells
(which tenants they accept) and the sidecars (which cell each tenant goes to).
Each may lag one phase behind the one published, so a table change is published
as three snapshots, each ACKed before the next:

1. **make**: clusters, endpoints and ``x-a1-cell`` routes for the union of the old
   and new cells; the cells also accept the new table (``cells.accept.0``); the
   sidecars keep routing by the old table.
2. **switch**: the sidecars route by the new table; the cells still accept the old
   one, so requests routed by it and still in flight succeed.
3. **break**: the desired state: removed cells lose their cluster and route, the
   old table is no longer accepted.

Routes come before the sidecar's table because Envoy routes on the ``x-a1-cell``
header the sidecar sets: a route must exist before any sidecar names its cell.
docs/control-plane.md has the proof obligations, which tests/test_pipeline_topology.py
checks with hypothesis.
"""

from __future__ import annotations

from dataclasses import replace

from control.pipeline.state import Assignment, PlatformState
from policies.core.cells import CellTable
from policies.core.errors import ConfigError


def _unique(tables: list[CellTable], drop: CellTable) -> tuple[CellTable, ...]:
    out: list[CellTable] = []
    for t in tables:
        if t != drop and t not in out:
            out.append(t)
    return tuple(out)


def transition(current: PlatformState, desired: PlatformState) -> list[PlatformState]:
    """The states to publish, in order, to go from ``current`` to ``desired`` (the last).

    One phase when the sidecar's table does not change (endpoints, listeners, policy,
    or the last phase of an interrupted transition); three when it does. ``current``
    may itself be a phase of an earlier transition: its extra tables stay accepted
    and its routed cells stay routed through the make phase.
    """
    if current.table == desired.table:
        return [desired]
    routed = (*current.routed_cells,
              *(c for c in desired.routed_cells if c not in current.routed_cells))
    known = {**current.cell_endpoints(), **desired.cell_endpoints()}
    spec_cells = set(desired.spec.cell_names)
    draining = [c for c in routed if c not in spec_cells]
    missing = [c for c in draining if c not in known]
    if missing:
        raise ConfigError(f"topology: cell {missing[0]!r} is routed but has no endpoints")
    retired = tuple(known[c] for c in draining)
    # Draining cells keep the version they had; every other cell follows the desired
    # assignment (a new cell gets its default): no cell is ever without a version.
    overrides = {c: current.assignment.version_of(c) for c in draining}
    overrides.update(desired.assignment.cells)
    assignment = Assignment(desired.assignment.default, overrides)
    pool = {**current.bundles, **desired.bundles}
    bundles = {v: pool[v] for v in sorted(assignment.versions())}
    make = replace(desired, bundles=bundles, assignment=assignment, table=current.table,
                   accept=_unique([desired.table, *current.accept], current.table),
                   routed_cells=routed, retired_cells=retired)
    switch = replace(make, table=desired.table, accept=(current.table,))
    return [make, switch, desired]
