"""policies.runtime.values: the byte layout, the Rego order and the decoder."""

from __future__ import annotations

import pickle
import struct
from typing import Any

import pytest
import regorus
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.runtime.values import (
    UNDEFINED,
    DecodeLimitError,
    FrozenDict,
    RegoSet,
    decode,
    encode_input,
    encode_value,
    rego_compare,
    rego_sort_key,
    to_json_compatible,
)

BASE = 0x10_0000

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.lists(c, max_size=4).map(RegoSet),
        st.dictionaries(st.text(max_size=4), c, max_size=4),
    ),
    max_leaves=10,
)


def memory_with(data: bytes, base: int) -> bytearray:
    mem = bytearray(base + len(data))
    mem[base:] = data
    return mem


def same(a: Any, b: Any) -> bool:
    return rego_compare(a, b) == 0 and type(a) is type(b)


def test_scalar_records() -> None:
    data, ptr = encode_value("héllo", BASE)
    assert ptr == BASE
    assert data == struct.pack("<II", 4, 6) + "héllo".encode() + b"\0\0"
    assert encode_value(None, BASE)[0] == struct.pack("<II", 1, 0)
    assert encode_value(True, BASE)[0] == struct.pack("<II", 2, 1)
    assert encode_value(False, BASE)[0] == struct.pack("<II", 2, 0)
    assert encode_value(3, BASE)[0] == struct.pack("<IId", 3, 0, 3.0)
    assert encode_value(-1.5, BASE)[0] == struct.pack("<IId", 3, 0, -1.5)
    assert encode_value("", BASE)[0] == struct.pack("<II", 4, 0)
    assert len(encode_value("12345678", BASE)[0]) == 16


def test_collection_records_are_sorted_and_absolute() -> None:
    data, _ = encode_value({"b": 1, "a": [True]}, BASE)
    tag, n, k0, v0, k1, v1 = struct.unpack_from("<IIIIII", data, 0)
    assert (tag, n) == (7, 2)
    mem = memory_with(data, BASE)
    assert decode(mem, k0) == "a" and decode(mem, k1) == "b"
    assert decode(mem, v0) == [True] and decode(mem, v1) == 1
    assert all(p % 8 == 0 and p >= BASE for p in (k0, v0, k1, v1))
    data, _ = encode_value(RegoSet([3, "a", None, 1.0, 1]), BASE)
    mem = memory_with(data, BASE)
    assert list(decode(mem, BASE)) == [None, 1, 3, "a"]


