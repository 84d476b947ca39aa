"""One canonical request at the edge: path confusion attacks through real Envoy.

Envoy normalises the path (dot segments, ``//``, ``\\``) and refuses encoded
slashes before jwt_authn, the sidecar, routing or a cell sees it. Paths are sent
byte for byte (``http.client`` never normalises them), as an attacker would.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a1 import pki
from a1.stack import Stack
from conformance.harness.client import Client, Response

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def acme_reader(stack: Stack) -> str:
    return stack.token("acme", ["reader"], sub="alice")


@pytest.fixture(scope="module")
def globex_item(stack: Stack, client: Client) -> dict[str, Any]:
    created = client.post("/t/globex/items", stack.token("globex", ["writer"]),
                          {"secret": "globex only"})
    assert created.status == 201, created
    return created.json()


def refused_at_the_edge(resp: Response) -> bool:
    """Envoy's 400 or the policy's 403: no cell answered, nothing of globex leaked."""
    return (resp.status in (400, 403) and "x-a1-cell" not in resp.headers
            and b"globex only" not in resp.body)


ATTACKS = [
    "/public/../t/globex/items",
    "/public/./../t/globex/items",
    "/public/%2e%2e/t/globex/items",
    "/public/.%2E/t/globex/items",
    "/t/acme/../globex/items",
    "/t/acme/./../globex/items",
    "/t/acme/items/../../globex/items",
    "/t/acme/%2e%2e/globex/items",
    "/t/acme/%2E%2E/globex/items",
    "//t//globex/items",
    "//t/globex//items",
    "/t/acme%2F..%2Fglobex/items",
    "/t/acme%2f..%2fglobex/items",
    "/t/acme/..%2Fglobex/items",
    "/public/..%2Ft/globex/items",
    "/t/acme%2Fitems",
    "/t/acme\\..\\globex/items",
    "/public\\..\\t\\globex\\items",
    "/t/acme/%5C..%5Cglobex/items",
    "/t/acme/%5c..%5cglobex/items",
    "/t/acme/%2e%2e%2fglobex/items",
    "/t/acme/.%2e/globex/items",
    "/t/globex%00/items",
    "/t/acme/..;/globex/items",
    "/t/acme%2F%2E%2E%2Fglobex/items",
]


@pytest.mark.parametrize("path", ATTACKS)
def test_path_confusion_is_refused_before_any_cell(client: Client, acme_reader: str,
                                                   globex_item: dict[str, Any],
                                                   path: str) -> None:
    resp = client.get(path, acme_reader)
    assert refused_at_the_edge(resp), (path, resp)


def test_dot_segments_are_resolved_before_the_policy_sees_the_path(
        client: Client, acme_reader: str) -> None:
    """`/public/../t/globex` was allowed as a /public/ read: it is a cross-tenant request."""
    resp = client.get("/public/../t/globex/items", acme_reader)
    assert resp.status == 403, resp
    assert resp.headers["x-a1-deny-reason"] == "cross-tenant request"


def test_dot_segments_cannot_reach_acmes_cell_as_globex(stack: Stack, client: Client,
                                                        acme_reader: str) -> None:
    """`/t/acme/../globex/items` used to be routed, as acme, to acme's cell."""
    resp = client.get("/t/acme/../globex/echo", acme_reader)
    assert resp.status == 403 and resp.headers["x-a1-deny-reason"] == "cross-tenant request"
    assert "x-a1-cell" not in resp.headers


def test_the_https_listener_normalises_too(stack: Stack, acme_reader: str) -> None:
    https = Client(stack.https_url, cafile=stack.files.pki.ca_cert)
    for path in ("/public/../t/globex/items", "/t/acme/../globex/items",
                 "/t/acme%2F..%2Fglobex/items"):
        assert refused_at_the_edge(https.get(path, acme_reader)), path
    assert https.get("/t/acme/./items", acme_reader).status == 200


def test_encoded_slashes_are_a_400_from_envoy(client: Client, acme_reader: str) -> None:
    for path in ("/t/acme%2F..%2Fglobex/items", "/t/acme/%5Citems"):
        resp = client.get(path, acme_reader)
        assert resp.status == 400 and "x-a1-cell" not in resp.headers, (path, resp)
    assert client.get("/t/acme%2Fx/items").status == 400  # before jwt_authn: no token needed


@pytest.mark.parametrize("path", ["/t/acme/./items", "/./t/acme/items", "/t/acme//items",
                                  "//t/acme/items", "/t/x/../acme/items", "/t\\acme\\items"])
def test_equivalent_spellings_are_served_as_the_canonical_path(stack: Stack, client: Client,
                                                               acme_reader: str,
                                                               path: str) -> None:
    resp = client.get(path, acme_reader)
    assert resp.status == 200, (path, resp)
    assert resp.headers["x-a1-cell"] == stack.cell_table().lookup("acme")
    assert resp.json()["tenant"] == "acme"


