"""Private files written by rename and read without following links, within a byte bound.

Keys, certificates, the last-known-good stores and the stack's generated files
share these, so there is one way to write a file that a reader, a watcher or a
crash never sees half of.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from policies.core.errors import ConfigError


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (``mode``), durably; a reader sees old or new, never half.

    The temporary name is unpredictable and opened with O_EXCL|O_NOFOLLOW, so
    nothing planted in the directory is opened or followed; ``rename`` replaces
    a symlink at ``path`` itself, never its target.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as err:
        raise ConfigError(f"{tmp}: cannot create: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; never widened
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write: {err.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash after it must not bring back the old file)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bounded(
    path: Path, limit: int, *, private: bool = False, follow: bool = False
) -> bytes:
    """The bytes of regular file ``path``, refusing a symlink and more than ``limit`` bytes.

    ``private`` also refuses a file that group or others may read or write (a
    private key must be 0600, as ssh insists); ``follow`` allows a symlink (for
    public files that mounts deliver as links). Nothing past ``limit`` is read,
    and a FIFO or device is refused without blocking on it.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink as the last component
            raise ConfigError(f"{path}: is a symlink; refusing to follow it") from None
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if private and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise ConfigError(
                f"{path}: mode {mode:04o} lets others read or write a private key; chmod 600 it"
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{path}: more than {limit} bytes")
    return data
