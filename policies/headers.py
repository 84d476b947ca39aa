"""Which response headers a policy decision may set: one rule for the compiler and the sidecar.

A decision's ``headers`` become upstream request headers (allow). A policy must
not be able to change how Envoy frames or routes the request, or forge a header
the sidecar itself owns, so those names are refused: at build time by the
compiler where it can see the name, at run time by the sidecar (dropped and
counted in ``a1_policy_headers_dropped_total{header}``). Kept free of the
sidecar and the compiler so that both can import it.
"""

from __future__ import annotations

import re

# Framing and hop-by-hop (RFC 7230 6.1, RFC 9110 7.6.1) plus the request's target.
FRAMING_HEADERS = frozenset({
    "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
    "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "host",
})  # fmt: skip
# The cell the sidecar chose: Envoy's routes match on it (control plane) and the
# sidecar sets it (data plane), so both read this one name.
CELL_HEADER = "x-a1-cell"
# The policy version that decided a request: the sidecar sets it upstream, the cells
# echo it, the conformance load records it on every operation.
VERSION_HEADER = "x-a1-policy-version"
# Names the sidecar sets or reads itself. Other ``x-a1-*`` names stay open to
# policies: the HTTP door passes exactly ``x-a1-*`` upstream.
SIDECAR_HEADERS = frozenset({
    CELL_HEADER, VERSION_HEADER, "x-a1-deny-reason", "x-a1-jwt-payload",
})  # fmt: skip
ENVOY_PREFIX = "x-envoy-"
MAX_NAME_BYTES = 256
MAX_VALUE_BYTES = 8192

# RFC 7230 3.2.6 token, lower-case (HTTP/2 field names are lower-case).
_token = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z").match
# RFC 7230 3.2: field-value is VCHAR, obs-text, SP and HTAB; never CR, LF, NUL or
# another control character.
_bad_value = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search


def forbidden_header_reason(name: str) -> str | None:
    """Why a policy may not set header ``name`` (compared lower-case), or None if it may."""
    n = name.lower()
    if n.startswith(":"):
        return f"{n[:40]!r} is a pseudo-header"
    if n in FRAMING_HEADERS:
        return f"{n!r} is a framing or hop-by-hop header"
    if n.startswith(ENVOY_PREFIX):
        return f"{n[:40]!r} is an Envoy control header (x-envoy-*)"
    if n in SIDECAR_HEADERS:
        return f"{n!r} is set by the sidecar itself"
    if len(n) > MAX_NAME_BYTES:
        return f"header name is {len(n)} characters long; at most {MAX_NAME_BYTES} are allowed"
    if not _token(n):
        return f"{n[:40]!r} is not an HTTP header name (RFC 7230 token)"
    return None


def header_value_reason(value: str) -> str | None:
    """Why ``value`` cannot be a header value (control characters, too long), or None."""
    if _bad_value(value):
        return "header value contains a control character (CR, LF, NUL, ...)"
    if len(value) > MAX_VALUE_BYTES:
        return f"header value is {len(value)} characters long; at most {MAX_VALUE_BYTES}"
    return None


def drop_label(name: str) -> str:
    """A bounded metric label for a refused header name: the name itself only when it is
    one of the fixed forbidden names, else its class."""
    n = name.lower()
    if n in FRAMING_HEADERS or n in SIDECAR_HEADERS:
        return n
    if n.startswith(":"):
        return ":pseudo"
    if n.startswith(ENVOY_PREFIX):
        return "x-envoy-*"
    return "invalid-name"
