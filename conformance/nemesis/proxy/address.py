"""Proxy addresses: ``host:port`` (TCP) or ``unix:/path`` (the control plane's xDS
endpoint is a Unix socket), parsed once with a one-line error naming the flag.

A Unix listen socket follows every A1 server's rule (``ext_proc.uds``): created
under umask 0177 and chmod-ed 0600, a stale socket replaced, a symlink or a
regular file at the path refused, and at stop only our own socket unlinked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ext_proc.uds import UNIX_PREFIX, binding, remove_if_ours
from policies.core.errors import ConfigError, one_line
from policies.core.unix_socket import unix_path_error

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True)
class Address:
    host: str = ""
    port: int = 0
    path: str = ""  # set for unix:

    def __str__(self) -> str:
        if self.path:
            return UNIX_PREFIX + self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: object, where: str, *, listen: bool = False) -> Address:
    """``host:port`` ([v6]:port) or ``unix:/abs/path``; port 0 only where we listen."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: expected host:port or unix:/path, got {text!r}")
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX):]
        if "\0" in path:
            raise ConfigError(f"{where}: unix socket path contains a NUL byte")
        why = unix_path_error(path)
        if why:
            raise ConfigError(f"{where}: {why}")
        return Address(path=path)
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise ConfigError(f"{where}: expected host:port or unix:/path, got "
                          f"{one_line(repr(text), 120)}")
    number = int(port)
    if not (0 if listen else 1) <= number <= 65535:
        raise ConfigError(f"{where}: port {number} out of range")
    if any(c.isspace() or not c.isprintable() or c in "/[]@" for c in host):
        raise ConfigError(f"{where}: bad host {one_line(repr(host), 120)}")
    return Address(host=host, port=number)


async def connect(address: Address, limit: int
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.path:
        return await asyncio.open_unix_connection(address.path, limit=limit)
    return await asyncio.open_connection(address.host, address.port, limit=limit)


class Listener:
    """One bound listen socket (re-creatable: the proxy closes it to refuse connections)."""

    def __init__(self, address: Address, where: str) -> None:
        self.address = address
        self.where = where
        self.server: asyncio.base_events.Server | None = None
        self._bound: list[tuple[str, tuple[int, int]]] = []

    async def open(self, handler: Handler, limit: int) -> Address:
        """Bind and serve; the bound address (the real port for port 0)."""
        a = self.address
        try:
            if a.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    with binding(str(a), self.where, self._bound):
                        sock.bind(a.path)
                    sock.listen(128)
                except BaseException:
                    sock.close()
                    raise
                self.server = await asyncio.start_unix_server(handler, sock=sock, limit=limit)
            else:
                self.server = await asyncio.start_server(handler, a.host, a.port, limit=limit,
                                                         reuse_address=True, backlog=128)
                port = self.server.sockets[0].getsockname()[1]
                self.address = a = Address(host=a.host, port=port)  # reopen on the same port
        except OSError as err:
            raise ConfigError(f"{self.where} {a}: {err.strerror or one_line(err)}") from None
        return a

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        while self._bound:
            remove_if_ours(*self._bound.pop())
