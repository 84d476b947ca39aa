"""Run-time regex and glob builtins (``policies/runtime/host/regex.py``).

Unit tests call the registered functions; the differential tests compile policies
whose patterns come from the input (so the host path runs, not the constant DFA)
and compare every answer, undefined and error with regorus.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from policies.runtime.host import REGISTRY
from policies.runtime.host import regex as host_regex
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import UNDEFINED
from tests.host_diff import Pair, call, refused

# ---------------------------------------------------------------- regex.match / is_valid


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("^a+$", "aaa", True),
        ("b", "abc", True),
        ("^b", "abc", False),
        ("\\d", "\u0663", True),  # Unicode digits, as Rust (RE2's \d is ASCII)
        ("\\w+$", "caf\u00e9", True),
        ("^\\s$", "\u00a0", True),
        ("(?i)k", "\u212a", True),  # Kelvin sign folds to k
        ("a**", "a", True),  # stacked repetition, which RE2 would refuse as written
        ("[a&&b]", "a", False),  # class intersection
        ("[\\w--\\d]", "1", False),  # class difference
        ("[[:alpha:]]", "x", True),
        ("a{ 1 , 2 }b", "ab", True),
        ("\\u00e9", "\u00e9", True),
        ("\\x{1F600}", "\U0001f600", True),
        ("(?s).", "\n", True),
        (".", "\n", False),
        ("(?m)^b$", "a\nb", True),
        ("^b$", "a\nb", False),
        ("\\pL", "\u00e9", True),
        ("\\bfoo\\b", "a foo b", True),
        ("[^\\x00-\\x{10FFFF}]", "a", False),  # the empty class
    ],
)
def test_regex_match(pattern: str, subject: str, expected: bool) -> None:
    assert call("regex.match", pattern, subject) is expected


def test_regex_match_errors() -> None:
    assert "invalid regex" in refused("regex.match", "(", "a")
    assert "invalid regex" in refused("regex.match", "a{2,1}", "a")
    assert "invalid regex" in refused("regex.match", "\\Q", "a")
    assert "invalid regex" in refused("regex.match", "(?=a)", "a")  # Rust has no look-around
    assert "invalid regex" in refused("regex.match", "(a)\\1", "aa")  # nor backreferences
    assert "operand 1 must be string" in refused("regex.match", 1, "a")
    assert "operand 2 must be string" in refused("regex.match", "a", None)


def test_what_re2_cannot_mean_as_rust_does_is_an_error_not_an_answer() -> None:
    assert "unsupported" in refused("regex.match", "(?x) a", "a")
    assert "unsupported" in refused("regex.match", "a{1001}", "a")
    assert "unsupported" in refused("regex.match", "[\\pL]", "a")
    # Rust folds case before negating a class, RE2 after: (?i)[^a] would match "a"
    assert "unsupported" in refused("regex.match", "(?i)[^a]", "A")
    assert "unsupported" in refused("regex.match", "(?i:[a-z&&K])", "k")
    assert call("regex.match", "(?i)(?-i)[^a]", "A") is True
    # RE2's \b is ASCII-only: against non-ASCII text it could differ from Rust's
    assert "unsupported" in refused("regex.match", "\\bfoo", "\u00e9foo")
    assert call("regex.match", "\\bfoo", "afoo") is False


def test_regex_is_valid() -> None:
    assert call("regex.is_valid", "a+") is True
    assert call("regex.is_valid", "(") is False
    assert call("regex.is_valid", "(?P<n>a)(?P<n>b)") is False  # duplicate name
    assert call("regex.is_valid", 1) is False
    assert "unsupported" in refused("regex.is_valid", "(?x)a")


# ---------------------------------------------------------------- find, split, replace


def test_find_n_and_empty_matches_as_rust_iterates() -> None:
    assert call("regex.find_n", "a.", "abacad", -1) == ["ab", "ac", "ad"]
    assert call("regex.find_n", "a.", "abacad", 2) == ["ab", "ac"]
    assert call("regex.find_n", "a", "aaaa", 0) == []
    assert call("regex.find_n", "a", "aaaa", 1e30) == ["a"] * 4  # past i64: all
    assert call("regex.find_n", "", "\u00e9a", -1) == ["", "", ""]
    # no empty match right after a match: "aaa" then "" only at the very end
    assert call("regex.split", "a*", "baaac") == ["", "b", "c", ""]
    assert call("regex.split", "", "abc") == ["", "a", "b", "c", ""]
    assert "n must be an integer" in refused("regex.find_n", "a", "a", 1.5)
    assert "operand 3 must be number" in refused("regex.find_n", "a", "a", "1")


def test_find_all_string_submatch_n() -> None:
    got = call("regex.find_all_string_submatch_n", "a(b)?", "a ab", -1)
    assert got == [["a", ""], ["ab", "b"]]
    got = call("regex.find_all_string_submatch_n", "(?P<k>\\w+)=(\\w*)", "x=1 y= z=\u00e9", 2)
    assert got == [["x=1", "x", "1"], ["y=", "y", ""]]


def test_replace_expands_as_rust() -> None:
    got = call("regex.replace", "abc", "(?P<x>b)", "[$x][${x}][$1][$$][$9][$1a][$][${]")
    assert got == "a[b][b][b][$][][][$][${]c"
    assert call("regex.replace", "abc", "", "-") == "-a-b-c-"
    assert call("regex.replace", "caf\u00e9", "\u00e9", "e") == "cafe"
    assert call("regex.replace", "abc", "(", "x") is UNDEFINED  # invalid: undefined
    assert "operand 1 must be string" in refused("regex.replace", 1, "a", "b")


def test_template_match() -> None:
    tm = "regex.template_match"
    assert call(tm, "urn:foo:{.*}", "urn:foo:bar:baz", "{", "}") is True
    assert call(tm, "urn:foo:{[a-z]+}:x", "urn:foo:bar:x", "{", "}") is True
    assert call(tm, "urn:foo:{[a-z]+}:x", "urn:foo:bar:y", "{", "}") is False
    assert call(tm, "{a}x{b}", "axb", "{", "}") is True
    assert call(tm, "a}{b", "ab", "{", "}") is UNDEFINED  # end before start
    # regorus slices the value at the template's byte offset and panics past its end
    assert "not within the value" in refused(tm, "urn:foo:{.*}", "urn", "{", "}")
    assert "not within the value" in refused(tm, "\u00e9{.*}", "a", "{", "}")
    assert "not within the value" in refused(tm, "a{.*}", "\u00e9", "{", "}")  # inside a char
    assert call(tm, "\u00e9{.*}", "ab", "{", "}") is False
    assert "invalid regex" in refused(tm, "{(}", "a", "{", "}")


# ---------------------------------------------------------------- globs


def test_glob_match() -> None:
    assert call("glob.match", "*.com", ["."], "a.com") is True
    assert call("glob.match", "*.com", ["."], "a.b.com") is False
    assert call("glob.match", "*.com", None, "a.b.com") is True
    assert call("glob.match", "**.com", ["."], "a.b.com") is True
    assert call("glob.match", "api/*", ["/"], "api/v1/x") is False
    assert call("glob.match", "{a,b}?[!c]", [], "bxd") is True
    assert call("glob.match", "a\0", None, "a") is False
    assert "placeholder" in refused("glob.match", "a", ["."], "a\0")
    assert "invalid glob" in refused("glob.match", "[", None, "a")
    assert "single character" in refused("glob.match", "a", ["ab"], "a")
    assert "delimiter 0" in refused("glob.match", "a", [1], "a")
    assert "array of strings or null" in refused("glob.match", "a", "x", "a")


def test_glob_quote_meta() -> None:
    assert call("glob.quote_meta", "a*b?c[d]e{f}g\\h") == "a\\*b?c[d]e{f}g\\h"
    assert call("glob.quote_meta", "**") == "\\*\\*"
    assert "invalid glob" in refused("glob.quote_meta", "[")


# ---------------------------------------------------------------- attacks


def test_catastrophic_patterns_run_in_linear_time() -> None:
    """Backtracking engines take exponential time here; RE2 answers at once."""
    subject = "a" * 200_000 + "!"
    assert call("regex.match", "(a+)+$", subject) is False
    assert call("regex.match", "(a|aa)*b", subject) is False
    assert call("regex.match", "^(\\w+\\s?)*$", subject) is False
    assert call("regex.find_n", "(a*)*b", subject, -1) == []
    assert call("glob.match", "*a*a*a*a*a*a*a*a*b", None, subject) is False
    assert call("glob.match", "*a????????????*", ["."], "b" * 10_000 + "a" + "c" * 12) is True


def test_long_patterns_are_refused() -> None:
    long = "a" * (host_regex.MAX_PATTERN + 1)
    assert "longer than" in refused("regex.match", long, "a")
    assert "longer than" in refused("glob.match", long, None, "a")
    assert call("regex.match", "a" * host_regex.MAX_PATTERN, "a") is False


def test_deep_nesting_and_huge_expansions_are_errors() -> None:
    assert "unsupported" in refused("regex.match", "(" * 5000 + ")" * 5000, "a")
    assert "unsupported" in refused("regex.match", "\\w{1000}{1000}", "a")
    assert "too large" in refused("regex.match", "(\\w\\W)" * 3000, "a")
    assert "more than 256" in refused("regex.match", "[\\w\\W]" * 3000, "a")
    assert "unsupported" in refused("regex.match", "[" * 20_000, "a")
    with pytest.raises(BuiltinError):
        call("glob.match", "{" * 3000 + "}" * 3000, None, "a")


def test_match_counts_and_replacement_growth_are_bounded() -> None:
    # a huge n is only a bound: the result has as many matches as there are
    assert len(call("regex.find_n", "a", "a" * 1000, 2**62)) == 1000
    with pytest.raises(BuiltinError, match="longer than"):
        call("regex.replace", "a" * 100_000, "", "x" * 1000)


def test_the_pattern_cache_is_bounded() -> None:
    for i in range(host_regex._CACHE_ENTRIES * 2):
        call("regex.match", f"x{i}", "x")
    assert len(host_regex._CACHE) <= host_regex._CACHE_ENTRIES
    for i in range(2 * host_regex._CACHE_CHARS // host_regex.MAX_PATTERN):
        call("regex.match", "y" * (host_regex.MAX_PATTERN - 3) + f"{i:03d}", "y")
    assert host_regex._CACHE.chars <= host_regex._CACHE_CHARS


# ---------------------------------------------------------------- differential


REGEX_PIECES = [
    "a", "b", "\u00e9", "\u0663", " ", ".", "\\d", "\\w", "\\s", "\\D", "\\W", "[a-c]", "[^a]",
    "[\\w&&[^\\d]]", "[a-c--b]", "[[:alpha:]]", "(", ")", "(?:", "(?P<n>", "(?<m>", "|", "*",
    "+", "?", "*?", "{1,2}", "{2}", "{1,}", "^", "$", "(?i)", "(?s)", "(?m)", "(?U)", "\\A",
    "\\z", "\\pL", "\\p{Greek}", "\\x{e9}", "\\u0061", "\\.", "\\-", "{", "\\", "[", "]", "-",
    "\\b",
]  # fmt: skip
patterns = st.lists(st.sampled_from(REGEX_PIECES), max_size=7).map("".join)
subjects = st.text(alphabet="ab\u00e9\u0663 \n_1A.\u03b1", max_size=12)
templates = st.lists(
    st.sampled_from(["$0", "$1", "$n", "${m}", "${1}", "$$", "$", "x", "${", "$n_", "-"]),
    max_size=4,
).map("".join)

DIFF = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A1 refuses (an error) what RE2 cannot run as Rust means it; nothing else may differ.
TOLERATE = ("unsupported",)


@pytest.fixture(scope="module")
def regex_pair() -> Pair:
    return Pair(
        {
            "match": "regex.match(input.p, input.s)",
            "valid": "regex.is_valid(input.p)",
            "find": "regex.find_n(input.p, input.s, input.n)",
            "sub": "regex.find_all_string_submatch_n(input.p, input.s, input.n)",
            "split": "regex.split(input.p, input.s)",
            "replace": "regex.replace(input.s, input.p, input.t)",
            "template": "regex.template_match(input.p, input.s, input.a, input.b)",
            "glob": "glob.match(input.p, input.d, input.s)",
            "quote": "glob.quote_meta(input.p)",
        }
    )


@DIFF
@given(pattern=patterns, subject=subjects, n=st.integers(-2, 3), template=templates)
def test_regex_builtins_agree_with_regorus(
    regex_pair: Pair, pattern: str, subject: str, n: int, template: str
) -> None:
    doc = {"p": pattern, "s": subject, "n": n, "t": template}
    outcome = regex_pair.check("match", doc, tolerate=TOLERATE)
    assume(outcome[0] != "error" or "unsupported" not in outcome[1])
    for rule in ("valid", "find", "sub", "split", "replace"):
        regex_pair.check(rule, doc, tolerate=TOLERATE)


template_texts = st.lists(
    st.sampled_from(["urn:", "a", "\u00e9", "{", "}", "[a-z]+", ".*", "\\d", "(", ":", "<", ">"]),
    max_size=8,
).map("".join)


@DIFF
@given(
    template=template_texts,
    value=st.text(alphabet="urn:a\u00e9b1", max_size=10),
    delims=st.sampled_from([("{", "}"), ("<", ">"), ("", "}"), ("{", "{"), ("a", ":")]),
)
def test_template_match_agrees_with_regorus(
    regex_pair: Pair, template: str, value: str, delims: tuple[str, str]
) -> None:
    doc = {"p": template, "s": value, "a": delims[0], "b": delims[1]}
    regex_pair.check("template", doc, tolerate=TOLERATE)


GLOB_PIECES = [
    "*", "**", "?", "a", "b", ".", "/", ":", "\u00e9", "[ab]", "[!a]", "[^.]", "[a-c-e]", "{a,b}",
    "{a,}", "{*.,b}", "\\*", "\\", "[", "{", "}", ",", "-", "]",
]  # fmt: skip
DELIMITERS = [None, [], [""], ["."], ["/"], [":"], [".", "/"], ["a"], ["\u00e9"], [".", "."]]


@DIFF
@given(
    pattern=st.lists(st.sampled_from(GLOB_PIECES), max_size=6).map("".join),
    subject=st.text(alphabet="ab./:\u00e9c", max_size=10),
    delimiters=st.sampled_from(DELIMITERS),
)
def test_glob_builtins_agree_with_regorus(
    regex_pair: Pair, pattern: str, subject: str, delimiters: Any
) -> None:
    doc = {"p": pattern, "s": subject, "d": delimiters}
    regex_pair.check("quote", doc)
    if not _opa_reads_differently(pattern, delimiters):
        regex_pair.check("glob", doc)


def _opa_reads_differently(pattern: str, delimiters: Any) -> bool:
    """An empty ``{…}`` alternative beside others: A1 follows OPA (it matches the empty
    string), regorus's globset drops it (tests/test_patterns.py checks both paths)."""
    from policies.compiler.patterns import PatternError, glob_delimiters
    from policies.compiler.patterns.glob_parse import (
        GlobParser,
        glob_rewrite,
        has_empty_alternative,
    )

    try:
        chars = glob_rewrite([(c, i) for i, c in enumerate(pattern)], glob_delimiters(delimiters))
        return has_empty_alternative(GlobParser(chars).parse())
    except PatternError:
        return False


