"""A real Envoy on ADS through the relay (a real ``python -m control.relay`` process) to the
real ``XdsServer``: it serves; with the control plane stopped it keeps serving; an Envoy
restarted (and a relay killed and restarted) during the outage boots from the relay's
record and serves; when the control plane comes back with a changed route, Envoy gets it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from conformance.nemesis.proxy.address import parse_address
from conformance.nemesis.proxy.server import FaultProxy
from control.envoy import ads_bootstrap
from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.core.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy is not on PATH"),
]

GROUP = "a1-edge"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def packed(message: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message)
    return a


def edge_snapshot(listen_port: int, backend_port: int, route_tag: str) -> Snapshot:
    """Listener → RDS route → EDS cluster → the backend; the route stamps ``x-route``."""
    ads = config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource(),
                                         resource_api_version=config_source_pb2.V3)
    cluster = cluster_pb2.Cluster(
        name="backend", type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads))
    cluster.connect_timeout.FromMilliseconds(1000)

    def addr(port: int) -> address_pb2.Address:
        return address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address="127.0.0.1", port_value=port))

    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="backend", endpoints=[
        endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=addr(backend_port)))])])
    route = route_pb2.RouteConfiguration(
        name="edge",
        response_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="x-route", value=route_tag))],
        virtual_hosts=[route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster="backend"))])])
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="edge", rds=hcm_pb2.Rds(route_config_name="edge", config_source=ads),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router",
                                         typed_config=packed(router_pb2.Router()))])
    listener = listener_pb2.Listener(
        name="edge", address=addr(listen_port),
        filter_chains=[listener_components_pb2.FilterChain(filters=[
            listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager",
                                           typed_config=packed(hcm))])])
    return Snapshot(Resource.from_message(m) for m in (cluster, cla, route, listener))


class _Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"backend-ok"

    def do_GET(self) -> None:
        body = self.body
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Backend:
    """An HTTP backend answering ``body``; ``stop`` closes its port (Envoy then 503s)."""

    def __init__(self, body: bytes) -> None:
        handler = type("Handler", (_Backend,), {"body": body})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def backend() -> Iterator[int]:
    b = Backend(b"backend-ok")
    yield b.port
    b.stop()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {}, err.read()
    except OSError:
        return 0, {}, b""


class Procs:
    """Every process a test starts, stopped in ``close`` whatever happened."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self.running.remove(proc)

    def tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        for proc in list(self.running):
            with contextlib.suppress(Exception):
                self.stop(proc, signal.SIGKILL)


def relay_serving(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1)
    except grpc.RpcError:
        return False
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def test_envoy_through_the_relay_survives_an_outage_and_a_restart_during_it(
        tmp_path: Path, backend: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="a1relay", dir="/tmp"))  # short: unix socket path
    sock = state / "relay.sock"
    listen_port, admin_port, xds_port = free_port(), free_port(), free_port()
    cache = SnapshotCache()
    v1 = edge_snapshot(listen_port, backend, "v1")
    cache.set_snapshot(GROUP, v1)
    server: XdsServer | None = XdsServer(cache, port=xds_port, registry=CollectorRegistry())
    server.start()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(ads_bootstrap("edge-envoy-1", f"unix:{sock}",
                                               admin_port=admin_port)))
    procs = Procs(tmp_path)
    relay_argv = [sys.executable, "-m", "control.relay", "--upstream", f"127.0.0.1:{xds_port}",
                  "--listen", f"unix:{sock}", "--state-dir", str(state)]
    envoy_argv = ["envoy", "-c", str(config), "--use-dynamic-base-id", "-l", "info"]
    admin = f"http://127.0.0.1:{admin_port}"
    url = f"http://127.0.0.1:{listen_port}/"

    def serves(tag: str) -> bool:
        status, headers, body = get(url)
        return status == 200 and body == b"backend-ok" and headers.get("x-route") == tag

    def context() -> str:
        return f"\nrelay:\n{procs.tail('relay')}\nenvoy:\n{procs.tail('envoy')}"

    def boot_envoy() -> subprocess.Popen[bytes]:
        envoy = procs.start("envoy", envoy_argv)
        wait_until(lambda: get(admin + "/ready")[2] == b"LIVE\n", "envoy /ready" + context())
        wait_until(lambda: serves("v1"), "traffic through Envoy" + context())
        return envoy

    try:
        relay = procs.start("relay", relay_argv)
        wait_until(lambda: relay_serving(sock), "relay health" + context())
        envoy = boot_envoy()
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            assert server.wait_acked(GROUP, type_url, v1.version(type_url), timeout=30), context()
        conns = server.connections()
        assert [c["node_id"] for c in conns] == ["edge-envoy-1"]  # Envoy's own node
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):  # recorded on ACK
            assert (state / f"{type_url.rsplit('.', 1)[-1]}.xds").exists()

        # 1. The control plane goes away: every request still succeeds.
        server.stop(grace=0.2)
        server = None
        wait_until(lambda: "served from the record" in procs.tail("relay"),
                   "the relay serving from the record" + context())
        results = [serves("v1") for _ in range(200)]
        assert all(results), f"{results.count(False)} of 200 failed" + context()

        # 2. Envoy and the relay both restart during the outage (the relay killed hard):
        #    the relay reads its record from disk and Envoy boots from it.
        procs.stop(envoy)
        procs.stop(relay, signal.SIGKILL)
        assert get(url)[0] == 0
        relay = procs.start("relay", relay_argv)
        wait_until(lambda: relay_serving(sock), "relay health after restart" + context())
        envoy = boot_envoy()
        results = [serves("v1") for _ in range(100)]
        assert all(results), f"{results.count(False)} of 100 failed" + context()
        dump = json.loads(get(admin + "/config_dump")[2])
        listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
        assert listeners["version_info"] == v1.version(LISTENER)

        # 3. The control plane comes back with a changed route: Envoy picks it up.
        v2 = edge_snapshot(listen_port, backend, "v2")
        cache.set_snapshot(GROUP, v2)
        server = XdsServer(cache, port=xds_port, registry=CollectorRegistry())
        server.start()
        assert server.wait_acked(GROUP, ROUTE, v2.version(ROUTE), timeout=60), context()
        wait_until(lambda: serves("v2"), "the changed route" + context())
        assert server.connections()[0]["node_id"] == "edge-envoy-1"
    finally:
        procs.close()
        if server is not None:
            server.stop(grace=0.2)
        shutil.rmtree(state, ignore_errors=True)



