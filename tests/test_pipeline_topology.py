"""Make-before-break topology changes: every phase keeps every tenant's request servable.

The oracle works on the RENDERED snapshots (clusters, routes, the cell-table
resources, the assignment and bundles as a client would parse them), not on the
IR's own bookkeeping. Three parties apply each phase independently (Envoy, the
cells, the sidecars), so for every two consecutive phases X → Y (the first X being
the current state) and any mix of them among the parties:

(a) the cell a sidecar routes a tenant to (by X's or Y's table) has a cluster and an
    ``x-a1-cell`` route in both X and Y (the Envoy may still be on either);
(b) that cell accepts the tenant under both X's and Y's accepted tables (``cells`` and
    ``cells.accept.<i>``), since a cell may lag or lead by a phase;
(c) every phase renders to a consistent snapshot, and every cell any table names has a
    policy version whose bundle is in that snapshot;
(d) the last phase is the desired state.

The oracle is shown to fail on broken orderings (break-before-make, no early accept,
no late accept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_pb2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from control.envoy import cluster_name
from control.pipeline import (
    Assignment,
    PlatformState,
    compile_bundle,
    initial_state,
    render,
    state_for_spec,
    transition,
)
from control.spec import add_cell, load_spec, remove_cell
from control.spec.model import Cell, Endpoint, PlatformSpec
from control.xds.cache import Snapshot
from policies.bundle import SigningKey
from policies.core.cells import CellTable
from policies.core.xds import types as xt

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"
POOL = ("cell-a", "cell-b", "cell-c", "cell-d", "cell-e", "cell-f")
OVERRIDE_TENANTS = ("t-a", "t-b", "t-c")
TENANTS = (*OVERRIDE_TENANTS, *(f"tenant-{i}" for i in range(400)))


@cache
def base_spec() -> PlatformSpec:
    return load_spec(EXAMPLE)


@cache
def bundles() -> dict[str, bytes]:
    """Two real signed bundles (the example policy with two data documents)."""
    key = SigningKey.generate()
    policy = base_spec().policy
    out = dict([compile_bundle(policy, key)])
    other = dataclasses.replace(policy, data={"a1": {"tenants": {"suspended": ["t-z"]}}})
    out.update([compile_bundle(other, key)])
    assert len(out) == 2
    return out


def spec_with(cells: list[str], table: CellTable) -> PlatformSpec:
    base = base_spec()
    return dataclasses.replace(
        base,
        cells=tuple(Cell(c, (Endpoint("127.0.0.1", 20000 + POOL.index(c)),)) for c in cells),
        buckets=table.buckets, overrides=table.overrides, table=table,
        rollout=dataclasses.replace(base.rollout, canary_cell=cells[0]),
        digest=hashlib.sha256(f"{cells}{table.version}".encode()).hexdigest())


@st.composite
def steady_states(draw: st.DrawFn) -> PlatformState:
    cells = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    buckets = draw(st.sampled_from([1, 2, 4, 16, 64]))
    owners = draw(st.lists(st.sampled_from(cells), min_size=buckets, max_size=buckets))
    overrides = draw(st.dictionaries(st.sampled_from(OVERRIDE_TENANTS), st.sampled_from(cells),
                                     max_size=2))
    table = CellTable(buckets, cells, owners, overrides)
    versions = sorted(bundles())
    default = draw(st.sampled_from(versions))
    pinned = draw(st.dictionaries(st.sampled_from(cells), st.sampled_from(versions),
                                  max_size=2))
    assignment = Assignment(default, pinned)
    return PlatformState(spec=spec_with(cells, table),
                         bundles={v: bundles()[v] for v in assignment.versions()},
                         assignment=assignment, table=table, routed_cells=tuple(cells))


@st.composite
def current_states(draw: st.DrawFn) -> PlatformState:
    """A steady state, or a phase of an earlier transition that stopped part way."""
    state = draw(steady_states())
    if draw(st.booleans()):
        phases = transition(draw(steady_states()), state)
        state = phases[draw(st.integers(0, len(phases) - 1))]
    return state


# -- the oracle --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    """One phase as the clients see it, parsed from the rendered snapshot."""

    clusters: frozenset[str]
    routes: dict[str, str]  # x-a1-cell value -> cluster
    table: CellTable  # what the sidecar routes by
    accepted: tuple[CellTable, ...]  # every table cells accept (``cells`` first)
    versions: dict[str, str]  # cell -> bundle version, for every cell a table names


def seen(snap: Snapshot) -> Seen:
    tables = {n: CellTable.from_dict(json.loads(r.value), n)
              for n, r in snap.resources(xt.CELL_TABLE).items()}
    accepted = (tables["cells"], *(tables[n] for n in sorted(tables) if n != "cells"))
    assert all(n == "cells" or n.startswith("cells.accept.") for n in tables)
    (route_config,) = snap.resources(xt.ROUTE).values()
    routes = {}
    for vhost in route_pb2.RouteConfiguration.FromString(route_config.value).virtual_hosts:
        for route in vhost.routes:
            for header in route.match.headers:
                if header.name == "x-a1-cell":
                    routes[header.string_match.exact] = route.route.cluster
    assignment = json.loads(snap.resources(xt.POLICY_ASSIGNMENT)["assignment"].value)
    named = {c for t in accepted for c in t.cells}
    versions = {c: assignment["cells"].get(c, assignment["default"]) for c in named}
    return Seen(frozenset(snap.resources(xt.CLUSTER)), routes, tables["cells"], accepted,
                versions)


def violations(current: PlatformState, phases: list[PlatformState],
               tenants: Iterable[str] = TENANTS) -> list[str]:
    """Every broken promise of a phase list, as text; empty when the phases are safe."""
    out: list[str] = []
    views = [seen(render(current))]
    for i, phase in enumerate(phases):
        snap = render(phase)  # (c): raises if a phase is inconsistent
        view = seen(snap)
        bundles_here = set(snap.resources(xt.POLICY_BUNDLE))
        for cell, version in view.versions.items():
            if version not in bundles_here:
                out.append(f"phase {i}: cell {cell} has version {version[:8]} with no bundle")
        views.append(view)
    for i, (x, y) in enumerate(itertools.pairwise(views)):
        for tenant in tenants:
            for sidecar in (x, y):
                cell = sidecar.table.lookup(tenant)
                for envoy in (x, y):
                    if envoy.routes.get(cell) != cluster_name(cell) or \
                            cluster_name(cell) not in envoy.clusters:
                        out.append(f"step {i}: {tenant} -> {cell}: no route/cluster")
                for cells in (x, y):
                    if all(t.lookup(tenant) != cell for t in cells.accepted):
                        out.append(f"step {i}: {tenant} -> {cell}: cell refuses it")
    return out


# -- the property ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(current=current_states(), desired=steady_states())
def test_every_phase_keeps_every_tenant_servable(current: PlatformState,
                                                 desired: PlatformState) -> None:
    phases = transition(current, desired)
    event(f"{len(phases)} phase(s), from a {'steady' if not current.accept else 'transitional'} "
          "state")
    assert phases[-1] == desired  # (d)
    assert len(phases) == (1 if current.table == desired.table else 3)
    assert violations(current, phases) == []  # (a), (b), (c)
    # Cells that leave keep the version they had while they drain.
    for phase in phases[:-1]:
        for cell in set(phase.routed_cells) - set(desired.spec.cell_names):
            assert phase.assignment.version_of(cell) == current.assignment.version_of(cell)


# -- the oracle catches broken orderings -------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spec"
    shutil.copytree(EXAMPLE, d)
    return d


def states(spec_dir: Path, key: SigningKey, change: str) -> tuple[PlatformState, PlatformState]:
    spec = load_spec(spec_dir)
    current = initial_state(spec, *compile_bundle(spec.policy, key))
    if change == "add":
        add_cell(spec_dir, "cell-4", ["127.0.0.1:10114"])
    else:
        remove_cell(spec_dir, "cell-2")
    new = load_spec(spec_dir)
    return current, state_for_spec(new, current, compile_bundle(new.policy, key))


@pytest.mark.parametrize("change", ["add", "remove"])
def test_the_oracle_fails_broken_orderings(spec_dir: Path, key: SigningKey,
                                           change: str) -> None:
    current, desired = states(spec_dir, key, change)
    make, switch, final = transition(current, desired)
    assert violations(current, [make, switch, final]) == []
    # Break before make: the sidecar and Envoy switch in one step.
    assert violations(current, [desired])
    # The cells do not accept the new table before the sidecar routes by it.
    assert violations(current, [dataclasses.replace(make, accept=()), switch, final])
    # The cells stop accepting the old table while requests routed by it are in flight.
    assert violations(current, [make, dataclasses.replace(switch, accept=()), final])
    # Routes removed while the sidecar may still route by the old table.
    if change == "remove":
        early = dataclasses.replace(make, routed_cells=desired.routed_cells, retired_cells=())
        with pytest.raises(Exception, match="cell-2"):
            violations(current, [early, switch, final])


def test_adding_a_cell_routes_it_before_any_sidecar_names_it(spec_dir: Path,
                                                             key: SigningKey) -> None:
    current, desired = states(spec_dir, key, "add")
    make, switch, final = transition(current, desired)
    assert make.table == current.table and make.accept == (desired.table,)
    assert make.routed_cells == ("cell-1", "cell-2", "cell-3", "cell-4")
    assert "cell_cell-4" in render(make).resources(xt.CLUSTER)
    assert switch.table == desired.table and switch.accept == (current.table,)
    assert final == desired and final.accept == ()
    # Only tenants of the new cell move: every moved tenant goes to cell-4.
    moved = [t for t in TENANTS if current.table.lookup(t) != desired.table.lookup(t)]
    assert moved and all(desired.table.lookup(t) == "cell-4" for t in moved)


def test_removing_a_cell_drains_it_then_removes_its_cluster(spec_dir: Path,
                                                            key: SigningKey) -> None:
    current, desired = states(spec_dir, key, "remove")
    make, switch, final = transition(current, desired)
    for phase in (make, switch):
        assert "cell-2" in phase.routed_cells
        assert [c.name for c in phase.retired_cells] == ["cell-2"]
        snap = render(phase)
        assert "cell_cell-2" in snap.resources(xt.CLUSTER)
        assert "cell_cell-2" in snap.resources(xt.ENDPOINT)
    assert "cell-2" not in switch.table.cells  # no tenant is routed there any more
    snap = render(final)
    assert "cell_cell-2" not in snap.resources(xt.CLUSTER)
    assert not snap.resources(xt.CELL_TABLE).keys() - {"cells"}


def test_a_change_that_keeps_the_table_is_one_phase(spec_dir: Path, key: SigningKey) -> None:
    spec = load_spec(spec_dir)
    current = initial_state(spec, *compile_bundle(spec.policy, key))
    text = (spec_dir / "platform.yaml").read_text()
    (spec_dir / "platform.yaml").write_text(text.replace("127.0.0.1:10112", "127.0.0.1:10122"))
    new = load_spec(spec_dir)
    desired = state_for_spec(new, current, compile_bundle(new.policy, key))
    assert transition(current, desired) == [desired]
    assert violations(current, [desired]) == []


def test_a_rollout_step_during_a_transition_keeps_every_version_defined(
        spec_dir: Path, key: SigningKey) -> None:
    """Canary overrides carry through a cell addition; the new cell gets the default."""
    current, desired = states(spec_dir, key, "add")
    v1 = current.assignment.default
    v2 = next(v for v in bundles() if v != v1)
    canary_current = dataclasses.replace(current, bundles={v1: current.bundles[v1],
                                                           v2: bundles()[v2]},
                                         assignment=Assignment(v1, {"cell-1": v2}))
    canary_desired = dataclasses.replace(desired, bundles=canary_current.bundles,
                                         assignment=canary_current.assignment)
    phases = transition(canary_current, canary_desired)
    assert violations(canary_current, phases) == []
    for phase in phases:
        assert phase.assignment.version_of("cell-1") == v2
        assert phase.assignment.version_of("cell-4") == v1
