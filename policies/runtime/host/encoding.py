"""base64, base64url and hex builtins, as regorus does them.

Decoding is strict, as regorus's ``data_encoding`` is: padding where the
alphabet has it, no whitespace, zero trailing bits (the one canonical spelling
of the bytes), so a token has exactly one accepted form. Decoded bytes that are
not UTF-8 become U+FFFD (regorus's ``from_utf8_lossy``): a Rego string is
always valid Unicode, and the value model has no byte strings.
"""

from __future__ import annotations

import base64
import binascii
import re

from policies.runtime.host.base import BuiltinError, builtin, want

__all__ = ["lossy_utf8"]

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def lossy_utf8(data: bytes) -> str:
    """``data`` as text, each ill-formed sequence one U+FFFD (as Rust's ``from_utf8_lossy``)."""
    return data.decode("utf-8", "replace")


def _strict_b64(text: str, urlsafe: bool, pad: bool) -> bytes | None:
    """The bytes ``text`` spells in canonical base64 (None: not canonical base64).

    Padded input may hold padding at the end of any 4-character block, not only
    the last (``data_encoding`` decodes concatenated encodings so).
    """
    if not text.isascii():
        return None
    raw = text.encode()
    if not pad:
        if b"=" in raw or len(raw) % 4 == 1:
            return None
        raw += b"=" * (-len(raw) % 4)
    if len(raw) % 4:
        return None
    if b"=" in raw[:-4]:
        blocks = [_strict_block(raw[i : i + 4], urlsafe) for i in range(0, len(raw), 4)]
        return None if None in blocks else b"".join(blocks)  # type: ignore[arg-type]
    return _strict_block(raw, urlsafe)


def _strict_block(raw: bytes, urlsafe: bool) -> bytes | None:
    """The bytes canonical base64 ``raw`` spells (padding only at its end)."""
    try:
        data = base64.b64decode(raw, altchars=b"-_" if urlsafe else None, validate=True)
    except binascii.Error:
        return None
    again = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return data if again == raw else None  # non-zero trailing bits spell no other bytes


@builtin("base64.encode")
def base64_encode(x: object) -> str:
    s = want("base64.encode", 1, x, "string")
    return base64.b64encode(s.encode()).decode()


@builtin("base64.decode")
def base64_decode(x: object) -> str:
    s = want("base64.decode", 1, x, "string")
    data = _strict_b64(s, urlsafe=False, pad=True)
    if data is None:
        raise BuiltinError("base64.decode: invalid base64 (padded, canonical) input")
    return lossy_utf8(data)


@builtin("base64.is_valid")
def base64_is_valid(x: object) -> bool:
    s = want("base64.is_valid", 1, x, "string")
    return _strict_b64(s, urlsafe=False, pad=True) is not None


@builtin("base64url.encode")
def base64url_encode(x: object) -> str:
    s = want("base64url.encode", 1, x, "string")
    return base64.urlsafe_b64encode(s.encode()).decode()


@builtin("base64url.encode_no_pad")
def base64url_encode_no_pad(x: object) -> str:
    s = want("base64url.encode_no_pad", 1, x, "string")
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


@builtin("base64url.decode")
def base64url_decode(x: object) -> str:
    """Padded or unpadded (JWT segments are unpadded), each in its canonical form."""
    s = want("base64url.decode", 1, x, "string")
    data = _strict_b64(s, urlsafe=True, pad=True)
    if data is None:
        data = _strict_b64(s, urlsafe=True, pad=False)
    if data is None:
        raise BuiltinError("base64url.decode: invalid base64url input")
    return lossy_utf8(data)


@builtin("hex.encode")
def hex_encode(x: object) -> str:
    s = want("hex.encode", 1, x, "string")
    return s.encode().hex()


@builtin("hex.decode")
def hex_decode(x: object) -> str:
    """Either case, an even number of digits, nothing else (``bytes.fromhex`` skips spaces)."""
    s = want("hex.decode", 1, x, "string")
    if not _HEX.fullmatch(s):
        raise BuiltinError("hex.decode: invalid hex input (an even number of hex digits)")
    return lossy_utf8(bytes.fromhex(s))
