"""The one error a bundle that does not verify raises, so callers catch exactly one type."""

from __future__ import annotations

from policies.core.errors import ConfigError


class BundleRefused(ConfigError):
    """A bundle, bundle file or key the sidecar must not load: it keeps its last good one.

    The message is one line and starts with the bundle's source (an xDS resource
    name or a file path), then says which check failed.
    """
