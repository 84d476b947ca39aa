"""The ``net.cidr_*`` builtins with dynamic arguments.

``net.cidr_contains``, ``net.cidr_is_valid`` and ``net.cidr_expand`` answer as
regorus does: networks are read by the ``ipnet`` crate's parser (an older copy
of Rust's, which takes leading zeros in IPv4 octets), bare addresses by Rust's
own (which does not), exactly as the compiled matcher for a constant network
(``a1rt_match.c``) reads them. A constant first argument of ``net.cidr_contains``
never reaches this module.

regorus lacks ``net.cidr_intersects``, ``net.cidr_merge`` and
``net.cidr_contains_matches``; they follow OPA (Go's ``net.ParseCIDR`` and
``net.ParseIP``; an IPv4-mapped IPv6 address is the IPv4 address, as Go's
``To4`` makes it), checked against Python's ``ipaddress``.
``net.cidr_contains_matches`` tests each pair with this module's
``net.cidr_contains``, so one policy gets one answer for one pair. ``net.cidr_overlap``
is OPA's old name of ``net.cidr_contains``.

Work is bounded: ``net.cidr_expand`` refuses a network of more than
``MAX_EXPAND`` addresses (regorus would build 16 million strings for a /8), and
``net.cidr_contains_matches`` more than ``MAX_PAIRS`` pairs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from policies.core.ipaddr import read_ipnet, read_rust_addr
from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.values import RegoSet

__all__ = ["MAX_EXPAND", "MAX_PAIRS"]

MAX_EXPAND = 65_536
"""Most addresses ``net.cidr_expand`` lists (a /16 of IPv4)."""
MAX_PAIRS = 1 << 20
"""Most (network, address) pairs one ``net.cidr_contains_matches`` call tests."""

_MAX_TEXT = 256  # longer than any address or network: refused unread


# ---------------------------------------------------------------- Rust's address grammar

_Net = tuple[int, int, int]  # (family, address as written, prefix): read_ipnet's answer


def _bits(family: int) -> int:
    return 32 if family == 4 else 128


def _network(net: _Net) -> tuple[int, int]:
    """The first and the last address of a network."""
    family, value, prefix = net
    host = (1 << (_bits(family) - prefix)) - 1
    return value & ~host, (value & ~host) | host


def _rust_network(fn: str, text: str) -> _Net:
    net = read_ipnet(text) if len(text) <= _MAX_TEXT else None
    if net is None:
        raise BuiltinError(f"{fn}: error parsing {text[:_MAX_TEXT]}: invalid IP address syntax")
    return net


def _contains(fn: str, cidr: str, subject: str) -> bool:
    net = _rust_network(fn, cidr)
    family, (first, last) = net[0], _network(net)
    if "/" in subject:
        sub = read_ipnet(subject) if len(subject) <= _MAX_TEXT else None
        if sub is None:
            raise BuiltinError(
                f"{fn}: error parsing {subject[:_MAX_TEXT]} as CIDR: invalid IP address syntax"
            )
        lo, hi = _network(sub)
        return sub[0] == family and first <= lo and hi <= last
    addr = read_rust_addr(subject) if len(subject) <= _MAX_TEXT else None
    if addr is None:
        raise BuiltinError(
            f"{fn}: error parsing {subject[:_MAX_TEXT]} as IP address: invalid IP address syntax"
        )
    return addr[0] == family and first <= addr[1] <= last


@builtin("net.cidr_contains")
def cidr_contains(cidr: Any, cidr_or_ip: Any) -> bool:
    fn = "net.cidr_contains"
    return _contains(fn, want(fn, 1, cidr, "string"), want(fn, 2, cidr_or_ip, "string"))


@builtin("net.cidr_overlap")
def cidr_overlap(cidr: Any, cidr_or_ip: Any) -> bool:
    fn = "net.cidr_overlap"
    return _contains(fn, want(fn, 1, cidr, "string"), want(fn, 2, cidr_or_ip, "string"))


@builtin("net.cidr_is_valid")
def cidr_is_valid(cidr: Any) -> bool:
    """regorus: Rust's address, then a prefix that Rust's ``i16`` parser takes (a sign,
    leading zeros) within the family's width."""
    text = want("net.cidr_is_valid", 1, cidr, "string")
    addr_text, slash, prefix_text = text.partition("/")
    if not slash or len(addr_text) > _MAX_TEXT:
        return False
    addr = read_rust_addr(addr_text)
    digits = prefix_text[1:] if prefix_text[:1] in ("+", "-") else prefix_text
    if addr is None or not digits or not (digits.isascii() and digits.isdigit()):
        return False
    digits = digits.lstrip("0") or "0"
    if len(digits) > 5:  # past i16 (and never int() a huge digit string)
        return False
    prefix = -int(digits) if prefix_text[0] == "-" else int(digits)
    return -(2**15) <= prefix < 2**15 and 0 <= prefix <= _bits(addr[0])


