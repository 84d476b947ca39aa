"""The one rule for a Unix socket path, shared by the sidecar, the spec and the stack."""

from __future__ import annotations

import os

SUN_PATH_MAX = 107  # bytes: sockaddr_un.sun_path is 108 on Linux, NUL included


def unix_path_error(path: str) -> str | None:
    """Why ``path`` cannot be a Unix socket path, or None."""
    if not path.startswith("/"):
        return f"unix socket path must be absolute, got {path!r}"
    n = len(os.fsencode(path))
    if n > SUN_PATH_MAX:
        return (f"unix socket path is {n} bytes long; at most {SUN_PATH_MAX} fit in "
                f"sun_path (use a shorter state directory): {path}")  # fmt: skip
    return None
