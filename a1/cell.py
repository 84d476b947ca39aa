"""A demo cell: one process, one SQLite file, a small tenant-scoped item API.

Run as ``python -m a1.cell --name cell-1 --port P --db PATH --cells-table cells.yaml``.

Cells share nothing: each has its own process and its own database file. A cell
refuses (421 Misdirected Request) any tenant that the cell table does not map to
it, so even a misrouted request can never read or write another cell's data.
The tenant is the raw path segment after ``/t/`` and must match the one tenant
grammar (``policies.core.tenant``) exactly as the sidecar sees it: it is never
percent-decoded, so ``%61%63me`` is a 400, not ``acme``.
The table comes from one of two places. With ``--cells-table`` it is the same
``cells.yaml`` the sidecar uses, re-read when the file changes (the last good
table is kept if the new one is invalid). With ``--xds HOST:PORT`` the cell is an
ADS client of the control plane and holds every ``CellTable`` resource it is
sent: ``cells`` (the table the sidecar routes by) and, during a topology change,
``cells.accept.<i>`` (tables it must also accept), so a tenant moving between
cells is accepted by its new cell before the sidecar routes it there and by its
old cell until requests routed by the old table have drained. Until the first
table arrives, the cell answers 503 (``/healthz`` too, so Envoy keeps it out).

API (every response is JSON and carries ``x-a1-cell: <name>``)::

    POST /t/{tenant}/items          JSON body -> 201 {"id", "tenant", "item", ...}
    GET  /t/{tenant}/items/{id}     -> 200 | 404
    GET  /t/{tenant}/items[?limit=N][&after=ID]
                                    -> 200 {"items": [...]}   (oldest first, N <= 1000,
                                       only items created after item ID: the next page)
    GET  /t/{tenant}/echo           -> 200 the x-a1-* request headers the cell received
    GET  /healthz                   -> 200 {"status": "ok", "cell", "table_version"}

Every response also echoes the request's ``x-a1-policy-version`` (the policy
version the sidecar decided with), when there is exactly one and it is
well-formed, so a load generator sees which version decided each request.

Standard library only (``http.server`` + ``sqlite3``): a cell is a test fixture
for the data plane, and must start in well under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.tenant import tenant_error
from policies.core.xds.client import AdsClient, Node
from policies.core.xds.types import CELL_CLUSTER, CELL_TABLE, TABLE_NAME
from policies.headers import VERSION_HEADER

MAX_BODY = 1 << 20
MAX_LIST = 1000
# A policy version as the sidecar writes it (a sha256 hex digest), with room for
# other implementations' names; anything else is not echoed.
_VERSION = re.compile(r"[0-9A-Za-z._:-]{1,128}\Z")
_ITEM_ID = re.compile(r"[0-9a-f]{32}\Z")  # uuid4().hex


class TableWatcher:
    """The cell table, re-read when the file's (mtime, size, inode) changes."""

    def __init__(self, path: Path, min_interval: float = 0.1) -> None:
        self.path = path
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._table = CellTable.load(path)  # startup: an invalid table is fatal
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def table(self) -> CellTable:
        now = time.monotonic()
        if now - self._checked < self.min_interval:
            return self._table
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._table = CellTable.load(self.path)
                    log(f"cell table reloaded: version {self._table.version[:12]}")
                except Exception as err:  # keep the last good table
                    log(f"cell table NOT reloaded, keeping version "
                        f"{self._table.version[:12]}: {err}")
            return self._table

    def accepts(self, tenant: str, cell: str) -> bool:
        return self.table().lookup(tenant) == cell


