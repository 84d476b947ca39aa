"""json.* builtins, compiled, against regorus side by side (json.patch: OPA's RFC 6902).

Numbers: the value model is doubles, so json.unmarshal refuses an integer literal
beyond 2^53 (regorus keeps some exactly and rounds others); json.marshal prints
regorus's digits wherever regorus prints the value's own (far from 1 regorus
rounds through a lossy step: those are checked to round-trip instead).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.runtime.host.base import BuiltinError
from policies.runtime.host.jsonfns import MAX_NODES, format_number, json_unmarshal
from tests import host_diff
from tests.host_diff import expr_pair, ours
from tests.rego_oracle import Outcome


def plain(v: Any) -> Any:
    """Integral doubles below 2^53 as integers: the same value to us, and the form
    regorus's JSON reader takes exactly ("9007199254740991.0" it misreads by one)."""
    if type(v) is float and v.is_integer() and abs(v) < 2**53 and str(v) != "-0.0":
        return int(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def same(expr: str, input_doc: Any = None) -> Outcome:
    return host_diff.same(expr, input_doc, prepare=plain)


def value(expr: str, input_doc: Any = None) -> Any:
    return host_diff.value(expr, input_doc, prepare=plain)


def error_of(expr: str, input_doc: Any = None) -> str:
    kind, message = ours(expr, input_doc)
    assert kind == "error", (expr, kind, message)
    return str(message)


def regorus_reads(m: int, e: int) -> float:
    """m * 10^e as a double: 15 digits or fewer and a small exponent, which regorus's
    JSON reader (serde_json's fast path) reads exactly; longer ones it may misread
    by an ulp, which would test its reader, not the builtin."""
    return float(Decimal(m).scaleb(e))


def regorus_exact(v: float) -> bool:
    """Where regorus prints a double's own shortest digits (see format_number)."""
    if v == 0 or not math.isfinite(v):
        return v == 0
    if v.is_integer():  # (2^53 to 1e16 Python writes as "ddd.0", which regorus may misread)
        return -9.2e18 < v < 2.0**64 and not 2.0**53 <= abs(v) < 1e16
    return abs(v) >= 1e-5


FLOATS = st.builds(regorus_reads, st.integers(-(10**15), 10**15), st.integers(-20, 5))
NUMBERS = st.integers(-(2**53), 2**53) | FLOATS.filter(regorus_exact)
KEYS = st.text(max_size=6)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=16,
)

# ------------------------------------------------------------------ json.marshal


def test_marshal_orders_keys_and_writes_sets_as_arrays() -> None:
    text = value('json.marshal({"b": 1, "a": [1.5, 2, "x"], "c": {3, 1, "x"}, "d": null})')
    assert text == '{"a":[1.5,2,"x"],"b":1,"c":[1,3,"x"],"d":null}'


def test_marshal_non_string_keys_in_rego_order() -> None:
    value('json.marshal({1: "a", "1": "b", false: 1, null: 2, {"k": [1, "x"]}: 3, {2, 1}: 4})')
    value('json.marshal({[1]: 2, 1.5: 3, "a": 4})')


def test_marshal_escapes_as_serde_json() -> None:
    assert value('json.marshal("q\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f</>\\u2028é")') == (
        '"q\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\x7f</>\u2028é"'
    )


@pytest.mark.parametrize(
    "v",
    [0.0, -0.0, 1.0, 1.5, 0.1, 0.30000000000000004, 1e15, 1e16, 1e19, 2.0**63, 1.8e19,
     -9.2e18, 123456789.123, 2.5e-5, 1e-5, 1.2345e-5, 1e-6, 1e-7, 1.5e-7, 4.35e-10,
     1e20, 1.5e20, 1e21, 1e22, 1e23, 1e100, 1e300, 5e-324, 2.2250738585072014e-308],
)  # fmt: skip
def test_marshal_numbers_as_regorus(v: float) -> None:
    assert value("json.marshal(input.v)", {"v": v}) == format_number(v)