def test_encode_input_slots() -> None:
    data = encode_input(["GET", UNDEFINED, ["admin", "dev"], None], BASE)
    slots = struct.unpack_from("<4I", data, 0)
    assert slots[1] == 0
    assert slots[0] == BASE + 16  # after the 16-byte slot table
    mem = memory_with(data, BASE)
    assert [decode(mem, p) for p in slots] == ["GET", UNDEFINED, ["admin", "dev"], None]
    assert len(encode_input([1, 2, 3], BASE)) % 8 == 0
    assert encode_input([], BASE) == b""
    with pytest.raises(ValueError, match="8-aligned"):
        encode_input(["x"], BASE + 4)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"subject": {"roles": ["a", "b", b"x"]}},
            r"input\.user\.subject\.roles\[2\]: unsupported type bytes",
        ),
        ({"k": {1: b"x"}}, r"input\.user\.k\[1\]: unsupported type bytes"),
        ([2**63], r"input\.user\[0\]: integer beyond int64"),
        ([-(2**63) - 1], r"input\.user\[0\]: integer beyond int64"),
        ({"a b": float("nan")}, r"input\.user\['a b'\]: number nan is not finite"),
        (["\ud800"], r"input\.user\[0\]: string is not valid Unicode"),
    ],
)
def test_encode_errors_name_the_path(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_input([None, value], BASE, paths=[("a",), ("user",)])
    with pytest.raises(ValueError, match="input slot 0"):
        encode_input([value], BASE)


def test_non_string_object_keys_are_laid_out_in_rego_key_order() -> None:
    """A host builtin may return objects keyed by any value, as the decoder gives them."""
    value = {"b": 2, 1: "one", (1, 2): "arr", FrozenDict({"x": 1}): "obj", None: 0}
    data, ptr = encode_value(value, BASE)
    mem = memory_with(data, BASE)
    back = decode(mem, ptr)
    assert back == value
    assert list(back) == [None, 1, "b", (1, 2), {"x": 1}]  # null < number < string < array


def test_subclasses_encode_like_their_base() -> None:
    import enum
    from collections import OrderedDict

    class Color(enum.IntEnum):
        RED = 2

    class Name(str):
        pass

    a, _ = encode_value([Color.RED, Name("x"), OrderedDict(b=1, a=2), True], BASE)
    b, _ = encode_value([2, "x", {"a": 2, "b": 1}, True], BASE)
    assert a == b


@given(values)
@settings(max_examples=200, deadline=None)
def test_roundtrip(v: Any) -> None:
    data, ptr = encode_value(v, BASE)
    back = decode(memory_with(data, BASE), ptr)
    assert rego_compare(back, v) == 0
    # a second trip is byte-identical: the layout is canonical
    assert encode_value(back, BASE)[0] == data


def test_decode_numbers() -> None:
    cases = [(3.0, 3), (0.0, 0), (2.0**53, 2**53), (2.0**53 + 2, 2.0**53 + 2),
             (2.0**53 - 1, 2**53 - 1), (1.5, 1.5), (1e300, 1e300)]  # fmt: skip
    for x, expected in cases:
        data, ptr = encode_value(x, BASE)
        got = decode(memory_with(data, BASE), ptr)
        assert got == expected and type(got) is type(expected)
    data, ptr = encode_value(-0.0, BASE)
    assert str(decode(memory_with(data, BASE), ptr)) == "-0.0"


def test_decode_errors() -> None:
    assert decode(b"", 0) is UNDEFINED
    with pytest.raises(ValueError, match="bad value tag 9"):
        decode(b"\0" * 8 + struct.pack("<II", 9, 0), 8)
    with pytest.raises(struct.error):
        decode(b"\0" * 8 + b"\x04\0\0\0", 8)
    # a cycle (array pointing at itself) is refused, not a crash
    with pytest.raises(ValueError, match="nested deeper than 100 levels"):
        decode(b"\0" * 8 + struct.pack("<III", 5, 1, 8) + b"\0" * 4, 8)


def _count(v: Any) -> tuple[int, int, int]:
    """(values, string bytes, depth of non-empty collections): the budget's oracle."""
    if isinstance(v, str):
        return 1, len(v.encode()), 0
    if isinstance(v, dict):
        parts = [_count(x) for kv in v.items() for x in kv]
    elif isinstance(v, (list, tuple, RegoSet)):
        parts = [_count(x) for x in v]
    else:
        return 1, 0, 0
    if not parts:
        return 1, 0, 0
    return (
        1 + sum(p[0] for p in parts),
        sum(p[1] for p in parts),
        1 + max(p[2] for p in parts),
    )


@settings(max_examples=300, deadline=None)
@given(values)
def test_decode_budget_is_exact(v: Any) -> None:
    data, ptr = encode_value(v, BASE)
    mem = memory_with(data, BASE)
    nodes, size, depth = _count(v)
    for js in (False, True):
        got = decode(mem, ptr, max_nodes=nodes, max_bytes=size, max_depth=depth)
        assert rego_compare(got, v) == 0
        decode(mem, ptr, json_form=js, max_nodes=nodes, max_bytes=size, max_depth=depth)
        if nodes > 1:
            with pytest.raises(DecodeLimitError, match=f"more than {nodes - 1} values"):
                decode(mem, ptr, json_form=js, max_nodes=nodes - 1)
        if size:
            with pytest.raises(DecodeLimitError, match=f"more than {size - 1} bytes"):
                decode(mem, ptr, json_form=js, max_bytes=size - 1)
        if depth:
            with pytest.raises(DecodeLimitError, match=f"deeper than {depth - 1} levels"):
                decode(mem, ptr, json_form=js, max_depth=depth - 1)


def _shared_tree(levels: int, leaf: bytes) -> tuple[bytearray, int]:
    """Records where each level is a 2-array pointing twice at the level below."""
    mem = bytearray(8) + leaf + bytes(-len(leaf) % 8)
    ptr = 8
    for _ in range(levels):
        at = len(mem)
        mem += struct.pack("<IIII", 5, 2, ptr, ptr)
        ptr = at
    return mem, ptr


def test_shared_records_are_charged_each_time_they_are_decoded() -> None:
    mem, ptr = _shared_tree(40, struct.pack("<IId", 3, 0, 1.0))  # 2^41 values
    with pytest.raises(DecodeLimitError, match="more than 100000 values"):
        decode(mem, ptr)
    mem, ptr = _shared_tree(12, struct.pack("<II", 4, 1000) + b"a" * 1000)  # 4 MB of strings
    with pytest.raises(DecodeLimitError, match="more than 1048576 bytes of strings"):
        decode(mem, ptr)


def test_a_header_claiming_billions_of_items_is_refused_before_reading() -> None:
    for tag in (5, 6, 7):
        with pytest.raises(DecodeLimitError, match="values"):
            decode(b"\0" * 8 + struct.pack("<II", tag, 0xFFFF_FFFF), 8)
    with pytest.raises(DecodeLimitError, match="bytes of strings"):
        decode(b"\0" * 8 + struct.pack("<II", 4, 0xFFFF_FFFF), 8)


def test_object_with_compound_keys_decodes_to_hashable_keys() -> None:
    mem = bytearray(BASE)
    at = BASE

    def put(v: Any) -> int:
        nonlocal at
        data, ptr = encode_value(v, at)
        mem.extend(data)
        at += len(data)
        return ptr

    keys = [put(None), put(1), put([1, [2]]), put({"k": [3]}), put(RegoSet([[4]]))]
    val = put(True)
    optr = at  # the object record, written by hand: keys in Rego order
    mem += struct.pack("<II", 7, len(keys)) + b"".join(struct.pack("<II", k, val) for k in keys)
    got = decode(mem, optr)
    assert got == {
        None: True,
        1: True,
        (1, (2,)): True,
        FrozenDict({"k": (3,)}): True,
        RegoSet([(4,)]): True,
    }
    hash(tuple(got))
    assert to_json_compatible(got) == {
        "null": True,
        "1": True,
        "[1,[2]]": True,
        '{"k":[3]}': True,
        "[[4]]": True,
    }
    with pytest.raises(TypeError):
        next(k for k in got if isinstance(k, FrozenDict))["x"] = 1


def test_object_keys_python_cannot_separate() -> None:
    f, fp = encode_value(False, BASE + 64)
    z, zp = encode_value(0, BASE + 128)
    mem = bytearray(BASE + 256)
    mem[BASE : BASE + 24] = struct.pack("<IIIIII", 7, 2, fp, zp, zp, fp)
    mem[BASE + 64 : BASE + 64 + len(f)] = f
    mem[BASE + 128 : BASE + 128 + len(z)] = z
    with pytest.raises(ValueError, match="cannot tell apart"):
        decode(mem, BASE)


def test_object_with_array_key_decodes_to_tuple_key() -> None:
    key, kp = encode_value([1, "a"], BASE + 64)
    val, vp = encode_value(True, BASE + 128)
    obj = struct.pack("<IIII", 7, 1, kp, vp)
    mem = bytearray(BASE + 256)
    mem[BASE : BASE + 16] = obj
    mem[BASE + 64 : BASE + 64 + len(key)] = key
    mem[BASE + 128 : BASE + 128 + len(val)] = val
    assert decode(mem, BASE) == {(1, "a"): True}


def test_undefined_singleton() -> None:
    assert not UNDEFINED
    assert repr(UNDEFINED) == "undefined"
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED
    assert type(UNDEFINED)() is UNDEFINED


def test_rego_set() -> None:
    s = RegoSet([3, "a", 1, 3, 1.0, None])
    assert list(s) == [None, 1, 3, "a"]
    assert s == {None, 1, 3, "a"} and s == frozenset([None, 1, 3, "a"])
    assert s == RegoSet(["a", 3, None, 1]) and s != [None, 1, 3, "a"]
    assert hash(s) == hash(RegoSet(["a", 3, None, 1]))
    assert RegoSet([[1], {"a": 1}]) == RegoSet([{"a": 1}, [1]])  # unhashable members work
    with pytest.raises(TypeError):
        hash(RegoSet([[1]]))
    assert repr(RegoSet(["b", "a"])) == "RegoSet({'a', 'b'})"


def test_to_json_compatible() -> None:
    v = {"s": RegoSet(["b", "a"]), "n": [RegoSet([2, 1]), {"x": frozenset({3})}]}
    assert to_json_compatible(v) == {"s": ["a", "b"], "n": [[1, 2], {"x": [3]}]}
    assert to_json_compatible({(1, "a"): 1}) == {'[1,"a"]': 1}
    with pytest.raises(ValueError):
        to_json_compatible(UNDEFINED)


ORDERED = [
    None,
    False,
    True,
    -1,
    0,
    0.5,
    1,
    "",
    "A",
    "a",
    "ab",
    "é",
    "😀",
    [],
    [None],
    [1],
    [1, 2],
    [2],
    RegoSet(),
    RegoSet([1]),
    RegoSet([1, 2]),
    RegoSet([2]),
    {},
    {"a": 1},
    {"a": 1, "b": 0},
    {"a": 2},
    {"b": 0},
]


def test_sort_key_order_table() -> None:
    keys = [rego_sort_key(v) for v in ORDERED]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert rego_compare(1, 1.0) == 0 and rego_compare(True, 1) == -1


def _rego_literal(v: Any) -> str:
    import json

    if isinstance(v, RegoSet):
        return "{" + ", ".join(map(_rego_literal, v)) + "}" if v else "set()"
    if isinstance(v, list):
        return "[" + ", ".join(map(_rego_literal, v)) + "]"
    if isinstance(v, dict):
        pairs = (f"{_rego_literal(k)}: {_rego_literal(x)}" for k, x in v.items())
        return "{" + ", ".join(pairs) + "}"
    return json.dumps(v, ensure_ascii=False)


def test_sort_key_order_matches_regorus() -> None:
    lits = ", ".join(_rego_literal(v) for v in ORDERED)
    engine = regorus.Engine()
    engine.add_policy(
        "p.rego",
        f"package p\nimport rego.v1\nvs := [{lits}]\n"
        "x := [[i, j] | some i, a in vs; some j, b in vs; i < j; not a < b]\n",
    )
    assert engine.eval_rule("data.p.x") == []
