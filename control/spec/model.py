"""The platform spec as values: every field checked, every referenced file already read.

A ``PlatformSpec`` is what the control plane builds a snapshot from, so it holds
the file contents themselves (policy texts, data, JWKS, PEM bytes), read once
at load: the snapshot is built from one consistent reading of the directory,
never from files that may change underneath it. ``digest`` is a SHA-256 over
the canonical content (defaults applied, the directory's own path left out),
so two replicas reading equal directories agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from policies.core.cells import CellTable


def frozen_map(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view, so a frozen dataclass stays frozen all the way down."""
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Endpoint:
    """One upstream of a cell: ``host:port`` (an IPv6 host without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Cell:
    name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class Policy:
    """``sources`` maps each path (relative to the spec directory) to its text, the
    shape ``policies.compiler.compile_sources`` takes; ``data`` is the parsed JSON."""

    sources: Mapping[str, str]
    entrypoint: str
    data: Any = None
    data_path: str | None = None
    # The input document the policy expects: "a1", or "opa-envoy" (docs/opa-envoy.md).
    input: str = "a1"
    # The policy verifies bearer tokens itself (OPA-Envoy's primer does): Envoy's
    # jwt_authn is left out, so tokens it could not verify still reach the policy.
    verifies_tokens: bool = False


@dataclass(frozen=True)
class JwtIssuer:
    issuer: str
    audiences: tuple[str, ...]
    jwks_path: str
    jwks: str
    """The JWKS document's text, as Envoy's ``local_jwks.inline_string`` takes it."""


@dataclass(frozen=True)
class Tls:
    cert_path: str
    key_path: str
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    tls: Tls | None = None


@dataclass(frozen=True)
class Listeners:
    http: Listener | None
    https: Listener | None
    access_log: str | None = None  # an absolute path on Envoy's host


@dataclass(frozen=True)
class Sidecar:
    """How Envoy reaches the sidecar: ``HOST:PORT`` or ``unix:/path`` addresses."""

    mode: str
    grpc: str
    http: str | None
    timeout_ms: int


@dataclass(frozen=True)
class Rollout:
    canary_cell: str
    soak_seconds: int
    max_error_rate: float
    max_deny_rate: float
    min_requests: int


@dataclass(frozen=True)
class PlatformSpec:
    region: str
    cells: tuple[Cell, ...]
    buckets: int
    overrides: Mapping[str, str]
    policy: Policy
    jwt: tuple[JwtIssuer, ...]
    listeners: Listeners
    sidecar: Sidecar
    rollout: Rollout
    files: Mapping[str, bytes] = field(repr=False)
    """Every referenced file's bytes by its relative path (what ``digest`` covers)."""
    digest: str
    """SHA-256 hex of the canonical content, referenced files and bucket table included."""
    directory: Path = field(compare=False)
    table: CellTable = field(repr=False)

    def cell_table(self) -> CellTable:
        """The bucket → cell table (with the overrides) this spec stands for."""
        return self.table

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def cell_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cells)
