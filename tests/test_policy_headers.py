"""policies.headers: which headers a decision may set, shared by the compiler and the sidecar.

The engine drops (and counts) what the rule refuses; the rest of the decision stands.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext_proc.engine import Engine
from ext_proc.policy import load_policy
from policies.headers import (
    FRAMING_HEADERS,
    SIDECAR_HEADERS,
    drop_label,
    forbidden_header_reason,
    header_value_reason,
)
from tests.test_engine import CELLS, ENTRY, compile_rego

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


@pytest.mark.parametrize("name", [
    "content-length", "Content-Length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
    "proxy-authorization", "host", ":authority", ":path", ":status", "x-envoy-original-path",
    "X-Envoy-Upstream-Rq-Timeout-Ms", "x-a1-cell", "x-a1-policy-version", "x-a1-deny-reason",
    "x-a1-jwt-payload", "", "bad header", "a\r\nb", "a\nb", "nul\0", "é", "x" * 300,
])  # fmt: skip
def test_refused_names(name: str) -> None:
    assert forbidden_header_reason(name) is not None


@pytest.mark.parametrize("name", ["x-a1-subject", "x-tenant", "x-request-tag", "accept"])
def test_allowed_names(name: str) -> None:
    assert forbidden_header_reason(name) is None


@given(st.text(max_size=40))
def test_every_allowed_name_is_a_token_outside_the_forbidden_sets(name: str) -> None:
    if forbidden_header_reason(name) is None:
        n = name.lower()
        assert TOKEN.fullmatch(n) and n not in FRAMING_HEADERS | SIDECAR_HEADERS
        assert not n.startswith((":", "x-envoy-"))


@given(st.text(max_size=60))
def test_values_with_control_characters_are_refused(value: str) -> None:
    bad = any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in value)
    assert (header_value_reason(value) is not None) == bad


@given(st.text(max_size=40))
def test_drop_labels_are_bounded(name: str) -> None:
    labels = FRAMING_HEADERS | SIDECAR_HEADERS | {":pseudo", "x-envoy-*", "invalid-name"}
    assert drop_label(name) in labels


def test_engine_drops_and_counts_forbidden_headers_and_keeps_the_rest() -> None:
    # Names and values come from the input, so the compiler cannot refuse them at build time.
    body = ('decision := {"allow": true, "headers": '
            '{r: input.subject.sub | some r in input.subject.roles}}')
    eng = Engine()
    eng.apply(load_policy(compile_rego(body), ENTRY, "m"), CELLS)
    roles = ["content-length", "x-envoy-retry-on", "x-a1-cell", "x-ok", "bad\nname"]
    subject = {"sub": "1", "tenant": "acme", "roles": roles}
    for _ in range(3):  # cached decisions are counted per request too
        d = eng.decide("GET", "/t/acme/a", "", None, subject, "k")
        assert d.allow
        assert dict(d.headers) == {"x-a1-cell": CELLS.lookup("acme"),
                                   "x-a1-policy-version": d.version, "x-ok": "1"}
    crlf = {"sub": "a\r\nx-injected: 1", "tenant": "acme", "roles": ["x-ok"]}
    d = eng.decide("GET", "/t/acme/a", "", None, crlf, "k2")
    assert d.allow and "x-ok" not in dict(d.headers)
    dropped = eng.stats.snapshot()["headers_dropped"]
    assert dropped == {"content-length": 3, "x-envoy-*": 3, "x-a1-cell": 3,
                       "invalid-name": 3, "invalid-value": 1}
