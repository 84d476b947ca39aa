"""object.union_n, object.subset and object.filter, compiled, against regorus side by side."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler.builtins import BUILTINS
from policies.runtime.host import REGISTRY
from tests.host_diff import ours, same, value


def test_the_c_runtimes_object_builtins_stay_the_c_runtimes() -> None:
    for name in ["object.union", "object.keys", "object.remove", "object.get"]:
        assert name in BUILTINS and name not in REGISTRY
    assert not set(REGISTRY) & set(BUILTINS)


def test_union_n() -> None:
    assert value('object.union_n([{"a": {"b": 1}}, {"a": {"c": 2}}, {"d": 1}])') == {
        "a": {"b": 1.0, "c": 2.0},
        "d": 1.0,
    }
    assert value('object.union_n([{"a": {"b": 1}}, {"a": 2}, {"a": {"c": 3}}])') == {
        "a": {"c": 3.0}
    }
    assert value("object.union_n([])") == {}
    for bad in ['[{"a": 1}, 2]', '{{"a": 1}}', '"x"', '{"a": 1}']:
        assert same(f"object.union_n({bad})")[0] == "error", bad


def test_subset() -> None:
    cases = {
        '{"a": {"b": 1, "c": 2}, "d": [1, 2, 3]}, {"a": {"b": 1}}': True,
        '{"a": {"b": 1}}, {"a": {"b": 2}}': False,
        "[1, 2, 3, 4], [2, 3]": True,
        "[1, 2, 3, 4], [2, 4]": False,
        "[1, 2, 3, 4], {4, 1}": True,
        "{1, 2, 3}, {1}": True,
        "{1, 2, 3}, [1]": False,
        '{"a": [1, 2, 3]}, {"a": [2]}': True,
        '{"a": [1, 2, 3]}, {"a": {3}}': True,
        '{"a": 1}, {}': True,
        "[1, 2], {}": False,
        '{"a": 1}, []': False,
        '{"a": 1.0}, {"a": 1}': True,
        "1, 1": True,
        '"a", "b"': False,
        "[1, 1, 2], [1, 2]": True,
        "[1, 2, 1, 2, 3], [1, 2, 3]": True,
        "[false], [0]": False,
    }
    for args, want in cases.items():
        assert value(f"object.subset({args})") is want, args


def test_subset_of_the_empty_array_is_true() -> None:
    """OPA: the empty array is in every array (regorus panics on it)."""
    assert ours("object.subset([1, 2], [])") == ("value", True)
    assert ours("object.subset([], [])") == ("value", True)


def test_subset_of_long_arrays_is_linear() -> None:
    """A naive window scan costs len(sup) * len(sub): 20k x 10k would take minutes."""
    sup = [0] * 20000 + [1]
    sub = [0] * 10000 + [1]
    assert ours("object.subset(input.a, input.b)", {"a": sup, "b": sub}) == ("value", True)
    sub[-1] = 2
    assert ours("object.subset(input.a, input.b)", {"a": sup, "b": sub}) == ("value", False)


def test_filter() -> None:
    obj = '{"a": 1, "b": 2, "c": 3}'
    assert value(f'object.filter({obj}, ["a", "c", "x"])') == {"a": 1.0, "c": 3.0}
    assert value(f'object.filter({obj}, {{"a", "c"}})') == {"a": 1.0, "c": 3.0}
    assert value(f'object.filter({obj}, {{"a": 0, "b": 0}})') == {"a": 1.0, "b": 2.0}
    for bad in [f'{obj}, "a"', '[1], ["a"]', f"{obj}, 1"]:
        assert same(f"object.filter({bad})")[0] == "error", bad


SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b", "c"])
VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), kids, max_size=4)
    ),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), VALUES, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(OBJECTS, max_size=4))
def test_union_n_agrees_with_regorus(objects: list[dict[str, Any]]) -> None:
    value("object.union_n(input.v)", {"v": objects})


def has_empty_array(v: Any) -> bool:
    if isinstance(v, list):
        return not v or any(map(has_empty_array, v))
    return isinstance(v, dict) and any(map(has_empty_array, v.values()))


@settings(max_examples=300, deadline=None)
@given(VALUES, VALUES)
def test_subset_agrees_with_regorus(sup: Any, sub: Any) -> None:
    if has_empty_array(sub):
        return  # regorus panics on an empty sub-array (tested above)
    value("object.subset(input.a, input.b)", {"a": sup, "b": sub})
    if isinstance(sub, list):
        value("object.subset(input.a, {e | some e in input.b})", {"a": sup, "b": sub})


@settings(max_examples=200, deadline=None)
@given(OBJECTS, st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=4))
def test_filter_agrees_with_regorus(obj: dict[str, Any], keys: list[str]) -> None:
    doc = {"o": obj, "k": keys}
    value("object.filter(input.o, input.k)", doc)
    value("object.filter(input.o, {k | some k in input.k})", doc)
    value("object.filter(input.o, {k: 1 | some k in input.k})", doc)
