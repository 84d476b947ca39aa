"""OPA-Envoy's decision shapes → the sidecar's ``Decision``, with A1's rules kept.

OPA-Envoy accepts a boolean (``allow``) or an object with ``allowed`` (required,
boolean) and optionally ``headers``, ``response_headers_to_add`` (each an object of
string values, or an array of such objects for repeated names),
``request_headers_to_remove`` (an array of strings), ``body`` (a string),
``http_status`` (an integer HTTP status) and ``dynamic_metadata`` (an object).
Anything else in a field it reads is an error there, and here: the request is
denied with 500 and the reason logged, never allowed.

A1's rules on top: allow always sets ``x-a1-cell`` and ``x-a1-policy-version``;
names ``policies.headers`` refuses (framing, ``host``, pseudo-headers, ``x-envoy-*``,
the sidecar's own) are dropped and counted, in every header field; a deny keeps a
deny status (``http_status`` 200 with ``allowed: false`` is a 403, as is any status
that is not a redirect or an error), so no decision can turn a deny into a success.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from policies.headers import (
    CELL_HEADER,
    VERSION_HEADER,
    drop_label,
    forbidden_header_reason,
    header_value_reason,
)
from policies.runtime.values import UNDEFINED

#: Deny statuses a policy may choose: redirects (a login page) and errors.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_KNOWN_STATUS = frozenset(int(s) for s in HTTPStatus)
MAX_METADATA_BYTES = 64 * 1024


class Malformed(Exception):
    """The decision is not one of OPA-Envoy's shapes: deny 500, log the reason."""


Headers = tuple[tuple[str, str], ...]


class Parsed:
    """A well-formed OPA-Envoy decision, its headers already filtered."""

    __slots__ = (
        "allowed", "body", "dropped", "headers", "metadata", "remove", "response_headers",
        "status", "status_refused",
    )  # fmt: skip

    def __init__(self) -> None:
        self.allowed = False
        self.headers: Headers = ()
        self.response_headers: Headers = ()
        self.remove: tuple[str, ...] = ()
        self.body: str | None = None
        self.status = 403
        self.status_refused: int | None = None  # a status kept from a deny, and why
        self.metadata: dict[str, Any] | None = None
        self.dropped: list[str] = []


def header_refusal(name: str, value: str) -> tuple[str, str] | None:
    """Why a policy may not set header ``name`` (lower-case) to ``value``, and the metric
    label its drop is counted under; None if it may. Both decision shapes use this."""
    why = forbidden_header_reason(name)
    if why is not None:
        return why, drop_label(name)
    why = header_value_reason(value)
    return None if why is None else (why, "invalid-value")


def _header_objects(field: str, value: Any) -> list[dict[Any, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise Malformed(f"{field} must be an object of strings or an array of them")


def _headers(field: str, value: Any, dropped: list[str], log: Callable[[str], None]) -> Headers:
    out: list[tuple[str, str]] = []
    for obj in _header_objects(field, value):
        for k, v in sorted(obj.items(), key=lambda kv: str(kv[0])):
            if not isinstance(k, str) or not isinstance(v, str):
                raise Malformed(f"{field}: header names and values must be strings")
            name = k.lower()
            refused = header_refusal(name, v)
            if refused is not None:
                dropped.append(refused[1])
                log(f"policy header dropped ({field}): {refused[0]}")
                continue
            out.append((name, v))
    return tuple(out)


def _remove(value: Any, dropped: list[str], log: Callable[[str], None]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Malformed("request_headers_to_remove must be an array of strings")
    out: list[str] = []
    for v in value:
        name = v.lower()
        # The same names as for setting: a policy cannot unset the cell it was routed
        # to, a pseudo-header, the request's framing or Envoy's control headers.
        why = forbidden_header_reason(name)
        if why is not None:
            dropped.append(drop_label(name))
            log(f"policy header removal dropped: {why}")
        elif name not in out:
            out.append(name)
    return tuple(out)


def _status(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed("http_status must be an integer")
    if value not in _KNOWN_STATUS:
        raise Malformed(f"http_status {value} is not an HTTP status code")
    return value


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Malformed("dynamic_metadata must be an object with string keys")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise Malformed("dynamic_metadata must be JSON") from None
    if size > MAX_METADATA_BYTES:
        raise Malformed(f"dynamic_metadata over {MAX_METADATA_BYTES} bytes")
    return value


def parse_decision(result: Any, log: Callable[[str], None]) -> Parsed:
    """Check and filter one decision; ``Malformed`` says why it is none of the shapes."""
    p = Parsed()
    if result is UNDEFINED:
        raise Malformed("decision is undefined")
    if isinstance(result, bool):
        p.allowed = result
        return p
    if not isinstance(result, dict):
        raise Malformed(f"decision is a {type(result).__name__}, not a boolean or an object")
    allowed = result.get("allowed", UNDEFINED)
    if not isinstance(allowed, bool):
        raise Malformed("decision has no boolean 'allowed'")
    p.allowed = allowed
    if "headers" in result:
        p.headers = _headers("headers", result["headers"], p.dropped, log)
    if "response_headers_to_add" in result:
        p.response_headers = _headers(
            "response_headers_to_add", result["response_headers_to_add"], p.dropped, log
        )
    if "request_headers_to_remove" in result:
        p.remove = _remove(result["request_headers_to_remove"], p.dropped, log)
    if "body" in result:
        if not isinstance(result["body"], str):
            raise Malformed("body must be a string")
        p.body = result["body"]
    if "http_status" in result:
        status = _status(result["http_status"])
        if not allowed:
            if status in _REDIRECTS or 400 <= status <= 599:
                p.status = status
            else:
                p.status_refused = status
    if "dynamic_metadata" in result:
        p.metadata = _metadata(result["dynamic_metadata"])
    return p


def allow_headers(p: Parsed, cell: str, version: str) -> Headers:
    """Upstream request headers on allow: A1's two first, then the policy's."""
    return ((CELL_HEADER, cell), (VERSION_HEADER, version), *p.headers)
