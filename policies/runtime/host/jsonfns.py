"""json.* builtins: marshal and unmarshal as regorus does them, filter/remove as
regorus does them, json.patch as OPA does it (regorus lacks it).

The value model is IEEE doubles (integers exact within 2^53), so
``json.unmarshal`` refuses an integer literal beyond 2^53 rather than rounding
it (as the sidecar refuses such an input): a silently different number is a
wrong answer. Every builtin bounds its work: nesting depth, node count, output size.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, type_name, want
from policies.runtime.host.strings import BoundedText
from policies.runtime.values import (
    MAX_EXACT_INT,
    MIN_EXACT_INT,
    UNDEFINED,
    FrozenDict,
    RegoSet,
    rego_sort_key,
)

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_TEXT", "format_number", "marshal", "parse_json"]

MAX_DEPTH = 100  # levels of nested arrays/objects json.unmarshal builds
MAX_NODES = 1 << 20  # values json.unmarshal builds, or json.patch copies
MAX_TEXT = 16 << 20  # characters a builtin's text result may reach
_SERDE_DEPTH = 128  # regorus (serde_json) refuses this many levels: json.is_valid agrees

# ------------------------------------------------------------------ numbers

_I64_LOW = -9.223372036854775e18  # regorus prints integral doubles in (this, 2^64) in full
_U64_END = 18446744073709551616.0


def format_number(v: int | float) -> str:
    """``v`` as regorus's json.marshal writes it.

    Integral values print in full (shortest digits, zero padded) within
    regorus's integer range; others in decimal when the first digit is at
    10^-5 or above, else as ``d.ddde±x``. Beyond 2^64 and below 1e-5 regorus
    goes through a lossy decimal-to-double step and may print neighbouring
    digits; we print the value's own shortest digits (docs: divergences).
    """
    if type(v) is int:
        if not MIN_EXACT_INT <= v <= MAX_EXACT_INT:
            raise BuiltinError(f"number {v} beyond int64 cannot be represented exactly")
        return str(v)
    if not math.isfinite(v):
        raise BuiltinError(f"number {v} has no JSON form")
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0"
    dec = Decimal(repr(v))
    if v.is_integer() and _I64_LOW < v < _U64_END:
        return str(int(dec))
    sign, digit_tuple, exp = dec.as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    e10 = int(exp) + len(digit_tuple) - 1
    if not v.is_integer() and -5 <= e10 < 16:
        return format(dec, "f")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if e10 > 0 else '-'}{abs(e10)}"


# ------------------------------------------------------------------ marshal


def _key_text(k: Any) -> str:
    """An object key as JSON text: a string as is, any other key as its compact JSON."""
    return k if type(k) is str else marshal(k)


def _ordered(items: Any) -> list[Any]:
    return sorted(items, key=rego_sort_key)


def _is_array(v: Any) -> bool:
    return type(v) is list or type(v) is tuple  # a RegoSet is a tuple too: not an array


def _is_set(v: Any) -> bool:
    return isinstance(v, (RegoSet, set, frozenset))


class _Writer(BoundedText):
    """JSON text of builtin ``fn``: a result past MAX_TEXT is refused, not built."""

    __slots__ = ("fn",)

    def __init__(self, fn: str) -> None:
        super().__init__(f"{fn}: result larger than {MAX_TEXT} characters", MAX_TEXT)
        self.fn = fn


def _write(v: Any, out: _Writer, indent: str | None, level: int) -> None:
    t = type(v)
    if t is str:
        out.add(json.dumps(v, ensure_ascii=False))  # serde_json's escapes exactly
    elif t is bool:
        out.add("true" if v else "false")
    elif v is None:
        out.add("null")
    elif t is int or t is float:
        out.add(format_number(v))
    elif isinstance(v, dict):
        _write_items("{}", _ordered(v), v, out, indent, level)
    elif isinstance(v, (list, tuple, RegoSet, set, frozenset)):
        items = v if isinstance(v, (list, tuple)) else _ordered(v)
        _write_items("[]", items, None, out, indent, level)
    else:
        raise BuiltinError(f"{out.fn}: cannot marshal a {type_name(v)}")


def _write_items(
    brackets: str,
    items: Any,
    obj: dict[Any, Any] | None,
    out: _Writer,
    indent: str | None,
    level: int,
) -> None:
    """An array's items, or (``obj`` given) an object's keys and their values, as serde_json
    writes them compact or pretty (an empty one stays on its line). Each key is marshalled
    as it is written, so the running size bounds the work."""
    if not items:
        out.add(brackets)
        return
    out.add(brackets[0])
    for i, x in enumerate(items):
        if i:
            out.add(",")
        if indent is not None:
            out.add("\n" + indent * (level + 1))
        if obj is not None:
            out.add(json.dumps(_key_text(x), ensure_ascii=False))
            out.add(":" if indent is None else ": ")
            x = obj[x]
        _write(x, out, indent, level + 1)
    if indent is not None:
        out.add("\n" + indent * level)
    out.add(brackets[1])


def marshal(v: Any, fn: str = "json.marshal", indent: str | None = None, prefix: str = "") -> str:
    """``v`` as regorus's JSON text: keys in Rego order, sets as arrays, no spaces.

    With ``indent``, one element per line, each line starting with ``prefix``
    and the indent once per level (regorus re-indents serde's pretty output so).
    """
    out = _Writer(fn)
    if indent is None:
        _write(v, out, None, 0)
        return out.text()
    _write(v, out, "\x00", 0)  # a level marker no JSON text holds raw
    text = out.text()
    lines = text.split("\n")
    grown = len(text) + len(lines) * len(prefix) + text.count("\x00") * (len(indent) - 1)
    if grown > MAX_TEXT:
        raise BuiltinError(f"{fn}: result larger than {MAX_TEXT} characters")
    return "\n".join(prefix + line.replace("\x00", indent) for line in lines)


@builtin("json.marshal")
def json_marshal(x: Any) -> str:
    return marshal(x)


@builtin("json.marshal_with_options")
def json_marshal_with_options(x: Any, options: Any) -> str:
    fn = "json.marshal_with_options"
    want(fn, 2, options, "object")
    pretty, indent, prefix = True, "\t", ""
    for key in _ordered(options):
        value = options[key]
        if key == "pretty":
            if type(value) is not bool:
                raise BuiltinError(f"{fn}: marshaling option `pretty` must be true or false")
            pretty = value
        elif key in ("prefix", "indent"):
            if type(value) is not str:
                raise BuiltinError(f"{fn}: marshaling option `{key}` must be a string")
            if key == "prefix":
                prefix = value
            else:
                indent = value
        else:
            raise BuiltinError(
                f"{fn}: marshaling option must be one of `indent`, `prefix` or `pretty`"
            )
    if not pretty or not options:
        return marshal(x, fn)
    return marshal(x, fn, indent, prefix)


# ------------------------------------------------------------------ unmarshal

_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _exact_int(fn: str) -> Any:
    """An integer literal within int64, exact; one beyond is refused, as the sidecar's input
    is (regorus rounds some of those silently: a different number is a wrong answer)."""

    def parse(s: str) -> int | float:
        if s == "-0":
            return -0.0  # regorus keeps the sign
        if len(s) > 20 or not MIN_EXACT_INT <= int(s) <= MAX_EXACT_INT:
            shown = s if len(s) <= 40 else s[:40] + "..."
            raise BuiltinError(f"{fn}: integer {shown} is beyond int64 and would not be exact")
        return int(s)

    return parse


def _finite_float(s: str) -> float:
    f = float(s)
    if not math.isfinite(f):
        raise ValueError(f"number {s[:40]} out of range")
    return f


def parse_json(text: str, fn: str, *, max_depth: int = MAX_DEPTH, exact: bool = True) -> Any:
    """``text`` as a Rego value, refusing what regorus's serde_json refuses.

    Python's parser is laxer in three ways, each closed here: NaN/Infinity, lone
    surrogate escapes, and numbers out of double range. ``exact`` refuses
    integer literals beyond 2^53; the depth and node bounds hold either way.
    """
    try:
        value = json.loads(
            text,
            parse_int=_exact_int(fn) if exact else _finite_int,
            parse_float=_finite_float,
            parse_constant=_bad_constant,
        )
    except RecursionError:
        raise BuiltinError(f"{fn}: JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as err:
        raise BuiltinError(f"{fn}: invalid JSON: {err}") from None
    except ValueError as err:
        raise BuiltinError(f"{fn}: invalid JSON: {err}") from None
    budget = [MAX_NODES]
    _check(value, fn, max_depth, budget)
    return value


def _finite_int(s: str) -> int | float:
    return -0.0 if s == "-0" else (int(s) if len(s) <= 40 else _finite_float(s))


def _check(v: Any, fn: str, depth: int, budget: list[int]) -> None:
    """Depth, node count and Unicode (no lone surrogate) of a parsed value."""
    budget[0] -= 1
    if budget[0] < 0:
        raise BuiltinError(f"{fn}: JSON has more than {MAX_NODES} values")
    t = type(v)
    if t is str:
        if _SURROGATE.search(v):
            raise BuiltinError(f"{fn}: invalid JSON: lone surrogate in a string escape")
        return
    if t is list or t is dict:
        if depth <= 0:
            raise BuiltinError(f"{fn}: JSON nested deeper than the limit")
        if t is dict:
            for k, x in v.items():
                if _SURROGATE.search(k):
                    raise BuiltinError(f"{fn}: invalid JSON: lone surrogate in a string escape")
                _check(x, fn, depth - 1, budget)
        else:
            for x in v:
                _check(x, fn, depth - 1, budget)


@builtin("json.unmarshal")
def json_unmarshal(x: Any) -> Any:
    s = want("json.unmarshal", 1, x, "string")
    return parse_json(s, "json.unmarshal")


@builtin("json.is_valid")
def json_is_valid(x: Any) -> bool:
    """Whether regorus parses ``x``: syntax, numbers in double range, serde's depth bound.

    An integer beyond 2^53 is valid JSON (only json.unmarshal refuses to hold it).
    """
    s = want("json.is_valid", 1, x, "string")
    try:
        parse_json(s, "json.is_valid", max_depth=_SERDE_DEPTH - 1, exact=False)
    except BuiltinError:
        return False
    return True


# ------------------------------------------------------------------ filter / remove
#
# A port of regorus's algorithm (its oracle): the paths merge into a tree of
# objects keyed by path segment, ``None -> None`` marking where a path ends.
# String paths split on "/" with no "~0"/"~1" unescaping and no leading "/"
# trimmed, as regorus does (OPA trims and unescapes: docs, divergences).

_END = None


class _Tree(dict):  # type: ignore[type-arg]
    """Filter tree node: rego_sort_key(segment) -> (segment, _Tree)."""


def _merge_paths(fn: str, paths: Any) -> _Tree:
    if isinstance(paths, (RegoSet, set, frozenset)):
        items = _ordered(paths)
    elif isinstance(paths, (list, tuple)):
        items = list(paths)
    else:
        raise BuiltinError(f"{fn}: operand 2 must be set or array but got {type_name(paths)}")
    root = _Tree()
    for p in items:
        if type(p) is str:
            segments: list[Any] = p.split("/")
        elif _is_array(p):
            segments = list(p)
        else:
            raise BuiltinError(
                f"{fn}: requires path to be '/' separated string or array of path components"
            )
        node = root
        for seg in segments:
            k = rego_sort_key(seg)
            if k not in node:
                node[k] = (seg, _Tree())
            node = node[k][1]
        node[rego_sort_key(_END)] = (_END, _Tree())
    return root


_END_KEY = rego_sort_key(_END)


def _get(v: Any, key: Any) -> Any:
    """``v[key]`` as Rego indexes (UNDEFINED when absent)."""
    if isinstance(v, dict):
        if type(key) is str:  # a string key equals only itself: the dict finds it
            return v.get(key, UNDEFINED)
        want_key = rego_sort_key(key)
        for k, x in v.items():
            if rego_sort_key(k) == want_key:
                return x
        return UNDEFINED
    if _is_array(v):
        if type(key) in (int, float) and float(key).is_integer() and 0 <= key < len(v):
            return v[int(key)]
        return UNDEFINED
    return UNDEFINED


_JSON_WS = " \t\n\r"


def _index_of(segment: str) -> Any:
    """A string segment as regorus reads an array index: the JSON value it spells."""
    try:
        return parse_json(segment.strip(_JSON_WS), "json.filter", exact=False)
    except BuiltinError:
        return UNDEFINED


def _filter(v: Any, tree: _Tree) -> Any:
    if len(tree) == 1 and _END_KEY in tree:
        return v
    if not tree:
        return v
    entries = [tree[k] for k in sorted(tree)]
    if _is_array(v):
        items = []
        for seg, sub in entries:
            if type(seg) is str:
                idx = _index_of(seg)
                if idx is not UNDEFINED:
                    item = _filter(_get(v, idx), sub)
                    if item is not UNDEFINED:
                        items.append(item)
        return items
    if isinstance(v, (RegoSet, set, frozenset)):
        members = {rego_sort_key(x) for x in v}
        out = []
        for seg, sub in entries:
            if rego_sort_key(seg) in members:
                item = _filter(seg, sub)
                if item is not UNDEFINED:
                    out.append(item)
        return RegoSet(out)
    if isinstance(v, dict):
        result = {}
        for seg, sub in entries:
            item = _filter(_get(v, seg), sub)
            if item is not UNDEFINED:
                result[_hashable(seg)] = item
        return result
    return UNDEFINED


def _remove(v: Any, tree: _Tree) -> Any:
    if not tree:
        return v
    if _END_KEY in tree:
        return UNDEFINED
    if _is_array(v):
        items = []
        for i, x in enumerate(v):
            hit = tree.get(rego_sort_key(str(i)))
            item = _remove(x, hit[1]) if hit else x
            if item is not UNDEFINED:
                items.append(item)
        return items
    if isinstance(v, (RegoSet, set, frozenset)):
        out = []
        for x in v:
            hit = tree.get(rego_sort_key(x))
            item = _remove(x, hit[1]) if hit else x
            if item is not UNDEFINED:
                out.append(item)
        return RegoSet(out)
    if isinstance(v, dict):
        result = {}
        for k, x in v.items():
            hit = tree.get(rego_sort_key(k))
            item = _remove(x, hit[1]) if hit else x
            if item is not UNDEFINED:
                result[k] = item
        return result
    return UNDEFINED


@builtin("json.filter")
def json_filter(x: Any, paths: Any) -> Any:
    want("json.filter", 1, x, "object")
    tree = _merge_paths("json.filter", paths)
    if not tree:
        return {}
    return _filter(x, tree)


@builtin("json.remove")
def json_remove(x: Any, paths: Any) -> Any:
    want("json.remove", 1, x, "object")
    return _remove(x, _merge_paths("json.remove", paths))


# ------------------------------------------------------------------ patch (RFC 6902, as OPA)


class _Set:
    """A set being edited: members by Rego key, each kept with its current value."""

    __slots__ = ("members",)

    def __init__(self, members: dict[Any, Any]) -> None:
        self.members = members


class _Patch:
    """OPA's edit tree: the document copied once into mutable nodes, edited, rendered."""

    def __init__(self) -> None:
        self.budget = MAX_NODES

    def _spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise BuiltinError(f"json.patch: the patch builds more than {MAX_NODES} values")

    def node(self, v: Any) -> Any:
        self._spend()
        if isinstance(v, dict):
            return {k: self.node(x) for k, x in v.items()}
        if _is_array(v):
            return [self.node(x) for x in v]
        if isinstance(v, (RegoSet, set, frozenset)):
            return _Set({rego_sort_key(x): self.node(x) for x in v})
        return v

    def render(self, n: Any) -> Any:
        self._spend()
        if isinstance(n, dict):
            return {k: self.render(x) for k, x in n.items()}
        if isinstance(n, list):
            return [self.render(x) for x in n]
        if isinstance(n, _Set):
            return RegoSet(self.render(x) for x in n.members.values())
        return n


def _hashable(v: Any) -> Any:
    """A rendered value usable as an object key (arrays as tuples, objects frozen)."""
    if _is_array(v):
        return tuple(_hashable(x) for x in v)
    if type(v) is dict:
        return FrozenDict({k: _hashable(x) for k, x in v.items()})
    return v


def _obj_key(d: dict[Any, Any], seg: Any) -> Any:
    """The key of ``d`` equal to ``seg`` in Rego (1 and true are different keys)."""
    if type(seg) is str:
        return seg if seg in d else UNDEFINED
    want_key = rego_sort_key(seg)
    for k in d:
        if rego_sort_key(k) == want_key:
            return k
    return UNDEFINED


_INDEX = re.compile(r"[+-]?[0-9]+")


def _array_index(length: int, seg: Any, append_ok: bool) -> int:
    if type(seg) is int:
        raw = seg
    elif type(seg) is float:
        raise BuiltinError("json.patch: array index must be an integer")
    elif type(seg) is str:
        if seg == "-":
            if not append_ok:
                raise BuiltinError("json.patch: '-' index is not valid here")
            raw = length
        elif seg != "0" and seg.startswith("0"):
            raise BuiltinError("json.patch: leading zeros are not allowed in JSON paths")
        elif _INDEX.fullmatch(seg) and len(seg) <= 20:
            raw = int(seg)
        else:
            raise BuiltinError(f"json.patch: invalid string for indexing: {seg[:40]!r}")
    else:
        raise BuiltinError("json.patch: invalid type for indexing")
    if raw < 0:
        raise BuiltinError(f"json.patch: negative index: {raw}")
    if raw > length or (raw == length and not append_ok):
        raise BuiltinError(f"json.patch: index {raw} out of bounds for length {length}")
    return raw


def _descend(p: _Patch, n: Any, seg: Any) -> Any:
    """The child of node ``n`` at ``seg`` (an error if there is none)."""
    if isinstance(n, dict):
        k = _obj_key(n, seg)
        if k is UNDEFINED:
            raise BuiltinError(f"json.patch: path {marshal(seg)} does not exist in object")
        return n[k]
    if isinstance(n, list):
        return n[_array_index(len(n), seg, False)]
    if isinstance(n, _Set):
        key = rego_sort_key(seg)
        if key not in n.members:
            raise BuiltinError(f"json.patch: path {marshal(seg)} does not exist in set")
        return n.members[key]
    raise BuiltinError(f"json.patch: expected composite type, found value: {marshal(n)}")


def _edit(p: _Patch, n: Any, path: list[Any], op: str, value: Any = None) -> Any:
    """Insert ``value`` at, or remove what is at, ``path`` below node ``n``.

    Returns the removed node for "remove". A set member edited below its top is
    re-keyed by its new value, as OPA does.
    """
    head, rest = path[0], path[1:]
    if isinstance(n, _Set) and rest:
        key = rego_sort_key(head)
        if key not in n.members:
            raise BuiltinError(f"json.patch: path {marshal(head)} does not exist in set")
        member = n.members.pop(key)
        out = _edit(p, member, rest, op, value)
        n.members[rego_sort_key(p.render(member))] = member
        return out
    if rest:
        return _edit(p, _descend(p, n, head), rest, op, value)
    if isinstance(n, dict):
        k = _obj_key(n, head)
        if op == "add":
            n[_hashable(head) if k is UNDEFINED else k] = value
            return None
        if k is UNDEFINED:
            raise BuiltinError(f"json.patch: path {marshal(head)} does not exist in object")
        return n.pop(k)
    if isinstance(n, list):
        i = _array_index(len(n), head, op == "add")
        if op == "add":
            n.insert(i, value)
            return None
        return n.pop(i)
    if isinstance(n, _Set):
        key = rego_sort_key(head)
        if op == "add":
            rendered = p.render(value)
            if rego_sort_key(rendered) != key:
                raise BuiltinError(
                    f"json.patch: set key {marshal(head)} does not equal value to be inserted "
                    f"{marshal(rendered)}"
                )
            n.members[key] = value
            return None
        if key not in n.members:
            raise BuiltinError(f"json.patch: path {marshal(head)} does not exist in set")
        return n.members.pop(key)
    raise BuiltinError(f"json.patch: expected composite type, found value: {marshal(n)}")


def _pointer(v: Any, what: str) -> list[Any]:
    """A JSON pointer (RFC 6901, "~1" then "~0" unescaped) or an array of segments."""
    if type(v) is str:
        if v == "":
            return []
        return [s.replace("~1", "/").replace("~0", "~") for s in v.lstrip("/").split("/")]
    if _is_array(v):
        return list(v)
    raise BuiltinError(f"json.patch: {what} must be a string or an array of path segments")


class _Doc:
    """The document root, which "remove" of "" deletes (the result is then undefined)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.gone = False

    def get(self, p: _Patch, path: list[Any]) -> Any:
        if self.gone:
            raise BuiltinError("json.patch: path does not exist in deleted document")
        n = self.root
        for seg in path:
            n = _descend(p, n, seg)
        return n

    def add(self, p: _Patch, path: list[Any], node: Any) -> None:
        if not path:
            self.root, self.gone = node, False
            return
        if self.gone:
            raise BuiltinError("json.patch: path does not exist in deleted document")
        _edit(p, self.root, path, "add", node)

    def remove(self, p: _Patch, path: list[Any]) -> Any:
        if self.gone:
            raise BuiltinError("json.patch: root is already deleted" if not path else
                               "json.patch: path does not exist in deleted document")  # fmt: skip
        if not path:
            self.gone = True
            return self.root
        return _edit(p, self.root, path, "remove")


def _field(op: dict[Any, Any], name: str) -> Any:
    if name not in op:
        raise BuiltinError(f"json.patch: missing '{name}' attribute")
    return op[name]


def _rego_equal(a: Any, b: Any) -> bool:
    return rego_sort_key(a) == rego_sort_key(b)


@builtin("json.patch")
def json_patch(target: Any, patches: Any) -> Any:
    want("json.patch", 2, patches, "array")
    p = _Patch()
    doc = _Doc(p.node(target))
    for op in patches:
        if not isinstance(op, dict):
            raise BuiltinError(
                "json.patch: must be an array of JSON-Patch objects, "
                "but at least one element is not an object"
            )
        name = _field(op, "op")
        if type(name) is not str:
            raise BuiltinError("json.patch: attribute 'op' must be a string")
        if name == "add":
            doc.add(p, _pointer(_field(op, "path"), "path"), p.node(_field(op, "value")))
        elif name == "remove":
            doc.remove(p, _pointer(_field(op, "path"), "path"))
        elif name == "replace":
            path = _pointer(_field(op, "path"), "path")
            doc.remove(p, path)
            doc.add(p, path, p.node(_field(op, "value")))
        elif name == "move":
            src = _pointer(_field(op, "from"), "from")
            path = _pointer(_field(op, "path"), "path")
            doc.add(p, path, doc.remove(p, src))
        elif name == "copy":
            src = _pointer(_field(op, "from"), "from")
            path = _pointer(_field(op, "path"), "path")
            doc.add(p, path, p.node(p.render(doc.get(p, src))))
        elif name == "test":
            path = _pointer(_field(op, "path"), "path")
            actual = p.render(doc.get(p, path))
            if not _rego_equal(actual, _field(op, "value")):
                raise BuiltinError(
                    f"json.patch: value from patch != expected value (expected "
                    f"{marshal(op['value'])[:200]}, found {marshal(actual)[:200]})"
                )
        else:
            raise BuiltinError(f"json.patch: unrecognized op {name[:40]!r}")
    return UNDEFINED if doc.gone else p.render(doc.root)
