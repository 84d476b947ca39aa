"""The Envoy template renderer: structure-safe substitution and per-mode shape.

``envoy --mode validate`` on every mode runs in e2e/test_stack_envoy_config.py and
tests/test_envoy_resources.py, which also holds the static and xDS forms equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from a1 import envoy_bootstrap as eb
from policies.core.errors import UserError


def params(mode: str = "grpc", **kw: Any) -> eb.BootstrapParams:
    cells = [eb.CellEndpoint(f"cell-{i}", "127.0.0.1", 20000 + i) for i in (1, 2, 3)]
    return eb.BootstrapParams(cells=cells, jwks_path=Path("/s/jwks.json"),
                              tls_cert=Path("/s/server.pem"), tls_key=Path("/s/key.pem"),
                              mode=mode, **kw)


def roundtrip(mode: str = "grpc", **kw: Any) -> dict[str, Any]:
    return yaml.safe_load(eb.dump(eb.render_bootstrap(params(mode, **kw))))


def hcm(doc: dict[str, Any], listener: int = 0) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0][
        "typed_config"]


@given(st.text(min_size=0, max_size=40))
def test_values_cannot_change_the_document_structure(value: str) -> None:
    template = {"a": "${v}", "b": ["x-${v}", {"c": "${v}"}], "${v}": 1}
    out = yaml.safe_load(yaml.safe_dump(eb.substitute(template, {"v": value}, "t.yaml")))
    assert out == {"a": value, "b": [f"x-{value}", {"c": value}], "${v}": 1}


def test_whole_placeholder_keeps_the_value_type() -> None:
    out = eb.substitute({"p": "${port}", "l": "${xs}"}, {"port": 9901, "xs": [{"k": 1}]}, "t")
    assert out == {"p": 9901, "l": [{"k": 1}]}


def test_missing_placeholder_names_template_and_key() -> None:
    with pytest.raises(eb.TemplateError, match=r"t\.yaml: a\.b\[1\]: no value for \$\{nope\}"):
        eb.substitute({"a": {"b": ["ok", "${nope}"]}}, {}, "t.yaml")


def test_mapping_inside_text_is_refused() -> None:
    with pytest.raises(eb.TemplateError, match="inside text"):
        eb.substitute({"a": "x${m}"}, {"m": {"k": 1}}, "t.yaml")


def filter_names(doc: dict[str, Any]) -> list[str]:
    return [f["name"] for f in hcm(doc)["http_filters"]]


@pytest.mark.parametrize(("mode", "authz"), [
    ("grpc", ["envoy.filters.http.ext_authz"]),
    ("http", ["envoy.filters.http.ext_authz"]),
    ("ext_proc", ["envoy.filters.http.ext_proc"]),
    ("rbac", ["envoy.filters.http.rbac"]),
    ("none", []),
])
def test_filter_chain_per_mode(mode: str, authz: list[str]) -> None:
    doc = roundtrip(mode)
    assert filter_names(doc) == ["envoy.filters.http.jwt_authn", *authz,
                                 "envoy.filters.http.router"]
    assert hcm(doc, 0)["http_filters"] == hcm(doc, 1)["http_filters"]  # HTTP and HTTPS agree


def test_grpc_mode_ext_authz_settings() -> None:
    cfg = hcm(roundtrip("grpc"))["http_filters"][1]["typed_config"]
    assert cfg["failure_mode_allow"] is False
    assert cfg["status_on_error"] == {"code": 503}
    assert cfg["clear_route_cache"] is True
    assert cfg["transport_api_version"] == "V3"
    assert cfg["metadata_context_namespaces"] == ["envoy.filters.http.jwt_authn"]
    assert cfg["grpc_service"]["envoy_grpc"]["cluster_name"] == "a1_sidecar_grpc"


def test_jwt_provider_settings() -> None:
    cfg = hcm(roundtrip())["http_filters"][0]["typed_config"]
    provider = cfg["providers"]["a1-dev"]
    assert provider["issuer"] == "a1-dev" and provider["audiences"] == ["a1"]
    assert provider["payload_in_metadata"] == "jwt_payload"
    assert provider["forward_payload_header"] == "x-a1-jwt-payload"
    assert cfg["rules"][0] == {"match": {"path": "/healthz"}}  # no requirement


def routes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]


def test_sidecar_modes_route_each_cell_on_its_header_and_refuse_the_rest() -> None:
    rs = routes(roundtrip("grpc"))
    assert rs[0]["match"] == {"path": "/healthz"} and rs[0]["direct_response"]["status"] == 200
    assert rs[0]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
    for i, r in enumerate(rs[1:4], start=1):
        assert r["match"]["headers"] == [{"name": "x-a1-cell",
                                          "string_match": {"exact": f"cell-{i}"}}]
        assert r["route"]["cluster"] == f"cell_cell-{i}"
    assert rs[4]["direct_response"]["status"] == 503 and len(rs) == 5


@pytest.mark.parametrize("mode", ["rbac", "none"])
def test_modes_without_sidecar_pin_one_cell(mode: str) -> None:
    rs = routes(roundtrip(mode, pinned_cell="cell-2"))
    assert [r.get("route", {}).get("cluster") for r in rs] == [None, "cell_cell-2"]
    clusters = [c["name"] for c in roundtrip(mode)["static_resources"]["clusters"]]
    assert "a1_sidecar_grpc" not in clusters and "a1_sidecar_http" not in clusters


def test_cell_clusters_have_one_health_authority_the_active_check() -> None:
    """No outlier detection beside the check: the two together flapped a restarted
    cell out of service after it converged (tests/test_envoy_cell_health.py)."""
    clusters = roundtrip("grpc")["static_resources"]["clusters"]
    cells = [c for c in clusters if c["name"].startswith("cell_")]
    assert len(cells) == 3
    for c in cells:
        assert c["health_checks"][0]["http_health_check"] == {"path": "/healthz"}
        assert "outlier_detection" not in c


def test_client_supplied_a1_headers_are_stripped_at_the_edge() -> None:
    ext = hcm(roundtrip())["early_header_mutation_extensions"][0]["typed_config"]
    assert ext["mutations"] == [{"remove_on_match": {"key_matcher": {"prefix": "x-a1-"}}}]


def test_unix_socket_sidecar_address() -> None:
    clusters = roundtrip("grpc", sidecar_grpc="unix:/run/a1.sock")["static_resources"]["clusters"]
    sidecar = next(c for c in clusters if c["name"] == "a1_sidecar_grpc")
    endpoint = sidecar["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/run/a1.sock"}}


@pytest.mark.parametrize(("kw", "message"), [
    ({"mode": "istio"}, "mode: must be one of"),
    ({"pinned_cell": "cell-9"}, "pinned_cell"),
    ({"http_port": 70000}, "http_port"),
    ({"sidecar_grpc": "nowhere"}, "sidecar_grpc: expected HOST:PORT"),
])
def test_bad_parameters_are_user_errors(kw: dict[str, Any], message: str) -> None:
    mode = kw.pop("mode", "grpc")
    with pytest.raises(UserError, match=message):
        eb.render_bootstrap(params(mode, **kw))


def test_bad_cell_name_is_refused() -> None:
    p = eb.BootstrapParams(cells=[eb.CellEndpoint("bad name", "127.0.0.1", 1)],
                           jwks_path=Path("j"), tls_cert=Path("c"), tls_key=Path("k"))
    with pytest.raises(UserError, match="invalid cell name 'bad name'"):
        eb.render_bootstrap(p)


# -- edge hardening: one canonical path, tokens from the header only, bounded lifetime --


@pytest.mark.parametrize("listener", [0, 1])
def test_every_listener_normalises_the_path_before_any_filter(listener: int) -> None:
    cfg = hcm(roundtrip(), listener)
    assert cfg["normalize_path"] is True and cfg["merge_slashes"] is True
    assert cfg["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert cfg["use_remote_address"] is True
    assert cfg["common_http_protocol_options"]["headers_with_underscores_action"] == \
        "REJECT_REQUEST"
    assert cfg["request_headers_timeout"] == "10s"
    assert cfg["http2_protocol_options"]["max_concurrent_streams"] == 100


def test_listeners_and_cell_clusters_bound_their_buffers() -> None:
    doc = roundtrip()
    for lst in doc["static_resources"]["listeners"]:
        assert lst["per_connection_buffer_limit_bytes"] == 32768
    for c in doc["static_resources"]["clusters"]:
        if c["name"].startswith("cell_"):
            assert c["per_connection_buffer_limit_bytes"] == 32768


@pytest.mark.parametrize("mode", eb.MODES)
def test_tokens_only_from_the_bearer_header_and_always_expiring(mode: str) -> None:
    from a1.pki import MAX_TOKEN_LIFETIME_S

    provider = hcm(roundtrip(mode))["http_filters"][0]["typed_config"]["providers"]["a1-dev"]
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in provider and "from_cookies" not in provider
    assert provider["require_expiration"] is True
    assert provider["max_lifetime"] == f"{MAX_TOKEN_LIFETIME_S}s" == "86400s"


def test_max_token_lifetime_is_a_parameter() -> None:
    provider = hcm(roundtrip(max_token_lifetime_s=600))["http_filters"][0]["typed_config"][
        "providers"]["a1-dev"]
    assert provider["max_lifetime"] == "600s"
    with pytest.raises(UserError, match=r"^max_token_lifetime_s: must be positive"):
        roundtrip(max_token_lifetime_s=0)


def test_access_log_leaves_the_query_string_out() -> None:
    log = hcm(roundtrip(access_log=Path("/s/access.log")))["access_log"][0]["typed_config"]
    line = log["log_format"]["text_format_source"]["inline_string"]
    assert "%PATH(NQ:ORIG_OR_PATH)%" in line  # NQ: no query string
    assert "PATH?:PATH)%" not in line and "%REQ(:PATH)%" not in line


# -- the static form of the xDS resources (control/envoy) --


def test_https_listener_presents_the_static_secret_by_name() -> None:
    doc = roundtrip()
    tls = doc["static_resources"]["listeners"][1]["filter_chains"][0]["transport_socket"][
        "typed_config"]["common_tls_context"]
    assert tls["tls_certificate_sds_secret_configs"] == [{"name": "a1_tls"}]  # no sds_config
    assert tls["alpn_protocols"] == ["h2", "http/1.1"]
    assert doc["static_resources"]["secrets"] == [{"name": "a1_tls", "tls_certificate": {
        "certificate_chain": {"filename": "/s/server.pem"},
        "private_key": {"filename": "/s/key.pem"}}}]


def test_static_cell_clusters_carry_their_endpoints_inline() -> None:
    for c in roundtrip()["static_resources"]["clusters"]:
        assert c["type"] == "STATIC" and "eds_cluster_config" not in c
        assert c["load_assignment"]["cluster_name"] == c["name"]
    assert all("rds" not in hcm(roundtrip(), i) for i in (0, 1))


def test_bootstrap_skeleton() -> None:
    doc = roundtrip(node_id="h-envoy-1")
    assert doc["node"] == {"id": "h-envoy-1", "cluster": "a1-edge"}
    assert list(doc) == ["node", "admin", "overload_manager", "static_resources"]
