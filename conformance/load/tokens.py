"""Tokens for load operations, minted once per (tenant, roles) and kept in a bounded cache.

Minting signs a JWT (milliseconds of CPU); the load sends hundreds of requests a
second for a handful of (tenant, roles) pairs, so each pair is minted once. The
cache is bounded in bytes (least recently used evicted first) so a long run over
many tenants cannot grow it without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

TokenFor = Callable[[str, Sequence[str]], str]  # (tenant, roles) -> JWT, e.g. Stack.token
MAX_TOKEN_BYTES = 1 << 20


class TokenCache:
    """``get(tenant, roles)``: the token ``token_for`` minted for that pair, cached."""

    def __init__(self, token_for: TokenFor, max_bytes: int = MAX_TOKEN_BYTES) -> None:
        self._token_for = token_for
        self._max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, tenant: str, roles: Sequence[str]) -> str:
        key = (tenant, tuple(roles))
        with self._lock:
            token = self._cache.get(key)
            if token is not None:
                self._cache.move_to_end(key)
                return token
        token = self._token_for(tenant, list(roles))  # outside the lock: minting is slow
        size = _size(key, token)
        if size > self._max_bytes:
            return token  # larger than the whole cache: used, never kept
        with self._lock:
            if key not in self._cache:
                self._cache[key] = token
                self._bytes += size
            while self._bytes > self._max_bytes:
                old_key, old = self._cache.popitem(last=False)
                self._bytes -= _size(old_key, old)
        return token

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)


def _size(key: tuple[str, tuple[str, ...]], token: str) -> int:
    return len(token) + len(key[0]) + sum(len(r) for r in key[1]) + 64
