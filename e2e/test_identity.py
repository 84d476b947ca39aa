"""Identity through real Envoy: where a token may travel, how long it lives, who is admin."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import jwt
import pytest

from a1 import pki
from a1.stack import Stack
from conformance.harness.client import Client
from conformance.harness.waiting import poll

pytestmark = pytest.mark.e2e


def signed(stack: Stack, **claims: Any) -> str:
    """A token with exactly these claims (over the defaults), signed with the stack's key."""
    key = pki._read_key(stack.files.pki.jwt_key)
    now = int(time.time())
    body: dict[str, Any] = {"iss": pki.ISSUER, "aud": pki.AUDIENCE, "sub": "alice",
                            "tenant": "acme", "roles": ["reader"], "iat": now, "nbf": now - 5,
                            "exp": now + 600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": pki.public_jwk(key)["kid"]})


# -- where a token may travel ---------------------------------------------------------


def test_token_in_the_query_string_is_not_accepted(stack: Stack, client: Client) -> None:
    token = stack.token("acme", ["reader"])
    assert client.get("/t/acme/items", token).status == 200  # the same token, in the header
    resp = client.get(f"/t/acme/items?access_token={token}")
    assert resp.status == 401, resp
    assert "x-a1-cell" not in resp.headers


def test_query_strings_stay_out_of_the_access_log(stack: Stack, client: Client) -> None:
    """A token sent in the URL by mistake is refused, and not written to disk either."""
    token = stack.token("acme", ["reader"])
    marker = "/t/acme/items?probe=query-marker"
    assert client.get(f"/t/acme/items?access_token={token}").status == 401
    assert client.get(marker, token).status == 200
    log = stack.files.logs / "envoy-access.log"

    def logged() -> str | None:  # Envoy flushes its access log asynchronously
        text = log.read_text() if log.exists() else ""
        return text if "query-marker" in text or text.count("/t/acme/items") >= 2 else None

    text = poll(logged, what="both requests in the access log")
    assert token not in text and "access_token" not in text and "query-marker" not in text


def test_only_the_bearer_scheme_is_read(stack: Stack, client: Client) -> None:
    token = stack.token("acme", ["reader"])
    for value in (token, f"Basic {token}", f"Token {token}"):
        resp = client.get("/t/acme/items", headers={"authorization": value})
        assert resp.status == 401, (value[:12], resp)


# -- how long a token lives -----------------------------------------------------------


def test_token_without_exp_is_401(stack: Stack, client: Client) -> None:
    assert client.get("/t/acme/items", signed(stack)).status == 200  # the control
    resp = client.get("/t/acme/items", signed(stack, exp=None))
    assert resp.status == 401 and b"Jwt verification fails" in resp.body, resp


def test_token_living_longer_than_the_maximum_is_401(stack: Stack, client: Client) -> None:
    now = int(time.time())
    # 600 s past the maximum: well beyond jwt_authn's 30 s clock skew.
    too_long = signed(stack, exp=now + pki.MAX_TOKEN_LIFETIME_S + 600)
    resp = client.get("/t/acme/items", too_long)
    assert resp.status == 401, resp


def test_token_of_the_maximum_lifetime_is_accepted(stack: Stack, client: Client) -> None:
    token = stack.token("acme", ["reader"], ttl=pki.MAX_TOKEN_LIFETIME_S)
    assert client.get("/t/acme/items", token).status == 200


def a1_token(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "a1.cli", "token", *args,
                           "--state-dir", str(stack.files.state_dir)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a1_token_refuses_what_envoy_would_refuse(stack: Stack) -> None:
    over = a1_token(stack, "--tenant", "acme", "--roles", "reader",
                    "--ttl", str(pki.MAX_TOKEN_LIFETIME_S + 1))
    assert over.returncode == 2 and over.stdout == ""
    assert over.stderr.startswith("a1: --ttl: ") and over.stderr.count("\n") == 1
    bad = a1_token(stack, "--tenant", "%61%63me", "--roles", "reader")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("a1: --tenant: ") and bad.stderr.count("\n") == 1


# -- who is admin ---------------------------------------------------------------------


def test_tenant_admin_acts_only_within_their_tenant(stack: Stack, client: Client) -> None:
    admin = stack.token("acme", ["admin"], sub="boss")
    assert client.post("/t/acme/items", admin, {"by": "admin"}).status == 201
    for method in ("GET", "POST"):
        resp = client.request(method, "/t/globex/items", admin,
                              body={} if method == "POST" else None)
        assert resp.status == 403, (method, resp)
        assert resp.headers["x-a1-deny-reason"] == "cross-tenant request"


def test_platform_admin_from_a1_token_crosses_tenants(stack: Stack, client: Client) -> None:
    minted = a1_token(stack, "--tenant", "platform", "--roles", "platform-admin", "--sub", "ops")
    assert minted.returncode == 0, minted.stderr
    ops = minted.stdout.strip()
    table = stack.cell_table()
    for tenant in ("globex", "acme"):
        created = client.post(f"/t/{tenant}/items", ops, {"by": "ops"})
        assert created.status == 201, (tenant, created)
        assert created.headers["x-a1-cell"] == table.lookup(tenant)
        assert created.json()["created_by"] == "ops"


def test_deny_reason_does_not_reveal_another_tenants_suspension(stack: Stack,
                                                                client: Client) -> None:
    for roles in (["reader"], ["admin"]):
        resp = client.get("/t/suspended-co/items", stack.token("acme", roles))
        assert resp.status == 403, resp
        assert resp.headers["x-a1-deny-reason"] == "cross-tenant request", roles
    own = client.get("/t/suspended-co/items", stack.token("suspended-co", ["reader"]))
    assert own.status == 403 and own.headers["x-a1-deny-reason"] == "tenant suspended"