def _rust_text(family: int, value: int) -> str:
    """An address as Rust prints it (an IPv4-mapped IPv6 address in dotted form)."""
    if family == 4:
        return str(ipaddress.IPv4Address(value))
    if value >> 32 == 0xFFFF:
        return "::ffff:" + str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


@builtin("net.cidr_expand")
def cidr_expand(cidr: Any) -> list[str]:
    """Every address of the network, in order (regorus: an array; the network and
    broadcast addresses included, as OPA lists them)."""
    fn = "net.cidr_expand"
    net = _rust_network(fn, want(fn, 1, cidr, "string"))
    first, last = _network(net)
    if last - first + 1 > MAX_EXPAND:
        raise BuiltinError(f"{fn}: {cidr} has {last - first + 1} addresses, more than {MAX_EXPAND}")
    return [_rust_text(net[0], a) for a in range(first, last + 1)]


# ---------------------------------------------------------------- OPA's (Go's) grammar

_GoAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
_GoNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def _go_ip(text: str, mapped: bool = True) -> _GoAddr | None:
    """Go's ``net.ParseIP`` (no zone; an IPv4-mapped address is IPv4, as ``To4`` has it,
    unless ``mapped`` is false)."""
    if len(text) > _MAX_TEXT or "%" in text or not text.isascii():
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if mapped and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _go_cidr(fn: str, text: str) -> _GoNet:
    """Go's ``net.ParseCIDR``: the network of ``addr/prefix`` (host bits cleared); an
    IPv4-mapped network of at least 96 bits is the IPv4 network Go's ``Contains`` sees."""
    addr_text, slash, prefix_text = text.partition("/")
    raw = _go_ip(addr_text, mapped=False) if slash else None
    digits = prefix_text.lstrip("0") or "0"
    if (
        raw is None
        or not (prefix_text.isascii() and prefix_text.isdigit())
        or len(digits) > 3
        or int(digits) > raw.max_prefixlen
    ):
        raise BuiltinError(f"{fn}: invalid CIDR address: {text[:_MAX_TEXT]}")
    prefix = int(digits)
    if isinstance(raw, ipaddress.IPv6Address) and raw.ipv4_mapped is not None and prefix >= 96:
        return ipaddress.IPv4Network((raw.ipv4_mapped, prefix - 96), strict=False)
    return ipaddress.ip_network((raw, prefix), strict=False)


def _go_contains(net: _GoNet, ip: _GoAddr) -> bool:
    return net.version == ip.version and ip in net


@builtin("net.cidr_intersects")
def cidr_intersects(a: Any, b: Any) -> bool:
    fn = "net.cidr_intersects"
    na = _go_cidr(fn, want(fn, 1, a, "string"))
    nb = _go_cidr(fn, want(fn, 2, b, "string"))
    return _go_contains(na, nb.network_address) or _go_contains(nb, na.network_address)


