"""OPA-Envoy's decision shapes rendered into ext_authz and ext_proc responses.

Compiled policies answer in OPA-Envoy's forms (a boolean, or the object with
``allowed``, ``headers``, ``response_headers_to_add``, ``request_headers_to_remove``,
``body``, ``http_status``, ``dynamic_metadata``); the sidecar's gRPC handlers render
them. Malformed decisions deny with 500, never allow; A1's header rules still hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import json_format

from ext_proc.config import parse_config
from ext_proc.engine import Engine
from ext_proc.grpc_server import check_bytes, process_headers
from ext_proc.opa_envoy.decision import Malformed, parse_decision
from policies.core.errors import ConfigError
from policies.runtime.values import UNDEFINED
from tests.test_opa_envoy_input import CELLS, ENTRY, check_request, engine_for

HEAD = "package envoy.authz\nimport rego.v1\n"
CELLS_DIR = Path("/nonexistent")


def check(eng: Engine, req: Any = None) -> Any:
    data = (req or check_request("GET", "/people")).SerializeToString()
    return external_auth_pb2.CheckResponse.FromString(check_bytes(eng, data))


def decision(body: str) -> Engine:
    """A policy whose ``allow`` is the decision object built by ``body``."""
    return engine_for(HEAD + body)


def headers_of(field: Any) -> list[tuple[str, str]]:
    return [(h.header.key, h.header.value) for h in field]


# -- the shapes ------------------------------------------------------------------------


def test_boolean_allow_sets_a1_headers() -> None:
    resp = check(decision("allow := true\n"))
    assert resp.status.code == 0
    hs = dict(headers_of(resp.ok_response.headers))
    assert hs["x-a1-cell"] in CELLS.cells and len(hs["x-a1-policy-version"]) == 64


def test_boolean_deny_is_403() -> None:
    resp = check(decision("default allow := false\n"))
    assert resp.status.code == 7 and resp.denied_response.status.code == 403


def test_undefined_decision_is_a_500_deny() -> None:
    resp = check(decision('allow if input.nothing == "x"\n'))
    assert resp.denied_response.status.code == 500


def test_object_form_allow_renders_every_field() -> None:
    resp = check(
        decision("""allow := {
  "allowed": true,
  "headers": {"x-ext-auth-allow": "yes", "X-Validated-By": "gate"},
  "response_headers_to_add": {"x-foo": "bar"},
  "request_headers_to_remove": ["one-auth-header", "x-a1-cell"],
  "dynamic_metadata": {"user": "bob", "n": 3},
}
""")
    )
    ok = resp.ok_response
    hs = headers_of(ok.headers)
    assert ("x-ext-auth-allow", "yes") in hs and ("x-validated-by", "gate") in hs
    assert [k for k, _ in hs][:2] == ["x-a1-cell", "x-a1-policy-version"]
    assert headers_of(ok.response_headers_to_add) == [("x-foo", "bar")]
    assert list(ok.headers_to_remove) == ["one-auth-header"]  # x-a1-cell is the sidecar's
    assert json_format.MessageToDict(resp.dynamic_metadata) == {"user": "bob", "n": 3.0}


def test_object_form_deny_uses_status_body_and_headers() -> None:
    resp = check(
        decision("""allow := {"allowed": false, "http_status": 401,
  "body": "Authentication Failed", "headers": {"www-authenticate": "Bearer"}}
""")
    )
    d = resp.denied_response
    assert d.status.code == 401 and d.body == "Authentication Failed"
    hs = dict(headers_of(d.headers))
    assert hs["www-authenticate"] == "Bearer" and hs["x-a1-deny-reason"] == "denied"


def test_repeated_header_names_append() -> None:
    resp = check(
        decision("""allow := {"allowed": true,
  "headers": [{"x-tag": "a"}, {"x-tag": "b"}]}
""")
    )
    opts = [h for h in resp.ok_response.headers if h.header.key == "x-tag"]
    assert [h.header.value for h in opts] == ["a", "b"]
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    assert [h.append_action for h in opts] == [overwrite, append]


def test_ext_proc_renders_the_same_decision() -> None:
    eng = decision("""allow := {"allowed": true, "headers": {"x-user": "bob"},
  "request_headers_to_remove": ["cookie"]}
""")
    req = ep.ProcessingRequest()
    for k, v in ((":method", "GET"), (":path", "/people"), (":authority", "h")):
        req.request_headers.headers.headers.append(
            base_pb2.HeaderValue(key=k, raw_value=v.encode())
        )
    resp = ep.ProcessingResponse.FromString(process_headers(eng, req))
    mut = resp.request_headers.response.header_mutation
    assert ("x-user", "bob") in [
        (h.header.key, h.header.raw_value.decode()) for h in mut.set_headers
    ]
    assert list(mut.remove_headers) == ["cookie"]


# -- attacks: nothing malformed allows, a deny stays a deny ----------------------------


@pytest.mark.parametrize("status", [200, 204, 100, 304])
def test_a_success_status_on_a_deny_stays_a_deny(status: int) -> None:
    resp = check(decision(f'allow := {{"allowed": false, "http_status": {status}}}\n'))
    assert resp.status.code == 7 and resp.denied_response.status.code == 403


def test_a_redirect_deny_is_kept() -> None:
    resp = check(decision('allow := {"allowed": false, "http_status": 302, '
                          '"headers": {"location": "/login"}}\n'))  # fmt: skip
    assert resp.denied_response.status.code == 302


@pytest.mark.parametrize(
    "obj",
    [
        '{"allowed": "true"}',
        '{"allow": true}',
        '{"allowed": true, "headers": {"x-n": 1}}',
        '{"allowed": true, "headers": {"x-n": ["a"]}}',
        '{"allowed": true, "headers": "x-n: 1"}',
        '{"allowed": true, "response_headers_to_add": {"x-n": true}}',
        '{"allowed": true, "request_headers_to_remove": "cookie"}',
        '{"allowed": true, "request_headers_to_remove": [1]}',
        '{"allowed": false, "body": 7}',
        '{"allowed": false, "http_status": "401"}',
        '{"allowed": false, "http_status": 999}',
        '{"allowed": false, "http_status": 401.5}',
        '{"allowed": true, "dynamic_metadata": ["a"]}',
        '"yes"',
        "1",
        "[true]",
    ],
)
def test_malformed_decisions_deny_with_500(obj: str) -> None:
    resp = check(decision(f"allow := {obj}\n"))
    assert resp.status.code == 7 and resp.denied_response.status.code == 500


def test_forbidden_header_names_are_dropped_not_obeyed() -> None:
    # Names the compiler cannot see (copied from the request) are refused at run time.
    eng = decision("""allow := {"allowed": true, "headers": hs, "response_headers_to_add": hs}
