"""A demo cell as an ADS client: it accepts a tenant under any table the control plane sends.

Real pieces: the control plane's ``XdsServer`` on a loopback port, the cell's real
``CellServer`` and its real ADS client. The accept tables are what makes a topology
change fail no request (docs/control-plane.md), so their rules are tested here.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from a1.cell import CellServer, Store, XdsTables
from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.core.cells import CellTable
from policies.core.xds.types import CELL_TABLE, canonical_json
from tests.waiting import wait_until

OLD = CellTable.balanced(["cell-1", "cell-2"], 64)
NEW = OLD.add_cell("cell-3")


def table_resource(name: str, table: CellTable | bytes) -> Resource:
    value = table if isinstance(table, bytes) else canonical_json(table.to_dict())
    return Resource.of(CELL_TABLE, name, value)



def moving_tenant() -> str:
    """A tenant that OLD puts on cell-1 and NEW on cell-3."""
    return next(t for i in range(100_000)
                if OLD.lookup(t := f"tenant-{i}") == "cell-1" and NEW.lookup(t) == "cell-3")


class Plane:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.server = XdsServer(self.cache, node_group=lambda node: "default")
        self.port = self.server.start()

    def publish(self, *resources: Resource) -> None:
        self.cache.set_snapshot("default", Snapshot(resources))


class XdsCell:
    def __init__(self, tmp: Path, plane: Plane, name: str) -> None:
        self.tables = XdsTables(f"127.0.0.1:{plane.port}", name)
        self.tables.start()
        self.store = Store(tmp / f"{name}.db")
        self.server = CellServer(("127.0.0.1", 0), name, self.store, self.tables)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def status(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status

    def close(self) -> None:
        self.tables.client.stop()
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


@pytest.fixture
def plane() -> Iterator[Plane]:
    p = Plane()
    yield p
    p.server.stop()


@pytest.fixture
def make_cell(tmp_path: Path, plane: Plane) -> Iterator[Callable[[str], XdsCell]]:
    cells: list[XdsCell] = []

    def make(name: str) -> XdsCell:
        cells.append(XdsCell(tmp_path, plane, name))
        return cells[-1]

    yield make
    for c in cells:
        c.close()


def test_before_the_first_table_the_cell_answers_503_even_on_healthz(
        plane: Plane, make_cell: Callable[[str], XdsCell]) -> None:
    cell = make_cell("cell-1")
    assert cell.status("/healthz") == 503
    assert cell.status("/t/acme/items") == 503
    plane.publish(table_resource("cells", OLD))
    wait_until(lambda: cell.status("/healthz") == 200)


def test_a_cell_accepts_a_moving_tenant_under_either_table(
        plane: Plane, make_cell: Callable[[str], XdsCell]) -> None:
    tenant = moving_tenant()
    old_cell, new_cell = make_cell("cell-1"), make_cell("cell-3")
    plane.publish(table_resource("cells", OLD))
    wait_until(lambda: old_cell.status(f"/t/{tenant}/items") == 200)
    wait_until(lambda: new_cell.status("/healthz") == 200)  # its first table, too
    assert new_cell.status(f"/t/{tenant}/items") == 421
    # Phase 1: the new table is accepted too; both cells take the tenant.
    plane.publish(table_resource("cells", OLD), table_resource("cells.accept.0", NEW))
    wait_until(lambda: new_cell.status(f"/t/{tenant}/items") == 200)
    assert old_cell.status(f"/t/{tenant}/items") == 200
    # Final phase: only the new table; the old cell refuses again.
    plane.publish(table_resource("cells", NEW))
    wait_until(lambda: old_cell.status(f"/t/{tenant}/items") == 421)
    assert new_cell.status(f"/t/{tenant}/items") == 200


@pytest.mark.parametrize("bad, reason", [
    (b"{not json", "not JSON"),
    (b'{"buckets": 64}', "cells: missing"),
    (canonical_json({"buckets": 64, "cells": ["cell-1"], "assignment": [[0, 63, "ghost"]]}),
     "unknown cell 'ghost'"),
    ("\udcff".encode("utf-8", "surrogatepass"), "not JSON"),
])
def test_a_bad_table_is_nacked_and_the_old_tables_keep_serving(
        plane: Plane, make_cell: Callable[[str], XdsCell], bad: bytes, reason: str) -> None:
    tenant = moving_tenant()
    cell = make_cell("cell-1")
    plane.publish(table_resource("cells", OLD))
    wait_until(lambda: cell.status(f"/t/{tenant}/items") == 200)
    plane.publish(table_resource("cells", NEW), table_resource("cells.accept.0", bad))

    def nack() -> str:
        for conn in plane.server.connections():
            if conn["node_cluster"] == "a1-cell":
                return str(json.dumps(conn))
        return ""

    assert reason in wait_until(lambda: reason in nack() and nack())
    assert cell.status(f"/t/{tenant}/items") == 200  # still on OLD: the tenant is its own


def test_an_update_without_the_routing_table_is_nacked(
        plane: Plane, make_cell: Callable[[str], XdsCell]) -> None:
    cell = make_cell("cell-1")
    plane.publish(table_resource("cells.accept.0", NEW))
    wait_until(lambda: "no resource named 'cells'" in json.dumps(plane.server.connections()))
    assert cell.status("/healthz") == 503
