"""The demo cell over real HTTP: item API, x-a1-cell on every answer, the 421 guard."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a1.cell import CellServer, Store, TableWatcher
from a1.launcher import free_ports
from policies.core.cells import CellTable
from policies.core.tenant import is_tenant_id

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


def _version_echoed(cell: Cell, method: str, path: str,
                    versions: list[str]) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", cell.port, timeout=5)
    conn.putrequest(method, path)
    for v in versions:
        conn.putheader("x-a1-policy-version", v)
    body = b"{}" if method == "POST" else b""
    conn.putheader("content-length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("x-a1-policy-version")


def test_policy_version_is_echoed_on_every_answer(cell: Cell) -> None:
    """The version the sidecar decided with comes back on 2xx, 4xx and 421 alike."""
    table = cell.tables.table()
    mine, foreign = tenant_on(table, "cell-1"), tenant_on(table, "cell-2")
    v = "a" * 64
    for method, path, status in [("GET", f"/t/{mine}/items", 200),
                                 ("POST", f"/t/{mine}/items", 201),
                                 ("GET", f"/t/{mine}/items/nope", 404),
                                 ("GET", f"/t/{foreign}/items", 421),
                                 ("GET", "/t/%41/items", 400),
                                 ("GET", "/healthz", 200)]:
        assert _version_echoed(cell, method, path, [v]) == (status, v), (method, path)
    assert _version_echoed(cell, "GET", f"/t/{mine}/items", []) == (200, None)


@pytest.mark.parametrize("versions", [
    ["x" * 129],                      # longer than any version name
    ["v1 <script>"],                  # not a version name: never reflected as it came
    ["v\u00e9"],                     # non-ASCII
    [""],                             # empty
    ["v1", "v2"],                     # repeated: which one decided is ambiguous
])
def test_a_malformed_policy_version_is_not_echoed(cell: Cell, versions: list[str]) -> None:
    tenant = tenant_on(cell.tables.table(), "cell-1")
    assert _version_echoed(cell, "GET", f"/t/{tenant}/items", versions) == (200, None)


# -- the tenant grammar, against a real cell process ----------------------------------


class CellProcess:
    """``python -m a1.cell`` on a free port, as ``a1 up`` runs it; acme is pinned to it."""

    def __init__(self, tmp: Path) -> None:
        table = tmp / "cells.yaml"
        CellTable.balanced(CELLS).with_overrides({"acme": "cell-1"}).save(table)
        self.port = free_ports(1)[0]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "a1.cell", "--name", "cell-1", "--port", str(self.port),
             "--db", str(tmp / "cell-1.db"), "--cells-table", str(table)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.raw(b"GET /healthz HTTP/1.1\r\nhost: c\r\n\r\n")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"cell did not start: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.05)

    def raw(self, request: bytes) -> tuple[int, dict[str, str], Any]:
        """Send ``request`` byte for byte (no client-side normalisation or encoding)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request)
            resp = http.client.HTTPResponse(s)
            resp.begin()
            body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(body)

    def get(self, path: str | bytes) -> tuple[int, dict[str, str], Any]:
        target = path if isinstance(path, bytes) else path.encode()
        return self.raw(b"GET " + target + b" HTTP/1.1\r\nhost: c\r\nconnection: close\r\n\r\n")

    def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        return self.raw(f"POST {path} HTTP/1.1\r\nhost: c\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                        + body)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def cell_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CellProcess]:
    c = CellProcess(tmp_path_factory.mktemp("cell-process"))
    yield c
    c.close()


def test_percent_encoded_tenant_is_400_not_the_decoded_tenant(cell_process: CellProcess) -> None:
    """A caller whose tenant claim is `%61%63me` used to read acme's items."""
    assert cell_process.post("/t/acme/items", b'{"secret": "acme only"}')[0] == 201
    status, headers, doc = cell_process.get("/t/%61%63me/items")
    assert status == 400, doc
    assert "acme only" not in json.dumps(doc)
    assert doc == {"error": "path: tenant id '%61%63me' does not match "
                            "[a-z0-9][a-z0-9-]{0,62}", "cell": "cell-1"}
    assert headers["x-a1-deny-reason"] == doc["error"] and headers["x-a1-cell"] == "cell-1"


@pytest.mark.parametrize("segment", [
    "%61%63me", "ACME", "Acme", "acm%65", "acme%2Fglobex", "acme%2fglobex", "%2e%2e", "..", ".",
    "a_b", "-acme", "a" * 64, "acme%00", "acme%20", "acme\\globex", "acme;x", "acme:1", "acme@x",
    "acme%0a", "ac+me", "",
])
def test_non_canonical_tenant_segments_are_400(cell_process: CellProcess, segment: str) -> None:
    for method in ("GET", "POST"):
        path = f"/t/{segment}/items"
        status, headers, doc = (cell_process.get(path) if method == "GET"
                                else cell_process.post(path, b"{}"))
        assert status == 400, (method, path, doc)
        assert doc["error"].startswith("path: tenant id") and headers["x-a1-deny-reason"]


def test_non_ascii_tenant_bytes_are_400(cell_process: CellProcess) -> None:
    status, headers, doc = cell_process.get("/t/acmé/items".encode())
    assert status == 400 and headers["x-a1-deny-reason"].isascii(), doc


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("abcme0123-_.%2fFAC~!$&'()*+,;=:@"), max_size=70))
def test_cell_accepts_exactly_the_tenant_grammar(cell_process: CellProcess,
                                                 segment: str) -> None:
    status, _, doc = cell_process.get(f"/t/{segment}/items")
    if is_tenant_id(segment):
        assert status in (200, 421), doc  # served, or refused as another cell's tenant
    else:
        assert status == 400, doc