@pytest.mark.parametrize("v", [3e23, 1.23e25, 1.7e308, 2.0**64, -(2.0**63), 6.148133334651799e-15])
def test_marshal_numbers_regorus_rounds_still_round_trip(v: float) -> None:
    """regorus prints a neighbour of these (a lossy decimal step); ours is the value."""
    text = ours("json.marshal(input.v)", {"v": v})[1]
    assert float(text) == v
    assert ours("json.unmarshal(json.marshal(input.v)) == input.v", {"v": v}) == ("value", True)


def test_marshal_largest_double_regorus_refuses() -> None:
    assert ours("json.marshal(input.v)", {"v": 1.7976931348623157e308}) == (
        "value",
        "1.7976931348623157e+308",
    )


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_marshal_agrees_with_regorus(v: Any) -> None:
    text = value("json.marshal(input.v)", {"v": v})
    assert json.loads(text, parse_int=float) == json.loads(json.dumps(v), parse_int=float)


def small_integers(v: Any) -> bool:
    """No integral double beyond 2^53, which json.marshal writes as an integer literal."""
    if type(v) is float:
        return not (v.is_integer() and abs(v) > 2**53)
    if isinstance(v, list):
        return all(map(small_integers, v))
    if isinstance(v, dict):
        return all(map(small_integers, v.values()))
    return True


@settings(max_examples=200, deadline=None)
@given(JSON.filter(small_integers))
def test_unmarshal_of_marshal_agrees_with_regorus(v: Any) -> None:
    assert value("json.unmarshal(json.marshal(input.v))", {"v": v}) == json.loads(
        json.dumps(v), parse_int=float
    )


# ------------------------------------------------------------------ marshal_with_options


def test_marshal_with_options() -> None:
    doc = '{"a": [1, {"b": 2}], "c": {}, "d": []}'
    assert value(f'json.marshal_with_options({doc}, {{"pretty": true}})') == (
        '{\n\t"a": [\n\t\t1,\n\t\t{\n\t\t\t"b": 2\n\t\t}\n\t],\n\t"c": {},\n\t"d": []\n}'
    )
    value(f'json.marshal_with_options({doc}, {{"indent": "  ", "prefix": "> "}})')
    value(f'json.marshal_with_options({doc}, {{"prefix": "//"}})')
    assert value(f"json.marshal_with_options({doc}, {{}})") == ('{"a":[1,{"b":2}],"c":{},"d":[]}')
    value(f'json.marshal_with_options({doc}, {{"pretty": false, "indent": "x"}})')
    value('json.marshal_with_options(1, {"indent": "-"})')
    value('json.marshal_with_options({"a": "  x"}, {"indent": "-"})')


def test_marshal_with_options_refusals() -> None:
    for opts in ['{"pretty": 1}', '{"foo": 1}', '{"prefix": 1}', '{"indent": null}', "[]"]:
        assert same(f'json.marshal_with_options({{"a": 1}}, {opts})')[0] == "error", opts


@settings(max_examples=100, deadline=None)
@given(JSON, st.text(alphabet=" \t-", max_size=3), st.text(alphabet="#> ", max_size=2))
def test_marshal_with_options_agrees_with_regorus(v: Any, indent: str, prefix: str) -> None:
    value("json.marshal_with_options(input.v, input.o)", {"v": v, "o": {"indent": indent}})
    opts = {"indent": indent, "prefix": prefix, "pretty": True}
    value("json.marshal_with_options(input.v, input.o)", {"v": v, "o": opts})


def test_marshal_with_a_huge_indent_is_refused_not_built() -> None:
    """A 64 KiB indent times 100 levels times many lines: refused before it is built."""
    nested: Any = [1, 2, 3]
    for _ in range(60):
        nested = [nested, nested] if _ < 6 else [nested]
    assert "larger than" in error_of(
        'json.marshal_with_options(input.v, {"indent": input.i})', {"v": nested, "i": "x" * 65536}
    )


# ------------------------------------------------------------------ json.unmarshal / is_valid


