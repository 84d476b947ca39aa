"""OPA-Envoy's primer policy, unchanged, through ``a1 up``'s stack with a real Envoy.

The primer (policies/library/opa_envoy_primer.rego, OPA's "Policy Primer via Examples",
rego.v1 form) reads ``input.attributes.request.http`` and ``input.parsed_body``, verifies
HS256 tokens itself with ``io.jwt.decode_verify(encoded, {"secret": "secret"})``
and checks ``nbf``/``exp`` against ``time.now_ns()``. The stack declares it:
``policy_input="opa-envoy"`` (input shape and decision path ``envoy/authz/allow``)
and ``verifies_tokens=True`` (no jwt_authn). The control plane sees from the compiled
module that the policy reads the body and has Envoy buffer it for ext_authz.

Tokens are minted here with PyJWT, as in the primer. A decision is the sidecar's
when the answer carries ``x-a1-deny-reason``; an allowed request reaches a cell.

``test_variant_*`` run a primer variant with a fixed token table instead of the
token builtins, to drive the plumbing (body buffering and truncation, forged
headers, requests without a token) with inputs the primer cannot express.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from a1.package_data import policy_library
from a1.stack import Stack
from conformance.harness.client import Client, Response

HERE = Path(__file__).resolve().parent / "opa_envoy"
PRIMER = policy_library() / "opa_envoy_primer.rego"


def b64(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def hs256(role: str, sub: str, *, secret: str = "secret", ttl: int = 600) -> str:
    now = int(time.time())
    claims = {"role": role, "sub": b64(sub), "nbf": now - 60, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def denied(resp: Response) -> bool:
    """The sidecar's deny (it alone sets x-a1-deny-reason: Envoy strips client x-a1-*)."""
    return resp.status == 403 and "x-a1-deny-reason" in resp.headers


def reached_a_cell(resp: Response) -> bool:
    return resp.status not in (401, 403, 500, 503) and "x-a1-deny-reason" not in resp.headers


def _start(start_stack: Callable[..., Stack], policy: Path) -> Client:
    s = start_stack(cells=1, policy=policy, policy_data=None, policy_input="opa-envoy",
                    verifies_tokens=True)  # fmt: skip
    return Client(s.http_url)


@pytest.fixture(scope="module")
def variant(start_stack: Callable[..., Stack]) -> Client:
    return _start(start_stack, HERE / "primer_variant.rego")


@pytest.fixture(scope="module")
def primer(start_stack: Callable[..., Stack]) -> Client:
    return _start(start_stack, PRIMER)


# -- the primer, unchanged --------------------------------------------------------------


def test_guest_may_read(primer: Client) -> None:
    assert reached_a_cell(primer.get("/people/1", hs256("guest", "alice")))


def test_guest_may_not_write(primer: Client) -> None:
    assert denied(primer.post("/people", hs256("guest", "alice"), {"firstname": "Charlie"}))


def test_admin_may_create_someone_else(primer: Client) -> None:
    # The primer's rule: an admin's POST is allowed when parsed_body.firstname (lower-cased)
    # is not the admin's own name, base64url.decode(token.payload.sub).
    resp = primer.post("/people", hs256("admin", "bob"), {"firstname": "Charlie"})
    assert reached_a_cell(resp)


def test_admin_may_not_create_themselves(primer: Client) -> None:
    assert denied(primer.post("/people", hs256("admin", "bob"), {"firstname": "Bob"}))


def test_expired_token_is_denied(primer: Client) -> None:
    assert denied(primer.get("/people/1", hs256("guest", "alice", ttl=-120)))


def test_tampered_token_is_denied(primer: Client) -> None:
    head, _, sig = hs256("guest", "alice").split(".")
    forged = jwt.utils.base64url_encode(
        f'{{"role":"admin","sub":"{b64("bob")}","nbf":0,"exp":{int(time.time()) + 600}}}'.encode()
    ).decode()
    assert denied(primer.post("/people", f"{head}.{forged}.{sig}", {"firstname": "Charlie"}))


def test_token_signed_with_another_secret_is_denied(primer: Client) -> None:
    assert denied(primer.get("/people/1", hs256("guest", "alice", secret="not-the-secret")))


def test_no_token_is_denied_by_the_policy_not_jwt_authn(primer: Client) -> None:
    assert denied(primer.get("/people/1"))


# -- the plumbing, with a variant that needs no token builtins -------------------------


def test_variant_guest_may_read_but_not_write(variant: Client) -> None:
    assert reached_a_cell(variant.get("/people/1", "guest-token"))
    assert denied(variant.post("/people", "guest-token", {"firstname": "Charlie"}))


def test_variant_reads_the_buffered_body(variant: Client) -> None:
    assert reached_a_cell(variant.post("/people", "admin-token", {"firstname": "Charlie"}))
    assert denied(variant.post("/people", "admin-token", {"firstname": "Bob"}))
    assert denied(variant.post("/people", "admin-token", {"lastname": "Opa"}))


def test_variant_unknown_token_and_no_token_reach_the_policy(variant: Client) -> None:
    # No jwt_authn: Envoy would have answered 401 "Jwt is missing" itself.
    assert denied(variant.get("/people/1", "nobody"))
    assert denied(variant.get("/people/1"))


def test_variant_forged_a1_headers_change_nothing(variant: Client) -> None:
    resp = variant.get("/people/1", "nobody", headers={"x-a1-cell": "cell-1",
                                                      "x-a1-deny-reason": "x"})  # fmt: skip
    assert denied(resp)


def test_variant_oversized_body_is_truncated_and_denied(variant: Client) -> None:
    body = {"firstname": "Charlie", "pad": "x" * 20_000}  # past Envoy's buffer (8 KiB)
    assert denied(variant.post("/people", "admin-token", body))
