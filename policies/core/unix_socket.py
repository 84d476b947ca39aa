"""Unix sockets: the one path rule, and freeing a path for bind(), for every A1 server."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from policies.core.errors import ConfigError

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


def clear_stale(path: str, where: str) -> None:
    """Make ``path`` free for bind(): remove a dead socket, refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(f"{where}: {path}: {err.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{where}: {path} is a symlink; refusing to bind there")
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{where}: {path} exists and is not a socket; refusing to remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError as err:
        if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"{where}: {path}: {err.strerror}") from None
    else:
        raise ConfigError(f"{where}: {path} is in use by a running process")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