def test_unmarshal_values() -> None:
    assert value('json.unmarshal("[1e2, 1E-2, 0.5e+1, -0, 1.0, true, null]")') == [
        100.0, 0.01, 5.0, -0.0, 1.0, True, None
    ]  # fmt: skip
    assert value('json.unmarshal("{\\"a\\":1,\\"a\\":2}")') == {"a": 2.0}
    assert value('json.unmarshal("\\"\\\\ud83d\\\\ude00\\"")') == "\U0001f600"
    assert value('json.unmarshal(" [1]\\n")') == [1.0]
    assert value('json.unmarshal("1e-400")') == 0.0
    assert value('json.unmarshal("9007199254740992")') == 2.0**53


@pytest.mark.parametrize(
    "text",
    ["[1,]", "NaN", "Infinity", "-Infinity", "01", "", "1 2", '"\t"', "1e400", "-1e400",
     '"\\ud800"', '"\\udc00"', '"\\ud800x"', "\ufeff1", "\u00a01", "{'a': 1}", "[1", "tru",
     '{"a" 1}', "+1", ".5", "1.", "0x10"],
)  # fmt: skip
def test_unmarshal_refuses_what_regorus_refuses(text: str) -> None:
    assert same("json.unmarshal(input.s)", {"s": text})[0] == "error"
    assert value("json.is_valid(input.s)", {"s": text}) is False


def test_unmarshal_keeps_int64_exact_and_refuses_beyond_naming_them() -> None:
    for exact in [9007199254740993, -9007199254740993, 2**63 - 1, -(2**63)]:
        got = ours('sprintf("%d", json.unmarshal(input.s))', {"s": f"[{exact}]"})
        assert got == ("value", str(exact))  # (the harness compares numbers as floats)
    for big in ["9223372036854775808", "-9223372036854775809", "12345678901234567890123"]:
        assert big in error_of("json.unmarshal(input.s)", {"s": f"[{big}]"})
        assert value("json.is_valid(input.s)", {"s": big}) is True  # valid JSON all the same
    assert "beyond int64" in error_of("json.unmarshal(input.s)", {"s": "1" * 5000})
    assert "beyond int64" in error_of("json.unmarshal(input.s)", {"s": "1" + "0" * 400})
    assert ours("json.unmarshal(input.s)", {"s": "1e20"}) == ("value", 1e20)  # a float literal
    assert ours("json.marshal(input.n)", {"n": 2**62 + 1}) == ("value", str(2**62 + 1))


def test_unmarshal_bounds_depth() -> None:
    assert value("json.unmarshal(input.s)", {"s": "[" * 100 + "]" * 100}) is not None
    assert "nested" in error_of("json.unmarshal(input.s)", {"s": "[" * 101 + "]" * 101})
    assert "nested" in error_of("json.unmarshal(input.s)", {"s": '{"a":' * 200000 + "1"})
    # json.is_valid agrees with regorus (serde_json's 128 levels) on either side of it
    for depth in (127, 128, 129, 100000):
        value("json.is_valid(input.s)", {"s": "[" * depth + "]" * depth})


def test_unmarshal_of_a_huge_string_is_bounded() -> None:
    doc = {"s": json.dumps(["x" * 1000] * 500)}
    assert ours("count(json.unmarshal(input.s))", doc) == ("value", 500.0)
    # more values than MAX_NODES need more text than an input may carry: called directly
    with pytest.raises(BuiltinError, match="more than"):
        json_unmarshal("[" + "[]," * MAX_NODES + "[]]")


def test_is_valid_and_unmarshal_type_errors() -> None:
    for fn in ["json.is_valid", "json.unmarshal", "json.marshal_with_options"]:
        arg = "1" if fn != "json.marshal_with_options" else "1, 2"
        assert same(f"{fn}({arg})")[0] == "error"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}",:0123456789.eE+-tfrueanl \\u', max_size=12))
def test_unmarshal_of_json_like_text_agrees_with_regorus(text: str) -> None:
    doc = {"s": text}
    assert same("json.is_valid(input.s)", doc)
    kind, got = ours("json.unmarshal(input.s)", doc)
    if kind == "error" and "beyond int64" in str(got):
        return  # an integer literal we refuse to round (regorus keeps or rounds it)
    if kind == "value" and any(c in text for c in "eE."):
        # regorus's reader can be one unit in the last place off for fractions and
        # exponents ("1E61"); ours is IEEE's nearest double
        theirs = expr_pair("json.unmarshal(input.s)")[1].eval("p/x", doc)
        assert theirs[0] == "value" and _close(got, theirs[1]), (text, got, theirs)
        return
    same("json.unmarshal(input.s)", doc)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-15)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


