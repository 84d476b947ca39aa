"""``yaml.*`` (``policies/runtime/host/yamlfns.py``): YAML 1.2's core schema as regorus reads
it, refusing what OPA's YAML 1.1 reader would read differently; against regorus."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.runtime.host import REGISTRY, yamlfns
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import RegoSet
from tests.host_diff import Pair

DIFFERS = "read differently"  # A1's refusal where YAML 1.1 and 1.2 disagree


def unmarshal(text: str) -> Any:
    return REGISTRY["yaml.unmarshal"].fn(text)


def refused(text: str) -> str:
    with pytest.raises(BuiltinError) as info:
        unmarshal(text)
    return str(info.value)


def test_core_schema_scalars() -> None:
    assert unmarshal("a: 1\nb: -2.5\nc: true\nd: ~\ne: null\nf: 0x1F\ng: 1e3\nh: x y\n") == {
        "a": 1, "b": -2.5, "c": True, "d": None, "e": None, "f": 31, "g": 1000.0, "h": "x y"
    }  # fmt: skip
    assert unmarshal("a: '1'\nb: !!str 2\nc: !!int '3'\nd: !!float 4\n") == {
        "a": "1",
        "b": "2",
        "c": 3,
        "d": 4.0,
    }
    assert unmarshal("") is None
    assert unmarshal("- [1, {a: b}]\n- {}\n") == [[1, {"a": "b"}], {}]


@pytest.mark.parametrize(
    "scalar", ["yes", "No", "on", "OFF", "y", "0777", "0o17", "1_000", "1:20", "2001-12-14",
               "0X1F", "+0x1", ".inf", "-.Inf", ".nan"],
)  # fmt: skip
def test_scalars_yaml_11_reads_otherwise_are_refused(scalar: str) -> None:
    assert DIFFERS in refused(f"x: {scalar}")
    assert unmarshal(f"x: '{scalar}'") == {"x": scalar}  # quoted, they are strings


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1: a", "non-string mapping key"),
        ("true: a", "non-string mapping key"),
        ("[1]: a", "non-string mapping key"),
        ("<<: {a: 1}", "merge keys"),
        ("x: !!binary aGk=", "tag"),
        ("x: !!set {a}", "tag"),
        ("x: !local v", "tag"),
        ("a: 1\na: 2", "duplicate"),
        ("x: 12345678901234567890", "int64"),
        ("a: 1\n---\nb: 2\n", "more than one"),
        ("a: [", "invalid YAML"),
    ],
)
def test_refusals(text: str, why: str) -> None:
    assert why in refused(text)


def test_alias_bombs_and_recursive_aliases_are_refused_after_bounded_work() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "aliases expanded" in refused("\n".join(lines))  # 10^9 values if expanded
    assert "nested deeper" in refused("a: &a [*a]")
    assert unmarshal("a: &x [1]\nb: *x") == {"a": [1], "b": [1]}  # a small alias is fine
    assert "longer than" in refused("a" * (yamlfns.MAX_TEXT + 1))
    assert "nested deeper" in refused("[" * 200 + "]" * 200)


def test_is_valid() -> None:
    valid = REGISTRY["yaml.is_valid"].fn
    assert valid("a: [1, 2]") is True
    assert valid("a: 1\n---\nb: 2\n") is True  # several documents, as OPA
    assert valid("a: [") is False
    assert valid("  a:\nb: c\n") is False
    assert valid(1) is False
    assert valid("x: yes") is True  # valid YAML, whatever the reader makes of it


def test_marshal_writes_yaml_both_readers_read_back() -> None:
    marshal = REGISTRY["yaml.marshal"].fn
    tricky = ["yes", "y", "On", "0777", "0o17", "0X1F", "1_000", "1:20", "1e3", ".5", "2020-01-01",
              "null", "~", "", "true", "- a", "a: b", "#", "\t", "é"]  # fmt: skip
    value = {"s": tricky, "set": RegoSet([3, 1, 2]), "n": [1, -2.5, True, None], "m": {"b": {}}}
    text = marshal(value)
    expected = {**value, "set": [1, 2, 3]}
    assert unmarshal(text) == expected
    assert yaml.load(text, Loader=yaml.SafeLoader) == expected  # a YAML 1.1 reader too
    with pytest.raises(BuiltinError, match="non-string object key"):
        marshal({1: "a"})


# ---------------------------------------------------------------- differential

DIFF = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair({"un": "yaml.unmarshal(input.s)", "round": "yaml.unmarshal(yaml.marshal(input.v))"})


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.integers(-4000, 4000).map(lambda i: i / 8),  # regorus rounds long doubles' digits
    st.text(alphabet="ab yYnN01_:.-+eox#'\"", max_size=6),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abyn", max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
PIECES = ["a", ":", " ", "\n", "- ", "[", "]", "{", "}", ",", "yes", "0", "7", "1_0", "0x1",
          "~", "'", '"', "&x ", "*x", "!!str ", "#", "true", "null", ".5", "e3", "  "]  # fmt: skip


def _agree(ours: Any, theirs: Any) -> None:
    if ours[0] == "error" and any(
        w in ours[1] for w in (DIFFERS, "not supported", "duplicate", "int64", "more than one")
    ):
        return  # a documented refusal
    if ours[0] == "error" or theirs[0] == "error":
        assert ours[0] == theirs[0], (ours, theirs)
        return
    assert ours == theirs


@DIFF
@given(values)
def test_unmarshal_agrees_with_regorus_on_pyyaml_documents(pair: Pair, v: Any) -> None:
    text = yaml.safe_dump({"v": v}, default_flow_style=None)
    _agree(*pair.outcomes("un", {"s": text}))


@DIFF
@given(st.lists(st.sampled_from(PIECES), max_size=10).map("".join))
def test_unmarshal_agrees_with_regorus_on_yaml_soup(pair: Pair, text: str) -> None:
    _agree(*pair.outcomes("un", {"s": text}))


@DIFF
@given(values)
def test_marshal_round_trips_through_regorus(pair: Pair, v: Any) -> None:
    ours, theirs = pair.outcomes("round", {"v": v})
    assert ours == theirs, (v, ours, theirs)


def test_underscore_words_are_strings_in_both_yaml_versions() -> None:
    """`_` and `_1` are no numbers in YAML 1.1 either: read as strings, written plain."""
    from policies.runtime.host import REGISTRY

    for text in ["_", "_1", "__", "a_1"]:
        assert REGISTRY["yaml.unmarshal"].fn(text) == text
        assert REGISTRY["yaml.unmarshal"].fn(REGISTRY["yaml.marshal"].fn(text)) == text
    assert "read differently" in _refusal("1_000")


def _refusal(text: str) -> str:
    from policies.runtime.host import REGISTRY
    from policies.runtime.host.base import BuiltinError

    try:
        REGISTRY["yaml.unmarshal"].fn(text)
    except BuiltinError as err:
        return str(err)
    raise AssertionError(f"{text!r} was not refused")
