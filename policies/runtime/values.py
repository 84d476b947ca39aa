"""The Python side of the a1rt value layout (docs/policy-abi.md, "Values").

The sidecar calls ``encode_input`` and ``decode`` on every decision, so both
are written for CPython speed: exact ``type()`` dispatch, precompiled
``struct.Struct`` objects, one growing ``bytearray`` and no intermediate
objects per value. ``rego_sort_key`` is Rego's total order (regorus's),
which the encoder needs to lay out sets and the tests use as the reference.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "MAX_EXACT_INT",
    "MIN_EXACT_INT",
    "UNDEFINED",
    "DecodeLimitError",
    "FrozenDict",
    "RegoSet",
    "decode",
    "encode_input",
    "encode_value",
    "rego_compare",
    "rego_sort_key",
    "to_json_compatible",
]

T_NULL, T_BOOL, T_NUM, T_STR, T_ARR, T_SET, T_OBJ = 1, 2, 3, 4, 5, 6, 7
# Integers are exact over int64: within 2^53 as doubles, beyond as number records
# flagged (flags bit 0) with an i64 payload. Past int64 an integer is refused (the
# encoder names its path; the compiler refuses such a literal with its location).
MIN_EXACT_INT: Final = -(2**63)
MAX_EXACT_INT: Final = 2**63 - 1
_F64_INT: Final = 2**53  # integers a double holds exactly
_T_I64: Final = T_NUM | 0x100  # a number record's first word when flagged


class _Undefined:
    """Rego's undefined: the result of a rule that did not produce a value."""

    __slots__ = ()
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> tuple[type[_Undefined], tuple[()]]:
        return (_Undefined, ())


UNDEFINED: Final = _Undefined()


