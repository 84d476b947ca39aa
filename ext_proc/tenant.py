"""Target-tenant extraction: which tenant's cell serves this request.

The target tenant is what the policy compares with the caller's tenant claim, and
what cell selection hashes. It comes from one configured place only: the path
prefix ``/t/{tenant}/`` (default), a trusted header that Envoy sets, or the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ext_proc.config import TenantSource

# (path without query, host, value of the configured tenant header or None) -> tenant
TenantFn = Callable[[str, str, "str | None"], "str | None"]


def tenant_from_path(path: str, host: str = "", header: str | None = None) -> str | None:
    """``/t/acme/orders`` and ``/t/acme`` → ``acme``; anything else → None."""
    if not path.startswith("/t/"):
        return None
    end = path.find("/", 3)
    tenant = path[3:] if end < 0 else path[3:end]
    return tenant or None


def tenant_from_header(path: str, host: str = "", header: str | None = None) -> str | None:
    if header is None:
        return None
    header = header.strip()
    return header or None


def host_matcher(pattern: str) -> TenantFn:
    """``{tenant}.example.com`` → a function matching the host (port and case ignored)."""
    before, _, after = pattern.partition("{tenant}")
    rx = re.compile(f"^{re.escape(before)}([^./:]+){re.escape(after)}$")

    def tenant_from_host(path: str, host: str = "", header: str | None = None) -> str | None:
        if not host:
            return None
        if ":" in host and not host.endswith("]"):
            host = host.rsplit(":", 1)[0]
        m = rx.match(host.lower())
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
