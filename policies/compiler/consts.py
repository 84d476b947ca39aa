"""The policy's constant area: values and automata laid out at fixed addresses.

Constants are encoded once, at build time, in the runtime's value layout with
absolute pointers, so a policy never constructs a constant at evaluation time.
"""

from __future__ import annotations

import json
from typing import Any

from policies.runtime.values import RegoSet, encode_value


def _canonical(value: Any) -> str:
    """A key that tells apart values Python would conflate (1 and True, [] and set())."""

    def tag(v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return ["b", v]
        if isinstance(v, int) and abs(v) > 2**53:
            return ["n", v]  # exact: float() would merge 2^53 + 1 with 2^53
        if isinstance(v, (int, float)):
            return ["n", float(v)]
        if isinstance(v, str):
            return ["s", v]
        if isinstance(v, RegoSet):
            return ["S", [tag(x) for x in v]]
        if isinstance(v, (list, tuple)):
            return ["a", [tag(x) for x in v]]
        if isinstance(v, dict):
            return ["o", sorted((k, tag(x)) for k, x in v.items())]
        raise TypeError(type(v).__name__)

    return json.dumps(tag(value), sort_keys=True)


class ConstPool:
    def __init__(self, base: int) -> None:
        self.base = base
        self.buf = bytearray()
        self.index: dict[str, int] = {}

    def _place(self, blob: bytes) -> int:
        addr = self.base + len(self.buf)
        self.buf += blob
        self.buf += b"\0" * (-len(self.buf) % 8)
        return addr

    def add(self, value: Any) -> int:
        """Address of ``value``'s record (deduplicated)."""
        key = _canonical(value)
        if key not in self.index:
            blob, ptr = encode_value(value, self.base + len(self.buf))
            self._place(blob)
            self.index[key] = ptr
        return self.index[key]

    def add_blob(self, blob: bytes) -> int:
        """Address of an opaque, 8-aligned blob (a compiled automaton or CIDR)."""
        key = "blob:" + blob.hex()
        if key not in self.index:
            self.index[key] = self._place(blob)
        return self.index[key]

    def data(self) -> bytes:
        return bytes(self.buf)
