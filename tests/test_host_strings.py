"""String builtins of the host (``policies/runtime/host/strings.py``).

Unit tests call the registered functions; the differential tests compile a policy
applying each builtin to the input and compare every answer with regorus, except
``strings.count`` and ``strings.replace_n``, where A1 follows OPA (Go's
``strings.Count`` and ``strings.NewReplacer``): those are compared with a direct,
position-by-position port of Go's algorithms below.
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
from tests.host_diff import Pair, call, refused

NAMES = [
    "strings.any_prefix_match", "strings.any_suffix_match", "strings.count",
    "strings.replace_n", "strings.split_n", "trim_left", "trim_right", "indexof_n",
]  # fmt: skip


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


def test_count_does_not_overlap_as_in_opa() -> None:
    assert call("strings.count", "aaaa", "aa") == 2  # regorus: 3
    assert call("strings.count", "11111", "11") == 2
    assert call("strings.count", "\u00e9\u00e9\u00e9", "\u00e9") == 3
    assert call("strings.count", "abc", "x") == 0
    assert call("strings.count", "ab\u00e9", "") == 4  # characters + 1, as Go
    assert call("strings.count", "", "") == 1
    assert "operand 2 must be string" in refused("strings.count", "a", 1)


def test_replace_n_is_gos_replacer_over_sorted_keys() -> None:
    # no chaining: "a" -> "b" is not then replaced by "b" -> "a"
    assert call("strings.replace_n", {"a": "b", "b": "a"}, "ab") == "ba"
    # at one position the first key in sorted order wins, even when shorter
    assert call("strings.replace_n", {"ab": "x", "a": "y"}, "abab") == "ybyb"
    assert call("strings.replace_n", {"abc": "1", "b": "2"}, "abc") == "1"
    # the leftmost match wins over an earlier-sorted key matching further right
    assert call("strings.replace_n", {"a": "1", "xb": "2"}, "xba") == "21"
    # the empty key at every character boundary, once, beside other keys
    assert call("strings.replace_n", {"": "x"}, "ab") == "xaxbx"
    assert call("strings.replace_n", {"": "-", "b": "B"}, "abc") == "-a-B-c-"
    assert call("strings.replace_n", {"": "x"}, "") == "x"
    assert (
        call("strings.replace_n", {"\u00e9": "e", "": "."}, "\u00e9\U0001f600") == ".e.\U0001f600."
    )
    assert call("strings.replace_n", {}, "ab") == "ab"
    assert "non-string value" in refused("strings.replace_n", {"a": 1}, "ab")
    assert "non-string key" in refused("strings.replace_n", {1: "a"}, "ab")
    assert "operand 1 must be object" in refused("strings.replace_n", [], "ab")
    assert "operand 2 must be string" in refused("strings.replace_n", {}, 1)


def test_split_n_takes_the_first_or_last_parts() -> None:
    assert call("strings.split_n", "a;b;c", ";", 2) == ["a", "b"]
    assert call("strings.split_n", "a;b;c", ";", -2) == ["b", "c"]
    assert call("strings.split_n", "a;b;c", ";", 0) == []
    assert call("strings.split_n", "a;b;c", ";", 9) == ["a", "b", "c"]
    assert call("strings.split_n", "a;b;c", ";", -9) == ["a", "b", "c"]
    assert call("strings.split_n", "a;b;c", ";", 2.0) == ["a", "b"]
    assert call("strings.split_n", "", ";", 1) == [""]
    assert call("strings.split_n", "x\u00e9z", "", -2) == ["\u00e9", "z"]
    assert "integer" in refused("strings.split_n", "a", ";", 1.5)
    assert "operand 3 must be number" in refused("strings.split_n", "a", ";", "1")
    assert "operand 2 must be string" in refused("strings.split_n", "a", None, 1)


def go_count(s: str, sub: str) -> int:
    """Go's ``strings.Count``, scanned by hand (characters for the empty substring)."""
    if not sub:
        return len(s) + 1
    n = i = 0
    while i + len(sub) <= len(s):
        if s[i : i + len(sub)] == sub:
            n += 1
            i += len(sub)
        else:
            i += 1
    return n


def go_replacer(pairs: dict[str, str], s: str) -> str:
    """Go's ``genericReplacer.WriteString`` with the pairs in sorted key order, position
    by position (characters): the highest-priority key matching at ``i`` wins; after an
    empty match the empty key is ignored at the same position."""
    keys = sorted(pairs)
    out: list[str] = []
    i, last, prev_empty = 0, 0, False
    while i <= len(s):
        hit = next((k for k in keys if s.startswith(k, i) and not (prev_empty and k == "")), None)
        prev_empty = hit == ""
        if hit is not None:
            out += [s[last:i], pairs[hit]]
            i += len(hit)
            last = i
            continue
        i += 1
    out.append(s[last:])
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(
    m=st.dictionaries(
        st.text("ab\u00e9", max_size=3), st.text("abX\u00e9", max_size=3), max_size=4
    ),
    s=st.text("ab\u00e9c", max_size=12),
)
def test_count_and_replace_n_agree_with_gos_algorithms(m: dict[str, str], s: str) -> None:
    assert call("strings.replace_n", m, s) == go_replacer(m, s)
    for k in m:
        assert call("strings.count", s, k) == go_count(s, k)


def test_indexof_n_counts_characters() -> None:
    assert call("indexof_n", "abab", "ab") == [0, 2]
    assert call("indexof_n", "aaa", "aa") == [0, 1]
    assert call("indexof_n", "\u00e9\u00e9a", "a") == [2]
    assert call("indexof_n", "abab", "") == [0, 1, 2, 3]
    assert call("indexof_n", "", "") == []


def test_replacement_growth_is_refused_before_it_is_built() -> None:
    """One pass cannot multiply lengths key by key, but long values can still grow the
    result past the cap: refused (without building it for the empty key)."""
    with pytest.raises(BuiltinError, match="longer than"):
        call("strings.replace_n", {"a": "x" * 100_000}, "a" * 1000)
    with pytest.raises(BuiltinError, match="longer than"):
        call("strings.replace_n", {"": "x" * 1000}, "a" * host_strings.MAX_RESULT_CHARS)


def test_many_keys_against_a_long_string_stay_linear() -> None:
    """Keys sharing long prefixes: a naive key-by-key scan is keys x length x key size."""
    keys = {"a" * 200 + str(i): "x" for i in range(500)}
    assert call("strings.replace_n", keys, "a" * 200_000) == "a" * 200_000
    with pytest.raises(BuiltinError, match="too many or too long"):
        call("strings.replace_n", {f"{i:06d}" * 50: "x" for i in range(20_000)}, "a")


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
    for rule in ("left", "right", "index"):
        pair.check(rule, doc)
    # A1 follows OPA where regorus differs: only whether it is an error must agree
    # (regorus panics on an empty substring, OPA counts it)
    for rule in ("count", "replace") if b != "" else ("replace",):
        ours, theirs = pair.outcomes(rule, doc)
        assert (ours[0] == "error") == (theirs[0] == "error"), (rule, doc, ours, theirs)