# ------------------------------------------------------------------ json.filter / json.remove

DOC = '{"a": {"b": 1, "c": 2}, "d": [5, 6, 7], "e": {"x", "y"}, "f": 3}'


@pytest.mark.parametrize(
    "paths",
    ['["a/b", "d/1"]', '{"a/b", ["d", 2]}', '["a", "a/b"]', '["/a/b"]', '["a/"]', "[]", '["x"]',
     '["e/x"]', '["d/ 1", "d/1e0", "d/true", "d/-"]', '[["a", "b"], ["d", 1]]', "[[]]", '[""]',
     '["a/b/c"]', '["f/g"]'],
)  # fmt: skip
def test_filter_and_remove_as_regorus(paths: str) -> None:
    value(f"json.filter({DOC}, {paths})")
    same(f"json.remove({DOC}, {paths})")


def test_filter_and_remove_with_pointer_escapes_as_regorus() -> None:
    doc = '{"a/b": 1, "a~b": 2, "c": 3}'
    assert value(f'json.filter({doc}, ["a~1b", "a~0b"])') == {}
    assert value(f'json.remove({doc}, ["a~1b", "a~0b", "c"])') == {"a/b": 1.0, "a~b": 2.0}


def test_filter_array_indexes_in_string_order() -> None:
    assert value('json.filter({"a": numbers.range(5, 16)}, ["a/2", "a/10"])') == {"a": [15.0, 7.0]}


def test_filter_and_remove_refusals() -> None:
    for expr in [
        "json.filter([1], [])", 'json.filter({"a": 1}, "a")', "json.filter({}, [1])",
        'json.remove({"a": 1}, "a")', "json.remove({}, [1])", "json.remove(1, [])",
    ]:  # fmt: skip
        assert same(expr)[0] == "error", expr