hs[trim_prefix(k, "h-")] := v if {
  some k, v in input.attributes.request.http.headers
  startswith(k, "h-")
}
""")
    forged = {"x-a1-cell": "cell-9", "host": "evil", "x-envoy-original-path": "/admin",
              ":path": "/admin", "content-length": "0", "x-ok": "1", "x-bad": "a\x01b"}  # fmt: skip
    resp = check(eng, check_request("GET", "/p", {f"h-{k}": v for k, v in forged.items()}))
    hs = headers_of(resp.ok_response.headers)
    names = [k for k, _ in hs]
    assert names.count("x-a1-cell") == 1 and dict(hs)["x-a1-cell"] in CELLS.cells
    assert "x-ok" in names
    for bad in ("host", "x-envoy-original-path", ":path", "content-length", "x-bad"):
        assert bad not in names
    assert [k for k, _ in headers_of(resp.ok_response.response_headers_to_add)] == ["x-ok"]


def test_parse_decision_directly() -> None:
    log: list[str] = []
    with pytest.raises(Malformed):
        parse_decision(UNDEFINED, log.append)
    p = parse_decision({"allowed": True, "headers": {"Host": "x"}}, log.append)
    assert p.allowed and p.headers == () and p.dropped == ["host"] and log


def test_sidecar_config_input_option() -> None:
    base = {"grpc_address": "127.0.0.1:1", "cells": {"table": "c.yaml"}}
    cfg = parse_config(
        {**base, "policy": {"module": "p.wasm", "input": "opa-envoy"}}, "s", CELLS_DIR
    )
    assert cfg.input_kind == "opa-envoy" and cfg.entrypoint == ENTRY
    cfg = parse_config({**base, "policy": {"module": "p.wasm"}}, "s", CELLS_DIR)
    assert cfg.input_kind == "a1" and cfg.entrypoint == "a1/authz/decision"
    with pytest.raises(ConfigError, match=r"policy\.input"):
        parse_config({**base, "policy": {"module": "p.wasm", "input": "opa"}}, "s", CELLS_DIR)


# -- declaring the input: the bundle manifest and Envoy's config -------------------------


def test_bundle_manifest_carries_the_input_kind(tmp_path: Path) -> None:
    from policies.bundle import ensure_signing_key, load_trusted_keys, sign_bundle, verify_bundle
    from policies.bundle.errors import BundleRefused
    from policies.bundle.format import Manifest, parse_manifest
    from policies.compiler import compile_sources

    key = ensure_signing_key(tmp_path / "k.key")
    keys = load_trusted_keys(tmp_path / "k.pub")
    module = compile_sources({"p.rego": HEAD + "allow := true\n"}, None, [ENTRY])
    b = verify_bundle(sign_bundle(module, entrypoint=ENTRY, key=key, input="opa-envoy"), keys)
    assert b.input == "opa-envoy"
    plain = verify_bundle(sign_bundle(module, entrypoint=ENTRY, key=key), keys)
    assert plain.input == "a1" and b"input" not in plain.data[:200]
    m = Manifest("0" * 64, ENTRY, "1" * 64, "opa-envoy")
    assert parse_manifest(m.to_json(), "b") == m
    explicit_default = m.to_json().replace(b'"opa-envoy"', b'"a1"')
    with pytest.raises(BundleRefused, match="not canonical"):
        parse_manifest(explicit_default, "b")
    with pytest.raises(BundleRefused, match=r"manifest\.input"):
        parse_manifest(m.to_json().replace(b'"opa-envoy"', b'"opa"'), "b")


def test_reads_request_body() -> None:
    from policies.bundle.format import reads_request_body

    assert reads_request_body([("parsed_body", "firstname")])
    assert reads_request_body([()]) and reads_request_body([("attributes", "request")])
    assert reads_request_body([("attributes", "request", "http", "body")])
    assert not reads_request_body([("attributes", "request", "http", "method"), ("parsed_path",)])


def test_envoy_without_jwt_authn_and_with_body_buffering() -> None:
    from control.envoy import CellEndpoint, EnvoyParams, build_resources

    params = EnvoyParams(cells=[CellEndpoint("cell-1", "127.0.0.1", 9000)],
                         jwks_path=Path("/j.json"), tls_cert=None, tls_key=None,
                         listeners=("http",), jwt_authn=False,
                         request_body_bytes=8192)  # fmt: skip
    listener = build_resources(params).listeners["a1_http"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert "envoy.filters.http.jwt_authn" not in names
    authz = hcm["http_filters"][names.index("envoy.filters.http.ext_authz")]["typed_config"]
    assert authz["with_request_body"] == {"max_request_bytes": 8192, "allow_partial_message": True}