class RegoSet(tuple):  # type: ignore[type-arg]
    """A Rego set: its elements in Rego order, without duplicates.

    ``RegoSet(iterable)`` sorts and deduplicates; it is hashable when its
    elements are. It equals another ``RegoSet`` with the same elements, or a
    Python ``set``/``frozenset`` holding them.
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] = ()) -> RegoSet:
        return tuple.__new__(cls, _sorted_unique(items))

    @classmethod
    def _sorted(cls, items: Iterable[Any]) -> RegoSet:
        """Wrap elements already in Rego order (the decoder's fast path)."""
        return tuple.__new__(cls, items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RegoSet):
            return tuple.__eq__(self, other)
        if isinstance(other, (set, frozenset)):
            return len(self) == len(other) and all(x in other for x in self)
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return "RegoSet({" + ", ".join(repr(x) for x in self) + "})"


class FrozenDict(dict):  # type: ignore[type-arg]
    """A Rego object used as an object key: a read-only, hashable dict."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("FrozenDict is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only


# ---------------------------------------------------------------- the order


def rego_sort_key(v: Any) -> tuple[Any, ...]:
    """A key whose Python ordering is Rego's total order.

    null < boolean < number < string < array < set < object; numbers by value,
    strings by code point (= by UTF-8 bytes), collections element by element
    then by length, objects pair by pair (key, then value) in key order.
    """
    t = type(v)
    if t is str:
        return (T_STR, v)
    if t is int or t is float:
        return (T_NUM, v)
    if t is bool:
        return (T_BOOL, v)
    if v is None:
        return (T_NULL,)
    if t is list or t is tuple:
        return (T_ARR, tuple(map(rego_sort_key, v)))
    if t is dict:
        return (T_OBJ, tuple(sorted((rego_sort_key(k), rego_sort_key(x)) for k, x in v.items())))
    if isinstance(v, (RegoSet, set, frozenset)):
        return (T_SET, tuple(sorted(set(map(rego_sort_key, v)))))
    if isinstance(v, bool):
        return (T_BOOL, bool(v))
    if isinstance(v, (int, float)):
        return (T_NUM, v)
    if isinstance(v, str):
        return (T_STR, str(v))
    if isinstance(v, (list, tuple)):
        return (T_ARR, tuple(map(rego_sort_key, v)))
    if isinstance(v, dict):
        return rego_sort_key(dict(v))
    raise ValueError(f"unsupported type {type(v).__name__}")


def rego_compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as ``a`` is before, equal to or after ``b`` in Rego's order."""
    ka, kb = rego_sort_key(a), rego_sort_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


def _sorted_unique(items: Iterable[Any]) -> list[Any]:
    keyed = sorted(((rego_sort_key(x), i, x) for i, x in enumerate(items)), key=_first)
    out: list[Any] = []
    last: Any = _NOKEY
    for k, _, x in keyed:
        if k != last:
            out.append(x)
            last = k
    return out


def _first(t: tuple[Any, ...]) -> Any:
    return t[0]


_NOKEY: Final = object()


def to_json_compatible(v: Any) -> Any:
    """``v`` with sets turned into sorted lists (recursively), for printing as JSON."""
    if v is UNDEFINED:
        raise ValueError("undefined has no JSON form")
    if isinstance(v, (RegoSet, set, frozenset)):
        return [to_json_compatible(x) for x in _sorted_unique(v)]
    if isinstance(v, dict):
        return {_json_key(k): to_json_compatible(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_compatible(x) for x in v]
    return v


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    import json

    # as regorus (serde_json) renders a non-string key: compact, UTF-8 kept
    return json.dumps(
        to_json_compatible(k), separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )


# ---------------------------------------------------------------- encoding

_HDR = struct.Struct("<II")  # tag | flags << 8 (reserved 0), n
_NUM = struct.Struct("<IId")
_NUMI = struct.Struct("<IIq")  # flagged number: i64 payload
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_PAD = [b"", *(bytes(8 - k) for k in range(1, 8))]  # _PAD[n & 7] pads n to 8
_NULL = _HDR.pack(T_NULL, 0)
_TRUE = _HDR.pack(T_BOOL, 1)
_FALSE = _HDR.pack(T_BOOL, 0)


class _Unsupported(Exception):
    """Raised inside the encoder; carries the path back up (innermost first)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []


def _enc(v: Any, buf: bytearray, base: int) -> int:
    """Append v's record (and its children's) to buf; return its address."""
    addr = base + len(buf)
    t = type(v)
    if t is str:
        try:
            b = v.encode()
        except UnicodeEncodeError:
            raise _Unsupported("string is not valid Unicode (lone surrogate)") from None
        n = len(b)
        buf += _HDR.pack(T_STR, n)
        buf += b
        buf += _PAD[n & 7]
        return addr
    if t is int:
        if -_F64_INT <= v <= _F64_INT:
            buf += _NUM.pack(T_NUM, 0, v)
            return addr
        if MIN_EXACT_INT <= v <= MAX_EXACT_INT:
            buf += _NUMI.pack(_T_I64, 0, v)
            return addr
        raise _Unsupported("integer beyond int64 cannot be represented exactly")
    if t is bool:
        buf += _TRUE if v else _FALSE
        return addr
    if v is None:
        buf += _NULL
        return addr
    if t is float:
        if math.isfinite(v):
            buf += _NUM.pack(T_NUM, 0, v)
            return addr
        raise _Unsupported(f"number {v!r} is not finite")
    if t is list or t is tuple:
        return _enc_seq(T_ARR, v, buf, base, addr)
    if t is dict:
        return _enc_obj(v, buf, base, addr)
    if isinstance(v, (RegoSet, set, frozenset)):
        items = v if t is RegoSet else _sorted_unique(v)
        return _enc_seq(T_SET, items, buf, base, addr)
    # subclasses (IntEnum, str enums, OrderedDict, ...) take the slow path
    if isinstance(v, bool):
        return _enc(bool(v), buf, base)
    if isinstance(v, int):
        return _enc(int(v), buf, base)
    if isinstance(v, float):
        return _enc(float(v), buf, base)
    if isinstance(v, str):
        return _enc(str(v), buf, base)
    if isinstance(v, (list, tuple)):
        return _enc(list(v), buf, base)
    if isinstance(v, dict):
        return _enc(dict(v), buf, base)
    raise _Unsupported(f"unsupported type {type(v).__name__}")


def _enc_seq(tag: int, items: Sequence[Any], buf: bytearray, base: int, addr: int) -> int:
    n = len(items)
    buf += _HDR.pack(tag, n)
    at = len(buf)
    buf += bytes((4 * n + 7) & ~7)
    pack = _U32.pack_into
    for i, x in enumerate(items):
        if type(x) is str and x.isascii():  # the common case, inlined
            m = len(x)
            pack(buf, at + 4 * i, base + len(buf))
            buf += _HDR.pack(T_STR, m) + x.encode() + _PAD[m & 7]
            continue
        try:
            p = _enc(x, buf, base)
        except _Unsupported as err:
            err.path.append(i)
            raise
        pack(buf, at + 4 * i, p)
    return addr


def _enc_obj(d: dict[Any, Any], buf: bytearray, base: int, addr: int) -> int:
    for k in d:
        if type(k) is not str and not isinstance(k, str):
            # A host builtin's result may key by any value (as the decoder gives them:
            # tuples for arrays, FrozenDicts, RegoSets): laid out in Rego's key order.
            keys = sorted(d, key=rego_sort_key)
            break
    else:
        keys = sorted(d)
    n = len(keys)
    buf += _HDR.pack(T_OBJ, n)
    at = len(buf)
    buf += bytes(8 * n)
    for i, k in enumerate(keys):
        try:
            pk = _enc(k, buf, base)
            pv = _enc(d[k], buf, base)
        except _Unsupported as err:
            err.path.append(k if type(k) is str or type(k) is int else repr(k))
            raise
        _U32.pack_into(buf, at + 8 * i, pk)
        _U32.pack_into(buf, at + 8 * i + 4, pv)
    return addr


def _path_name(root: str, path: list[str | int]) -> str:
    out = root
    for step in reversed(path):
        if isinstance(step, int):
            out += f"[{step}]"
        elif step.isidentifier():
            out += f".{step}"
        else:
            out += f"[{step!r}]"
    return out


def encode_input(
    values: Sequence[Any], base: int, paths: Sequence[Sequence[str]] | None = None
) -> bytes:
    """The input slot table for ``values`` (one per input path) and the values.

    Pointers are absolute, for the bytes written at ``base`` (8-aligned).
    ``UNDEFINED`` leaves a slot 0. ``paths`` (the module's ``input_paths``)
    only serves error messages: ``ValueError("input.subject.roles[2]: ...")``.
    """
    if base & 7:
        raise ValueError(f"input base {base:#x} is not 8-aligned")
    n = len(values)
    buf = bytearray((4 * n + 7) & ~7)
    pack = _U32.pack_into
    for i, v in enumerate(values):
        if type(v) is str and v.isascii():  # the common case, inlined
            m = len(v)
            pack(buf, 4 * i, base + len(buf))
            buf += _HDR.pack(T_STR, m) + v.encode() + _PAD[m & 7]
            continue
        if v is UNDEFINED:
            continue
        try:
            pack(buf, 4 * i, _enc(v, buf, base))
        except _Unsupported as err:
            root = (
                "input" + "".join(f".{p}" if p.isidentifier() else f"[{p!r}]" for p in paths[i])
                if paths is not None and i < len(paths)
                else f"input slot {i}"
            )
            raise ValueError(f"{_path_name(root, err.path)}: {err.message}") from None
        except RecursionError:
            raise ValueError(f"input slot {i}: value nested too deeply") from None
    return bytes(buf)


def encode_value(v: Any, base: int) -> tuple[bytes, int]:
    """One value laid out at ``base``: ``(bytes, pointer to the value)``."""
    buf = bytearray()
    try:
        ptr = _enc(v, buf, base)
    except _Unsupported as err:
        raise ValueError(f"{_path_name('value', err.path)}: {err.message}") from None
    return bytes(buf), ptr


# ---------------------------------------------------------------- decoding

_ARRAY_FMT: dict[int, struct.Struct] = {}


def _ptrs(n: int) -> struct.Struct:
    s = _ARRAY_FMT.get(n)
    if s is None:
        s = struct.Struct(f"<{n}I")
        if len(_ARRAY_FMT) < 256:
            _ARRAY_FMT[n] = s
    return s


class DecodeLimitError(ValueError):
    """A result bigger or deeper than the decoder's budget.

    The runtime shares values by pointer, so a few hundred bytes of policy can
    return a tree with millions of nodes; decoding it would block the caller.
    """


DEFAULT_MAX_NODES: Final = 100_000
DEFAULT_MAX_BYTES: Final = 1 << 20  # string bytes, keys included
DEFAULT_MAX_DEPTH: Final = 100


def _dec(buf: Any, ptr: int, js: bool, b: list[int], d: int) -> Any:
    """Decode one record; ``js`` gives the JSON form (sets as lists, keys as strings).

    ``b`` is the budget left, ``[values, string bytes]``, charged before any
    work; ``d`` the levels of non-empty collections left.
    """
    word, n = _HDR.unpack_from(buf, ptr)
    tag = word & 0xFF
    if tag == T_STR:
        b[1] -= n
        if b[1] < 0:
            raise DecodeLimitError("bytes")
        return str(buf[ptr + 8 : ptr + 8 + n], "utf-8")
    if tag == T_NUM:
        if word & 0x100:
            return _I64.unpack_from(buf, ptr + 8)[0]
        x = _F64.unpack_from(buf, ptr + 8)[0]
        if x.is_integer() and -_F64_INT <= x <= _F64_INT and (x or _pos(x)):
            return int(x)
        return x
    if tag == T_BOOL:
        return n != 0
    if tag == T_NULL:
        return None
    if tag != T_ARR and tag != T_OBJ and tag != T_SET:
        raise ValueError(f"bad value tag {tag} at {ptr:#x}")
    if not n:
        return {} if tag == T_OBJ else [] if js or tag == T_ARR else RegoSet._sorted(())
    count = 2 * n if tag == T_OBJ else n  # an object's keys and values
    b[0] -= count
    if b[0] < 0 or d <= 0:
        raise DecodeLimitError("depth" if d <= 0 else "values")
    d -= 1
    ptrs = _ptrs(count).unpack_from(buf, ptr + 8)
    if tag == T_ARR:
        return [_dec(buf, p, js, b, d) for p in ptrs]
    if tag == T_OBJ:
        key = _json_key if js else _key
        o = {
            key(_dec(buf, ptrs[i], js, b, d)): _dec(buf, ptrs[i + 1], js, b, d)
            for i in range(0, count, 2)
        }
        # Rego keys are unique; Python equates false/0, true/1. In JSON form two keys
        # may render alike (1 and "1"): the later one wins, as in regorus's JSON.
        if len(o) != n and not js:
            raise ValueError("object has keys that Python cannot tell apart (false and 0?)")
        return o
    items = [_dec(buf, p, js, b, d) for p in ptrs]
    return items if js else RegoSet._sorted(items)


def _pos(x: float) -> bool:
    return math.copysign(1.0, x) > 0


def _key(k: Any) -> Any:
    """A hashable form for a non-string object key (Python keys must hash):
    arrays become tuples, objects FrozenDicts, sets RegoSets of such forms;
    strings, numbers, booleans and null stay as they are."""
    t = type(k)
    if t is str:
        return k
    if t is list:
        return tuple(_key(x) for x in k)
    if t is dict:
        return FrozenDict((_key(a), _key(b)) for a, b in k.items())
    if t is RegoSet:
        return RegoSet._sorted([_key(x) for x in k])
    return k


def decode(
    buf: Any,
    ptr: int,
    *,
    json_form: bool = False,
    max_nodes: int = DEFAULT_MAX_NODES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """The value at ``ptr`` in ``buf`` (linear memory from address 0).

    Integral doubles within 2^53 and flagged (int64) numbers become ``int``; sets
    ``RegoSet``; pointer 0 ``UNDEFINED``. With ``json_form`` the result is what
    ``to_json_compatible`` would make of it, built directly, so keys Python would
    conflate (``false`` and ``0``) stay apart as their JSON renderings. Raises ``ValueError`` for a
    malformed record (and ``struct.error``/``IndexError`` for one outside ``buf``),
    and ``DecodeLimitError`` past ``max_nodes`` values (the root and every
    element, key and value), ``max_bytes`` bytes of strings or ``max_depth``
    nested collections, counted as decoded, so shared records count each time.
    """
    if ptr == 0:
        return UNDEFINED
    try:
        return _dec(buf, ptr, json_form, [max_nodes - 1, max_bytes], max_depth)
    except DecodeLimitError as err:
        what = str(err)
        if what == "values":
            raise DecodeLimitError(f"result has more than {max_nodes} values") from None
        if what == "bytes":
            raise DecodeLimitError(f"result has more than {max_bytes} bytes of strings") from None
        raise DecodeLimitError(f"result is nested deeper than {max_depth} levels") from None
    except RecursionError:
        raise DecodeLimitError("result is nested too deeply to decode") from None