PATH_SEGMENTS = st.sampled_from(["a", "b", "0", "1", "x", ""])
PATHS = st.lists(
    st.lists(PATH_SEGMENTS, min_size=1, max_size=3).map("/".join)
    | st.lists(PATH_SEGMENTS | st.integers(0, 2), max_size=3),
    max_size=4,
)
DOCS = st.recursive(
    st.integers(0, 9) | st.sampled_from(["a", "x"]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0", "1", "x"]), kids, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "x"]), DOCS, max_size=3), PATHS)
def test_filter_and_remove_agree_with_regorus(doc: dict[str, Any], paths: list[Any]) -> None:
    same("json.filter(input.d, input.p)", {"d": doc, "p": paths})
    same("json.remove(input.d, input.p)", {"d": doc, "p": paths})


# ------------------------------------------------------------------ json.patch (OPA, RFC 6902)


def patch(target: Any, ops: list[dict[str, Any]]) -> Outcome:
    return ours("json.patch(input.t, input.ops)", {"t": target, "ops": ops})


def test_patch_operations() -> None:
    assert patch({"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3}]) == (
        "value", {"a": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    assert patch({"a": [1, 2, 3]}, [
        {"op": "add", "path": "/a/1", "value": 9},
        {"op": "remove", "path": "/a/0"},
        {"op": "replace", "path": "/a/2", "value": "z"},
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "move", "from": "/a/0", "path": "/c"},
        {"op": "test", "path": "/b", "value": [9, 2, "z"]},
    ]) == ("value", {"a": [2.0, "z"], "b": [9.0, 2.0, "z"], "c": 9.0})  # fmt: skip
    assert patch({"a": 1}, [{"op": "add", "path": "", "value": [5]}]) == ("value", [5.0])
    assert patch({"a": 1}, [{"op": "remove", "path": ""}]) == ("undefined", None)
    assert patch(["a", "b", "c", "d"], [{"op": "move", "from": "/1", "path": "/3"}]) == (
        "value", ["a", "c", "d", "b"]
    )  # fmt: skip
    assert patch({"a": [1]}, [{"op": "add", "path": ["a", 0], "value": 0}]) == (
        "value", {"a": [0.0, 1.0]}
    )  # fmt: skip


def test_patch_json_pointer_escapes_and_dash() -> None:
    """RFC 6901: "~1" is "/", "~0" is "~" (in that order); "-" appends, and only there."""
    assert patch({"a/b": 1, "m~n": 2}, [
        {"op": "replace", "path": "/a~1b", "value": 3},
        {"op": "copy", "from": "/m~0n", "path": "/~01"},
    ]) == ("value", {"a/b": 3.0, "m~n": 2.0, "~1": 2.0})  # fmt: skip
    assert patch({"": 1}, [{"op": "replace", "path": "/", "value": 2}]) == ("value", {"": 2.0})
    assert patch([1], [{"op": "remove", "path": "/-"}])[0] == "error"
    assert patch([1], [{"op": "test", "path": "/-", "value": 1}])[0] == "error"
    assert patch({"-": 1}, [{"op": "remove", "path": "/-"}]) == ("value", {})


@pytest.mark.parametrize(
    "target, op",
    [({"a": 1}, {"op": "test", "path": "/a", "value": 2}),
     ({"a": [1]}, {"op": "add", "path": "/a/01", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": "/a/5", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": "/a/-1", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": "/a/1e0", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": "/a/ 1", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": "/a/99999999999999999999999", "value": 5}),
     ({"a": [1]}, {"op": "add", "path": ["a", 0.5], "value": 5}),
     ({"a": 1}, {"op": "add", "path": "/a/b", "value": 1}),
     ({"a": 1}, {"op": "add", "path": "/x/y", "value": 1}),
     ({"a": 1}, {"op": "remove", "path": "/b"}),
     ({"a": 1}, {"op": "move", "from": "/a", "path": "/a/b"}),
     ({"a": 1}, {"op": "bogus", "path": "/a"}),
     ({"a": 1}, {"path": "/a"}),
     ({"a": 1}, {"op": "add", "path": "/b"}),
     ({"a": 1}, {"op": 1, "path": "/a"}),
     ({"a": 1}, {"op": "add", "path": 1, "value": 1}),
     ({"a": 1}, {"op": "copy", "path": "/b"})],
)  # fmt: skip
def test_patch_refusals(target: Any, op: dict[str, Any]) -> None:
    assert patch(target, [op])[0] == "error"


def test_patch_argument_types() -> None:
    assert ours('json.patch({"a": 1}, {"op": "add"})')[0] == "error"
    assert ours('json.patch({"a": 1}, [1])')[0] == "error"
    assert ours("json.patch(1, [])") == ("value", 1.0)


def test_patch_sets_are_content_addressed() -> None:
    assert ours('json.patch({"s": {"x", "y"}}, [{"op": "add", "path": "/s/z", "value": "z"}])')[
        1
    ] == {"s": ["x", "y", "z"]}
    assert ours('json.patch({"s": {"x", "y"}}, [{"op": "remove", "path": "/s/x"}])')[1] == {
        "s": ["y"]
    }
    assert ours('json.patch({"s": {"x"}}, [{"op": "add", "path": "/s/z", "value": "q"}])')[0] == (
        "error"
    )
    assert (
        ours('json.patch({"s": {"x"}}, [{"op": "replace", "path": "/s/x", "value": "q"}])')[0]
        == "error"
    )


def test_patch_copy_doubling_is_bounded() -> None:
    """Each copy doubles the document: the patch is refused before it is built."""
    ops = [{"op": "copy", "from": "/a", "path": "/b"}, {"op": "move", "from": "/b", "path": "/a/0"}]
    result = patch({"a": [1]}, ops * 40)
    assert result[0] == "error" and "more than" in str(result[1])


def test_patch_does_not_change_its_input() -> None:
    expr = 'json.patch(input.t, [{"op": "remove", "path": "/a/0"}]) == input.t'
    assert ours(expr, {"t": {"a": [1]}}) == ("value", False)
    expr = '[json.patch(input.t, [{"op": "remove", "path": "/a/0"}]), input.t]'
    assert ours(expr, {"t": {"a": [1]}}) == ("value", [{"a": []}, {"a": [1.0]}])