def test_empty_glob_alternative_matches_the_empty_string_as_in_opa() -> None:
    assert call("glob.match", "{**/,}x", None, "x") is True
    assert call("glob.match", "{a,}.b", ["."], ".b") is True
    assert call("glob.match", "{a,}.b", ["."], "a.b") is True


_CONSTANT_PAST_DFA = Pair(
    {
        "ci": 'regex.match("(?i)ab+c", input.s)',
        "anchored": 'regex.match("^(?i:a)b", input.s)',
        "glob": 'glob.match("*a????????????*", [], input.s)',
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="abcABC\u00e9 -", max_size=12))
def test_constant_patterns_past_the_automata_run_on_the_host_as_regorus(s: str) -> None:
    """A constant pattern the DFA compiler refuses ((?i), a DFA past its state cap) is
    no build error: it compiles to the host's RE2, with regorus's answers."""
    pair = _CONSTANT_PAST_DFA
    for rule in ("ci", "anchored", "glob"):
        pair.check(rule, {"s": s})


# ---------------------------------------------------------------- regex.globs_match


def test_globs_match_decides_whether_two_patterns_share_a_string() -> None:
    gm = REGISTRY["regex.globs_match"].fn
    assert gm("a.a.[0-9]+z", ".b.b12*34z") is True  # "abab1234z"
    assert gm("[a-z]+", "[0-9]*") is False  # only "" is in the second's [0-9]* ∩ letters
    assert gm("a*", "b*") is True  # the empty string
    assert gm("b.*", "bar") is True
    assert gm("[a-z]+\\[[0-9]+\\]", "foo\\[1\\]") is True  # escapes are literals
    assert gm("[a-z]+\\[[0-9]+\\]", 'foo["x"]') is False  # "[...]" is a set there
    assert gm("a?", "a?") is True  # "?" is a literal character
    assert gm("a?", "a") is False
    assert gm("[^a]", "a") is True  # no negation: "^" is a member
    assert gm("[]", "") is False and gm("[]*", "") is True
    assert gm("\u00e9+", "[\u00e0-\u00ff]") is True