class XdsTables:
    """Every ``CellTable`` resource the control plane sends, over ADS (see the module doc).

    An update whose tables do not all validate, or that lacks ``cells``, is NACKed
    with the reason and the tables held before keep serving.
    """

    def __init__(self, address: str, name: str) -> None:
        self._tables: dict[str, CellTable] = {}
        self.client = AdsClient(address, Node(f"{socket.gethostname()}-{name}", CELL_CLUSTER),
                                {CELL_TABLE: None}, self._update, name=f"{name}-ads")

    def _update(self, type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        tables: dict[str, CellTable] = {}
        for rname, value in sorted(resources.items()):
            try:
                doc = json.loads(value)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ConfigError(f"CellTable {rname!r}: not JSON: {err}") from None
            tables[rname] = CellTable.from_dict(doc, f"CellTable {rname!r}")
        if TABLE_NAME not in tables:
            raise ConfigError(f"CellTable: no resource named {TABLE_NAME!r} (the routing table)")
        self._tables = tables  # one store: readers see the old set or the new one
        log("cell tables from the control plane: " + ", ".join(
            f"{n} {t.version[:12]}" for n, t in tables.items()))

    def start(self) -> None:
        self.client.start()

    def table(self) -> CellTable | None:
        return self._tables.get(TABLE_NAME)

    def accepts(self, tenant: str, cell: str) -> bool:
        return any(t.lookup(tenant) == cell for t in self._tables.values())


class Store:
    """This cell's own SQLite database (WAL; one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
                " tenant TEXT NOT NULL, body TEXT NOT NULL, created_by TEXT NOT NULL,"
                " created_at REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS items_tenant ON items (tenant, seq)")

    def add(self, tenant: str, body: Any, created_by: str) -> dict[str, Any]:
        item_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO items (id, tenant, body, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (item_id, tenant, json.dumps(body), created_by, now),
            )
        return _item(item_id, tenant, body, created_by, now)

    def get(self, tenant: str, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, tenant, body, created_by, created_at FROM items"
                " WHERE tenant = ? AND id = ?", (tenant, item_id)).fetchone()
        return None if row is None else _item(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def list(self, tenant: str, limit: int,
             after: str | None = None) -> list[dict[str, Any]] | None:
        """Up to ``limit`` items, oldest first, created after item ``after`` (a page
        cursor: the last id of the previous page). None: ``after`` is not this tenant's."""
        with self._lock:
            seq = 0
            if after is not None:
                row = self._db.execute("SELECT seq FROM items WHERE tenant = ? AND id = ?",
                                       (tenant, after)).fetchone()
                if row is None:
                    return None
                seq = row[0]
            rows = self._db.execute(
                "SELECT id, tenant, body, created_by, created_at FROM items"
                " WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
                (tenant, seq, limit)).fetchall()
        return [_item(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _item(item_id: str, tenant: str, body: Any, created_by: str, at: float) -> dict[str, Any]:
    return {"id": item_id, "tenant": tenant, "item": body, "created_by": created_by,
            "created_at": at}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class CellServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], name: str, store: Store,
                 tables: TableWatcher | XdsTables) -> None:
        self.cell_name = name
        self.store = store
        self.tables = tables
        super().__init__(address, CellHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A peer that hangs up (Envoy closing a health-check connection) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class CellHandler(BaseHTTPRequestHandler):
    server: CellServer
    protocol_version = "HTTP/1.1"
    server_version = "a1-cell"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # Envoy keeps the access log; a cell's log is for its own events

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None,
              close: bool = False) -> None:
        body = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
        self.send_response(status)
        if close:  # an unread request body would corrupt the next request on this connection
            self.close_connection = True
            self.send_header("connection", "close")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-a1-cell", self.server.cell_name)
        version = self._policy_version()
        if version is not None:
            self.send_header(VERSION_HEADER, version)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _policy_version(self) -> str | None:
        """The request's one well-formed x-a1-policy-version, else None (absent, repeated,
        or not a version name: never reflected into the response as it came)."""
        headers = getattr(self, "headers", None)  # None: the request line itself was bad
        values = headers.get_all(VERSION_HEADER) if headers is not None else None
        if not values or len(values) != 1 or not _VERSION.match(values[0]):
            return None
        return values[0]

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method) as JSON, with x-a1-cell."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send(code, {"error": message or phrase, "cell": self.server.cell_name}, close=True)

    def _error(self, status: int, message: str, close: bool = False,
               headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": message, "cell": self.server.cell_name}, headers,
                   close=close)

    def _route(self) -> tuple[str, list[str], dict[str, list[str]]] | None:
        """(tenant, rest-of-path segments, query) for /t/{tenant}/..., else None.

        The tenant is the raw path segment, never percent-decoded: :meth:`_guard`
        checks it against the tenant grammar exactly as the sidecar does.
        """
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if len(parts) < 3 or parts[0] != "" or parts[1] != "t":
            return None
        return parts[2], parts[3:], parse_qs(url.query)

    def _guard(self, tenant: str) -> bool:
        """400 unless ``tenant`` is a canonical tenant id; 421 unless it maps to this cell."""
        problem = tenant_error(tenant)
        if problem is not None:
            reason = f"path: {problem}"
            self._error(HTTPStatus.BAD_REQUEST, reason, headers={
                "x-a1-deny-reason": reason.encode("ascii", "backslashreplace").decode()})
            return False
        tables = self.server.tables
        table = tables.table()
        if table is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "no cell table yet")
            return False
        if not tables.accepts(tenant, self.server.cell_name):
            owner = table.lookup(tenant)
            self._send(HTTPStatus.MISDIRECTED_REQUEST,
                       {"error": f"tenant {tenant!r} is served by {owner}, "
                                 f"not {self.server.cell_name}",
                        "cell": self.server.cell_name, "table_version": table.version})
            return False
        return True

    def _read_json(self) -> tuple[bool, Any]:
        length_header = self.headers.get("content-length")
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            self._error(HTTPStatus.LENGTH_REQUIRED,
                        "chunked bodies are not accepted; send content-length", close=True)
            return False, None
        try:
            length = int(length_header or "0")
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"content-length: not a number: {length_header!r}",
                        close=True)
            return False, None
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes",
                        close=True)
            return False, None
        raw = self.rfile.read(length) if length else b""
        try:
            return True, json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            where = f" at line {err.lineno} column {err.colno}" if isinstance(
                err, json.JSONDecodeError) else ""
            self._error(HTTPStatus.BAD_REQUEST, f"body: invalid JSON{where}")
            return False, None

    # -- methods ----------------------------------------------------------------------

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            table = self.server.tables.table()
            if table is None:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, "no cell table yet")
            else:
                self._send(HTTPStatus.OK, {"status": "ok", "cell": self.server.cell_name,
                                           "table_version": table.version})
            return
        route = self._route()
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource: {urlsplit(self.path).path}")
            return
        tenant, rest, query = route
        if not self._guard(tenant):
            return
        store = self.server.store
        if rest == ["items"]:
            raw = query.get("limit", ["100"])[-1]
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
                self._error(HTTPStatus.BAD_REQUEST,
                            f"limit: must be an integer in [1, {MAX_LIST}], got {raw!r}")
                return
            after = query.get("after", [None])[-1]
            if after is not None and not _ITEM_ID.match(after):
                self._error(HTTPStatus.BAD_REQUEST, f"after: not an item id: {after[:40]!r}")
                return
            items = store.list(tenant, int(raw), after)
            if items is None:
                self._error(HTTPStatus.BAD_REQUEST, f"after: tenant {tenant!r} has no item "
                                                    f"{after!r}")
                return
            self._send(HTTPStatus.OK, {"tenant": tenant, "items": items})
        elif len(rest) == 2 and rest[0] == "items" and rest[1]:
            item = store.get(tenant, unquote(rest[1]))
            if item is None:
                self._error(HTTPStatus.NOT_FOUND, f"tenant {tenant!r} has no item {rest[1]!r}")
            else:
                self._send(HTTPStatus.OK, item)
        elif rest == ["echo"]:
            seen = {k.lower(): v for k, v in self.headers.items()
                    if k.lower().startswith("x-a1-")}
            self._send(HTTPStatus.OK, {"tenant": tenant, "cell": self.server.cell_name,
                                       "headers": seen})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource: {urlsplit(self.path).path}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        # Read the body first, so that every answer leaves the connection reusable.
        ok, body = self._read_json()
        if not ok:
            return
        route = self._route()
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource: {urlsplit(self.path).path}")
            return
        tenant = route[0]
        if not self._guard(tenant):
            return
        if route[1] != ["items"]:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource: {urlsplit(self.path).path}")
            return
        created_by = self.headers.get("x-a1-subject", "")
        item = self.server.store.add(tenant, body, created_by)
        self._send(HTTPStatus.CREATED, item,
                   {"location": f"/t/{route[0]}/items/{item['id']}"})

    def _not_allowed(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed",
                    close=True)

    do_PUT = do_PATCH = do_DELETE = _not_allowed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a1.cell", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="this cell's name, as in cells.yaml")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", type=Path, required=True, help="this cell's SQLite file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cells-table", type=Path, help="cells.yaml (re-read when it changes)")
    source.add_argument("--xds", metavar="HOST:PORT",
                        help="the control plane's ADS address: tables come from it")
    args = parser.parse_args(argv)
    tables: TableWatcher | XdsTables
    if args.xds:
        tables = XdsTables(args.xds, args.name)
        tables.start()
    else:
        try:
            tables = TableWatcher(args.cells_table)
        except Exception as err:
            print(f"a1.cell: {err}", file=sys.stderr)
            return 2
        if args.name not in tables.table().cells:
            print(f"a1.cell: {args.cells_table}: cells: no cell named {args.name!r} "
                  f"(has {', '.join(tables.table().cells)})", file=sys.stderr)
            return 2
    try:
        store = Store(args.db)
    except sqlite3.Error as err:
        print(f"a1.cell: {args.db}: cannot open database: {err}", file=sys.stderr)
        return 2
    try:
        server = CellServer((args.host, args.port), args.name, store, tables)
    except OSError as err:
        print(f"a1.cell: cannot listen on {args.host}:{args.port}: {err.strerror}",
              file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    table = tables.table()
    log(f"cell {args.name} serving on {args.host}:{args.port}, db {args.db}, "
        f"table {table.version[:12] if table else 'awaited from ' + args.xds}")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        store.close()
    log(f"cell {args.name} stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
