"""ext_proc.request: one reading of a request, whichever door it came through.

The oracle is the door-independent funnel itself: for any method, path (any bytes),
host, claims and client ``x-a1-*`` headers, the ext_authz, ext_proc and HTTP wire
forms must yield the same facts. A second property pins the canonical-path rule.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import unquote

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ext_proc.config import TenantSource
from ext_proc.request import RequestFacts, RequestReader
from ext_proc.slim import SlimCheckRequest

TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

segment = st.one_of(
    st.sampled_from(["t", "acme", "ACME", "globex", "", ".", "..", "%2e", "%2E%2e", "a%2fb",
                     "a%5C", "écme", "x\\y", "items", "-a", "a" * 64]),
    st.text(alphabet="abc-.%25/", max_size=6),
)  # fmt: skip
paths = st.one_of(
    st.lists(segment, max_size=5).map(lambda s: "/" + "/".join(s)),
    st.lists(segment, max_size=4).map(lambda s: "/t/" + "/".join(s)),
).map(lambda p: p.encode())
raw_paths = st.one_of(paths, st.binary(max_size=30), paths.map(lambda p: p + b"\xff"))
claims = st.one_of(
    st.none(),
    st.fixed_dictionaries({"sub": st.text(alphabet="abc", max_size=4),
                           "tenant": st.sampled_from(["acme", "ACME", "%61cme", "", "globex"]),
                           "roles": st.lists(st.sampled_from(["reader", "writer"]))}),
)  # fmt: skip
a1_headers = st.lists(st.sampled_from(["x-a1-cell", "x-a1-extra", "x-a1-debug"]), unique=True)


def _payload(c: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(c).encode()).rstrip(b"=")


def _check(method: bytes, path: bytes, c: dict[str, Any] | None, a1: list[str]) -> Any:
    req = SlimCheckRequest()
    h = req.attributes.request.http
    h.method, h.path, h.host = method, path, b"api.local"
    for k in a1:
        h.headers[k] = b"1"
    md = base_pb2.Metadata()
    if c is not None:
        s = struct_pb2.Struct()
        s.update({"jwt_payload": c})
        md.filter_metadata["envoy.filters.http.jwt_authn"].CopyFrom(s)
    req.attributes.metadata_context = md.SerializeToString()
    return SlimCheckRequest.FromString(req.SerializeToString())


def _process(method: bytes, path: bytes, c: dict[str, Any] | None, a1: list[str]) -> Any:
    req = ep.ProcessingRequest()
    pairs = [(":method", method), (":path", path), (":authority", b"api.local")]
    pairs += [(k, b"1") for k in a1 if k != "x-a1-jwt-payload"]
    if c is not None:
        pairs.append(("x-a1-jwt-payload", _payload(c)))
    for k, v in pairs:
        hv = req.request_headers.headers.headers.add()
        hv.key, hv.raw_value = k, v
    return req


def _http(method: bytes, path: bytes, c: dict[str, Any] | None, a1: list[str]) -> bytes:
    head = method + b" " + path + b" HTTP/1.1\r\nhost: api.local"
    for k in a1:
        head += b"\r\n" + k.encode() + b": 1"
    if c is not None:
        head += b"\r\nx-a1-jwt-payload: " + _payload(c)
    return head


def _comparable(f: RequestFacts) -> tuple[Any, ...]:
    # The claims carrier differs by wire form by design; what it decodes to must not.
    return (f.method, f.path, f.tenant, f.subject, f.status, f.reason)


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from([b"GET", b"POST", b"DELETE"]), path=raw_paths, c=claims,
       a1=a1_headers)
def test_every_wire_form_yields_the_same_facts(method: bytes, path: bytes,
                                               c: dict[str, Any] | None, a1: list[str]) -> None:
    if b" " in path or b"\r" in path or b"\n" in path or b"?" in path:
        return  # not representable in an HTTP/1.1 request line
    reader = RequestReader(TenantSource())
    via_check = reader.from_check(_check(method, path, c, a1))
    via_proc = reader.from_process(_process(method, path, c, a1))
    via_http = reader.from_http(_http(method, path, c, a1)).facts
    assert _comparable(via_check) == _comparable(via_proc) == _comparable(via_http)
    if via_check.status == 0:  # the names to strip are read the same way too
        assert sorted(via_check.a1_names) == sorted(a for a in a1)
        assert sorted(via_http.a1_names) == sorted(
            [*a1, *(["x-a1-jwt-payload"] if c is not None else [])])


@settings(max_examples=400, deadline=None)
@given(path=paths)
def test_accepted_paths_are_canonical_and_name_a_canonical_tenant(path: bytes) -> None:
    f = RequestReader().facts("GET", path.decode())
    if f.status != 0:
        assert f.status == 400 and f.reason
        return
    p = f.path
    decoded = unquote(p)  # what a cell that percent-decodes would see
    assert "//" not in p and "\\" not in decoded
    segments = decoded.split("/")
    assert "." not in segments and ".." not in segments
    assert "/" not in unquote(p.split("/")[2]) if p.startswith("/t/") else True
    if p.startswith("/t/"):
        assert f.tenant is not None and TENANT.fullmatch(f.tenant)
        assert f.tenant == p.split("/")[2]
    else:
        assert f.tenant is None


def test_header_and_host_tenant_sources_follow_the_grammar() -> None:
    r = RequestReader(TenantSource("header", header="x-tenant"))
    assert r.facts("GET", "/x", "", "acme").tenant == "acme"
    bad = r.facts("GET", "/x", "", "Acme")
    assert (bad.status, bad.tenant) == (400, None) and "does not match" in bad.reason
    r = RequestReader(TenantSource("host", pattern="{tenant}.example.com"))
    assert r.facts("GET", "/x", "ACME.example.com:443").tenant == "acme"  # hosts fold case
    assert r.facts("GET", "/x", "a_b.example.com").status == 400


# -- header and host tenant sources --------------------------------------------------------

HEADER = TenantSource("header", header="x-tenant")
HOST = TenantSource("host", pattern="{tenant}.example.com")
tenant_values = st.lists(st.sampled_from(["acme", "globex", "ACME", "", " acme ", "a,b"]),
                         max_size=3)  # fmt: skip


def _with_tenant_header(method: bytes, path: bytes, values: list[str], host: bytes
                        ) -> tuple[Any, Any, bytes]:
    """The three wire forms of one request carrying ``values`` as x-tenant copies."""
    check = SlimCheckRequest()
    h = check.attributes.request.http
    h.method, h.path, h.host = method, path, host
    if values:  # Envoy's ext_authz joins repeated headers with ","
        h.headers["x-tenant"] = ",".join(values).encode()
    check = SlimCheckRequest.FromString(check.SerializeToString())
    proc = ep.ProcessingRequest()
    pairs = [(":method", method), (":path", path), (":authority", host)]
    pairs += [("x-tenant", v.encode()) for v in values]
    for k, v in pairs:
        hv = proc.request_headers.headers.headers.add()
        hv.key, hv.raw_value = k, v
    head = method + b" " + path + b" HTTP/1.1\r\nhost: " + host
    for v in values:
        head += b"\r\nx-tenant: " + v.encode()
    return check, proc, head


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from([b"/items", b"/t/acme/items", b"/t/globex", b"/t/", b"/public/x"]),
       values=tenant_values)
def test_header_mode_doors_agree_and_repeated_headers_are_ambiguous(
        path: bytes, values: list[str]) -> None:
    reader = RequestReader(HEADER)
    check, proc, head = _with_tenant_header(b"GET", path, values, b"api.local")
    facts = [reader.from_check(check), reader.from_process(proc), reader.from_http(head).facts]
    assert len({_comparable(f) for f in facts}) == 1, facts
    f = facts[0]
    if len(values) > 1 or any("," in v for v in values):
        assert (f.status, f.tenant) == (400, None)
        assert f.reason == "ambiguous tenant header x-tenant: more than one value"
    elif f.status == 0:
        assert f.tenant == (values[0].strip() if values and values[0].strip() else None)
        assert not path.startswith(b"/t/") or path.split(b"/")[2].decode() == f.tenant


def test_a_duplicated_tenant_header_is_refused_even_when_both_copies_agree() -> None:
    reader = RequestReader(HEADER)
    check, proc, head = _with_tenant_header(b"GET", b"/items", ["acme", "acme"], b"api.local")
    for f in (reader.from_check(check), reader.from_process(proc), reader.from_http(head).facts):
        assert (f.status, f.tenant) == (400, None), f


def test_path_tenant_must_match_the_configured_source() -> None:
    r = RequestReader(HEADER)
    f = r.facts("GET", "/t/globex/items", "", "acme")
    assert (f.status, f.reason) == (400, "path tenant does not match the header tenant")
    assert r.facts("GET", "/t/acme/items", "", "acme").tenant == "acme"
    assert r.facts("GET", "/t/acme/items", "", None).status == 400  # the path alone is not enough
    r = RequestReader(HOST)
    f = r.facts("GET", "/t/globex/items", "acme.example.com")
    assert (f.status, f.reason) == (400, "path tenant does not match the host tenant")
    assert r.facts("GET", "/t/acme/items?q=/t/globex/", "acme.example.com").tenant == "acme"


def test_host_mode_refuses_non_ascii_hosts_on_every_door() -> None:
    reader = RequestReader(HOST)
    host = "\u212ailo.example.com".encode()  # KELVIN SIGN: str.lower() makes it "kilo"
    check, proc, head = _with_tenant_header(b"GET", b"/items", [], host)
    for f in (reader.from_check(check), reader.from_process(proc), reader.from_http(head).facts):
        assert (f.status, f.reason, f.tenant) == (400, "host is not ASCII", None), f
    assert reader.facts("GET", "/items", "KILO.example.com:8443").tenant == "kilo"


def test_one_path_tenant_rule() -> None:
    from ext_proc import request, tenant

    assert request.tenant_from_path is tenant.tenant_from_path  # the fast path uses it too
    assert tenant.tenant_from_path("/t/") == ""  # an empty tenant, refused; not "no tenant"
    assert tenant.tenant_from_path("/t") is None
    f = RequestReader().facts("GET", "/t/")
    assert (f.status, f.reason) == (400, "target tenant id is empty")


@settings(max_examples=300, deadline=None)
@given(path=paths)
def test_the_path_source_reads_the_tenant_as_tenant_from_path(path: bytes) -> None:
    from policies.core.tenant import tenant_from_path

    p = path.decode()
    f = RequestReader().facts("GET", p)
    if f.status == 0:
        assert f.tenant == tenant_from_path(p)
