"""The caller's identity, read from claims that Envoy's jwt_authn already verified.

Two carriers, both written by Envoy, never by the client:
- ext_authz gRPC: dynamic metadata ``envoy.filters.http.jwt_authn`` → ``jwt_payload``
  (a protobuf Struct), forwarded with ``metadata_context_namespaces``;
- HTTP ext_authz and ext_proc: the ``x-a1-jwt-payload`` header (``forward_payload_header``),
  base64url JSON of the verified payload.

Only ``sub``, ``tenant`` and ``roles`` reach the policy, as ``input.subject``. A
claim of the wrong type is left out, so the policy sees it as undefined and denies.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf.message import DecodeError

from ext_proc import defaults
from policies.core.bounded import ENTRY_OVERHEAD, sizeof

JWT_NAMESPACE = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "jwt_payload"
PAYLOAD_HEADER = "x-a1-jwt-payload"

Subject = dict[str, Any]

# Decoded subjects, memoised on the raw carrier. Each cache is bounded in entries
# and in bytes (carrier length + the subject's strings + ENTRY_OVERHEAD) and is
# cleared when either bound is reached: tokens repeat, so it refills at once.
_limits = [defaults.CLAIMS_ENTRIES, defaults.CLAIMS_BYTES]  # per cache
_header_cache: dict[str, Subject | None] = {}
_metadata_cache: dict[bytes, Subject | None] = {}
_bytes = {"header": 0, "metadata": 0}


def configure(max_entries: int, max_bytes: int) -> None:
    """Set the bounds of each claims cache (``claims_cache`` in the config); empties them."""
    _limits[:] = [max_entries, max_bytes]
    clear()


def clear() -> None:
    _header_cache.clear()
    _metadata_cache.clear()
    _bytes["header"] = _bytes["metadata"] = 0


def cache_bytes() -> int:
    """Bytes charged to both claims caches together."""
    return _bytes["header"] + _bytes["metadata"]


def _remember(cache: dict[Any, Subject | None], which: str, key: Any, subject: Any) -> None:
    cost = len(key) + sizeof(subject) + ENTRY_OVERHEAD
    if cost > _limits[1]:
        return  # larger than the whole budget: decoded again next time
    if len(cache) >= _limits[0] or _bytes[which] + cost > _limits[1]:
        cache.clear()
        _bytes[which] = 0
    cache[key] = subject
    _bytes[which] += cost


def subject_from_claims(claims: Any) -> Subject | None:
    """The policy's ``input.subject`` from a decoded payload, or None if it is not an object."""
    if not isinstance(claims, dict):
        return None
    subject: Subject = {}
    sub = claims.get("sub")
    if isinstance(sub, str):
        subject["sub"] = sub
    tenant = claims.get("tenant")
    if isinstance(tenant, str):
        subject["tenant"] = tenant
    roles = claims.get("roles")
    if isinstance(roles, list):
        subject["roles"] = [r for r in roles if isinstance(r, str)]
    return subject


def subject_from_header(value: str) -> Subject | None:
    """Decode ``x-a1-jwt-payload``. Tokens repeat, so decoded subjects are memoised.

    The returned dict is shared: callers must not mutate it. An undecodable value
    gives None (no subject: the policy denies).
    """
    subject = _header_cache.get(value, False)
    if subject is not False:
        return subject  # type: ignore[return-value]
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        subject = subject_from_claims(json.loads(raw))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        subject = None
    _remember(_header_cache, "header", value, subject)
    return subject


def subject_from_metadata_bytes(raw: bytes) -> Subject | None:
    """The subject in serialized ``Metadata`` (as Envoy sent it), memoised on the bytes."""
    subject = _metadata_cache.get(raw, False)
    if subject is False:
        subject = None
        if raw:
            try:
                subject = subject_from_metadata(base_pb2.Metadata.FromString(raw))
            except DecodeError:
                subject = None
        _remember(_metadata_cache, "metadata", raw, subject)
    return subject  # type: ignore[return-value]


def subject_from_metadata(metadata: Any) -> Subject | None:
    """From an ``envoy.config.core.v3.Metadata``: the jwt_authn payload Struct, if present."""
    fm = metadata.filter_metadata
    if JWT_NAMESPACE not in fm:
        return None
    fields = fm[JWT_NAMESPACE].fields
    if JWT_PAYLOAD_KEY not in fields:
        return None
    payload = fields[JWT_PAYLOAD_KEY]
    if payload.WhichOneof("kind") != "struct_value":
        return None
    claims = payload.struct_value.fields
    subject: Subject = {}
    if "sub" in claims:
        v = claims["sub"]
        if v.WhichOneof("kind") == "string_value":
            subject["sub"] = v.string_value
    if "tenant" in claims:
        v = claims["tenant"]
        if v.WhichOneof("kind") == "string_value":
            subject["tenant"] = v.string_value
    if "roles" in claims:
        v = claims["roles"]
        if v.WhichOneof("kind") == "list_value":
            subject["roles"] = [
                r.string_value
                for r in v.list_value.values
                if r.WhichOneof("kind") == "string_value"
            ]
    return subject
