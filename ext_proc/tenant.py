"""Target-tenant extraction: which tenant's cell serves this request.

The tenant-id grammar itself is ``policies.core.tenant``, shared with the cells,
the control plane and ``a1 token``.

The target tenant is what the policy compares with the caller's tenant claim, and
what cell selection hashes. It comes from one configured place only: the path
prefix ``/t/{tenant}/`` (default), a header, or the host.

Header mode trusts the header's value outright. The shipped Envoy config does not
set or strip it (it strips only ``x-a1-*``), so a deployment that uses header mode
must set the header at its edge and strip every client-sent copy first; otherwise
any caller names the tenant. Whatever the source, a path that also names a tenant
(``/t/{seg}/``) must name the same one (``ext_proc.request``), because the cells
serve the tenant in the path.

Host mode lower-cases ASCII letters only (DNS names are case-insensitive); a
non-ASCII host is refused, so no Unicode case mapping (the Kelvin sign U+212A
lower-cases to ``k``) can produce a tenant id.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ext_proc.config import TenantSource
from policies.core.tenant import tenant_from_path

# (path without query, host, value of the configured tenant header or None) -> tenant
TenantFn = Callable[[str, str, "str | None"], "str | None"]


class TenantRefused(ValueError):
    """The tenant source cannot be read unambiguously: the request is a 400 with this reason."""


def tenant_from_header(path: str, host: str = "", header: str | None = None) -> str | None:
    if header is None:
        return None
    header = header.strip()
    return header or None


def host_matcher(pattern: str) -> TenantFn:
    """``{tenant}.example.com`` → a function matching the host (port and ASCII case ignored).

    A non-ASCII host raises ``TenantRefused``: ``str.lower`` would map look-alikes
    such as the Kelvin sign onto ASCII letters."""
    before, _, after = pattern.partition("{tenant}")
    rx = re.compile(f"^{re.escape(before)}([^./:]+){re.escape(after)}\\Z")

    def tenant_from_host(path: str, host: str = "", header: str | None = None) -> str | None:
        if not host:
            return None
        if not host.isascii():
            raise TenantRefused("host is not ASCII")
        if ":" in host and not host.endswith("]"):
            host = host.rsplit(":", 1)[0]
        m = rx.match(host.lower())  # ASCII-only here: folds A-Z and nothing else
        return m.group(1) if m else None

    return tenant_from_host


def make_tenant_fn(source: TenantSource) -> TenantFn:
    if source.kind == "path":
        return tenant_from_path
    if source.kind == "header":
        return tenant_from_header
    if source.kind == "host":
        return host_matcher(source.pattern)
    raise ValueError(f"unknown tenant source {source.kind!r}")