SEGMENTS = ["t", "acme", "globex", "public", "items", "echo", "..", ".", "", "%2e%2e", "%2E",
            ".%2e", "%2F", "%2f", "%5C", "\\", "..\\", "%61%63me", "ACME", "%252e%252e", ";"]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=7), st.booleans())
def test_an_acme_reader_never_gets_anything_but_acme(stack: Stack, client: Client,
                                                     acme_reader: str,
                                                     globex_item: dict[str, Any],
                                                     segments: list[str], join: bool) -> None:
    """Whatever the spelling, a 2xx is acme's own data from acme's cell."""
    path = ("//" if join else "/") + "/".join(segments)
    resp = client.get(path, acme_reader)
    assert b"globex only" not in resp.body, (path, resp)
    if "x-a1-cell" in resp.headers:
        assert resp.headers["x-a1-cell"] == stack.cell_table().lookup("acme"), (path, resp)
    if 200 <= resp.status < 300:
        assert resp.json()["tenant"] == "acme", (path, resp)


# -- a tenant claim that is not a canonical tenant id ---------------------------------


@pytest.fixture(scope="module")
def one_cell(start_stack: Any) -> Stack:
    """One cell: every tenant, `%61%63me` included, hashes to acme's cell."""
    return start_stack(cells=1)


def raw_token(stack: Stack, tenant: str, roles: list[str]) -> str:
    """A token `a1 token` would refuse to mint, signed with the stack's real key."""
    key = pki._read_key(stack.files.pki.jwt_key)
    now = int(time.time())
    claims = {"iss": pki.ISSUER, "aud": pki.AUDIENCE, "sub": "mallory", "tenant": tenant,
              "roles": roles, "iat": now, "nbf": now - 5, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": pki.public_jwk(key)["kid"]})


def test_percent_encoded_tenant_claim_cannot_read_acme(one_cell: Stack) -> None:
    """A caller whose tenant claim is `%61%63me` read acme's items through the cell."""
    client = Client(one_cell.http_url)
    created = client.post("/t/acme/items", one_cell.token("acme", ["writer"]),
                          {"secret": "acme only"})
    assert created.status == 201, created
    mallory = raw_token(one_cell, "%61%63me", ["reader", "writer"])
    for path in ("/t/%61%63me/items", "/t/%61%63me/items/" + created.json()["id"],
                 "/t/acme/items", "/t/%61cme/items"):
        resp = client.get(path, mallory)
        assert resp.status in (400, 403), (path, resp)
        assert b"acme only" not in resp.body and "x-a1-cell" not in resp.headers, (path, resp)
    assert client.post("/t/%61%63me/items", mallory, {"x": 1}).status in (400, 403)


def test_the_cell_itself_refuses_a_percent_encoded_tenant(one_cell: Stack) -> None:
    """Defence in depth: the cell `a1 up` runs checks the raw segment against the grammar."""
    cell = Client(one_cell.cell_url(one_cell.cell_names[0]))
    resp = cell.get("/t/%61%63me/items")
    assert resp.status == 400 and resp.headers["x-a1-deny-reason"].startswith("path: tenant id")
    assert resp.json()["error"] == resp.headers["x-a1-deny-reason"]
    assert cell.get("/t/acme/items").status == 200


# -- other edge limits ----------------------------------------------------------------


def test_header_names_with_underscores_are_refused(client: Client, acme_reader: str) -> None:
    """`x_a1_cell` is `x-a1-cell` to some upstreams: Envoy refuses it (400) instead."""
    resp = client.get("/t/acme/echo", acme_reader, headers={"x_a1_cell": "cell-2"})
    assert resp.status == 400 and "x-a1-cell" not in resp.headers, resp


def test_client_envoy_control_headers_are_not_honoured(stack: Stack, client: Client,
                                                       acme_reader: str) -> None:
    """A client cannot ask Envoy to retry (amplify) its requests against a cell."""
    retry = {"x-envoy-retry-on": "retriable-status-codes",
             "x-envoy-retriable-status-codes": "404", "x-envoy-max-retries": "5"}
    assert client.get("/t/acme/nothing", acme_reader, headers=retry).status == 404
    stats = Client(stack.admin_url).get("/stats?filter=cell_.*upstream_rq_retry$").body.decode()
    retries = [line for line in stats.splitlines() if line.strip()]
    assert retries and all(line.endswith(": 0") for line in retries), retries


def test_bodies_larger_than_the_connection_buffer_still_stream(stack: Stack,
                                                               client: Client) -> None:
    """32 KiB buffers per connection (edge best practice) bound memory, not body size."""
    writer = stack.token("acme", ["writer"])
    big = {"blob": "x" * (256 * 1024)}
    created = client.post("/t/acme/items", writer, big)
    assert created.status == 201, created
    assert created.json()["item"] == big
