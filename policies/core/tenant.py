"""The one tenant-id grammar, and the one reading of the tenant in a path.

Every reader (the sidecar, the cells, ``a1 token``, the platform spec) calls
``tenant_error``; ``docs/security.md`` states the rule.
"""

from __future__ import annotations

import re

# The one tenant-id grammar. The sidecar, the cells and `a1 token` all call
# `tenant_error`; docs/security.md states it. Lower-case ASCII only, so there is
# exactly one spelling of every tenant (no case folding, no percent-encoding,
# no Unicode look-alikes), and it is safe in a path segment, a header and a
# file name as it stands.
TENANT_GRAMMAR = "[a-z0-9][a-z0-9-]{0,62}"
TENANT_RE = re.compile(f"{TENANT_GRAMMAR}\\Z")  # fullmatch, and no trailing "\n" slips by


def tenant_error(tenant: str) -> str | None:
    """Why ``tenant`` is not a canonical tenant id, or None if it is."""
    if TENANT_RE.match(tenant):
        return None
    if not tenant:
        return "tenant id is empty"
    if len(tenant) > 63:
        return f"tenant id is {len(tenant)} characters long; at most 63 are allowed"
    return f"tenant id {tenant[:80]!r} does not match {TENANT_GRAMMAR}"


def is_tenant_id(tenant: str) -> bool:
    return TENANT_RE.match(tenant) is not None


def tenant_from_path(path: str, host: str = "", header: str | None = None) -> str | None:
    """``/t/acme/orders`` and ``/t/acme`` → ``acme``; ``/t/`` → ``""`` (refused by the
    grammar, never read as "no tenant"); a path without the ``/t/`` prefix → None.

    The one reading of the path tenant: the sidecar's fast path, the header/host
    cross-check and the path source all call it."""
    if not path.startswith("/t/"):
        return None
    end = path.find("/", 3)
    return path[3:] if end < 0 else path[3:end]
