"""Files the stack writes: replaced by rename, so a reader or watcher never sees half of one."""

from __future__ import annotations

from pathlib import Path

from policies.core.files import write_private


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace ``path`` (mode 0600) by rename; False, and nothing written, if it already
    holds ``data`` (so a file watcher sees no change)."""
    if path.exists() and not path.is_symlink() and path.read_bytes() == data:
        return False
    write_private(path, data)
    return True
