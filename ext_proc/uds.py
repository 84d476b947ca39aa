"""Unix domain sockets for the decision ports: private to the user that runs the stack.

A decision port answers "allow" to whoever can reach it and trusts the claims it
is sent (the HTTP door reads them from a header). On TCP loopback any local
process can connect; a Unix socket with mode 0600 in the (0700) state directory
admits only the same user (and root). The socket is created under umask 0177, so
it is never briefly world-accessible, then checked and chmod-ed to 0600. A stale
socket file is removed only if it is a socket (never a symlink or a regular file)
and no live process answers on it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from policies.core.errors import ConfigError
from policies.core.unix_socket import clear_stale

UNIX_PREFIX = "unix:"


def unix_path(address: str) -> str | None:
    """``unix:/path`` → ``/path``; None for HOST:PORT."""
    return address[len(UNIX_PREFIX):] if address.startswith(UNIX_PREFIX) else None


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and sockets created inside are at most 0600 (umask is process-wide: use it
    only while nothing else creates files)."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def binding(address: str, where: str, bound: list[tuple[str, tuple[int, int]]]) -> Iterator[None]:
    """Around one bind to ``address``: under ``private_umask``; for ``unix:`` a stale
    socket is cleared first, and the bound one is secured and added to ``bound``
    (for ``remove_if_ours`` at exit). Nothing is added if the bind raises."""
    path = unix_path(address)
    if path is not None:
        clear_stale(path, where)
    with private_umask():
        yield
    if path is not None:
        bound.append((path, secure(path, where)))


def secure(path: str, where: str) -> tuple[int, int]:
    """Check the bound socket and set mode 0600; returns its (device, inode)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{where}: {path} is not the socket just bound")
        os.chmod(path, 0o600)
    except OSError as err:
        raise ConfigError(f"{where}: {path}: {err.strerror}") from None
    return st.st_dev, st.st_ino


def remove_if_ours(path: str, ident: tuple[int, int]) -> None:
    """At shutdown: unlink the socket we bound, not one another process put there since."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except OSError:
        pass
