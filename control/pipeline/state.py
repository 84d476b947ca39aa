"""The pipeline's IR: everything one snapshot is generated from, as one frozen value.

parse (``control.spec``) → IR (``PlatformState``) → generate (``render``). The IR
holds what the spec says (listeners, JWT, sidecar, cell endpoints) and what the
control plane decides over time and the spec does not say: which signed bundle each
cell evaluates with (the rollout's ``Assignment``) and, during a topology change,
which cell tables the cells also accept and which cells still have a route. Keeping
the decisions in the IR, not in the renderer, makes every phase of a transition a
plain value that can be rendered, compared and property-tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control.spec.model import Cell, PlatformSpec, frozen_map
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.xds.types import canonical_json

#: The sidecar's cell table resource, and the prefix of the extra tables cells accept.


@dataclass(frozen=True)
class Assignment:
    """Which bundle version each cell evaluates with: ``default``, unless ``cells`` says."""

    default: str
    cells: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Overrides equal to the default say nothing: drop them, so one meaning has one form.
        object.__setattr__(self, "cells", frozen_map(
            {c: v for c, v in sorted(self.cells.items()) if v != self.default}))

    def version_of(self, cell: str) -> str:
        return self.cells.get(cell, self.default)

    def versions(self) -> frozenset[str]:
        return frozenset({self.default, *self.cells.values()})

    def to_json(self) -> bytes:
        return canonical_json({"default": self.default, "cells": dict(self.cells)})

    def __hash__(self) -> int:
        return hash((self.default, tuple(self.cells.items())))


@dataclass(frozen=True)
class PlatformState:
    """The IR. ``render(state)`` is a pure function of it.

    ``accept`` is non-empty only during a topology transition (``topology``):
    tables the cells accept besides ``table``. ``routed_cells`` are the cells with a
    cluster and a route in Envoy, a superset of every cell any table names; a cell
    still routed but gone from the spec (draining) takes its endpoints from
    ``retired_cells``.
    """

    spec: PlatformSpec
    bundles: Mapping[str, bytes]
    assignment: Assignment
    table: CellTable
    accept: tuple[CellTable, ...] = ()
    routed_cells: tuple[str, ...] = ()
    retired_cells: tuple[Cell, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundles", frozen_map(self.bundles))
        object.__setattr__(self, "routed_cells", tuple(self.routed_cells))
        object.__setattr__(self, "accept", tuple(self.accept))
        object.__setattr__(self, "retired_cells", tuple(self.retired_cells))

    def tables(self) -> tuple[CellTable, ...]:
        """Every table a cell accepts in this state: the sidecar's first."""
        return (self.table, *self.accept)

    def cell_endpoints(self) -> dict[str, Cell]:
        """Every cell whose endpoints this state knows: the spec's, then the retired ones."""
        out = {c.name: c for c in self.retired_cells}
        out.update({c.name: c for c in self.spec.cells})
        return out

    def __hash__(self) -> int:
        return hash((self.spec.digest, self.assignment, self.table, self.accept,
                     self.routed_cells))


def initial_state(spec: PlatformSpec, bundle_version: str, bundle_bytes: bytes) -> PlatformState:
    """The steady state of ``spec``: every cell on one bundle, no transition in progress."""
    return PlatformState(
        spec=spec,
        bundles={bundle_version: bundle_bytes},
        assignment=Assignment(bundle_version),
        table=spec.cell_table(),
        routed_cells=spec.cell_names,
    )


def state_for_spec(spec: PlatformSpec, previous: PlatformState | None,
                   bundle: tuple[str, bytes], assignment: Assignment | None = None
                   ) -> PlatformState:
    """The steady state a new spec stands for, compiled to ``bundle`` (version, bytes).

    ``assignment`` is the rollout controller's decision (a default, canary
    overrides); it may name ``bundle`` and any bundle ``previous`` holds. Without
    it: the previous assignment if its default is this bundle (overrides of a
    rollout in progress carry over), else every cell on this bundle. Overrides for
    cells the spec no longer has are dropped (``topology.transition`` keeps them
    while such a cell drains), and only the bundles the assignment names are kept,
    so a retired version leaves the snapshot and the sidecars' stores.
    """
    version, data = bundle
    pool = {**(previous.bundles if previous is not None else {}), version: data}
    if assignment is None:
        keep = previous is not None and previous.assignment.default == version
        assignment = previous.assignment if keep and previous else Assignment(version)
    cells = set(spec.cell_names)
    assignment = Assignment(assignment.default,
                            {c: v for c, v in assignment.cells.items() if c in cells})
    missing = sorted(assignment.versions() - set(pool))
    if missing:
        raise ConfigError(f"assignment: bundle version {missing[0]} is assigned but not given")
    return PlatformState(
        spec=spec,
        bundles={v: pool[v] for v in sorted(assignment.versions())},
        assignment=assignment,
        table=spec.cell_table(),
        routed_cells=spec.cell_names,
    )
