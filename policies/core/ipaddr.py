"""Rust's IP address grammar, read once for the compiler and the runtime.

regorus reads a network (``addr/prefix``) with the ``ipnet`` crate's parser, an
older copy of Rust's that takes leading zeros in an IPv4 octet and up to eight
groups after ``::``, and a bare address with today's ``std`` parser, which takes
neither. The compiled matcher for a constant network (``a1rt_match.c``) and the
``net.cidr_*`` host builtins must answer as regorus does and as each other, so
both read through this one module (the core: the runtime may not import the
compiler).
"""

from __future__ import annotations

__all__ = ["read_ipnet", "read_rust_addr"]


class _Reader:
    """Rust's address parser: ``ipnet``'s older copy (``std=False``) or today's std."""

    def __init__(self, text: str, std: bool) -> None:
        self.s = text
        self.pos = 0
        self.std = std

    def take(self, ch: str) -> bool:
        if self.s[self.pos : self.pos + 1] == ch:
            self.pos += 1
            return True
        return False

    def number(self, radix: int, max_digits: int, upto: int, octet: bool = False) -> int | None:
        start, value, digits = self.pos, 0, 0
        while self.pos < len(self.s):
            ch = self.s[self.pos]
            d = "0123456789abcdef".find(ch.lower()) if ch.isascii() else -1
            if d < 0 or d >= radix:
                break
            if octet and self.std and digits == 1 and value == 0:
                self.pos = start  # std: "01" is no octet
                return None
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

    def v4(self) -> int | None:
        start, value = self.pos, 0
        for i in range(4):
            if i and not self.take("."):
                self.pos = start
                return None
            n = self.number(10, 3, 0x100, octet=True)
            if n is None:
                self.pos = start
                return None
            value = value << 8 | n
        return value

    def groups(self, limit: int) -> tuple[list[int], bool]:
        out: list[int] = []
        while len(out) < limit:
            i = len(out)
            if i < limit - 1:
                save = self.pos
                if i == 0 or self.take(":"):
                    v4 = self.v4()
                    if v4 is not None:
                        out += [v4 >> 16, v4 & 0xFFFF]
                        return out, True
                self.pos = save
            save = self.pos
            g = self.number(16, 4, 0x10000) if i == 0 or self.take(":") else None
            if g is None:
                self.pos = save
                return out, False
            out.append(g)
        return out, False

    def v6(self) -> int | None:
        start = self.pos
        head, head_v4 = self.groups(8)
        if len(head) != 8:
            if head_v4 or not (self.take(":") and self.take(":")):
                self.pos = start
                return None
            tail, _ = self.groups(7 - len(head) if self.std else 8 - len(head))
            head = head + [0] * (8 - len(head) - len(tail)) + tail
        value = 0
        for g in head:
            value = value << 16 | g
        return value


def read_rust_addr(text: str) -> tuple[int, int] | None:
    """``(4 or 6, address)`` as Rust's ``IpAddr::from_str`` reads a bare address."""
    for family in (4, 6):
        r = _Reader(text, std=True)
        value = r.v4() if family == 4 else r.v6()
        if value is not None and r.pos == len(text):
            return family, value
    return None


def read_ipnet(text: str) -> tuple[int, int, int] | None:
    """``(4 or 6, address as written, prefix)`` as the ``ipnet`` crate reads ``addr/prefix``."""
    for family in (4, 6):
        r = _Reader(text, std=False)
        value = r.v4() if family == 4 else r.v6()
        if value is None or not r.take("/"):
            continue
        prefix = r.number(10, 2 if family == 4 else 3, 33 if family == 4 else 129)
        if prefix is None:
            continue
        return (family, value, prefix) if r.pos == len(text) else None
    return None