def _match_terms(fn: str, position: int, operand: Any) -> list[tuple[Any, Any]]:
    """(key, network text) pairs of a contains_matches operand: a string keys itself; an
    array's elements by index, a set's by themselves, an object's values by key. An
    element is a string or a non-empty array whose first element is the text."""
    if type(operand) is str:
        return [(operand, operand)]
    if type(operand) is list:
        pairs = list(enumerate(operand))
    elif isinstance(operand, RegoSet | set | frozenset):
        pairs = [(x, x) for x in operand]
    elif isinstance(operand, dict):
        pairs = list(operand.items())
    else:
        want(fn, position, operand, "string", "array", "set", "object")
        raise AssertionError
    out = []
    for key, element in pairs:
        if type(element) is str:
            text = element
        elif type(element) is list and element:
            text = element[0]
        else:
            raise BuiltinError(
                f"{fn}: operand {position}: element must be string or non-empty array"
            )
        out.append((key, text))
    return out


@builtin("net.cidr_contains_matches")
def cidr_contains_matches(cidrs: Any, cidrs_or_ips: Any) -> RegoSet:
    """The set of [key of a network, key of an address] where the network contains the
    address (keys: array indexes, set elements, object keys, or a lone string itself)."""
    fn = "net.cidr_contains_matches"
    left = _match_terms(fn, 1, cidrs)
    right = _match_terms(fn, 2, cidrs_or_ips) if left else []
    if len(left) * len(right) > MAX_PAIRS:
        raise BuiltinError(f"{fn}: more than {MAX_PAIRS} pairs to test")
    out = []
    for k1, cidr in left:
        for k2, subject in right:
            if type(cidr) is not str or type(subject) is not str:
                raise BuiltinError(f"{fn}: operand must be string")
            if _contains(fn, cidr, subject):
                out.append([k1, k2])
    return RegoSet(out)


def _merge_item(fn: str, element: Any) -> tuple[int, int, int, str | None]:
    """(family, first, last, the text Go prints when nothing merges with it)."""
    if type(element) is not str:
        raise BuiltinError(f"{fn}: element must be string")
    ip = _go_ip(element)
    if ip is None:
        net = _go_cidr(fn, element)
        first, last = int(net.network_address), int(net.broadcast_address)
        return net.version, first, last, str(net)
    if ip.version == 6:
        raise BuiltinError(f"{fn}: IPv6 invalid: needs prefix length")
    # Go gives a bare IPv4 address its classful default mask and prints it unmasked.
    top = int(ip) >> 24
    prefix = 8 if top < 0x80 else 16 if top < 0xC0 else 24
    host = (1 << (32 - prefix)) - 1
    first = int(ip) & ~host
    return 4, first, first | host, f"{ip}/{prefix}"


@builtin("net.cidr_merge")
def cidr_merge(addrs: Any) -> RegoSet:
    """The smallest set of networks covering the addresses and networks given (OPA's
    algorithm: sort by last address, fold each range into its predecessor when adjacent
    or overlapping)."""
    fn = "net.cidr_merge"
    if type(addrs) is list:
        items = addrs
    elif isinstance(addrs, RegoSet | set | frozenset):
        items = list(addrs)
    else:
        raise BuiltinError(f"{fn}: operand must be an array")
    ranges = sorted(
        (_merge_item(fn, e) for e in items), key=lambda r: (_key(r[0], r[2]), _key(r[0], r[1]))
    )
    # From the end, as OPA: a range whose previous address (wrapping at zero) is at most
    # the last of the range before it folds into that one.
    for i in range(len(ranges) - 1, 0, -1):
        family, first, last, _ = ranges[i]
        pf, pfirst, plast, _ = ranges[i - 1]
        if _key(family, first - 1) <= _key(pf, plast):
            if pf != family:
                raise BuiltinError(f"{fn}: cannot merge IPv4 and IPv6 ranges")
            ranges[i - 1] = (family, min(first, pfirst), last, None)
            del ranges[i]
    out: list[str] = []
    for family, first, last, text in ranges:
        if text is not None:
            out.append(text)
            continue
        cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        out += [str(n) for n in ipaddress.summarize_address_range(cls(first), cls(last))]
    return RegoSet(out)


def _key(family: int, value: int) -> bytes:
    """Go's bytes.Compare order of an address: 4 bytes for IPv4, 16 for IPv6."""
    width = 4 if family == 4 else 16
    return (value % (1 << (8 * width))).to_bytes(width, "big")
