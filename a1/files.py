"""Files the stack writes: replaced by rename, so a reader or watcher never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace ``path`` by rename; False (and nothing written) if it already holds ``data``.

    The temporary file is created by ``mkstemp`` (``O_EXCL``, mode 0600) beside the
    target, so a symlink planted at ``path`` is replaced, never followed.
    """
    if path.exists() and not path.is_symlink() and path.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
