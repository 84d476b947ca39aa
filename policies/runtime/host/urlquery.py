"""urlquery.* builtins with Go's net/url escaping, as OPA does them.

regorus builds these on Rust's ``url`` form encoding, which differs from OPA
where policies notice: it leaves ``*`` raw and escapes ``~``, joins decoded
pairs without their ``&``, and keeps malformed escapes. OPA's users expect Go's
``QueryEscape``/``QueryUnescape``/``ParseQuery``; a malformed escape or a ``;``
separator is an error there, and so here (fail closed).
"""

from __future__ import annotations

import re
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, type_name, want
from policies.runtime.host.encoding import lossy_utf8
from policies.runtime.values import RegoSet, rego_sort_key

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_ESCAPE = {b: chr(b) if b in _SAFE else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)}
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def query_escape(s: str) -> str:
    """Go's ``url.QueryEscape``: unreserved bytes kept, space as ``+``, the rest ``%XX``."""
    return "".join(_ESCAPE[b] for b in s.encode())


def query_unescape(s: str, fn: str) -> str:
    """Go's ``url.QueryUnescape``: ``+`` is a space, ``%XX`` a byte; a bad escape an error."""
    raw = s.encode()
    bad = _BAD_PCT.search(raw)
    if bad:
        bit = raw[bad.start() : bad.start() + 3].decode("utf-8", "replace")
        raise BuiltinError(f"{fn}: invalid URL escape {bit!r}")
    return lossy_utf8(_PCT.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"+", b" ")))


@builtin("urlquery.encode")
def urlquery_encode(x: Any) -> str:
    return query_escape(want("urlquery.encode", 1, x, "string"))


@builtin("urlquery.decode")
def urlquery_decode(x: Any) -> str:
    return query_unescape(want("urlquery.decode", 1, x, "string"), "urlquery.decode")


@builtin("urlquery.encode_object")
def urlquery_encode_object(x: Any) -> str:
    """Go's ``url.Values.Encode``: keys sorted, a key once per value, values in order."""
    fn = "urlquery.encode_object"
    want(fn, 1, x, "object")
    pairs: list[str] = []
    for key in sorted(x, key=rego_sort_key):
        if type(key) is not str:
            raise BuiltinError(f"{fn}: operand 1 keys must be strings but got {type_name(key)}")
        value = x[key]
        if type(value) is str:
            values = [value]
        elif type(value) is list or isinstance(value, RegoSet):
            values = list(value)
            for v in values:
                if type(v) is not str:
                    raise BuiltinError(
                        f"{fn}: operand 1 values must be strings or arrays/sets of strings"
                    )
        else:
            raise BuiltinError(
                f"{fn}: operand 1 values must be strings or arrays/sets of strings "
                f"but got {type_name(value)}"
            )
        k = query_escape(key)
        pairs.extend(f"{k}={query_escape(v)}" for v in values)
    return "&".join(pairs)


@builtin("urlquery.decode_object")
def urlquery_decode_object(x: Any) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``: ``&``-separated pairs, each key to its values in order."""
    fn = "urlquery.decode_object"
    s = want(fn, 1, x, "string")
    out: dict[str, list[str]] = {}
    for part in s.split("&"):
        if ";" in part:
            raise BuiltinError(f"{fn}: invalid semicolon separator in query")
        if not part:
            continue
        key, _, value = part.partition("=")
        out.setdefault(query_unescape(key, fn), []).append(query_unescape(value, fn))
    return out
