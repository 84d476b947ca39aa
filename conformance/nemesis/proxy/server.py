"""``FaultProxy``: an asyncio TCP / Unix-socket forwarder whose toxics change at run time.

Each accepted connection opens one to the upstream and runs two pipes (upstream:
client -> server, downstream: server -> client). A pipe is a reader and a writer
joined by a queue bounded in bytes: the reader stamps each chunk with its arrival
time, the writer passes it through the direction's toxics (``toxics.transform``)
and waits for the socket to drain. So latency delays each chunk from its arrival
(a stream keeps its throughput), and a held or slow writer fills the queue, which
stops the reader, which lets TCP push back on the sender: every buffer is bounded
(read chunk, queue, transport high-water mark), none grows with the data.

A supervisor per connection closes it when a ``timeout`` or ``reset_peer`` toxic's
time comes. Toxic changes wake every connection, so they act on connections that
are already open. ``enabled = False`` closes the listener (new connections are
refused) and every open connection, as Toxiproxy's "down" does.

All state lives on the proxy's event loop; the sync methods (for the control API
and in-process tests) run there through ``call_on``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from conformance.nemesis.proxy.address import Address, Listener, connect
from conformance.nemesis.proxy.toxics import (
    Toxic,
    ToxicError,
    deadline,
    parse_toxic,
    transform,
    updated,
)
from control.loop_thread import LoopThread, call_on
from policies.core.errors import one_line

log = logging.getLogger("a1.conformance.proxy")

T = TypeVar("T")

READ_BYTES = 16 * 1024  # one read; also the StreamReader's limit
QUEUE_BYTES = 128 * 1024  # chunks read but not yet written, per direction
MAX_CONNECTIONS = 256  # more are closed at once (counted as refused)
MAX_TOXICS = 32  # per proxy
CONNECT_TIMEOUT = 5.0  # seconds to reach the upstream
CALL_TIMEOUT = 10.0  # seconds a sync call waits for the loop


class ToxicConflict(Exception):
    """Add of a name already installed, or too many toxics (409)."""


class NoSuchToxic(KeyError):
    """Update or remove of a name not installed (404)."""

    def __str__(self) -> str:
        return f"no toxic named {self.args[0]!r}"


class ByteQueue:
    """FIFO of (arrival, chunk) bounded in bytes; None marks end of stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: collections.deque[tuple[float, bytes] | None] = collections.deque()
        self._cond = asyncio.Condition()

    async def put(self, item: tuple[float, bytes] | None) -> None:
        n = len(item[1]) if item else 0
        async with self._cond:
            # one chunk always fits an empty queue, so a chunk is never stuck
            await self._cond.wait_for(lambda: self.size == 0 or self.size + n <= self.limit)
            self._items.append(item)
            self.size += n
            self._cond.notify_all()

    async def get(self) -> tuple[float, bytes] | None:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self.size -= len(item[1]) if item else 0
            self._cond.notify_all()
            return item


