"""The platform spec ``a1 up`` hands its control plane: ``<state>/platform/``.

The spec directory is the control plane's one input (docs/platform-spec.md). ``a1
up`` writes it from its own options on every start: the cells on their loopback
ports, the listeners, the sidecar's sockets, copies of the policy and its data,
the development JWKS and TLS pair. Files are replaced by rename and only when
their bytes change, so a running control plane's watcher sees a change only when
there is one.

The bucket table is recorded in ``platform/cell-table.yaml`` the first time, as
``CellTable.balanced`` over the cells (contiguous ranges, as ``a1 up`` has
always made), and from then on the spec's own rule applies: ``a1 cells
add/remove`` edit the spec and the table with minimal movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from a1.files import write_atomic
from a1.pki import DevPKI
from policies.core.cells import CellTable
from policies.core.errors import UserError

SPEC_FILE = "platform.yaml"
TABLE_FILE = "cell-table.yaml"


@dataclass(frozen=True)
class PlatformInputs:
    """What the stack knows that the spec must say."""

    cells: Sequence[tuple[str, str, int]]  # (name, host, port)
    bind_address: str
    http_port: int
    https_port: int
    sidecar_mode: str
    sidecar_grpc: str
    sidecar_http: str
    authz_timeout_ms: int
    policy: Path
    policy_data: Path | None
    entrypoint: str
    access_log: Path | None = None
    issuer: str = "a1-dev"
    audience: str = "a1"
    policy_input: str = "a1"  # or "opa-envoy" (docs/opa-envoy.md)
    verifies_tokens: bool = False  # the policy verifies tokens: no jwt_authn


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read {what}: {err.strerror}", 2) from None


def spec_document(inputs: PlatformInputs) -> dict[str, Any]:
    """``platform.yaml`` as a mapping (paths relative to the spec directory)."""
    policy: dict[str, Any] = {"sources": [f"policy/{inputs.policy.name}"],
                              "entrypoint": inputs.entrypoint}
    if inputs.policy_data is not None:
        policy["data"] = f"policy/{inputs.policy_data.name}"
    if inputs.policy_input != "a1":
        policy["input"] = inputs.policy_input
    if inputs.verifies_tokens:
        policy["verifies_tokens"] = True
    listeners: dict[str, Any] = {
        "http": {"address": inputs.bind_address, "port": inputs.http_port},
        "https": {"address": inputs.bind_address, "port": inputs.https_port,
                  "tls": {"cert": "tls/server.pem", "key": "tls/server-key.pem"}},
    }
    if inputs.access_log is not None:
        listeners["access_log"] = str(inputs.access_log)
    return {
        "version": 1,
        "region": "local",
        "cells": [{"name": n, "endpoints": [f"{h}:{p}"]} for n, h, p in inputs.cells],
        "policy": policy,
        "jwt": {"issuers": [{"issuer": inputs.issuer, "audiences": [inputs.audience],
                             "jwks": "jwks.json"}]},
        "listeners": listeners,
        "sidecar": {"mode": inputs.sidecar_mode, "grpc": inputs.sidecar_grpc,
                    "http": inputs.sidecar_http, "timeout_ms": inputs.authz_timeout_ms},
        "rollout": {"canary_cell": inputs.cells[0][0]},
    }


def write_platform_spec(directory: Path, inputs: PlatformInputs, pki: DevPKI,
                        legacy_table: Path | None = None) -> None:
    """Write the spec directory; only files whose bytes change are replaced.

    ``legacy_table`` (the ``cells.yaml`` of a stack from before the control plane)
    seeds the recorded table when it has exactly these cells, so tenants stay put.
    """
    if inputs.policy_data is not None and inputs.policy_data.name == inputs.policy.name:
        raise UserError(f"{inputs.policy_data}: the policy data file must not have the "
                        f"policy's file name", 2)
    for sub in ("policy", "tls"):
        (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(directory / "policy" / inputs.policy.name, _read(inputs.policy, "policy"))
    if inputs.policy_data is not None:
        write_atomic(directory / "policy" / inputs.policy_data.name,
                     _read(inputs.policy_data, "policy data"))
    write_atomic(directory / "jwks.json", _read(pki.jwks, "JWKS"))
    write_atomic(directory / "tls" / "server.pem", _read(pki.server_cert, "certificate"))
    write_atomic(directory / "tls" / "server-key.pem", _read(pki.server_key, "private key"))
    table_path = directory / TABLE_FILE
    names = [n for n, _, _ in inputs.cells]
    if not table_path.exists():
        table = CellTable.balanced(names)
        if legacy_table is not None and legacy_table.exists():
            legacy = CellTable.load(legacy_table)
            if list(legacy.cells) == names:
                table = legacy.with_overrides({})
        table.save(table_path)
    text = "# Written by `a1 up` from its options; `a1 cells add/remove` edit it.\n"
    text += yaml.safe_dump(spec_document(inputs), sort_keys=False)
    write_atomic(directory / SPEC_FILE, text.encode())