@pytest.mark.parametrize(
    "bad", ["*a", "a**", "+", "]", "[a", "a\\", "[-a]", "[a-]", "[b-a]", "[a-c-e]"]
)
def test_globs_match_refuses_what_its_grammar_does_not_hold(bad: str) -> None:
    assert "regex.globs_match" in refused("regex.globs_match", bad, "a")
    assert "regex.globs_match" in refused("regex.globs_match", "a", bad)


def test_globs_match_work_is_bounded() -> None:
    """Two long star chains: the product has len1 x len2 states, refused past the cap."""
    long = "a*" * 2000
    assert call("regex.globs_match", long, "b*" * 200) is True
    assert "too long" in refused("regex.globs_match", long, long)
    assert "operand 2 must be string" in refused("regex.globs_match", "a", 1)


GI_PIECES = ["a", "b", ".", "[ab]", "[b-c]", "a*", "b+", ".*", "[ac]+", "c"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(GI_PIECES), max_size=3).map("".join),
    st.lists(st.sampled_from(GI_PIECES), max_size=3).map("".join),
)
def test_globs_match_agrees_with_brute_force(g1: str, g2: str) -> None:
    """Each step of a shortest common string passes a non-starred piece of one pattern,
    so one exists iff one of length <= 6 does: enumerate them over {a, b, c}."""
    import itertools
    import re

    r1, r2 = re.compile(g1), re.compile(g2)
    expected = any(
        r1.fullmatch(s) and r2.fullmatch(s)
        for n in range(7)
        for s in map("".join, itertools.product("abc", repeat=n))
    )
    assert call("regex.globs_match", g1, g2) is expected
