"""Shared e2e fixtures: real Envoy, sidecar and cells on free loopback ports.

A stack is started once per module (``stack`` fixture, or ``start_stack`` for a
module's own variant) and always torn down, by the launcher, even when a test
fails. Waiting is by polling (``poll``), never by sleeping for a fixed time.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from a1.launcher import LaunchError, check_ports_free, free_ports
from a1.stack import Stack, StackOptions, StackPorts
from policies.core.cells import CellTable

T = TypeVar("T")

# Fast health checks so a killed cell is noticed, and a restarted one readmitted, quickly.
HEALTH_INTERVAL_MS = 250


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers}, {self.body[:200]!r})"


class Client:
    """A tiny HTTP(S) client on http.client: one connection per request, no retries."""

    def __init__(self, base_url: str, cafile: Path | None = None, timeout: float = 10.0) -> None:
        url = urlsplit(base_url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                headers: dict[str, str] | None = None) -> Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                            resp.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, token, body=body if body is not None else {}, **kw)


def poll(fn: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05,
         what: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def tenants_by_cell(stack: Stack, per_cell: int = 3,
                    prefix: str = "tenant") -> dict[str, list[str]]:
    """``per_cell`` tenant names for every cell, by the stack's own cell table."""
    return tenants_in_table(stack.cell_table(), per_cell, prefix)


def tenants_in_table(table: CellTable, per_cell: int = 3,
                     prefix: str = "tenant") -> dict[str, list[str]]:
    """``per_cell`` tenant names (``prefix-N``) for every cell of ``table``."""
    out: dict[str, list[str]] = {c: [] for c in table.cells}
    i = 0
    while any(len(v) < per_cell for v in out.values()):
        name = f"{prefix}-{i}"
        cell = table.lookup(name)
        if len(out[cell]) < per_cell:
            out[cell].append(name)
        i += 1
    return out


def metric(stack: Stack, name: str) -> float:
    """A sample's value from the sidecar's /metrics (0.0 if absent)."""
    text = Client(stack.metrics_url.rsplit("/", 1)[0]).get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def decode_payload_header(value: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def make_stack(root: Path, **options: Any) -> Stack:
    cells = options.pop("cells", 3)
    return Stack(StackOptions(state_dir=root, cells=cells, ports=StackPorts.free(cells),
                              health_interval_ms=HEALTH_INTERVAL_MS, **options))


_running: list[Stack] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, say which stack process died unasked, with its log tail."""
    report = yield
    if report.failed:
        lines = []
        for s in _running:
            for proc in s.launcher.unexpected_exits():
                lines.append(s.launcher.death_report(proc))
        if lines:
            report.sections.append(("a1 stack processes that died", "\n".join(lines)))
    return report


@pytest.fixture(scope="module")
def start_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """Start stacks for this module (``start_stack(mode="http")``); all stopped at the end."""
    started: list[Stack] = []

    def start(**options: Any) -> Stack:
        s = make_stack(tmp_path_factory.mktemp("stack"), **options)
        started.append(s)
        _running.append(s)
        s.start()
        return s

    try:
        yield start
    finally:
        for s in reversed(started):
            s.stop()
            _running.remove(s)


@pytest.fixture(scope="module")
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """The default stack: grpc ext_authz, three cells."""
    return start_stack()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Client:
    return Client(stack.http_url)


def port_args() -> list[str]:
    """`a1 up` flags: free ports for every listener and a free internal block (base..base+13)."""
    rng = random.Random()
    for _ in range(200):
        http, https, admin = free_ports(3)
        # The block comes from below the kernel's ephemeral range, where busy
        # client sockets (TIME_WAIT after a load test) do not crowd it out.
        base = rng.randrange(20000, 32000 - 14)
        try:
            check_ports_free([("internal", "127.0.0.1", p) for p in range(base, base + 14)])
        except LaunchError:
            continue
        return ["--http-port", str(http), "--https-port", str(https), "--admin-port",
                str(admin), "--internal-port-base", str(base)]
    pytest.fail("no free block of loopback ports")
