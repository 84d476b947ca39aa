"""Size accounting for everything the request path keeps: bounded in entries AND bytes.

An attacker chooses request sizes (16 KiB paths, large claims), so an entry count
alone does not bound memory. Each cache charges an entry ``cost`` = the lengths
of its key's (and value's) str/bytes parts plus ``ENTRY_OVERHEAD``, a fixed
allowance for the Python objects around them (tuple, str/bytes headers,
dict/OrderedDict node), and evicts least-recently-used entries until both bounds
hold. The accounting is deliberately simple and errs on the high side.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

ENTRY_OVERHEAD = 256  # bytes per cache entry beyond its strings' lengths

V = TypeVar("V")


def sizeof(v: Any) -> int:
    """Bytes charged for ``v``: lengths of str/bytes, recursively through tuples, lists
    and dicts, plus 64 per container and 16 per other leaf (ints, None, bools)."""
    t = type(v)
    if t is str or t is bytes:
        return len(v)  # type: ignore[no-any-return]
    if t is tuple or t is list:
        return 64 + sum(sizeof(x) for x in v)
    if t is dict:
        return 64 + sum(sizeof(k) + sizeof(x) for k, x in v.items())
    return 16


class ByteLRU(Generic[V]):
    """LRU bounded by ``max_entries`` and ``max_bytes``; lock-free reads under the GIL.

    ``get`` only moves a hit to the end (an atomic OrderedDict operation; racing an
    eviction costs an ignored KeyError). ``put`` runs on a miss, already the slow
    path, and takes a lock so that the byte count stays exact across threads.
    """

    __slots__ = ("_d", "_lock", "bytes", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[Any, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> V | None:
        e = self._d.get(key)
        if e is None:
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs more on the hot path
            self._d.move_to_end(key)
        except KeyError:
            pass
        return e[0]

    def put(self, key: Any, value: V, cost: int) -> None:
        """Insert with ``cost`` bytes; an entry larger than the whole budget is not kept."""
        if cost > self.max_bytes or self.max_entries <= 0:
            return
        d = self._d
        with self._lock:
            old = d.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            d[key] = (value, cost)
            self.bytes += cost
            while len(d) > self.max_entries or self.bytes > self.max_bytes:
                _, (_, c) = d.popitem(last=False)
                self.bytes -= c

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._d)
