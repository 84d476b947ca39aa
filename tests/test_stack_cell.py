"""The demo cell over real HTTP: item API, x-a1-cell on every answer, the 421 guard."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1.cell import CellServer, Store, TableWatcher
from ext_proc.cells import CellTable

CELLS = ["cell-1", "cell-2"]


def tenant_on(table: CellTable, cell: str, skip: int = 0) -> str:
    found = (f"tenant-{i}" for i in range(10_000) if table.lookup(f"tenant-{i}") == cell)
    for _ in range(skip):
        next(found)
    return next(found)


class Cell:
    def __init__(self, tmp: Path, name: str = "cell-1") -> None:
        self.table_path = tmp / "cells.yaml"
        if not self.table_path.exists():
            CellTable.balanced(CELLS).save(self.table_path)
        self.tables = TableWatcher(self.table_path, min_interval=0.0)
        self.store = Store(tmp / f"{name}.db")
        self.server = CellServer(("127.0.0.1", 0), name, self.store, self.tables)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: Any = None,
                raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"x-a1-subject": "alice"})
        resp = conn.getresponse()
        text = resp.read()
        conn.close()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, json.loads(text) if text else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


@pytest.fixture
def cell(tmp_path: Path) -> Iterator[Cell]:
    c = Cell(tmp_path)
    yield c
    c.close()


def test_healthz_names_the_cell(cell: Cell) -> None:
    status, headers, doc = cell.request("GET", "/healthz")
    assert status == 200 and headers["x-a1-cell"] == "cell-1" and doc["status"] == "ok"
    assert doc["table_version"] == cell.tables.table().version


def test_create_get_and_list(cell: Cell) -> None:
    tenant = tenant_on(cell.tables.table(), "cell-1")
    status, headers, created = cell.request("POST", f"/t/{tenant}/items", {"name": "first"})
    assert status == 201 and headers["x-a1-cell"] == "cell-1"
    assert created["item"] == {"name": "first"} and created["created_by"] == "alice"
    assert headers["location"] == f"/t/{tenant}/items/{created['id']}"
    status, _, got = cell.request("GET", f"/t/{tenant}/items/{created['id']}")
    assert status == 200 and got == created
    cell.request("POST", f"/t/{tenant}/items", [1, 2])
    status, _, listing = cell.request("GET", f"/t/{tenant}/items")
    assert status == 200 and [i["item"] for i in listing["items"]] == [{"name": "first"}, [1, 2]]


def test_tenants_do_not_see_each_others_items(cell: Cell) -> None:
    table = cell.tables.table()
    a, b = tenant_on(table, "cell-1"), tenant_on(table, "cell-1", skip=1)
    _, _, created = cell.request("POST", f"/t/{a}/items", {"secret": 1})
    assert cell.request("GET", f"/t/{b}/items/{created['id']}")[0] == 404
    assert cell.request("GET", f"/t/{b}/items")[2]["items"] == []


def test_items_survive_a_restart(tmp_path: Path) -> None:
    first = Cell(tmp_path)
    tenant = tenant_on(first.tables.table(), "cell-1")
    _, _, created = first.request("POST", f"/t/{tenant}/items", {"n": 1})
    first.close()
    second = Cell(tmp_path)
    try:
        assert second.request("GET", f"/t/{tenant}/items/{created['id']}")[2] == created
    finally:
        second.close()


def test_foreign_tenant_gets_421_and_nothing_is_written(cell: Cell) -> None:
    foreign = tenant_on(cell.tables.table(), "cell-2")
    for method, path, body in [("GET", f"/t/{foreign}/items", None),
                               ("POST", f"/t/{foreign}/items", {"x": 1}),
                               ("GET", f"/t/{foreign}/items/abc", None)]:
        status, headers, doc = cell.request(method, path, body)
        assert status == 421, (method, path)
        assert headers["x-a1-cell"] == "cell-1" and "cell-2" in doc["error"]
    assert cell.store.list(foreign, 10) == []


def test_table_change_is_picked_up_and_a_bad_table_is_ignored(cell: Cell) -> None:
    table = cell.tables.table()
    tenant = tenant_on(table, "cell-2")
    assert cell.request("GET", f"/t/{tenant}/items")[0] == 421
    table.with_overrides({tenant: "cell-1"}).save(cell.table_path)
    assert cell.request("GET", f"/t/{tenant}/items")[0] == 200
    cell.table_path.write_text("buckets: [not, valid\n")
    os.utime(cell.table_path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cell.request("GET", f"/t/{tenant}/items")[0] == 200  # last good table still serves


@pytest.mark.parametrize(("method", "path", "raw", "status"), [
    ("POST", "/t/{t}/items", b"{not json", 400),
    ("POST", "/t/{t}/items", b"", 400),
    ("GET", "/t/{t}/items?limit=0", None, 400),
    ("GET", "/t/{t}/nothing", None, 404),
    ("GET", "/elsewhere", None, 404),
    ("DELETE", "/t/{t}/items", None, 405),
    ("PURGE", "/t/{t}/items", None, 501),  # answered by http.server itself
])
def test_bad_requests(cell: Cell, method: str, path: str, raw: bytes | None,
                      status: int) -> None:
    tenant = tenant_on(cell.tables.table(), "cell-1")
    got, headers, doc = cell.request(method, path.format(t=tenant), raw=raw)
    assert got == status and headers["x-a1-cell"] == "cell-1" and doc["error"]


def test_oversized_body_is_refused_before_it_is_read(cell: Cell) -> None:
    tenant = tenant_on(cell.tables.table(), "cell-1")
    conn = http.client.HTTPConnection("127.0.0.1", cell.port, timeout=5)
    conn.putrequest("POST", f"/t/{tenant}/items")
    conn.putheader("content-length", str((1 << 20) + 1))
    conn.endheaders()  # the body is never sent: the cell must answer from the header alone
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 413 and "body over" in doc["error"]
    assert resp.getheader("connection") == "close"


def test_echo_shows_only_a1_headers(cell: Cell) -> None:
    tenant = tenant_on(cell.tables.table(), "cell-1")
    status, _, doc = cell.request("GET", f"/t/{tenant}/echo")
    assert status == 200 and doc["headers"] == {"x-a1-subject": "alice"}
