"""The request path through real Envoy, sidecar (gRPC ext_authz) and cells."""

from __future__ import annotations

import json
import ssl

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.stacks import tenants_by_cell
from e2e.conftest import decode_payload_header

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> dict[str, list[str]]:
    return tenants_by_cell(stack, per_cell=3)


def test_healthz_is_answered_by_envoy_without_a_token(client: Client) -> None:
    resp = client.get("/healthz")
    assert resp.status == 200 and resp.body == b"ok\n"
    assert "x-a1-cell" not in resp.headers  # no cell was involved


def test_writer_creates_and_reads_back_on_the_tenants_cell(stack: Stack, client: Client) -> None:
    tenant = "acme"
    cell = stack.cell_table().lookup(tenant)
    token = stack.token(tenant, ["reader", "writer"], sub="alice")
    created = client.post(f"/t/{tenant}/items", token, {"name": "first"})
    assert created.status == 201, created
    assert created.headers["x-a1-cell"] == cell
    item = created.json()
    assert item["created_by"] == "alice"  # the decision's x-a1-subject reached the cell
    got = client.get(f"/t/{tenant}/items/{item['id']}", token)
    assert got.status == 200 and got.headers["x-a1-cell"] == cell and got.json() == item


def test_upstream_sees_only_trusted_a1_headers(stack: Stack, client: Client) -> None:
    token = stack.token("acme", ["reader"], sub="alice")
    resp = client.get("/t/acme/echo", token)
    assert resp.status == 200, resp
    seen = resp.json()["headers"]
    assert seen["x-a1-cell"] == stack.cell_table().lookup("acme")
    assert seen["x-a1-subject"] == "alice"
    assert len(seen["x-a1-policy-version"]) >= 12
    if "x-a1-jwt-payload" in seen:  # the sidecar may drop it; if it passes, it is Envoy's
        assert decode_payload_header(seen["x-a1-jwt-payload"])["sub"] == "alice"


def test_reader_may_not_write(stack: Stack, client: Client) -> None:
    reader = stack.token("acme", ["reader"])
    before = client.get("/t/acme/items?limit=1000", reader).json()["items"]
    resp = client.post("/t/acme/items", reader, {"x": 1})
    assert resp.status == 403, resp
    assert resp.headers["x-a1-deny-reason"] == "no role permits this method"
    assert resp.json() == {"error": "no role permits this method"}
    assert client.get("/t/acme/items?limit=1000", reader).json()["items"] == before


def test_cross_tenant_request_is_denied(stack: Stack, client: Client) -> None:
    token = stack.token("acme", ["reader", "writer"])
    for method in ("GET", "POST"):
        resp = client.request(method, "/t/globex/items", token, body={} if method == "POST"
                              else None)
        assert resp.status == 403, resp
        assert resp.headers["x-a1-deny-reason"] == "cross-tenant request"


def test_suspended_tenant_is_denied(stack: Stack, client: Client) -> None:
    resp = client.get("/t/suspended-co/items", stack.token("suspended-co", ["reader"]))
    assert resp.status == 403 and resp.headers["x-a1-deny-reason"] == "tenant suspended"


def test_no_token_is_401(client: Client) -> None:
    resp = client.get("/t/acme/items")
    assert resp.status == 401 and b"Jwt is missing" in resp.body


def test_tampered_token_is_401(stack: Stack, client: Client) -> None:
    head, payload, sig = stack.token("acme", ["reader"]).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["roles"] = ["admin"]
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    resp = client.get("/t/acme/items", f"{head}.{forged}.{sig}")
    assert resp.status == 401 and b"Jwt verification fails" in resp.body


def test_token_from_another_key_is_401(stack: Stack, client: Client) -> None:
    real = jwt.decode(stack.token("acme", ["admin"]), options={"verify_signature": False})
    kid = jwt.get_unverified_header(stack.token("acme", ["admin"]))["kid"]
    rogue = jwt.encode(real, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                       headers={"kid": kid})
    assert client.get("/t/acme/items", rogue).status == 401


