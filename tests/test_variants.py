"""The self-test's broken variants really are broken, each through its real interface.

Every wrapper runs as the target runs it (``python -m <wrapper> <the product's
arguments>``, through the launcher) and is shown doing the one wrong thing it
stands for: a cell serving a foreign tenant, cells writing one store (and the
store fault failing the bystander's writes), a control plane serving fail-open
Envoy config or re-sending a NACKed version, a sidecar that fails when the control
plane does not answer, and one whose decision waits for the telemetry sink.
"""

from __future__ import annotations

import http.client
import shutil
import sqlite3
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2_grpc

import control.envoy.protos  # also registers the Envoy types MessageToDict unpacks
from a1.launcher import Launcher, ProcessSpec, grpc_health_probe, http_probe
from conformance.variants import VARIANTS, store_fault
from conformance.variants.catalog import Variant
from conformance.variants.fail_open_envoy import DEFAULT_ROUTE
from conformance.variants.shared_cell_store import SHARED_NAME
from conformance.variants.store import cell_store
from conformance.variants.sync_policy_fetch import ADDRESS_ENV, control_address
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.xds.types import CLUSTER, LISTENER, ROUTE
from tests.test_engine import compile_authz
from tests.test_sidecar_grpc import ALICE
from tests.waiting import free_port, wait_until
from tests.xds_client import AdsClient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"
PKG = "conformance.variants"
CELLS = CellTable.balanced(["cell-1", "cell-2"])
TENANTS = [f"t{i}" for i in range(200)]
OF_CELL_1 = next(t for t in TENANTS if CELLS.lookup(t) == "cell-1")
OF_CELL_2 = next(t for t in TENANTS if CELLS.lookup(t) == "cell-2")


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    with Launcher() as launcher:
        yield launcher


def start(launcher: Launcher, name: str, module: str, args: list[str], logs: Path,
          ready: Any, env: dict[str, str] | None = None) -> None:
    """``python -m module args`` as process ``name``, waited on until ``ready``."""
    launcher.start(ProcessSpec(name=name, argv=[sys.executable, "-m", module, *args],
                               log_path=logs / f"{name}.log", ready=ready, env=env, cwd=ROOT))
    launcher.wait_ready([name], timeout=60)


# -- the catalog ---------------------------------------------------------------------------


def test_catalog_names_a_checker_a_scenario_and_importable_wrappers() -> None:
    import importlib

    assert set(VARIANTS) == {"fail-open-envoy", "sync-policy-fetch", "shared-cell-store",
                             "inline-decision-log", "resend-nacked-xds", "foreign-tenant-cell"}
    for name, v in VARIANTS.items():
        assert isinstance(v, Variant) and v.name == name and v.description
        assert v.catches.startswith("I-") and v.scenario.startswith(v.catches + "/")
        assert v.wrap
        for process, module in v.wrap.items():
            assert process in ("control", "sidecar") or process.startswith("cell-")
            assert hasattr(importlib.import_module(module), "patch"), module


# -- cells ---------------------------------------------------------------------------------


def start_cell(launcher: Launcher, tmp: Path, name: str, module: str = "a1.cell",
               cell: str | None = None) -> str:
    """Process ``name`` serving cell ``cell`` (default: ``name``) of ``CELLS``."""
    table = tmp / "cells.yaml"
    if not table.exists():
        CELLS.save(table)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cell = cell or name
    start(launcher, name, module, ["--name", cell, "--port", str(port),
                                   "--db", str(tmp / "cells" / f"{cell}.db"),
                                   "--cells-table", str(table)],
          tmp, http_probe(f"{url}/healthz"))
    return url


