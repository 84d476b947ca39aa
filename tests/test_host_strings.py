"""String builtins of the host (``policies/runtime/host/strings.py``).

Unit tests call the registered functions; the differential tests compile a policy
applying each builtin to the input and compare every answer with regorus.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler.builtins import BUILTINS
from policies.runtime.host import REGISTRY
from policies.runtime.host import strings as host_strings
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import RegoSet
from tests.host_diff import Pair

NAMES = [
    "strings.any_prefix_match", "strings.any_suffix_match", "strings.count",
    "strings.replace_n", "trim_left", "trim_right", "indexof_n",
]  # fmt: skip


def call(name: str, *args: Any) -> Any:
    return REGISTRY[name].fn(*args)


def refused(name: str, *args: Any) -> str:
    with pytest.raises(BuiltinError) as info:
        call(name, *args)
    return str(info.value)


def test_every_name_is_a_host_builtin_the_runtime_lacks_in_c() -> None:
    for name in NAMES:
        assert name in REGISTRY
        assert name not in BUILTINS


def test_any_prefix_and_suffix_match() -> None:
    assert call("strings.any_prefix_match", "abc", "a") is True
    assert call("strings.any_prefix_match", "abc", ["x", "ab"]) is True
    assert call("strings.any_prefix_match", ["x", "abc"], RegoSet(["ab"])) is True
    assert call("strings.any_prefix_match", ["x", "abc"], []) is False
    assert call("strings.any_suffix_match", "abc", RegoSet(["bc"])) is True
    assert call("strings.any_suffix_match", "abc", "") is True
    assert call("strings.any_suffix_match", "abc", "ab") is False
    assert "element 1" in refused("strings.any_prefix_match", ["a", 1], "a")  # checked first
    assert "operand 2" in refused("strings.any_suffix_match", "abc", 1)


def test_count_overlaps_as_regorus() -> None:
    assert call("strings.count", "aaaa", "aa") == 3
    assert call("strings.count", "\u00e9\u00e9\u00e9", "\u00e9") == 3
    assert call("strings.count", "abc", "x") == 0
    assert "must not be empty" in refused("strings.count", "abc", "")
    assert "operand 2 must be string" in refused("strings.count", "a", 1)


def test_replace_n_replaces_key_by_key_in_key_order() -> None:
    assert call("strings.replace_n", {"a": "b", "b": "c"}, "ab") == "cc"
    assert call("strings.replace_n", {"ab": "x", "a": "y"}, "abab") == "ybyb"
    assert call("strings.replace_n", {"": "x"}, "ab") == "xaxbx"
    assert "strings to strings" in refused("strings.replace_n", {"a": 1}, "ab")
    assert "operand 1 must be object" in refused("strings.replace_n", [], "ab")


def test_trim_left_right() -> None:
    assert call("trim_left", "xyaxy", "yx") == "axy"
    assert call("trim_right", "xyaxy", "yx") == "xya"
    assert call("trim_left", "abc", "") == "abc"
    assert call("trim_right", "\u00e9a\u00e9", "\u00e9") == "\u00e9a"
    assert "operand 1 must be string" in refused("trim_left", 1, "a")


def test_indexof_n_counts_characters() -> None:
    assert call("indexof_n", "abab", "ab") == [0, 2]
    assert call("indexof_n", "aaa", "aa") == [0, 1]
    assert call("indexof_n", "\u00e9\u00e9a", "a") == [2]
    assert call("indexof_n", "abab", "") == [0, 1, 2, 3]
    assert call("indexof_n", "", "") == []


def test_replacement_growth_is_refused_before_it_is_built() -> None:
    """Each key multiplies the length: ten keys would reach 10^10 characters."""
    patterns = {"a" * (1 << i): "a" * (10 << i) for i in range(10)}
    with pytest.raises(BuiltinError, match="longer than"):
        call("strings.replace_n", patterns, "a" * 1000)
    with pytest.raises(BuiltinError, match="longer than"):
        call("strings.replace_n", {"": "x" * 1000}, "a" * host_strings.MAX_RESULT_CHARS)


# ---------------------------------------------------------------- differential

texts = st.text(alphabet="ab\u00e9 x\U0001f600", max_size=8)
collections = st.one_of(
    texts, st.lists(texts, max_size=3), st.lists(st.one_of(texts, st.integers(0, 2)), max_size=2)
)
DIFF = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair(
        {
            "prefix": "strings.any_prefix_match(input.a, input.b)",
            "prefix_set": "strings.any_prefix_match(input.a, {x | some x in input.b})",
            "suffix": "strings.any_suffix_match(input.a, input.b)",
            "count": "strings.count(input.a, input.b)",
            "replace": "strings.replace_n(input.m, input.a)",
            "left": "trim_left(input.a, input.b)",
            "right": "trim_right(input.a, input.b)",
            "index": "indexof_n(input.a, input.b)",
        }
    )


@DIFF
@given(a=collections, b=collections)
def test_matching_agrees_with_regorus(pair: Pair, a: Any, b: Any) -> None:
    doc = {"a": a, "b": b}
    pair.check("prefix", doc)
    pair.check("suffix", doc)
    if isinstance(b, list):
        pair.check("prefix_set", doc)


@DIFF
@given(
    a=st.one_of(texts, st.integers(0, 2)),
    b=st.one_of(texts, st.integers(0, 2)),
    m=st.one_of(st.dictionaries(texts, st.one_of(texts, st.integers(0, 1)), max_size=3), texts),
)
def test_string_builtins_agree_with_regorus(pair: Pair, a: Any, b: Any, m: Any) -> None:
    doc = {"a": a, "b": b, "m": m}
    for rule in ("count", "replace", "left", "right", "index"):
        pair.check(rule, doc)
