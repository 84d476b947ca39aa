"""OPA-Envoy's input document (ext_proc.opa_envoy.input): shapes, laziness, attacks.

Through the real interfaces: serialized ext_authz CheckRequests into ``check_bytes``
with a compiled policy (the sidecar's gRPC handler), ext_proc messages into
``process_headers``, HTTP heads into the HTTP door; and ``build_input`` itself for
the document's exact shape.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ext_proc.config import TenantSource
from ext_proc.engine import Engine
from ext_proc.grpc_server import check_bytes, process_headers
from ext_proc.http_server import AuthzProtocol
from ext_proc.opa_envoy.input import (
    MAX_DEPTH,
    CheckView,
    InputRefused,
    build_input,
    parse_query,
    parsed_path,
)
from ext_proc.policy import load_policy
from ext_proc.slim import SlimCheckRequest
from policies.compiler import compile_sources
from policies.core.cells import CellTable

ENTRY = "envoy/authz/allow"
CELLS = CellTable.balanced(["cell-1", "cell-2"])


def check_request(
    method: str = "GET",
    path: str = "/people",
    headers: dict[str, str] | None = None,
    body: str = "",
    metadata: dict[str, Any] | None = None,
) -> external_auth_pb2.CheckRequest:
    req = external_auth_pb2.CheckRequest()
    a = req.attributes
    a.source.address.socket_address.address = "10.0.0.7"
    a.source.address.socket_address.port_value = 61402
    a.source.principal = "spiffe://client"
    a.destination.address.socket_address.address = "10.0.0.8"
    a.destination.address.socket_address.port_value = 8000
    a.request.time.FromSeconds(1_600_000_000)
    h = a.request.http
    h.id = "1351"
    h.method = method
    h.path = path
    h.host = "svc.local"
    h.scheme = "http"
    h.protocol = "HTTP/1.1"
    for k, v in (headers or {}).items():
        h.headers[k] = v
    if body:
        h.body = body
        h.size = len(body.encode())
    if metadata is not None:
        s = struct_pb2.Struct()
        s.update(metadata)
        a.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].CopyFrom(s)
    return req


def view_of(req: external_auth_pb2.CheckRequest) -> CheckView:
    data = req.SerializeToString()
    return CheckView(SlimCheckRequest.FromString(data), data)


def engine_for(rego: str, cache_size: int = 1000) -> Engine:
    module = load_policy(compile_sources({"p.rego": rego}, None, [ENTRY]), ENTRY, "p.wasm")
    eng = Engine(TenantSource(), ENTRY, cache_size, input_kind="opa-envoy")
    eng.apply(module, CELLS)
    return eng


def decide(eng: Engine, req: external_auth_pb2.CheckRequest | bytes) -> Any:
    data = req if isinstance(req, bytes) else req.SerializeToString()
    return external_auth_pb2.CheckResponse.FromString(check_bytes(eng, data))


def allowed(resp: Any) -> bool:
    return resp.HasField("ok_response") and resp.status.code == 0


def denied_status(resp: Any) -> int:
    return int(resp.denied_response.status.code)


POLICY = "package envoy.authz\nimport rego.v1\n"
HTTP = "input.attributes.request.http"


# -- the document's shape ------------------------------------------------------------


def test_whole_document_has_opa_envoys_shape() -> None:
    req = check_request(
        "POST",
        "/people/a%20b?lang=en&id=1&id=2",
        {"content-type": "application/json", "content-length": "20", "authorization": "Bearer x"},
        '{"firstname":"Char"}',
        metadata={"jwt_payload": {"sub": "bob"}},
    )
    doc = build_input([()], view_of(req))
    http = doc["attributes"]["request"]["http"]
    assert http == {
        "id": "1351", "method": "POST", "path": "/people/a%20b?lang=en&id=1&id=2",
        "host": "svc.local", "scheme": "http", "protocol": "HTTP/1.1", "size": 20,
        "body": '{"firstname":"Char"}',
        "headers": {"content-type": "application/json", "content-length": "20",
                    "authorization": "Bearer x"},
    }  # fmt: skip
    assert doc["attributes"]["request"]["time"] == "2020-09-13T12:26:40Z"
    assert doc["attributes"]["source"] == {
        "address": {"socketAddress": {"address": "10.0.0.7", "portValue": 61402}},
        "principal": "spiffe://client",
    }
    assert doc["attributes"]["destination"]["address"]["socketAddress"]["portValue"] == 8000
    meta = doc["attributes"]["metadataContext"]["filterMetadata"]
    assert meta["envoy.filters.http.jwt_authn"] == {"jwt_payload": {"sub": "bob"}}
    assert doc["parsed_path"] == ["people", "a b"]
    assert doc["parsed_query"] == {"lang": ["en"], "id": ["1", "2"]}
    assert doc["parsed_body"] == {"firstname": "Char"}
    assert doc["truncated_body"] is False
    assert doc["version"] == {"ext_authz": "v3", "encoding": "protojson"}


def test_only_the_paths_read_are_built() -> None:
    req = check_request("GET", "/a?x=1", {"authorization": "t", "other": "o"}, "{}")
    view = view_of(req)
    doc = build_input([("attributes", "request", "http", "method")], view)
    assert doc == {"attributes": {"request": {"http": {"method": "GET"}}}}
    assert view._full is None  # the full CheckRequest was never parsed
    doc = build_input([("attributes", "request", "http", "headers", "authorization")], view)
    assert doc["attributes"]["request"]["http"]["headers"] == {"authorization": "t"}
    assert view._full is None and view._headers is None  # one header decoded, no others


def test_a_path_the_request_lacks_is_left_undefined() -> None:
    doc = build_input([("attributes", "request", "http", "fragment"), ("nope",)],
                      view_of(check_request()))  # fmt: skip
    assert doc == {"attributes": {"request": {"http": {}}}}


def test_truncated_body() -> None:
    req = check_request("POST", "/p", {"content-type": "application/json",
                                       "content-length": "9999"}, '{"a": 1')  # fmt: skip
    doc = build_input([("truncated_body",)], view_of(req))
    assert doc["truncated_body"] is True and doc["parsed_body"] is None


def test_form_body_is_parsed_as_lists() -> None:
    req = check_request("POST", "/p", {"content-type": "application/x-www-form-urlencoded"},
                        "a=1&a=2&b=x+y")  # fmt: skip
    assert build_input([("parsed_body",)], view_of(req))["parsed_body"] == {
        "a": ["1", "2"], "b": ["x y"]}  # fmt: skip


def test_other_content_types_are_null() -> None:
    req = check_request("POST", "/p", {"content-type": "text/plain"}, "hello")
    assert build_input([("parsed_body",)], view_of(req))["parsed_body"] is None


# -- parsing, against Python's own URL parser where the two agree -------------------

_SAFE = st.text(alphabet="abcXYZ019-_.~+ ", max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_SAFE, _SAFE), max_size=8))
def test_parsed_query_agrees_with_parse_qs(pairs: list[tuple[str, str]]) -> None:
    raw = "&".join(f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}"
                   for k, v in pairs)  # fmt: skip
    want: dict[str, list[str]] = {}
    for k, v in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        want.setdefault(k, []).append(v)
    assert parse_query(raw) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc %/?é", max_size=5), max_size=5))
def test_parsed_path_is_the_decoded_segments(segments: list[str]) -> None:
    path = "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)
    want = urllib.parse.unquote(path).lstrip("/").split("/")
    assert parsed_path(path + "?q=1") == want


def test_go_query_rules() -> None:
    assert parse_query("a=1;b=2&c=%zz&d=%41&&e") == {"d": ["A"], "e": [""]}


# -- through the sidecar: a compiled policy reading OPA-Envoy's input -------------------


def test_method_only_policy_ignores_an_unparseable_body() -> None:
    eng = engine_for(POLICY + f'default allow := false\nallow if {HTTP}.method == "POST"\n')
    assert allowed(decide(eng, _bytes_body_request(b'{"a": "\xff"}')))


def test_non_utf8_body_read_by_the_policy_is_a_400() -> None:
    eng = engine_for(POLICY + "default allow := false\nallow if input.parsed_body.a\n")
    resp = decide(eng, _bytes_body_request(b'{"a": "\xff"}'))
    assert not allowed(resp) and denied_status(resp) == 400


def _bytes_body_request(body: bytes) -> bytes:
    """A CheckRequest whose http.body holds ``body`` even when it is not UTF-8."""
    req = check_request("POST", "/x", {"content-type": "application/json"})
    http = req.attributes.request.http
    raw_http = http.SerializeToString() + _field_bytes(11, body)
    raw_request = _field_bytes(2, raw_http)  # AttributeContext.Request.http = 2
    req.attributes.ClearField("request")
    raw_attrs = req.attributes.SerializeToString() + _field_bytes(4, raw_request)
    return _field_bytes(1, raw_attrs)  # CheckRequest.attributes = 1


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_deeply_nested_json_body_is_refused_not_crashed() -> None:
    eng = engine_for(POLICY + "default allow := false\nallow if input.parsed_body\n")
    body = "[" * 10_000 + "]" * 10_000
    resp = decide(eng, check_request("POST", "/x", {"content-type": "application/json"}, body))
    assert not allowed(resp) and denied_status(resp) == 400
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    resp = decide(eng, check_request("POST", "/x", {"content-type": "application/json"}, ok))
    assert allowed(resp)


def test_json_body_with_a_huge_integer_is_refused() -> None:
    eng = engine_for(POLICY + "default allow := false\nallow if input.parsed_body.n > 0\n")
    body = json.dumps({"n": 2**64})
    resp = decide(eng, check_request("POST", "/x", {"content-type": "application/json"}, body))
    assert denied_status(resp) == 400


def test_a_query_with_100000_parameters_is_bounded() -> None:
    with pytest.raises(InputRefused):
        parse_query("&".join(f"p{i}=1" for i in range(100_000)))
    eng = engine_for(POLICY + "default allow := false\nallow if input.parsed_query.a\n")
    long_path = "/x?" + "&".join("a=1" for _ in range(100_000))
    resp = decide(eng, check_request("GET", long_path))
    assert denied_status(resp) == 414  # past limits.max_path, before any parsing


def test_path_tricks_never_reach_the_policy() -> None:
    eng = engine_for(POLICY + "allow := true\n")
    for path in ("/people/%2e%2e/admin", "/people//x", "/a/../b", "/a%2fb", "/a\\b"):
        resp = decide(eng, check_request("GET", path))
        assert denied_status(resp) == 400, path


def test_duplicate_headers_are_joined_as_envoy_joins_them() -> None:
    eng = engine_for(
        POLICY + f'default allow := false\nallow if {HTTP}.headers["x-role"] == "a,b"\n'
    )
    req = ep.ProcessingRequest()
    hs = req.request_headers.headers.headers
    for k, v in ((":method", "GET"), (":path", "/x"), (":authority", "h"),
                 ("x-role", "a"), ("x-role", "b")):  # fmt: skip
        hs.append(base_pb2.HeaderValue(key=k, raw_value=v.encode()))
    resp = ep.ProcessingResponse.FromString(process_headers(eng, req))
    assert resp.HasField("request_headers")


def test_http_door_presents_method_path_and_headers() -> None:
    eng = engine_for(
        POLICY
        + f"""default allow := false
