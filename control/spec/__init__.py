"""The platform spec: a config directory the control plane builds everything from.

``load_spec(directory)`` reads and validates it into a :class:`PlatformSpec`;
``add_cell``/``remove_cell`` edit it safely. docs/platform-spec.md has the format.
"""

from control.spec.edit import add_cell, remove_cell
from control.spec.load import load_spec, schema
from control.spec.model import (
    Cell,
    Endpoint,
    JwtIssuer,
    Listener,
    Listeners,
    PlatformSpec,
    Policy,
    Rollout,
    Sidecar,
    Tls,
)

__all__ = [
    "Cell",
    "Endpoint",
    "JwtIssuer",
    "Listener",
    "Listeners",
    "PlatformSpec",
    "Policy",
    "Rollout",
    "Sidecar",
    "Tls",
    "add_cell",
    "load_spec",
    "remove_cell",
    "schema",
]
