"""Errors the sidecar turns into one-line messages instead of tracebacks."""

from __future__ import annotations

from a1.errors import UserError


class ConfigError(UserError):
    """A config, cell-table or policy file the sidecar refuses.

    The message names the file and the field (or ``file:line:col`` for YAML
    syntax errors). Exit code 2, as for any bad startup configuration.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)
