"""The decision engine with the real compiled policy (policies/library/authz.rego).

Response mapping on all three front doors, cache correctness against uncached
evaluation, fail-closed on every injected fault, and tenant extraction.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext_proc.config import TenantSource
from ext_proc.engine import Engine
from ext_proc.grpc_server import check_bytes, process_headers
from ext_proc.http_server import render_http
from ext_proc.policy import load_policy
from ext_proc.source import FileConfigSource
from policies.compiler import compile_files, compile_sources
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.runtime import PolicyModule

LIBRARY = Path(__file__).resolve().parent.parent / "policies" / "library"
ENTRY = "a1/authz/decision"
CELLS = CellTable.balanced(["cell-1", "cell-2", "cell-3"])


def compile_authz(suspended: list[str] | None = None, tmp: Path | None = None) -> bytes:
    """The shipped policy; with ``suspended``, a different data document (a new version)."""
    data = LIBRARY / "data.json"
    if suspended is not None:
        assert tmp is not None
        data = tmp / "data.json"
        data.write_text(json.dumps({"a1": {"tenants": {"suspended": suspended}}}))
    return compile_files([LIBRARY / "authz.rego"], data, [ENTRY])


def compile_rego(body: str) -> bytes:
    return compile_sources({"t.rego": "package a1.authz\nimport rego.v1\n" + body}, None, [ENTRY])


def payload(claims: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def authz() -> Any:
    return load_policy(compile_authz(), ENTRY, "authz.wasm")


@pytest.fixture
def engine(authz: Any) -> Engine:
    eng = Engine()
    eng.apply(authz, CELLS)
    return eng


ALICE = {"sub": "alice", "tenant": "acme", "roles": ["reader"]}


# -- response mapping --------------------------------------------------------------------


def test_allow_carries_cell_version_and_policy_headers(engine: Engine, authz: Any) -> None:
    d = engine.decide("GET", "/t/acme/orders/1?x=1", "", None, ALICE)
    assert d.allow and d.status == 200
    assert dict(d.headers) == {
        "x-a1-cell": CELLS.lookup("acme"),
        "x-a1-policy-version": authz.version,
        "x-a1-subject": "alice",
    }
    assert d.cell == CELLS.lookup("acme")


@pytest.mark.parametrize(
    ("method", "path", "subject", "status", "reason"),
    [
        ("GET", "/t/other/x", ALICE, 403, "cross-tenant request"),
        ("POST", "/t/acme/x", ALICE, 403, "no role permits this method"),
        ("GET", "/t/suspended-co/x", {**ALICE, "tenant": "suspended-co"}, 403, "tenant suspended"),
        ("GET", "/t/acme/x", None, 403, None),  # the reason is the policy's business
    ],
)
def test_deny_carries_status_reason_and_json_body(
    engine: Engine, method: str, path: str, subject: Any, status: int, reason: str | None
) -> None:
    d = engine.decide(method, path, "", None, subject)
    assert not d.allow
    assert d.status == status
    reason = reason or d.reason
    assert json.loads(d.body) == {"error": reason}
    assert dict(d.headers)["x-a1-deny-reason"] == reason


def test_public_reads_need_no_subject(engine: Engine) -> None:
    assert engine.decide("GET", "/public/logo.png").allow
    assert not engine.decide("POST", "/public/logo.png").allow


def test_check_response_mapping(engine: Engine) -> None:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/t/acme/a", "api.local"
    for k, v in {
        "x-a1-cell": "forged",
        "x-a1-extra": "1",
        "x-a1-jwt-payload": "p",
        "a": "b",
    }.items():
        http.headers[k] = v
    req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
        {"jwt_payload": {**ALICE, "iss": "a1-dev"}}
    )
    resp = external_auth_pb2.CheckResponse.FromString(check_bytes(engine, req.SerializeToString()))
    assert resp.status.code == 0
    set_headers = {h.header.key: h.header.value for h in resp.ok_response.headers}
    assert set_headers["x-a1-cell"] == CELLS.lookup("acme")
    assert set_headers["x-a1-subject"] == "alice"
    assert all(h.append_action == h.OVERWRITE_IF_EXISTS_OR_ADD for h in resp.ok_response.headers)
    # Client-supplied x-a1-* headers are stripped, except those we overwrite anyway.
    assert list(resp.ok_response.headers_to_remove) == ["x-a1-extra", "x-a1-jwt-payload"]

    # Claims are read from metadata only: a forged payload header does not count.
    req.attributes.metadata_context.Clear()
    http.headers["x-a1-jwt-payload"] = payload(ALICE)
    resp = external_auth_pb2.CheckResponse.FromString(check_bytes(engine, req.SerializeToString()))
    assert resp.status.code == 7
    assert resp.denied_response.status.code == 403
    denied_headers = {h.header.key: h.header.value for h in resp.denied_response.headers}
    reason = denied_headers["x-a1-deny-reason"]
    assert json.loads(resp.denied_response.body) == {"error": reason}


def test_check_reads_raw_header_map_too(engine: Engine) -> None:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path = "GET", "/t/acme/a"
    for k, v in {"x-a1-extra": "1", "accept": "*/*"}.items():
        h = http.header_map.headers.add()
        h.key, h.raw_value = k, v.encode()
    req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
        {"jwt_payload": ALICE}
    )
    resp = external_auth_pb2.CheckResponse.FromString(check_bytes(engine, req.SerializeToString()))
    assert resp.status.code == 0
    assert list(resp.ok_response.headers_to_remove) == ["x-a1-extra"]


text = st.text(max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    method=text,
    path=text,
    host=text,
    headers=st.dictionaries(text, text, max_size=5),
    claims=st.dictionaries(st.sampled_from(["sub", "tenant", "roles", "x"]), text, max_size=4),
    noise=st.binary(max_size=40),
    port=st.integers(0, 65535),
)
def test_slim_request_agrees_with_the_full_message(
    method: str,
    path: str,
    host: str,
    headers: dict[str, str],
    claims: dict[str, str],
    noise: bytes,
    port: int,
) -> None:
    """The field-subset parse sees what the xds-protos class sees, whatever else is set."""
    from envoy.config.core.v3 import base_pb2

    from ext_proc.slim import SlimCheckRequest

    full = external_auth_pb2.CheckRequest()
    a = full.attributes
    a.request.http.method, a.request.http.path, a.request.http.host = method, path, host
    a.request.http.raw_body = noise
    a.request.http.id = "req-1"
    a.request.time.seconds = 1_700_000_000
    a.source.address.socket_address.address = "10.0.0.1"
    a.source.address.socket_address.port_value = port
    a.destination.principal = "spiffe://x"
    a.context_extensions["k"] = "v"
    a.route_metadata_context.filter_metadata["r"].update({"a": 1})
    a.tls_session.sni = "api.local"
    for k, v in headers.items():
        a.request.http.headers[k] = v
    if claims:
        a.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
            {"jwt_payload": claims}
        )
    slim = SlimCheckRequest.FromString(full.SerializeToString())
    h = slim.attributes.request.http
    # String fields arrive as bytes (the sidecar decodes them: invalid UTF-8 is a 400).
    got = (h.method, h.path, h.host, dict(h.headers))
    assert got == (method.encode(), path.encode(), host.encode(),
                   {k: v.encode() for k, v in headers.items()})  # fmt: skip
    md = base_pb2.Metadata.FromString(slim.attributes.metadata_context)
    assert md == a.metadata_context


def _proc_request(headers: dict[str, str]) -> ep.ProcessingRequest:
    req = ep.ProcessingRequest()
    for k, v in headers.items():
        h = req.request_headers.headers.headers.add()
        h.key = k
        h.raw_value = v.encode()
    return req


def test_ext_proc_mapping(engine: Engine) -> None:
    base = {":method": "GET", ":path": "/t/acme/a", ":authority": "api.local"}
    req = _proc_request({**base, "x-a1-jwt-payload": payload(ALICE), "x-a1-cell": "forged"})
    resp = ep.ProcessingResponse.FromString(process_headers(engine, req))
    common = resp.request_headers.response
    assert common.status == ep.CommonResponse.CONTINUE and common.clear_route_cache
    set_headers = {
        h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers
    }
    assert set_headers["x-a1-cell"] == CELLS.lookup("acme")
    assert list(common.header_mutation.remove_headers) == ["x-a1-jwt-payload"]

    resp = ep.ProcessingResponse.FromString(process_headers(engine, _proc_request(base)))
    imm = resp.immediate_response
    assert imm.status.code == 403
    reasons = [h.header.raw_value.decode() for h in imm.headers.set_headers
               if h.header.key == "x-a1-deny-reason"]  # fmt: skip
    assert len(reasons) == 1 and json.loads(imm.body) == {"error": reasons[0]}


def test_http_rendering(engine: Engine) -> None:
    allow = engine.decide("GET", "/t/acme/a", "", None, ALICE)
    raw = render_http(allow, ("x-a1-jwt-payload",), head=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "x-envoy-auth-headers-to-remove: x-a1-jwt-payload" in lines
    assert f"x-a1-cell: {CELLS.lookup('acme')}" in lines
    assert body == b"" and "content-length: 0" in lines

    deny = engine.decide("GET", "/t/other/a", "", None, ALICE)
    raw = render_http(deny, (), head=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden")
    assert json.loads(body) == {"error": "cross-tenant request"}
    assert render_http(deny, (), head=True) == head + b"\r\n\r\n"  # HEAD: no body


# -- cache correctness -------------------------------------------------------------------

TENANTS = ["acme", "globex", "suspended-co", ""]
requests = st.tuples(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PATCH"]),
    st.sampled_from(["/t/{t}/orders", "/t/{t}", "/public/x", "/other", "/t/{t}/a?q=1"]),
    st.sampled_from(TENANTS),
    st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "sub": st.sampled_from(["alice", "bob"]),
                "tenant": st.sampled_from(TENANTS),
                "roles": st.lists(st.sampled_from(["reader", "writer", "admin", "platform-admin",
                                                   "x"]), max_size=3),
            }
        ),
    ),
)


def expected(ev: Any, version: str, method: str, path: str, subject: Any) -> tuple[Any, ...]:
    """The oracle: uncached evaluation of the input document, mapped by hand."""
    path = path.split("?")[0]
    inp: dict[str, Any] = {"method": method, "path": path}
    tenant = path[3:].split("/")[0] if path.startswith("/t/") else ""
    if "//" in path:  # refused before the policy: not canonical
        return (False, 400, "path has an empty segment (//)", "")
    if path.startswith("/t/") and not tenant:
        return (False, 400, "target tenant id is empty", "")
    claim = (subject or {}).get("tenant")
    if isinstance(claim, str) and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", claim):
        return (False, 403, "tenant claim is not a canonical tenant id", "")
    if tenant:
        inp["tenant"] = tenant
    if subject is not None:
        inp["subject"] = subject
    cell = CELLS.lookup(tenant or (subject or {}).get("tenant", ""))
    r = ev.evaluate(inp)
    if r["allow"]:
        return (True, 200, (("x-a1-cell", cell), ("x-a1-policy-version", version),
                            ("x-a1-subject", r["headers"]["x-a1-subject"])))  # fmt: skip
    return (False, r["status"], r["reason"], cell)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(requests, min_size=1, max_size=12))
def test_cached_decisions_equal_uncached_evaluation(authz: Any, batch: list[Any]) -> None:
    eng = Engine(cache_size=8)  # small: exercises eviction as well as hits
    eng.apply(authz, CELLS)
    ev = authz.evaluator(ENTRY)
    for method, pattern, tenant, subject in batch + batch:  # every request twice: hits
        path = pattern.format(t=tenant)
        for key in (None, json.dumps(subject, sort_keys=True)):  # exact-only and memo paths
            d = eng.decide(method, path, "", None, subject, key)
            got = (
                (d.allow, d.status, d.headers) if d.allow else (d.allow, d.status, d.reason, d.cell)
            )
            assert got == expected(ev, authz.version, method, path, subject)


def test_cache_hits_are_counted_and_bounded(authz: Any) -> None:
    eng = Engine(cache_size=4)
    eng.apply(authz, CELLS)
    for i in range(10):
        eng.decide("GET", f"/t/acme/{i}", "", None, ALICE, "k")
    assert eng.stats.snapshot()["cache_hits"] == 0
    assert eng.snapshot is not None and eng.snapshot.cache is not None
    assert len(eng.snapshot.cache.exact) == 4 and len(eng.snapshot.cache.memo) == 4
    first = eng.decide("GET", "/t/acme/9", "", None, ALICE, "k")
    assert eng.decide("GET", "/t/acme/9", "", None, ALICE, "k") is first
    assert eng.stats.snapshot()["cache_hits"] == 2
    # Same encoded input under a different subject_key: an exact-layer hit.
    eng.decide("GET", "/t/acme/9", "", None, dict(ALICE), "other-key")
    assert eng.stats.snapshot()["cache_hits"] == 3


def test_new_bundle_version_invalidates_the_cache(authz: Any, tmp_path: Path) -> None:
    eng = Engine()
    eng.apply(authz, CELLS)
    assert eng.decide("GET", "/t/acme/a", "", None, ALICE, "k").allow
    newer = load_policy(compile_authz(["acme"], tmp_path), ENTRY, "v2")
    assert newer.version != authz.version
    eng.apply(newer, CELLS)
    d = eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
    assert not d.allow and d.reason == "tenant suspended" and d.version == newer.version


def test_new_cell_table_changes_the_cell(authz: Any) -> None:
    eng = Engine()
    eng.apply(authz, CELLS)
    before = eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
    pinned = CELLS.with_overrides({"acme": next(c for c in CELLS.cells if c != before.cell)})
    eng.apply(authz, pinned)
    after = eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
    assert after.cell == pinned.lookup("acme") != before.cell
    assert dict(after.headers)["x-a1-cell"] == after.cell


def test_impure_policy_is_never_cached() -> None:
    mod = load_policy(
        compile_rego(
            'decision := {"allow": time.now_ns() > 0, "status": 200, "reason": "ok", "headers": {}}'
        ),
        ENTRY,
        "impure",
    )
    assert not mod.meta.pure
    eng = Engine()
    eng.apply(mod, CELLS)
    assert eng.snapshot is not None and eng.snapshot.cache is None
    for _ in range(3):
        assert eng.decide("GET", "/t/acme/a", "", None, ALICE, "k").allow
    assert eng.stats.snapshot()["cache_hits"] == 0


# -- fail closed -------------------------------------------------------------------------


def _errors(eng: Engine) -> int:
    return eng.stats.snapshot()["eval_errors"]  # type: ignore[return-value]


def test_policy_trap_denies_and_counts() -> None:
    eng = Engine()
    eng.apply(
        load_policy(compile_rego('decision := {"allow": input.method + 1}'), ENTRY, "t"), CELLS
    )
    d = eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
    assert (d.allow, d.status, d.reason) == (False, 500, "policy evaluation failed")
    assert _errors(eng) == 1
    eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")  # errors are not cached
    assert _errors(eng) == 2
    assert eng.stats.snapshot()["decisions"] == {("error", ""): 2}


def test_sandbox_limit_denies() -> None:
    mod = load_policy(
        compile_rego('decision := {"allow": count(numbers.range(1, 100000000)) > 0}'), ENTRY, "big"
    )
    eng = Engine()
    eng.apply(mod, CELLS)
    d = eng.decide("GET", "/t/acme/a", "", None, ALICE)
    assert not d.allow and d.status == 500 and _errors(eng) == 1


@pytest.mark.parametrize(
    "body",
    [
        'decision := {"allow": "yes"}',  # not a boolean: deny (403, not an error)
        "decision := 7",
        'decision := {"allow": true, "headers": {"x-a1-subject": 1}}',
        'decision := {"allow": true, "headers": ["x"]}',
        'decision := "allow" if false',  # undefined
    ],
)
def test_malformed_or_undefined_decisions_deny(body: str) -> None:
    eng = Engine()
    eng.apply(load_policy(compile_rego(body), ENTRY, "m"), CELLS)
    d = eng.decide("GET", "/t/acme/a", "", None, ALICE)
    assert not d.allow and d.status in (403, 500)


def test_policy_status_and_reason_pass_through() -> None:
    eng = Engine()
    eng.apply(
        load_policy(
            compile_rego('decision := {"allow": false, "status": 429, "reason": "slow down\\n"}'),
            ENTRY,
            "s",
        ),
        CELLS,
    )
    d = eng.decide("GET", "/t/acme/a")
    assert d.status == 429
    assert d.reason == "slow down?"  # header-safe: a policy cannot inject a header line


def test_no_policy_loaded_denies_503() -> None:
    d = Engine().decide("GET", "/t/acme/a", "", None, ALICE)
    assert (d.allow, d.status, d.result) == (False, 503, "error")


def test_exception_inside_the_engine_denies(engine: Engine) -> None:
    def broken(path: str, host: str, header: str | None) -> str | None:
        raise RuntimeError("injected")

    engine.set_tenant_fn(broken)
    d = engine.decide("GET", "/t/acme/a", "", None, ALICE)
    assert (d.allow, d.status, d.reason) == (False, 500, "internal error")
    assert _errors(engine) == 1


def test_broken_cell_table_denies(authz: Any) -> None:
    eng = Engine()
    eng.apply(authz, CELLS)
    assert eng.snapshot is not None
    eng.snapshot.cells = None  # type: ignore[assignment]  # injected fault
    d = eng.decide("GET", "/t/acme/a", "", None, ALICE)
    assert not d.allow and d.status == 500


def _write_sources(tmp: Path) -> tuple[Path, Path]:
    policy, cells = tmp / "authz.wasm", tmp / "cells.yaml"
    policy.write_bytes(compile_authz())
    CELLS.save(cells)
    return policy, cells


def test_missing_module_at_startup_is_a_clear_error(tmp_path: Path) -> None:
    CELLS.save(tmp_path / "cells.yaml")
    src = FileConfigSource(tmp_path / "nope.wasm", tmp_path / "cells.yaml", ENTRY)
    with pytest.raises(ConfigError, match=r"nope\.wasm: policy\.module: file not found"):
        src.load_initial()


def test_corrupt_module_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad\.wasm: policy\.module: invalid policy module: "):
        load_policy(b"\0asm garbage", ENTRY, str(tmp_path / "bad.wasm"))
    with pytest.raises(ConfigError, match="no entrypoint 'a1/authz/allow'"):
        load_policy(compile_authz(), "a1/authz/allow", "authz.wasm")


def test_watcher_refuses_bad_files_and_keeps_serving(tmp_path: Path) -> None:
    policy, cells = _write_sources(tmp_path)
    failures: list[str] = []
    src = FileConfigSource(policy, cells, ENTRY, on_failure=failures.append)
    eng = Engine()
    src.load_initial()
    mod0, _ = src.current
    pushes: list[Any] = []

    def sink(m: Any, c: CellTable) -> None:
        pushes.append((m, c))
        eng.apply(m, c)

    src._sink = sink  # drive poll() by hand instead of the thread
    eng.apply(*src.load_initial())

    policy.write_bytes(b"corrupt")
    assert not src.poll()
    assert failures and "authz.wasm" in failures[-1]
    cells.write_text("buckets: 4\ncells: [a]\nassignment: [[0, 2, a]]\n")
    assert not src.poll()
    assert "cells.yaml: assignment: covers buckets 0..2" in failures[-1]
    assert eng.decide("GET", "/t/acme/a", "", None, ALICE).allow  # still the good pair

    (tmp_path / "v2").mkdir()
    policy.write_bytes(compile_authz(["acme"], tmp_path / "v2"))
    assert src.poll()
    assert pushes[-1][0].version != mod0.version and pushes[-1][1] == CELLS
    assert not eng.decide("GET", "/t/acme/a", "", None, ALICE).allow
    bigger = CELLS.add_cell("cell-4")
    bigger.save(cells)
    assert src.poll() and pushes[-1][1] == bigger


# -- tenant extraction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "path", "host", "header", "tenant"),
    [
        (TenantSource("path"), "/t/acme/orders", "", None, "acme"),
        (TenantSource("path"), "/t/acme", "", None, "acme"),
        (TenantSource("path"), "/t/acme?x=1", "", None, "acme"),
        (TenantSource("path"), "/t//x", "", None, None),
        (TenantSource("path"), "/tx/acme", "", None, None),
        (TenantSource("path"), "/public/x", "acme.example.com", "acme", None),
        (TenantSource("header", header="x-tenant-id"), "/t/acme/x", "", "acme", "acme"),
        (TenantSource("header", header="x-tenant-id"), "/items", "", "acme", "acme"),
        (TenantSource("header", header="x-tenant-id"), "/items", "", None, None),
        (
            TenantSource("host", pattern="{tenant}.example.com"),
            "/t/acme",
            "acme.example.com",
            None,
            "acme",
        ),
        (
            TenantSource("host", pattern="{tenant}.example.com"),
            "/",
            "ACME.example.com:8443",
            None,
            "acme",
        ),
        (TenantSource("host", pattern="{tenant}.example.com"), "/", "a.b.example.com", None, None),
        (TenantSource("host", pattern="{tenant}.example.com"), "/", "example.com", None, None),
        (TenantSource("host", pattern="api-{tenant}.local"), "/", "api-acme.local", None, "acme"),
    ],
)
def test_tenant_extraction(
    authz: Any, source: TenantSource, path: str, host: str, header: str | None, tenant: str | None
) -> None:
    eng = Engine(source)
    eng.apply(authz, CELLS)
    subject = {"sub": "alice", "tenant": tenant or "nobody", "roles": ["reader"]}
    d = eng.decide("GET", path, host, header, subject)
    if tenant is None:
        # No target tenant: never a same-tenant allow (only /public/ reads pass).
        assert d.allow == path.startswith("/public/")
    else:
        assert d.allow and d.cell == CELLS.lookup(tenant)


HEADER = TenantSource("header", header="x-tenant-id")
HOST = TenantSource("host", pattern="{tenant}.example.com")


@pytest.mark.parametrize(
    ("source", "path", "host", "header", "kind"),
    [
        # The cells serve the path's tenant: deciding on another one is a cross-tenant read.
        (HOST, "/t/globex/items", "acme.example.com", None, "host"),
        (HOST, "/t/globex", "acme.example.com", None, "host"),
        (HOST, "/t/", "acme.example.com", None, "host"),
        (HOST, "/t/acme/items", "example.com", None, "host"),  # no host tenant at all
        (HEADER, "/t/globex/items", "", "acme", "header"),
        (HEADER, "/t/globex/items?x=1", "", "acme", "header"),
        (HEADER, "/t/acme/items", "", None, "header"),
    ],
)
def test_path_tenant_must_match_the_header_or_host_tenant(
    authz: Any, source: TenantSource, path: str, host: str, header: str | None, kind: str
) -> None:
    eng = Engine(source)
    eng.apply(authz, CELLS)
    d = eng.decide("GET", path, host, header, ALICE)
    assert (d.allow, d.status) == (False, 400), d
    assert d.reason == f"path tenant does not match the {kind} tenant"
    assert d.cell == ""  # never routed


def test_host_mode_folds_ascii_case_only(authz: Any) -> None:
    eng = Engine(HOST)
    eng.apply(authz, CELLS)
    kilo = {"sub": "k", "tenant": "kilo", "roles": ["reader"]}
    assert eng.decide("GET", "/items", "KILO.Example.COM", None, kilo).allow
    # U+212A KELVIN SIGN lower-cases to "k" in Python: never a tenant, always a 400.
    for host in ("\u212ailo.example.com", "kilo.\u212aexample.com", "kilo.example.com\u0130"):
        d = eng.decide("GET", "/items", host, None, kilo)
        assert (d.allow, d.status, d.reason) == (False, 400, "host is not ASCII"), host
    # A trailing newline is not part of a matching host: no tenant, so no same-tenant allow.
    assert not eng.decide("GET", "/items", "kilo.example.com\n", None, kilo).allow


def test_ext_proc_duplicate_payload_headers_are_not_trusted(engine: Engine) -> None:
    req = _proc_request({":method": "GET", ":path": "/t/acme/a"})
    for _ in range(2):
        h = req.request_headers.headers.headers.add()
        h.key, h.raw_value = "x-a1-jwt-payload", payload(ALICE).encode()
    resp = ep.ProcessingResponse.FromString(process_headers(engine, req))
    assert resp.immediate_response.status.code == 403


def test_header_mode_reads_only_the_configured_header(authz: Any) -> None:
    eng = Engine(TenantSource("header", header="x-tenant-id"))
    eng.apply(authz, CELLS)
    req = _proc_request({":method": "GET", ":path": "/items", "x-tenant-id": "globex",
                         "x-a1-jwt-payload": payload(ALICE)})  # fmt: skip
    resp = ep.ProcessingResponse.FromString(process_headers(eng, req))
    assert resp.immediate_response.status.code == 403  # globex != acme


def test_payload_header_decoding_is_memoised_and_tolerant(engine: Engine) -> None:
    from ext_proc.claims import subject_from_header

    s1 = subject_from_header(payload({"sub": "a", "tenant": "t", "roles": ["r", 3], "x": 1}))
    assert s1 == {"sub": "a", "tenant": "t", "roles": ["r"]}
    assert (
        subject_from_header(payload({"sub": "a", "tenant": "t", "roles": ["r", 3], "x": 1})) is s1
    )
    assert subject_from_header("!!not base64!!") is None
    assert subject_from_header(payload([1, 2])) is None  # type: ignore[arg-type]
    assert subject_from_header(payload({"sub": 5, "roles": "admin"})) == {}


def test_module_load_checks_the_runtime() -> None:
    # The real runtime validates; the seam surfaces its message as a ConfigError.
    assert PolicyModule.load(compile_authz()).meta.pure


def test_a_result_past_the_decode_budget_denies_and_is_counted() -> None:
    """The runtime's node budget (ResultTooLarge, a PolicyError): deny 500, counted, never
    cached, and the event loop is not held for seconds."""
    import time

    levels = "\n".join(f"x{i} := [x{i - 1}, x{i - 1}]" for i in range(1, 21))
    body = f'x0 := [1, 1]\n{levels}\ndecision := {{"allow": true, "headers": {{}}, "x": x20}}'
    eng = Engine()
    eng.apply(load_policy(compile_rego(body), ENTRY, "m"), CELLS)
    for n in (1, 2):
        t0 = time.monotonic()
        d = eng.decide("GET", "/t/acme/a", "", None, ALICE, "k")
        assert time.monotonic() - t0 < 1.0
        assert (d.allow, d.status, d.result) == (False, 500, "error")
        assert _errors(eng) == n  # not cached: every request is evaluated and counted
