"""base64, base64url, hex and urlquery builtins, compiled, against regorus side by side.

Each expression is compiled by our compiler and run by our runtime; regorus runs
the same Rego. urlquery follows Go's net/url (as OPA does), where regorus's Rust
form encoding differs: those inputs are tested against Go's documented behaviour.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.runtime import PolicyError
from tests.host_diff import expr_pair, ours, same, value

# ------------------------------------------------------------------ unit, per builtin


def test_base64_encode() -> None:
    assert value('base64.encode("héllo")') == "aMOpbGxv"
    assert value('base64.encode("")') == ""
    assert value('base64.encode("\\u00ff\\u00fe>?")') == "w7/Dvj4/"


def test_base64_decode_is_strict_like_regorus() -> None:
    assert value('base64.decode("aMOpbGxv")') == "héllo"
    assert value('base64.decode("YWI=")') == "ab"
    assert value('base64.decode("YQ==YWI=YWJj")') == "aababc"  # concatenated encodings
    for bad in [
        "YWJ",
        "YWJ=",
        "YW Jj",
        "YW\\nJj",
        "YWI",
        "=YWI",
        "YWI==",
        "w7/Dvj4_",
        "YQ=a",
        "====",
    ]:
        assert same(f'base64.decode("{bad}")')[0] == "error", bad


def test_base64_is_valid() -> None:
    assert value('base64.is_valid("YWI=")') is True
    assert value('base64.is_valid("YWJ=")') is False  # non-zero trailing bits
    assert value('base64.is_valid("not base64!")') is False
    assert same("base64.is_valid(1)")[0] == "error"


def test_base64url_encode_and_no_pad() -> None:
    assert value('base64url.encode("\\u00ff\\u00fe>?")') == "w7_Dvj4_"
    assert value('base64url.encode("ab")') == "YWI="
    assert value('base64url.encode_no_pad("ab")') == "YWI"
    assert value('base64url.encode_no_pad("hello")') == "aGVsbG8"


def test_base64url_decode_takes_padded_and_unpadded() -> None:
    assert value('base64url.decode("YWI=")') == "ab"
    assert value('base64url.decode("YWI")') == "ab"
    assert value('base64url.decode("w7_Dvj4_")') == "\u00ff\u00fe>?"
    for bad in ["YWJ", "_w=", "Y", "w7/Dvj4/", "YW=I"]:
        assert same(f'base64url.decode("{bad}")')[0] == "error", bad


def test_hex_encode_and_decode() -> None:
    assert value('hex.encode("é!")') == "c3a921"
    assert value('hex.decode("4A4b")') == "JK"
    assert value('hex.decode("")') == ""
    for bad in ["4", "zz", "4a 4b", " 4a"]:
        assert same(f'hex.decode("{bad}")')[0] == "error", bad


def test_wrong_types_are_errors() -> None:
    for fn in ["base64.encode", "base64.decode", "base64url.decode", "hex.encode", "hex.decode"]:
        assert same(f"{fn}(1)")[0] == "error"
        assert same(f"{fn}(input.x)", {"x": ["a"]})[0] == "error"


# ------------------------------------------------------------------ attacks


def test_invalid_utf8_after_decoding_becomes_replacement_characters() -> None:
    """The value model holds Unicode only: bad bytes become U+FFFD, as regorus does."""
    assert value('base64.decode("/w==")') == "\ufffd"
    assert value('base64.decode("gA==")') == "\ufffd"
    assert value('hex.decode("c3")') == "\ufffd"
    assert value('hex.decode("e282")') == "\ufffd"  # a truncated sequence: one U+FFFD
    value('hex.decode("f08080ff41")')  # overlong and stray bytes: as regorus splits them
    assert value('base64url.decode("7aCA")') == "\ufffd\ufffd\ufffd"  # an encoded surrogate


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=12))
def test_any_bytes_decode_as_regorus_decodes_them(data: bytes) -> None:
    value("hex.decode(input.s)", {"s": data.hex()})
    value("hex.decode(input.s)", {"s": data.hex().upper()})


def test_a_huge_string_is_encoded_within_the_budget() -> None:
    big = "x" * (96 << 10)
    assert ours("count(base64.encode(input.s))", {"s": big}) == ("value", 131072.0)
    assert ours("count(hex.decode(hex.encode(input.s)))", {"s": big}) == ("value", 98304.0)


def test_arguments_past_the_decode_budget_are_refused() -> None:
    with pytest.raises(PolicyError):
        expr_pair("base64.encode(input.s)")[0].evaluators["p/x"].evaluate({"s": "x" * (2 << 20)})


# ------------------------------------------------------------------ differential

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_round_trips_agree_with_regorus(s: str) -> None:
    doc = {"s": s}
    assert value("base64.decode(base64.encode(input.s))", doc) == s
    assert value("base64url.decode(base64url.encode(input.s))", doc) == s
    assert value("base64url.decode(base64url.encode_no_pad(input.s))", doc) == s
    assert value("hex.decode(hex.encode(input.s))", doc) == s
    value("[base64.encode(input.s), base64url.encode(input.s), hex.encode(input.s)]", doc)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=B64, max_size=12))
def test_decoding_arbitrary_base64_alphabet_strings_agrees(s: str) -> None:
    doc = {"s": s}
    same("base64.decode(input.s)", doc)
    same("base64.is_valid(input.s)", doc)
    same("base64url.decode(input.s)", doc)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFgx ", max_size=10))
def test_decoding_arbitrary_hex_strings_agrees(s: str) -> None:
    same("hex.decode(input.s)", {"s": s})


# ------------------------------------------------------------------ urlquery (Go's net/url)


def test_urlquery_encode_is_gos_query_escape() -> None:
    assert value('urlquery.encode("a b&c=d/é")') == "a+b%26c%3Dd%2F%C3%A9"
    # Go keeps "~" and escapes "*"; regorus (Rust form encoding) does the opposite
    assert ours('urlquery.encode("~*")') == ("value", "~%2A")


def test_urlquery_decode_is_gos_query_unescape() -> None:
    assert value('urlquery.decode("a+b%41%c3%a9")') == "a bAé"
    # Go keeps the separators; regorus drops "&" and an empty value's "="
    assert ours('urlquery.decode("a=1&b=2&c=")') == ("value", "a=1&b=2&c=")
    for bad in ["%zz", "a%2", "%"]:
        assert ours(f'urlquery.decode("{bad}")')[0] == "error", bad
    assert ours('urlquery.decode("%ff")') == ("value", "\ufffd")


def test_urlquery_encode_object() -> None:
    expr = 'urlquery.encode_object({"b": ["2", "1"], "a": "x y", "c": {"z", "y"}, "d": []})'
    assert value(expr) == "a=x+y&b=2&b=1&c=y&c=z"
    assert value("urlquery.encode_object({})") == ""
    for bad in ['{"a": 1}', '{"a": [1]}', '{1: "a"}', '"a=b"']:
        assert same(f"urlquery.encode_object({bad})")[0] == "error", bad


def test_urlquery_decode_object() -> None:
    assert value('urlquery.decode_object("a=1&a=2&b&=c&e=+&&f=%41")') == {
        "": ["c"],
        "a": ["1", "2"],
        "b": [""],
        "e": [" "],
        "f": ["A"],
    }
    assert value('urlquery.decode_object("")') == {}
    # Go refuses a bad escape and a ";" separator; regorus keeps both as text
    assert ours('urlquery.decode_object("d=%zz")')[0] == "error"
    assert ours('urlquery.decode_object("a;b=1")')[0] == "error"


QUERY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="~*&=%;"), max_size=20
)


@settings(max_examples=200, deadline=None)
@given(QUERY_TEXT)
def test_urlquery_agrees_with_regorus_where_go_and_rust_agree(s: str) -> None:
    doc = {"s": s}
    value("urlquery.encode(input.s)", doc)
    assert value("urlquery.decode(urlquery.encode(input.s))", doc) == s


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(QUERY_TEXT, st.lists(QUERY_TEXT, max_size=3) | QUERY_TEXT, max_size=4))
def test_urlquery_objects_agree_with_regorus(obj: dict[str, Any]) -> None:
    doc = {"o": obj}
    value("urlquery.encode_object(input.o)", doc)
    value("urlquery.decode_object(urlquery.encode_object(input.o))", doc)
