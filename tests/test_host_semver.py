"""semver.compare and semver.is_valid (``policies/runtime/host/semver.py``)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.runtime.host.base import BuiltinError
from tests.host_diff import Pair, call

# SemVer 2.0.0, section 11's example chain, in ascending precedence
CHAIN = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
         "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]  # fmt: skip


def test_precedence_follows_the_specification() -> None:
    for i, a in enumerate(CHAIN):
        for j, b in enumerate(CHAIN):
            assert call("semver.compare", a, b) == (i > j) - (i < j), (a, b)


def test_build_metadata_is_ignored() -> None:
    assert call("semver.compare", "1.0.0+build.1", "1.0.0+other") == 0
    assert call("semver.compare", "1.0.0-rc.1+b", "1.0.0-rc.1") == 0
    assert call("semver.compare", "1.0.0-rc.1+b", "1.0.0") == -1


def test_numeric_identifiers_compare_as_numbers_of_any_size() -> None:
    assert call("semver.compare", "1.0.0-99999999999999999999999", "1.0.0-100000") == 1
    assert call("semver.compare", "1.0.0-9", "1.0.0-a") == -1  # numeric below alphanumeric
    assert call("semver.compare", "1.0.0-A", "1.0.0-a") == -1  # ASCII order


@pytest.mark.parametrize(
    "text",
    ["1.0", "v1.0.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0+", "1.0.0-a..b", " 1.0.0",
     "1.0.0-é", "18446744073709551616.0.0", "1.0.0-" + "a" * 2000, ""],
)  # fmt: skip
def test_invalid_versions(text: str) -> None:
    assert call("semver.is_valid", text) is False
    with pytest.raises(BuiltinError, match="invalid semver"):
        call("semver.compare", text, "1.0.0")


def test_valid_versions_and_types() -> None:
    for text in ["0.0.0", "1.0.0+01", "1.0.0-0a", "1.0.0--", "18446744073709551615.0.0"]:
        assert call("semver.is_valid", text) is True, text
    with pytest.raises(BuiltinError, match="operand 1 must be string"):
        call("semver.is_valid", 1)
    with pytest.raises(BuiltinError, match="operand 2 must be string"):
        call("semver.compare", "1.0.0", None)


# ---------------------------------------------------------------- against regorus

numbers = st.sampled_from(
    ["0", "1", "2", "10", "01", "18446744073709551615", "99999999999999999999"]
)
idents = st.sampled_from(["alpha", "beta", "rc", "0", "1", "11", "01", "a-b", "-", "A", "x7"])


@st.composite
def versions(draw: st.DrawFn) -> str:
    text = ".".join(draw(numbers) for _ in range(draw(st.integers(2, 4))))
    if draw(st.booleans()):
        text += "-" + ".".join(draw(st.lists(idents, max_size=3)))
    if draw(st.booleans()):
        text += "+" + ".".join(draw(st.lists(idents, max_size=2)))
    return text


@functools.cache
def pair() -> Pair:
    return Pair({"cmp": "semver.compare(input.a, input.b)", "ok": "semver.is_valid(input.a)"})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=versions() | st.text(max_size=12), b=versions())
def test_agrees_with_regorus(a: str, b: str) -> None:
    pair().check("cmp", {"a": a, "b": b})
    pair().check("ok", {"a": a})