def call(url: str, method: str, path: str, body: bytes | None = None) -> int | None:
    """The status, or None when the cell dropped the connection without an answer."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body,
                     headers={"content-type": "application/json"} if body else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def write(url: str, tenant: str) -> int | None:
    return call(url, "POST", f"/t/{tenant}/items", b'{"n": 1}')


def test_foreign_tenant_cell_serves_a_tenant_the_product_cell_refuses(
        launcher: Launcher, tmp_path: Path) -> None:
    product = start_cell(launcher, tmp_path, "cell-1")
    (tmp_path / "v").mkdir()
    broken = start_cell(launcher, tmp_path / "v", "cell-1b", f"{PKG}.foreign_tenant_cell",
                        cell="cell-1")
    assert call(product, "GET", f"/t/{OF_CELL_2}/items") == 421
    assert call(broken, "GET", f"/t/{OF_CELL_2}/items") == 200
    assert write(broken, OF_CELL_2) == 201
    assert call(product, "GET", f"/t/{OF_CELL_1}/items") == 200  # its own: both serve


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "cells").mkdir()
    return tmp_path


def parallel_writes(*targets: tuple[str, str]) -> list[int | None]:
    """Writes at once (a locked store answers only after SQLite's 5 s busy timeout)."""
    results: list[int | None] = [None] * len(targets)

    def one(i: int) -> None:
        results[i] = write(*targets[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_store_fault_fails_only_the_victims_writes_with_a_store_per_cell(
        launcher: Launcher, tmp: Path) -> None:
    one, two = start_cell(launcher, tmp, "cell-1"), start_cell(launcher, tmp, "cell-2")
    assert write(one, OF_CELL_1) == 201 and write(two, OF_CELL_2) == 201
    target = SimpleNamespace(launcher=launcher)
    assert cell_store(target, "cell-1") == tmp / "cells" / "cell-1.db"  # type: ignore[arg-type]
    fault = store_fault(target, "cell-1")  # type: ignore[arg-type]
    fault.inject()
    try:
        victim, bystander = parallel_writes((one, OF_CELL_1), (two, OF_CELL_2))
        assert victim is None or victim >= 500
        assert bystander == 201
        assert call(one, "GET", f"/t/{OF_CELL_1}/items") == 200  # reads go on (WAL)
    finally:
        fault.repair()
    assert write(one, OF_CELL_1) == 201


def test_shared_cell_store_cells_write_one_file_and_the_store_fault_fails_the_bystander(
        launcher: Launcher, tmp: Path) -> None:
    module = f"{PKG}.shared_cell_store"
    one, two = (start_cell(launcher, tmp, "cell-1", module),
                start_cell(launcher, tmp, "cell-2", module))
    assert write(one, OF_CELL_1) == 201 and write(two, OF_CELL_2) == 201
    shared = tmp / "cells" / SHARED_NAME
    with sqlite3.connect(shared) as db:
        tenants = {t for (t,) in db.execute("SELECT tenant FROM items")}
    assert tenants == {OF_CELL_1, OF_CELL_2}
    assert not (tmp / "cells" / "cell-1.db").exists()
    target = SimpleNamespace(launcher=launcher)
    assert cell_store(target, "cell-2") == shared  # type: ignore[arg-type]  # not its --db
    fault = store_fault(target, "cell-1")  # type: ignore[arg-type]
    fault.inject()
    try:
        victim, bystander = parallel_writes((one, OF_CELL_1), (two, OF_CELL_2))
        assert victim is None or victim >= 500
        assert bystander is None or bystander >= 500  # what I-5 catches
    finally:
        fault.repair()
    assert write(two, OF_CELL_2) == 201


# -- the control plane ---------------------------------------------------------------------


def start_control(launcher: Launcher, tmp: Path, module: str) -> str:
    config = tmp / "platform"
    shutil.copytree(EXAMPLE, config)
    xds, status = free_port(), free_port()
    start(launcher, "control", module,
          ["control", "serve", "--config", str(config), "--state-dir", str(tmp / "state"),
           "--xds-port", str(xds), "--status-port", str(status)],
          tmp, http_probe(f"http://127.0.0.1:{status}/status"))
    return f"127.0.0.1:{xds}"


@pytest.fixture
def ads() -> Iterator[list[AdsClient]]:
    clients: list[AdsClient] = []
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def resources(response: Any) -> list[dict[str, Any]]:
    types = control.envoy.protos.MESSAGE_TYPES
    return [json_format.MessageToDict(types[a.type_url].FromString(a.value))
            for a in response.resources]


def settings(node: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in a JSON document."""
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [
            v for x in node.values() for v in settings(x, key)]
    if isinstance(node, list):
        return [v for x in node for v in settings(x, key)]
    return []


def test_fail_open_envoy_control_plane_serves_failure_mode_allow_and_a_default_route(
        launcher: Launcher, tmp_path: Path, ads: list[AdsClient]) -> None:
    address = start_control(launcher, tmp_path, f"{PKG}.fail_open_envoy")
    client = AdsClient(address)
    ads.append(client)
    client.request(CLUSTER)
    clusters = client.recv(timeout=30)
    client.ack(clusters)
    client.request(LISTENER)
    client.request(ROUTE)
    got = {}
    while len(got) < 2:
        r = client.recv(timeout=30)
        got[r.type_url] = r
    listeners = resources(got[LISTENER])
    assert listeners and settings(listeners, "failureModeAllow") == [True] * len(listeners)
    (config,) = resources(got[ROUTE])
    routes = config["virtualHosts"][0]["routes"]
    names = [r["name"] for r in routes]
    assert "unknown_cell" not in names and names[-1] == DEFAULT_ROUTE
    assert routes[-1]["match"] == {"prefix": "/"}
    assert routes[-1]["route"]["cluster"] == routes[1]["route"]["cluster"]  # the first cell


def test_resend_nacked_xds_control_plane_sends_a_nacked_version_again(
        launcher: Launcher, tmp_path: Path, ads: list[AdsClient]) -> None:
    address = start_control(launcher, tmp_path, f"{PKG}.resend_nacked_xds")
    client = AdsClient(address)
    ads.append(client)
    client.request(CLUSTER)
    first = client.recv(timeout=30)
    for _ in range(3):  # the product sends nothing after a NACK until the config changes
        client.nack(first, "rejected by the test")
        again = client.recv(timeout=10)
        assert again.version_info == first.version_info and again.nonce != first.nonce
        assert list(again.resources) == list(first.resources)
        first = again


# -- the sidecar ---------------------------------------------------------------------------


def start_sidecar(launcher: Launcher, tmp: Path, module: str, extra: str = "",
                  env: dict[str, str] | None = None) -> str:
    (tmp / "authz.wasm").write_bytes(compile_authz())
    CellTable.balanced(["cell-1", "cell-2", "cell-3"]).save(tmp / "cells.yaml")
    g = free_port()
    (tmp / "sidecar.yaml").write_text(
        f"grpc_address: 127.0.0.1:{g}\npolicy: {{module: {tmp / 'authz.wasm'}}}\n"
        f"cells: {{table: {tmp / 'cells.yaml'}}}\n{extra}")
    start(launcher, "sidecar", module, ["--config", str(tmp / "sidecar.yaml")], tmp,
          grpc_health_probe(f"127.0.0.1:{g}"), env)
    return f"127.0.0.1:{g}"


def decide(address: str, timeout: float = 5.0) -> tuple[int, int]:
    """Alice reads acme's orders: (gRPC status of the Check, 0 allow or 7 deny; the
    denied HTTP status, or 0). A failed RPC is an AssertionError naming its code."""
    req = external_auth_pb2.CheckRequest()
    http_req = req.attributes.request.http
    http_req.method, http_req.path, http_req.host = "GET", "/t/acme/orders", "api.local"
    req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
        {"jwt_payload": ALICE})
    with grpc.insecure_channel(address) as channel:
        try:
            resp = external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=timeout)
        except grpc.RpcError as err:
            raise AssertionError(f"Check failed: {err.code()}") from err
    return resp.status.code, resp.denied_response.status.code


def test_sync_policy_fetch_sidecar_fails_requests_when_the_control_plane_is_unreachable(
        launcher: Launcher, tmp_path: Path) -> None:
    server = grpc.server(ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        sidecar = start_sidecar(launcher, tmp_path, f"{PKG}.sync_policy_fetch",
                                env={ADDRESS_ENV: f"127.0.0.1:{port}"})
        assert decide(sidecar) == (0, 0)  # the "control plane" answers: decided as usual
    finally:
        server.stop(grace=None).wait()
    assert decide(sidecar) == (7, 503)  # it does not: the request fails


def test_sync_policy_fetch_finds_the_control_plane_in_the_sidecar_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    config = tmp_path / "sidecar.yaml"
    config.write_text("grpc_address: 127.0.0.1:1\nsource: {kind: xds, address: 'unix:/run/cp.sock',"
                      " state_dir: lkg, trusted_keys: keys}\n")
    assert control_address(str(config)) == "unix:/run/cp.sock"
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1:9")
    assert control_address(str(config)) == "127.0.0.1:9"
    monkeypatch.delenv(ADDRESS_ENV)
    config.write_text("grpc_address: 127.0.0.1:1\npolicy: {module: p.wasm}\n"
                      "cells: {table: c.yaml}\n")
    with pytest.raises(ConfigError, match=ADDRESS_ENV):
        control_address(str(config))


class Sink(ThreadingHTTPServer):
    """A decision-log sink that records POSTed lines; ``hold`` keeps its answers back."""

    daemon_threads = True

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), SinkHandler)


class SinkHandler(BaseHTTPRequestHandler):
    server: Sink

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.server.hold.is_set():
            self.server.release.wait(30)
        self.server.lines.extend(body.splitlines())
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


def test_inline_decision_log_sidecar_waits_for_the_sink_on_the_request_path(
        launcher: Launcher, tmp_path: Path) -> None:
    sink = Sink()
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    port = sink.server_address[1]
    try:
        url = f"http://127.0.0.1:{port}/v1/decisions"
        sidecar = start_sidecar(
            launcher, tmp_path, f"{PKG}.inline_decision_log",
            f"decision_log: {{path: {tmp_path / 'd.jsonl'}, url: '{url}'}}\n")
        assert decide(sidecar) == (0, 0)
        assert len(sink.lines) == 1 and b"/t/acme/orders" in sink.lines[0]  # before the answer

        sink.hold.set()  # the sink stops answering: so does the decision
        with pytest.raises(AssertionError, match="DEADLINE_EXCEEDED"):
            decide(sidecar, timeout=1.0)
        sink.hold.clear()
        sink.release.set()
        wait_until(lambda: len(sink.lines) == 2, "the held decision's line")
    finally:
        sink.shutdown()
        sink.server_close()
    assert decide(sidecar) == (7, 500)  # the sink is gone: the decision fails
