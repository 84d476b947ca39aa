"""A real Envoy on ADS against the server: it ACKs a listener+route+cluster+endpoints
snapshot and serves through it, and it NACKs a bad listener while the old one
keeps serving, with the NACK text visible in the server's status."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.core.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.waiting import free_port, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy is not on PATH"),
]

GROUP = "a1-edge"




def packed(message: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message)
    return a


def addr(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host,
                                                                        port_value=port))


def edge_snapshot(listen_host: str, listen_port: int, backend_port: int) -> Snapshot:
    ads = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )
    cluster = cluster_pb2.Cluster(
        name="backend", type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads),
    )
    cluster.connect_timeout.FromMilliseconds(1000)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="backend", endpoints=[
        endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=addr("127.0.0.1", backend_port)))])])
    route = route_pb2.RouteConfiguration(name="edge", virtual_hosts=[
        route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster="backend"))])])
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="edge",
        rds=hcm_pb2.Rds(route_config_name="edge", config_source=ads),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router",
                                         typed_config=packed(router_pb2.Router()))],
    )
    listener = listener_pb2.Listener(
        name="edge", address=addr(listen_host, listen_port),
        filter_chains=[listener_components_pb2.FilterChain(filters=[
            listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager",
                                           typed_config=packed(hcm))])],
    )
    return Snapshot(Resource.from_message(m) for m in (cluster, cla, route, listener))


def bootstrap(xds_port: int, admin_port: int) -> dict[str, Any]:
    return {
        "node": {"id": "edge-envoy-1", "cluster": GROUP},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/"
                             "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {
                        "connection_keepalive": {"interval": "10s", "timeout": "5s"}}},
                }},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                            "port_value": xds_port}}}}]}]},
        }]},
    }


class _Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"backend-ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def test_envoy_acks_serves_and_nacks_a_bad_listener(tmp_path: Path, backend: int) -> None:
    cache = SnapshotCache()
    listen_port, admin_port = free_port(), free_port()
    good = edge_snapshot("127.0.0.1", listen_port, backend)
    good.check()
    cache.set_snapshot(GROUP, good)
    server = XdsServer(cache)
    xds_port = server.start()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap(xds_port, admin_port)))
    log = tmp_path / "envoy.log"
    with log.open("wb") as out:
        envoy = subprocess.Popen(
            ["envoy", "-c", str(config), "--use-dynamic-base-id", "-l", "info"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            assert server.wait_acked(GROUP, type_url, good.version(type_url), timeout=30), (
                f"{type_url} not ACKed: {server.connections()}\n{log.read_text()[-3000:]}")
        wait_until(lambda: get(admin + "/ready") == (200, b"LIVE\n"), "envoy /ready")
        wait_until(lambda: get(f"http://127.0.0.1:{listen_port}/")[0] == 200, "traffic")
        assert get(f"http://127.0.0.1:{listen_port}/") == (200, b"backend-ok")
        dump = json.loads(get(admin + "/config_dump")[1])
        listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
        assert listeners["version_info"] == good.version(LISTENER)

        bad = Snapshot([*(r for t in (CLUSTER, ENDPOINT, ROUTE)
                          for r in good.resources(t).values()),
                        *edge_snapshot("999.1.1.1", listen_port, backend)
                        .resources(LISTENER).values()])
        cache.set_snapshot(GROUP, bad)
        assert server.wait_acked(GROUP, LISTENER, bad.version(LISTENER), timeout=30) is False

        def nacked() -> dict[str, Any] | None:
            (conn,) = server.connections()
            st = conn["types"][LISTENER]
            return st if st["nack_count"] else None

        st = wait_until(nacked, "the NACK in status")
        assert st["last_nack_version"] == bad.version(LISTENER)
        assert "999.1.1.1" in st["last_nack"], st["last_nack"]
        assert st["acked_version"] == good.version(LISTENER)
        for _ in range(20):  # the old listener keeps serving
            assert get(f"http://127.0.0.1:{listen_port}/") == (200, b"backend-ok")
        assert server.registry.get_sample_value("a1_xds_nacks_total", {"type": "Listener"}) == 1
        assert server.registry.get_sample_value(
            "a1_xds_connected", {"node_cluster": GROUP}) == 1
    finally:
        envoy.kill()
        envoy.wait(timeout=30)
        server.stop()