class Traffic:
    """Requests Envoy back to back on a thread, recording (status, body) of each."""

    def __init__(self, url: str) -> None:
        self.url, self.results = url, []  # type: list[tuple[int, bytes]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status, _, body = get(self.url)
            self.results.append((status, body))

    def more(self, n: int, what: str) -> None:
        """Wait until ``n`` more requests were made (a window of load, not a pause)."""
        target = len(self.results) + n
        wait_until(lambda: len(self.results) >= target, what, timeout=120)

    def stop(self) -> list[tuple[int, bytes]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.results


def test_envoy_keeps_the_newest_endpoints_through_an_upstream_reset_and_the_resync(
        tmp_path: Path) -> None:
    """CI (stateful conformance, ``reset_peer`` on the relay's upstream link while a
    cell restarted): Envoy 503ed for that cell for ~170 ms after it converged. Here the
    backend moves from A to B (EDS only) and Envoy ACKs it; A is stopped, so any older
    endpoint config reaching Envoy shows as a failed request. Then the relay's link to
    the control plane gets ``reset_peer`` (the relay serves from the record), and is
    repaired (the relay closes Envoy's stream; Envoy reconnects and re-syncs). Every
    request of the whole window must reach B."""
    a, b = Backend(b"backend-a"), Backend(b"backend-b")
    state = Path(tempfile.mkdtemp(prefix="a1relay", dir="/tmp"))
    sock = state / "relay.sock"
    listen_port, admin_port, xds_port = free_port(), free_port(), free_port()
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, edge_snapshot(listen_port, a.port, "v1"))
    server = XdsServer(cache, port=xds_port, registry=CollectorRegistry())
    server.start()
    link = FaultProxy(parse_address("127.0.0.1:0", "listen", listen=True),
                      parse_address(f"127.0.0.1:{xds_port}", "upstream"), name="envoy-xds")
    link.start()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(ads_bootstrap("edge-envoy-1", f"unix:{sock}",
                                               admin_port=admin_port)))
    procs = Procs(tmp_path)
    url = f"http://127.0.0.1:{listen_port}/"
    traffic: Traffic | None = None

    def context() -> str:
        return f"\nrelay:\n{procs.tail('relay')}\nenvoy:\n{procs.tail('envoy')}"

    def relay_log() -> str:
        return (tmp_path / "relay.log").read_text(errors="replace")

    try:
        procs.start("relay", [sys.executable, "-m", "control.relay", "--upstream",
                              str(link.listen), "--listen", f"unix:{sock}",
                              "--state-dir", str(state)])
        wait_until(lambda: relay_serving(sock), "relay health" + context())
        procs.start("envoy", ["envoy", "-c", str(config), "--use-dynamic-base-id",
                              "-l", "info"])
        wait_until(lambda: get(url)[2] == b"backend-a", "traffic to A" + context())
        v2 = edge_snapshot(listen_port, b.port, "v1")  # the same route: only EDS moves
        cache.set_snapshot(GROUP, v2)
        assert server.wait_acked(GROUP, ENDPOINT, v2.version(ENDPOINT), timeout=30), context()
        wait_until(lambda: get(url)[2] == b"backend-b", "traffic to B" + context())
        a.stop()
        before = max(c["stream"] for c in server.connections())

        traffic = Traffic(url)
        link.add_toxic({"kind": "reset_peer", "name": "reset", "attributes": {"timeout": 200}})
        wait_until(lambda: "served from the record" in relay_log(),
                   "the relay serving from the record" + context())
        traffic.more(200, "load while the link resets")
        link.remove_toxic("reset")
        wait_until(lambda: "the control plane is back" in relay_log(),
                   "the relay closing Envoy's stream to re-sync" + context())
        wait_until(lambda: any(c["stream"] > before and c["node_id"] == "edge-envoy-1" and
                               c["types"].get(ENDPOINT, {}).get("acked_version") ==
                               v2.version(ENDPOINT) for c in server.connections()),
                   "Envoy re-synced on a new stream" + context(), timeout=60)
        traffic.more(200, "load after the re-sync")
        results = traffic.stop()
        bad = [r for r in results if r != (200, b"backend-b")]
        assert not bad, f"{len(bad)} of {len(results)} requests went wrong: {bad[:5]}" + \
            context()
    finally:
        if traffic is not None:
            traffic.stop()
        procs.close()
        link.stop()
        server.stop(grace=0.2)
        a.stop()
        b.stop()
        shutil.rmtree(state, ignore_errors=True)