class Connection:
    """One client connection and its upstream: the ``toxics.Link`` the toxics act on."""

    def __init__(self, proxy: FaultProxy, client: tuple[asyncio.StreamReader,
                 asyncio.StreamWriter], upstream: tuple[asyncio.StreamReader,
                 asyncio.StreamWriter], rng: random.Random) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.rng = rng
        self.closed = False
        self._wake = asyncio.Event()
        self._draws: dict[int, tuple[bool, float]] = {}  # serial -> (applies, since)
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- Link ---------------------------------------------------------------------------

    def active(self, toxic: Toxic) -> bool:
        if self.proxy.installed(toxic.name) is not toxic:
            return False
        draw = self._draws.get(toxic.serial)
        if draw is None:
            draw = self._draws[toxic.serial] = (self.rng.random() < toxic.toxicity,
                                                time.monotonic())
        return draw[0]

    async def wait(self, until: float | None, toxic: Toxic) -> bool:
        while True:
            event = self._wake
            if self.closed or not self.active(toxic):
                return False
            timeout = None if until is None else until - time.monotonic()
            if timeout is not None and timeout <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)

    def state(self, toxic: Toxic) -> dict[str, Any]:
        return self._state.setdefault((toxic.name, toxic.direction), {})

    def close(self, reset: bool) -> None:
        """Close both sides: flushing what is written (FIN), or with RST (SO_LINGER 0)."""
        if self.closed:
            return
        self.closed = True
        self.wake()
        for _, writer in (self.client, self.upstream):
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None and sock.family != socket.AF_UNIX:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    # -- running ------------------------------------------------------------------------

    def wake(self) -> None:
        """Toxics changed (or the connection closed): every wait re-checks."""
        event, self._wake = self._wake, asyncio.Event()
        event.set()

    async def run(self) -> None:
        (creader, cwriter), (ureader, uwriter) = self.client, self.upstream
        up_q, down_q = ByteQueue(QUEUE_BYTES), ByteQueue(QUEUE_BYTES)
        writers = [self._spawn(self._write("upstream", up_q, uwriter)),
                   self._spawn(self._write("downstream", down_q, cwriter))]
        self._spawn(self._read("upstream", creader, up_q))
        self._spawn(self._read("downstream", ureader, down_q))
        self._spawn(self._supervise())
        try:
            await asyncio.wait(writers)
        finally:
            self.close(reset=False)
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except (OSError, EOFError, asyncio.IncompleteReadError) as err:
            log.debug("proxy: connection ends: %s", one_line(err))
            self.close(reset=False)

    async def _read(self, direction: str, reader: asyncio.StreamReader,
                    queue: ByteQueue) -> None:
        counts = self.proxy.counts[direction]
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                await queue.put(None)
                return
            counts["received"] += len(data)
            await queue.put((time.monotonic(), data))

    async def _write(self, direction: str, queue: ByteQueue,
                     writer: asyncio.StreamWriter) -> None:
        counts = self.proxy.counts[direction]

        async def send(piece: bytes) -> None:
            writer.write(piece)
            await writer.drain()
            counts["sent"] += len(piece)

        while True:
            item = await queue.get()
            if item is None:  # end of stream: pass the half-close on
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return
            await transform(self.proxy.chain(direction), item[1], item[0], self, send)
            if self.closed:
                return

    async def _supervise(self) -> None:
        """Close the connection when a timeout or reset_peer toxic's time comes."""
        while not self.closed:
            event = self._wake
            due: tuple[float, bool] | None = None
            for toxic in self.proxy.chain(None):
                rule = deadline(toxic)
                if rule is None or not self.active(toxic):
                    continue
                at = self._draws[toxic.serial][1] + rule[0]
                if due is None or at < due[0]:
                    due = (at, rule[1])
            now = time.monotonic()
            if due is not None and due[0] <= now:
                self.close(reset=due[1])
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), None if due is None else due[0] - now)