def test_expired_token_is_401(stack: Stack, client: Client) -> None:
    resp = client.get("/t/acme/items", stack.token("acme", ["reader"], ttl=-300))
    assert resp.status == 401 and b"expired" in resp.body.lower()


def test_every_tenant_always_lands_on_its_cell(stack: Stack, client: Client,
                                               tenants: dict[str, list[str]]) -> None:
    assert set(tenants) == {"cell-1", "cell-2", "cell-3"}
    for cell, names in tenants.items():
        for tenant in names:
            token = stack.token(tenant, ["reader"])
            for _ in range(4):
                resp = client.get(f"/t/{tenant}/items", token)
                assert resp.status == 200, (tenant, resp)
                assert resp.headers["x-a1-cell"] == cell, tenant


def test_forged_cell_header_changes_nothing(stack: Stack, client: Client,
                                            tenants: dict[str, list[str]]) -> None:
    tenant = tenants["cell-1"][0]
    token = stack.token(tenant, ["reader"])
    for forged in ("cell-2", "cell-3", "cell-9", ""):
        resp = client.get(f"/t/{tenant}/echo", token, headers={"x-a1-cell": forged})
        assert resp.status == 200, resp
        assert resp.headers["x-a1-cell"] == "cell-1"
        assert resp.json()["headers"]["x-a1-cell"] == "cell-1"


def test_forged_claims_header_changes_nothing(stack: Stack, client: Client) -> None:
    """A reader of acme sends an x-a1-jwt-payload claiming admin of globex."""
    fake = jwt.utils.base64url_encode(json.dumps(
        {"sub": "mallory", "tenant": "globex", "roles": ["admin"], "iss": "a1-dev",
         "aud": "a1"}).encode()).decode()
    token = stack.token("acme", ["reader"], sub="alice")
    forged = {"x-a1-jwt-payload": fake, "x-a1-subject": "mallory"}
    assert client.post("/t/acme/items", token, {"x": 1}, headers=forged).status == 403
    assert client.get("/t/globex/items", token, headers=forged).status == 403
    resp = client.get("/t/acme/echo", token, headers=forged)
    assert resp.status == 200
    seen = resp.json()["headers"]
    assert seen["x-a1-subject"] == "alice"
    assert seen.get("x-a1-jwt-payload") != fake
    if "x-a1-jwt-payload" in seen:
        assert decode_payload_header(seen["x-a1-jwt-payload"])["roles"] == ["reader"]
    # ...and without a token the forged header alone is worth nothing.
    assert client.get("/t/globex/items", headers=forged).status == 401


def test_a_cell_refuses_tenants_that_are_not_its_own(stack: Stack,
                                                     tenants: dict[str, list[str]]) -> None:
    """The 421 guard: a request sent straight to the wrong cell is refused."""
    tenant = tenants["cell-2"][0]
    for cell in stack.cell_names:
        resp = Client(stack.cell_url(cell)).get(f"/t/{tenant}/items")
        assert resp.headers["x-a1-cell"] == cell
        assert resp.status == (200 if cell == "cell-2" else 421), (cell, resp)


def test_https_with_the_development_ca(stack: Stack) -> None:
    ca = stack.files.pki.ca_cert
    token = stack.token("acme", ["reader"])
    resp = Client(stack.https_url, cafile=ca).get("/t/acme/items", token)
    assert resp.status == 200 and resp.headers["x-a1-cell"] == stack.cell_table().lookup("acme")
    ip = Client(f"https://127.0.0.1:{stack.ports.https}", cafile=ca).get("/healthz")
    assert ip.status == 200  # the certificate also names 127.0.0.1


def test_https_is_refused_without_the_ca(stack: Stack) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(stack.https_url, cafile=None).get("/healthz")
