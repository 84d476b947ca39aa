"""CIDR networks for ``net.cidr_contains``, parsed as the ``ipnet`` crate parses them."""

from __future__ import annotations

import struct

from policies.compiler.patterns.constants import BLOB_VERSION, CIDR_MAGIC
from policies.compiler.patterns.errors import invalid


def parse_ip_net(text: str) -> tuple[int, bytes, int] | None:
    """``(family, 16 address bytes, prefix)`` as the ``ipnet`` crate parses ``addr/prefix``."""
    p = _IpParser(text)
    for family in (4, 6):
        p.pos = 0
        got = p.read_v4() if family == 4 else p.read_v6(lenient=True)
        if got is None or not p.take("/"):
            continue
        prefix = p.read_number(10, 2 if family == 4 else 3, 33 if family == 4 else 129)
        if prefix is None:
            continue
        return (family, got, prefix) if p.pos == len(text) else None
    return None


def compile_cidr(cidr: str) -> bytes:
    """Compile the network of ``net.cidr_contains(cidr, x)``: family, prefix, masked address."""
    parsed = parse_ip_net(cidr)
    if parsed is None:
        raise invalid(f"invalid CIDR {cidr!r}", 0)
    family, addr, prefix = parsed
    bits = int.from_bytes(addr, "big")
    width = 32 if family == 4 else 128
    value = bits >> (128 - width)
    mask = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
    network = (value & mask) << (128 - width)
    return struct.pack("<4I", CIDR_MAGIC, BLOB_VERSION, family, prefix) + network.to_bytes(
        16, "big"
    )


class _IpParser:
    """The address grammar of ``ipnet``'s parser (a copy of an older ``std::net`` parser)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0

    def take(self, ch: str) -> bool:
        if self.s[self.pos : self.pos + 1] == ch:
            self.pos += 1
            return True
        return False

    def read_number(self, radix: int, max_digits: int, upto: int) -> int | None:
        start = self.pos
        value = digits = 0
        while self.pos < len(self.s):
            ch = self.s[self.pos]
            d = "0123456789abcdef".find(ch.lower()) if ch.isascii() else -1
            if d < 0 or d >= radix:
                break
            self.pos += 1
            value = value * radix + d
            digits += 1
            if digits > max_digits or value >= upto:
                self.pos = start
                return None
        if digits == 0:
            self.pos = start
            return None
        return value

    def read_v4(self) -> bytes | None:
        start = self.pos
        octets = []
        for i in range(4):
            if i and not self.take("."):
                self.pos = start
                return None
            n = self.read_number(10, 3, 0x100)
            if n is None:
                self.pos = start
                return None
            octets.append(n)
        return bytes(octets) + bytes(12)

    def read_groups(self, limit: int) -> tuple[list[int], bool]:
        groups: list[int] = []
        while len(groups) < limit:
            i = len(groups)
            if i < limit - 1:
                save = self.pos
                if i == 0 or self.take(":"):
                    v4 = self.read_v4()
                    if v4 is not None:
                        groups += [v4[0] << 8 | v4[1], v4[2] << 8 | v4[3]]
                        return groups, True
                self.pos = save
            save = self.pos
            g = self.read_number(16, 4, 0x10000) if i == 0 or self.take(":") else None
            if g is None:
                self.pos = save
                return groups, False
            groups.append(g)
        return groups, False

    def read_v6(self, *, lenient: bool) -> bytes | None:
        start = self.pos
        head, head_v4 = self.read_groups(8)
        if len(head) == 8:
            return b"".join(g.to_bytes(2, "big") for g in head)
        if head_v4 or not (self.take(":") and self.take(":")):
            self.pos = start
            return None
        tail, _ = self.read_groups(8 - len(head) if lenient else 7 - len(head))
        groups = head + [0] * (8 - len(head) - len(tail)) + tail
        return b"".join(g.to_bytes(2, "big") for g in groups)