class FaultProxy:
    """A proxy from ``listen`` to ``upstream``. In-process: ``start()`` / ``stop()`` run
    it on its own thread and loop; the other sync methods are safe from any thread."""

    def __init__(self, listen: Address, upstream: Address, *, seed: int | None = None,
                 name: str = "proxy", max_connections: int = MAX_CONNECTIONS) -> None:
        self.name = name
        self.upstream = upstream
        self.max_connections = max_connections
        self.enabled = True
        self.counts = {d: {"received": 0, "sent": 0} for d in ("upstream", "downstream")}
        self.connection_counts = {"open": 0, "total": 0, "refused": 0, "upstream_failed": 0}
        self._listener = Listener(listen, "--listen")
        self._rng = random.Random(seed)
        self._toxics: dict[str, Toxic] = {}  # insertion order is chain order
        self._serial = 0
        self._connections: set[Connection] = set()
        self._pending: set[asyncio.Task[Any]] = set()
        self._runner = LoopThread(f"a1-fault-proxy-{name}")
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def listen(self) -> Address:
        """The listen address (with the real port once started on port 0)."""
        return self._listener.address

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Address:
        return self._runner.start(self.astart)

    def stop(self) -> None:
        self._runner.stop(self.astop, timeout=CALL_TIMEOUT)
        self.loop = None

    async def astart(self) -> Address:
        self.loop = asyncio.get_running_loop()
        return await self._listener.open(self._accept, READ_BYTES)

    async def astop(self) -> None:
        await self._listener.close()
        await self._close_all()

    async def _close_all(self) -> None:
        for conn in list(self._connections):
            conn.close(reset=False)
        pending = [t for t in self._pending if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=CALL_TIMEOUT)

    # -- connections ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        try:
            if not self.enabled or self.connection_counts["open"] >= self.max_connections:
                self.connection_counts["refused"] += 1
                writer.transport.abort()
                return
            self.connection_counts["open"] += 1  # counted while it connects: the bound holds
            try:
                await self._connect(reader, writer)
            finally:
                self.connection_counts["open"] -= 1
        except Exception as err:  # never a traceback from a connection: one debug line
            log.debug("proxy %s: connection failed: %s", self.name, one_line(err))
            writer.transport.abort()
        finally:
            if task is not None:
                self._pending.discard(task)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        try:
            upstream = await asyncio.wait_for(connect(self.upstream, READ_BYTES),
                                              CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            log.debug("proxy %s: upstream %s: %s", self.name, self.upstream, one_line(err))
            self.connection_counts["upstream_failed"] += 1
            writer.transport.abort()
            return
        if not self.enabled:  # disabled while connecting
            upstream[1].transport.abort()
            writer.transport.abort()
            return
        conn = Connection(self, (reader, writer), upstream,
                          random.Random(self._rng.getrandbits(64)))
        self._connections.add(conn)
        self.connection_counts["total"] += 1
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    # -- toxics (on the loop) -------------------------------------------------------------

    def installed(self, name: str) -> Toxic | None:
        return self._toxics.get(name)

    def chain(self, direction: str | None) -> list[Toxic]:
        """The toxics of ``direction`` (None: both) in the order they were added."""
        return [t for t in self._toxics.values() if direction in (None, t.direction)]

    def _changed(self) -> None:
        for conn in self._connections:
            conn.wake()

    def _install(self, toxic: Toxic) -> Toxic:
        self._serial += 1
        toxic = Toxic(toxic.name, toxic.kind, toxic.direction, toxic.toxicity,
                      toxic.attributes, self._serial)
        self._toxics[toxic.name] = toxic
        self._changed()
        return toxic

    def _add(self, doc: Any) -> dict[str, Any]:
        toxic = parse_toxic(doc)
        if toxic.name in self._toxics:
            raise ToxicConflict(f"toxic.name: a toxic named {toxic.name!r} already exists; "
                                "update or remove it")
        if len(self._toxics) >= MAX_TOXICS:
            raise ToxicConflict(f"toxic: at most {MAX_TOXICS} toxics per proxy")
        return self._install(toxic).to_dict()

    def _update(self, name: str, doc: Any) -> dict[str, Any]:
        old = self._toxics.get(name)
        if old is None:
            raise NoSuchToxic(name)
        return self._install(updated(old, doc)).to_dict()

    def _remove(self, name: str) -> None:
        if self._toxics.pop(name, None) is None:
            raise NoSuchToxic(name)
        self._changed()

    # -- the sync API (any thread) --------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        return call_on(self.loop, fn, CALL_TIMEOUT)

    def toxics(self) -> list[dict[str, Any]]:
        return self._call(lambda: [t.to_dict() for t in self._toxics.values()])

    def toxic(self, name: str) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            toxic = self._toxics.get(name)
            if toxic is None:
                raise NoSuchToxic(name)
            return toxic.to_dict()
        return self._call(get)

    def add_toxic(self, doc: Any) -> dict[str, Any]:
        """Install a toxic (its JSON document); ToxicError names a bad field."""
        return self._call(lambda: self._add(doc))

    def update_toxic(self, name: str, doc: Any) -> dict[str, Any]:
        return self._call(lambda: self._update(name, doc))

    def remove_toxic(self, name: str) -> None:
        self._call(lambda: self._remove(name))

    def set_enabled(self, enabled: bool) -> None:
        loop = self.loop
        if loop is None:
            raise RuntimeError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(self.aset_enabled(enabled), loop).result(CALL_TIMEOUT)

    async def aset_enabled(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            await self._listener.open(self._accept, READ_BYTES)
        else:
            await self._listener.close()
            await self._close_all()

    def reset(self) -> None:
        """Every toxic removed and the proxy enabled: the state before any fault."""
        self._call(lambda: (self._toxics.clear(), self._changed()))
        self.set_enabled(True)

    def stats(self) -> dict[str, Any]:
        return self._call(lambda: {"connections": dict(self.connection_counts),
                                   "bytes": {d: dict(c) for d, c in self.counts.items()}})

    def info(self) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            return {"name": self.name, "listen": str(self.listen),
                    "upstream": str(self.upstream), "enabled": self.enabled,
                    "toxics": [t.to_dict() for t in self._toxics.values()]}
        return {**self._call(get), "stats": self.stats()}


__all__ = ["FaultProxy", "NoSuchToxic", "ToxicConflict", "ToxicError"]