allow if {{
  {HTTP}.method == "GET"
  input.parsed_path == ["people"]
  {HTTP}.headers.authorization == "Bearer t"
}}
"""
    )
    out = _http(eng, b"GET /people HTTP/1.1\r\nhost: h\r\nauthorization: Bearer t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    out = _http(eng, b"GET /people HTTP/1.1\r\nhost: h\r\nauthorization: Bearer u\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403")


def _http(eng: Engine, raw: bytes) -> bytes:
    class T:
        def __init__(self) -> None:
            self.out = b""

        def write(self, b: bytes) -> None:
            self.out += b

        def close(self) -> None:
            pass

    t = T()
    proto = AuthzProtocol(eng)
    proto.connection_made(t)
    proto.data_received(raw)
    return t.out


def test_forged_a1_headers_are_stripped_and_not_trusted() -> None:
    eng = engine_for(POLICY + "allow := true\n")
    resp = decide(eng, check_request("GET", "/x", {"x-a1-cell": "cell-9",
                                                    "x-a1-jwt-payload": "e30"}))  # fmt: skip
    assert allowed(resp)
    assert sorted(resp.ok_response.headers_to_remove) == ["x-a1-jwt-payload"]
    cell = {h.header.key: h.header.value for h in resp.ok_response.headers}["x-a1-cell"]
    assert cell in ("cell-1", "cell-2")


def test_huge_header_value_is_presented_within_the_message_bound() -> None:
    eng = engine_for(
        POLICY + f"default allow := false\nallow if count({HTTP}.headers.big) > 100000\n"
    )
    resp = decide(eng, check_request("GET", "/x", {"big": "v" * 200_000}))
    assert allowed(resp)


def test_a_cached_decision_never_answers_a_request_that_reads_differently() -> None:
    eng = engine_for(
        POLICY + f'default allow := false\nallow if {HTTP}.headers["x-user"] == "admin"\n'
    )
    assert allowed(decide(eng, check_request("GET", "/x", {"x-user": "admin"})))
    assert not allowed(decide(eng, check_request("GET", "/x", {"x-user": "guest"})))
    assert allowed(decide(eng, check_request("GET", "/x", {"x-user": "admin"})))
    assert not allowed(decide(eng, check_request("GET", "/x", {})))
    snap = eng.snapshot
    assert snap is not None and snap.cache is not None and len(snap.cache.memo) == 0
