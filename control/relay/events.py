"""A stream's event queue, bounded in bytes and in count.

Both readers of a stream (Envoy's requests, the control plane's responses) feed one
queue, so the stream handles events in arrival order. A reader that would pass a
bound waits (and with it gRPC's reads, so HTTP/2 flow control pushes back on the
sender); one message alone may always enter, so a message at the size limit moves.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any


class ByteQueue:
    def __init__(self, max_bytes: int, max_items: int) -> None:
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self._cond = asyncio.Condition()

    async def put(self, item: Any, size: int = 0) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._items or (
                self._bytes + size <= self.max_bytes and len(self._items) < self.max_items))
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    async def get(self) -> Any:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    async def get_batch(self) -> list[Any]:
        """Every queued item (at least one): handled together, answered in push order."""
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            items = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            return items

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
