"""``uuid.parse`` and ``uuid.rfc4122``.

``uuid.parse`` reads the four forms the Rust ``uuid`` crate reads (hyphenated,
32 hex digits, braced, ``urn:uuid:``), as regorus does, and answers its version
and variant; a time for versions 1, 2, 6 and 7 (nanoseconds since the epoch, a
64-bit unsigned wrap-around for clocks before 1970, as regorus computes it); the
node, MAC kind and clock sequence for versions 1 and 2; id and domain for 2.
Anything else is undefined.

``uuid.rfc4122(k)`` is a random version-4 UUID, the same one for the same ``k``
throughout one evaluation (OPA caches it per evaluation): it is impure, and its
values live in the evaluation's context.
"""

from __future__ import annotations

import re
import uuid as _uuid
from typing import Any

from policies.runtime.host.base import BuiltinError, EvalContext, builtin, want
from policies.runtime.values import UNDEFINED

__all__ = ["MAX_KEYS"]

MAX_KEYS = 1024
"""Most distinct keys ``uuid.rfc4122`` remembers in one evaluation."""

_HEX = "[0-9A-Fa-f]"
_HYPHENATED = rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_FORMS = re.compile(
    rf"(?:{_HYPHENATED}|{_HEX}{{32}}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED})", re.ASCII
)
_GREGORIAN_OFFSET = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
_U64 = 2**64


def _variant(b: int) -> str:
    if b & 0x80 == 0:
        return "NCS"
    if b & 0xC0 == 0x80:
        return "RFC4122"
    if b & 0xE0 == 0xC0:
        return "Microsoft"
    return "Future"


def _mac(b: int) -> str:
    if b & 0b11 == 0b11:
        return "local:multicast"
    if b & 0b01:
        return "global:multicast"
    if b & 0b10:
        return "local:unicast"
    return "global:unicast"


def _gregorian_ns(ticks: int) -> int:
    since = (ticks - _GREGORIAN_OFFSET) % _U64  # u64 arithmetic, wrapping as regorus's does
    secs, rem = since // 10_000_000, since % 10_000_000
    return (secs * 1_000_000_000 + rem * 100) % _U64


@builtin("uuid.parse")
def parse(text: Any) -> Any:
    s = want("uuid.parse", 1, text, "string")
    if len(s) > 45 or _FORMS.fullmatch(s) is None:
        return UNDEFINED
    b = bytes.fromhex(re.sub(r"[^0-9A-Fa-f]", "", s.removeprefix("urn:uuid:")))
    version = b[6] >> 4
    out: dict[str, Any] = {"version": version, "variant": _variant(b[8])}
    if version in (1, 2):
        ticks = (b[6] & 0x0F) << 56 | b[7] << 48 | b[4] << 40 | b[5] << 32
        ticks |= int.from_bytes(b[0:4], "big")
        out["time"] = _gregorian_ns(ticks)
        out["nodeid"] = "-".join(f"{x:02x}" for x in b[10:16])
        out["macvariables"] = _mac(b[10])
        out["clocksequence"] = int.from_bytes(b[8:10], "big") & 0x3FFF
        if version == 2:
            out["id"] = int.from_bytes(b[0:4], "big")
            out["domain"] = {0: "Person", 1: "Group", 2: "Org"}.get(b[9], f"Domain{b[9]}")
    elif version == 6:
        ticks = int.from_bytes(b[0:4], "big") << 28 | int.from_bytes(b[4:6], "big") << 12
        ticks |= (b[6] & 0x0F) << 8 | b[7]
        out["time"] = _gregorian_ns(ticks)
    elif version == 7:
        out["time"] = int.from_bytes(b[0:6], "big") * 1_000_000 % _U64
    return out


@builtin("uuid.rfc4122", pure=False)
def rfc4122(ctx: EvalContext, key: Any) -> str:
    k = want("uuid.rfc4122", 1, key, "string")
    memo = ctx.memo
    if ("uuid.rfc4122", k) not in memo:
        if sum(1 for m in memo if m[0] == "uuid.rfc4122") >= MAX_KEYS:
            raise BuiltinError(f"uuid.rfc4122: more than {MAX_KEYS} keys in one evaluation")
        memo["uuid.rfc4122", k] = str(_uuid.uuid4())
    return memo["uuid.rfc4122", k]  # type: ignore[no-any-return]
