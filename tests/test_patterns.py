"""Constant-pattern builtins: policies.compiler.patterns's automata walked by a1rt_match.c,
against regorus.

The C file is built on its own into a wasm module (ziglang), instantiated with a host
memory like the real runtime's, and every answer is compared with regorus's
``regex.match`` / ``glob.match`` / ``net.cidr_contains`` on the same inputs.
"""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import regorus
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler import patterns
from policies.compiler.patterns import (
    PatternError,
    compile_cidr,
    compile_glob,
    compile_regex,
    unicode_tables,
)

RUNTIME = Path(__file__).resolve().parents[1] / "policies" / "runtime"
BASE = 0x10_0000  # where the policy's constant area starts (docs/policy-abi.md)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---------------------------------------------------------------------------------------
# The runtime side: a1rt_match.c alone in a wasm module.


class Matcher:
    """Writes a blob and a string value into a host-created memory and calls the exports."""

    def __init__(self, wasm: Path) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        self.memory = wasmtime.Memory(self.store, wasmtime.MemoryType(wasmtime.Limits(48, None)))
        linker = wasmtime.Linker(engine)
        linker.define(self.store, "env", "memory", self.memory)
        instance = linker.instantiate(self.store, wasmtime.Module.from_file(engine, str(wasm)))
        exports = instance.exports(self.store)
        self.dfa_fn = exports["a1_dfa_match"]
        self.cidr_fn = exports["a1_cidr_match"]

    def place(self, blob: bytes, value: object, at: int = BASE) -> tuple[int, int]:
        data = bytearray(blob) + bytes(-len(blob) % 8)
        value_at = at + len(data)
        if value is None:
            value_at = 0
        elif isinstance(value, str | bytes):
            raw = value.encode() if isinstance(value, str) else value
            data += struct.pack("<BBHI", 4, 0, 0, len(raw)) + raw
        elif isinstance(value, bool):
            data += struct.pack("<BBHI", 2, 0, 0, int(value))
        else:
            data += struct.pack("<BBHId", 3, 0, 0, 0, float(value))  # type: ignore[arg-type]
        need = at + len(data)
        if need > self.memory.data_len(self.store):
            self.memory.grow(self.store, (need - self.memory.data_len(self.store)) // 65536 + 1)
        self.memory.write(self.store, bytes(data), at)
        return at, value_at

    def dfa(self, blob: bytes, value: object, at: int = BASE) -> int:
        return self.dfa_fn(self.store, *self.place(blob, value, at))

    def cidr(self, blob: bytes, value: object, at: int = BASE) -> int:
        return self.cidr_fn(self.store, *self.place(blob, value, at))


class Oracle:
    """regorus's answers as 1 / 0 / -1 (error)."""

    def __init__(self) -> None:
        self.engines: dict[str, regorus.Engine] = {}

    def _eval(self, expr: str, inp: dict[str, object]) -> int:
        engine = self.engines.get(expr)
        if engine is None:
            engine = regorus.Engine()
            engine.add_policy("p.rego", f"package p\nimport rego.v1\nx := {expr}")
            self.engines[expr] = engine
        engine.set_input_json(json.dumps(inp))
        try:
            result = engine.eval_rule("data.p.x")
        except RuntimeError:
            return -1
        assert result in (True, False), result
        return int(result)

    def regex(self, pattern: str, s: object) -> int:
        return self._eval("regex.match(input.p, input.s)", {"p": pattern, "s": s})

    def glob(self, pattern: str, delimiters: list[str] | None, s: object) -> int:
        return self._eval(
            "glob.match(input.p, input.d, input.s)", {"p": pattern, "d": delimiters, "s": s}
        )

    def cidr(self, cidr: str, s: object) -> int:
        return self._eval("net.cidr_contains(input.p, input.s)", {"p": cidr, "s": s})


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    out = tmp_path_factory.mktemp("a1rt_match") / "a1rt_match.wasm"
    cmd = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-O2"]
    cmd += ["-nostdlib", "-Wl,--no-entry", "-Wl,--import-memory", "-Wall", "-Wextra", "-Werror"]
    cmd += ["-o", str(out), str(RUNTIME / "a1rt_match.c")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return Matcher(out)


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle()


def mutations(samples: list[str], extra: str) -> st.SearchStrategy[str]:
    """Samples, and samples with one character inserted, deleted or replaced."""
    alphabet = st.one_of(
        st.sampled_from(sorted(set(extra + "".join(samples)) or "a")), st.characters(codec="utf-8")
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        s = draw(st.sampled_from(samples))
        if not s or draw(st.booleans()):
            return s
        i = draw(st.integers(0, len(s)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            return s[:i] + draw(alphabet) + s[i:]
        if op == "delete":
            return s[:i] + s[i + 1 :]
        return s[:i] + draw(alphabet) + s[i + 1 :]

    return st.one_of(mutate(), st.text(alphabet, max_size=10))


# ---------------------------------------------------------------------------------------
# regex.match

REGEXES: list[tuple[str, list[str]]] = [
    (r"^admin$", ["admin", "admin\n", "xadmin"]),
    (r"admin", ["the admin", "adm"]),
    (r"^/api/v[0-9]+/", ["/api/v1/x", "/api/v/x", "/api/v12/"]),
    (r"^/users/[^/]+$", ["/users/bob", "/users/bob/x", "/users/"]),
    (r"\.json$", ["a.json", "a.jsonx", "json"]),
    (r"^[a-z0-9-]+\.example\.com$", ["a-1.example.com", "a.b.example.com", "A.example.com"]),
    (r"^(GET|HEAD|OPTIONS)$", ["GET", "HEAD", "POST", "GETS"]),
    (r"^Bearer [A-Za-z0-9._~+/-]+=*$", ["Bearer abc.def==", "Bearer ", "bearer x"]),
    (r"^[\w.+-]+@[\w-]+\.[\w.-]+$", ["a.b+c@d-e.fg", "é@ü.ö", "a@b", "@b.c"]),
    (r"^\d{3}-\d{4}$", ["555-1234", "٣٣٣-١٢٣٤", "55-1234"]),
    (r"\d+", ["abc1", "abc", "٣"]),
    (r"^\s*$", ["", "  \t\n", "\u3000\u00a0", " a "]),
    (r"\S", ["   ", " x "]),
    (r"^(?:[0-9]{1,3}\.){3}[0-9]{1,3}$", ["10.0.0.1", "10.0.0", "1000.1.1.1"]),
    (
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-42661417400"],
    ),
    (r"^v?\d+\.\d+\.\d+(-[\w.]+)?$", ["v1.2.3", "1.2.3-rc.1", "1.2", "1.2.3-"]),
    (r"a|b|c", ["xxc", "xyz"]),
    (r"(ab)+", ["abab", "ba"]),
    (r"^(a|ab)(c|bcd)$", ["abcd", "ac", "abc", "abbcd"]),
    (r"x*", ["", "yyy"]),
    (r"", ["", "a"]),
    (r"^$", ["", "a", "\n"]),
    (r"$", ["", "a"]),
    (r"\A\z", ["", "a"]),
    (r"^a*?b+?$", ["b", "aab", "aa", "ba"]),
    (r"[[:alpha:]][[:alnum:]_]*", ["_1", "a_1", "é"]),
    (r"^[a-z&&[^aeiou]]+$", ["bcd", "bad"]),
    (r"^[\w--\d]+$", ["abc", "ab1", "é_"]),
    (r"^[0-9~~5-9]$", ["3", "7", "5"]),
    (r"\x41\u00e9\U0001F600", ["Aé😀", "Ae😀"]),
    (r"(?s)a.b", ["a\nb", "a\rb", "ab"]),
    (r"a.b", ["a\nb", "a\rb", "aéb"]),
    (r"^[^\n]+$", ["abc", "a\nb", ""]),
    (r"^[é-ü]+$", ["éðü", "e", "ÿ"]),
    (r"\W+", ["abc", "a-b", "é"]),
    (r"(?P<user>\w+):(?<pass>\w+)", ["bob:pw", "bob:", ":pw"]),
    (r"(?U)^a+$", ["aaa", "b"]),
    (r"^.{2,5}$", ["ab", "abcdef", "a😀"]),
    (r"[\[\]]\.\*\+\?", ["[.*+?", "].*+?", "[.*+"]),
    (r"a{0}b", ["b", "ab"]),
    (r"^(a*)*b$", ["aaab", "aaa"]),
    (r"(|a)+$", ["", "a"]),
    (r"^[\s\S]$", ["\n", "ab"]),
    (r"^\t\n\r\f\v\a\ \#\&\~-$", ["\t\n\r\f\v\a #&~-"]),
    (r"^x{2}{3}$", ["xxxxxx", "xxxxx"]),
]


@pytest.mark.parametrize(("pattern", "samples"), REGEXES, ids=[p for p, _ in REGEXES])
def test_regex_corpus_agrees_with_regorus(
    matcher: Matcher, oracle: Oracle, pattern: str, samples: list[str]
) -> None:
    blob = compile_regex(pattern)
    for s in samples:
        assert matcher.dfa(blob, s) == oracle.regex(pattern, s), s

    @SETTINGS
    @given(mutations(samples, "aAz09_- .\n/é😀٣\u00a0"))
    def check(s: str) -> None:
        assert matcher.dfa(blob, s) == oracle.regex(pattern, s)

    check()


_REGEX_LITERALS = [
    "a",
    "b",
    "c",
    "é",
    "-",
    "1",
    r"\.",
    r"\-",
    r"\x62",
    r"\u{e9}",
    r"\n",
    " ",
    r"\]",
    "&",
    "~",
    "_",
]
_CLASS_ITEMS = [
    "a",
    "b",
    "c-e",
    "é",
    r"\d",
    r"\w",
    r"\s",
    r"\W",
    "[:digit:]",
    "[:^alpha:]",
    "0-9",
    "-",
    r"\n",
    "[ab]",
    "[^a]",
    "_",
    "&",
    "~",
]


@st.composite
def regexes(draw: st.DrawFn, depth: int = 0) -> str:
    """Patterns from the supported grammar (some with quirks regorus accepts)."""

    def klass() -> str:
        items = draw(st.lists(st.sampled_from(_CLASS_ITEMS), min_size=1, max_size=3))
        if draw(st.booleans()):
            items.append(draw(st.sampled_from(["&&", "--", "~~"])))
            items += draw(st.lists(st.sampled_from(_CLASS_ITEMS), min_size=1, max_size=2))
        return "[" + draw(st.sampled_from(["", "^"])) + "".join(items) + "]"

    def atom() -> str:
        kind = draw(st.integers(0, 9 if depth < 2 else 6))
        if kind <= 2:
            return draw(st.sampled_from(_REGEX_LITERALS))
        if kind == 3:
            return draw(st.sampled_from([".", r"\d", r"\w", r"\s", r"\D", r"\S", r"\W"]))
        if kind <= 5:
            return klass()
        if kind == 6:
            return draw(st.sampled_from(["^", "$", r"\A", r"\z"]))
        opener = draw(st.sampled_from(["(", "(?:", "(?s:", "(?P<g>", "(?-s:"]))
        return opener + draw(regexes(depth + 1)) + ")"

    def piece() -> str:
        a = atom()
        if draw(st.booleans()):
            a += draw(st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}", "{0}", "{ 1 , 3 }"]))
            a += draw(st.sampled_from(["", "", "?"]))
        return a

    alts = draw(st.lists(st.lists(st.builds(piece), max_size=4), min_size=1, max_size=3))
    text = "|".join("".join(p) for p in alts)
    if depth == 0:
        text = draw(st.sampled_from(["", "", "(?s)"])) + text
    return text.replace("(?P<g>", f"(?P<g{draw(st.integers(0, 10**6))}>", 1)


@SETTINGS
@given(regexes(), st.lists(st.text("abcdeé1٣_ \n-&~x.\u00a0", max_size=8), min_size=1, max_size=6))
def test_generated_regexes_agree_with_regorus(
    matcher: Matcher, oracle: Oracle, pattern: str, subjects: list[str]
) -> None:
    try:
        blob = compile_regex(pattern)
    except PatternError as err:
        assert err.unsupported or oracle.regex(pattern, "") == -1, pattern
        return
    for s in [*subjects, ""]:
        assert matcher.dfa(blob, s) == oracle.regex(pattern, s), (pattern, s)


_SOUP = [
    "a",
    ".",
    r"\d",
    r"\w",
    "[",
    "]",
    "^",
    "-",
    "(",
    ")",
    "(?:",
    "(?s)",
    "|",
    "*",
    "+",
    "?",
    "{2}",
    "{1,3}",
    "{,2}",
    "{",
    "}",
    "$",
    r"\A",
    r"\z",
    "\\",
    "[^",
    "[:alpha:]",
    "&&",
    "--",
    "~~",
    "é",
    r"\x41",
    r"\u{e9}",
    r"\-",
    " ",
    "(?P<n>",
    "(?U)",
    r"\n",
    "#",
    "&",
    "0",
    "9",
    ",",
    r"\x{10FFFF}",
    "*?",
    "(?i)",
    r"\b",
    r"\p{L}",
    "(?=",
    r"\1",
    r"\e",
    r"\Z",
]


@SETTINGS
@given(st.lists(st.sampled_from(_SOUP), min_size=1, max_size=7).map("".join))
def test_regex_validity_agrees_with_regorus(oracle: Oracle, pattern: str) -> None:
    """Whatever regorus rejects is rejected; what is rejected as invalid, regorus rejects."""
    expected = oracle.regex(pattern, "")
    try:
        compile_regex(pattern)
    except PatternError as err:
        if not err.unsupported:
            assert expected == -1, (pattern, err)
        return
    assert expected != -1, pattern


@pytest.mark.parametrize(
    ("pattern", "offset"),
    [
        ("a(?=b)", 1),
        ("a(?!b)", 1),
        ("(?<=a)b", 0),
        ("(?<!a)b", 0),
        ("(a)\\1", 3),
        ("(?P<x>a)(?P=x)", 8),
        ("x\\bfoo", 1),
        ("\\B", 0),
        ("ab\\<", 2),
        ("\\pL", 0),
        ("a\\p{Greek}", 1),
        ("(?i)abc", 2),
        ("ab(?m)^a", 4),
        ("(?x)a", 2),
        ("(?sR)a", 3),
        ("(?-u:a)", 3),
        ("[ab]*a[ab]{14}$", 0),  # more than DFA_CAP states
        ("(a{1000}){1000}", 0),  # expands past the NFA cap
    ],
)
def test_unsupported_regex_constructs(pattern: str, offset: int) -> None:
    with pytest.raises(PatternError) as info:
        compile_regex(pattern)
    assert info.value.unsupported
    assert info.value.offset == offset
    assert "unsupported" in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "offset"),
    [
        ("(abc", 0),
        ("abc)", 3),
        ("[abc", 0),
        ("a{2,1}", 1),
        ("*a", 0),
        ("a|+", 2),
        ("a{", 1),
        ("a{,3}", 2),
        ("a{99999999999}", 2),
        ("\\", 0),
        ("ab\\e", 2),
        ("ab\\Z", 2),
        ("[z-a]", 1),
        ("[\\d-z]", 1),
        ("[a-[:alpha:]]", 1),
        ("(?P<n>a)(?P<n>b)", 12),
        ("(?P<>a)", 4),
        ("\\x{110000}", 0),
        ("\\x{D800}", 0),
        ("\\x4", 0),
        ("(?)", 0),
        ("(?i-)", 3),
        ("(?ss)", 3),
        ("(?z)", 2),
        ("[\\A]", 1),
        ("\\é", 0),
        ("[]", 0),
    ],
)
def test_invalid_regexes(oracle: Oracle, pattern: str, offset: int) -> None:
    assert oracle.regex(pattern, "") == -1
    with pytest.raises(PatternError) as info:
        compile_regex(pattern)
    assert not info.value.unsupported
    assert info.value.offset == offset
    assert "unsupported" not in str(info.value)


def test_perl_classes_match_regorus_on_every_code_point(oracle: Oracle) -> None:
    """The embedded Unicode tables for \\d \\s \\w equal Rust regex's, range by range."""

    def text(lo: int, hi: int) -> str:
        return "".join(chr(c) for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF)

    tables = [("d", unicode_tables.DIGIT), ("s", unicode_tables.SPACE), ("w", unicode_tables.WORD)]
    for cls, table in tables:
        inside, outside = f"^\\{cls}+$", f"^\\{cls.upper()}+$"
        nxt = 0
        for lo, hi in table:
            if lo > nxt and text(nxt, lo - 1):
                assert oracle.regex(outside, text(nxt, lo - 1)) == 1, (cls, hex(nxt))
            assert oracle.regex(inside, text(lo, hi)) == 1, (cls, hex(lo))
            nxt = hi + 1
        assert oracle.regex(outside, text(nxt, 0x10FFFF)) == 1


def test_non_string_subjects_are_errors(matcher: Matcher) -> None:
    blob = compile_regex("a")
    assert matcher.dfa(blob, None) == -1
    assert matcher.dfa(blob, 1.5) == -1
    assert matcher.dfa(blob, True) == -1
    assert matcher.dfa(blob, b"a\xff") == -1  # not UTF-8
    assert matcher.dfa(blob, b"\xed\xa0\x80") == -1  # a surrogate
    assert matcher.dfa(blob, b"\xc0\x81") == -1  # overlong
    assert matcher.dfa(b"\0" * 32, "a") == -1  # not a blob


def test_blobs_are_position_independent_and_aligned(matcher: Matcher) -> None:
    blob = compile_regex(r"^[\w.-]+@example\.com$")
    assert len(blob) % 8 == 0
    magic, version, flags, n_states, start, n_classes, n_map, total = struct.unpack_from(
        "<8I", blob
    )
    assert (magic, version, flags, total) == (patterns.DFA_MAGIC, 1, 0, len(blob))
    assert start < n_states and n_classes >= 2 and n_map >= 1
    for at in (BASE, BASE + 8 * 1001, 3 * BASE):
        assert matcher.dfa(blob, "a.b@example.com", at) == 1
        assert matcher.dfa(blob, "a.b@example.org", at) == 0
    assert struct.unpack_from("<I", compile_glob("*", None), 8)[0] == (
        patterns.F_FULL | patterns.F_BYTES
    )


def test_pattern_that_matches_nothing(matcher: Matcher, oracle: Oracle) -> None:
    for pattern in ["[a&&b]", "a[^\\x00-\\x{10FFFF}]", "$a"]:
        blob = compile_regex(pattern)
        assert struct.unpack_from("<I", blob, 12)[0] == 0
        for s in ["", "a", "ab"]:
            assert matcher.dfa(blob, s) == oracle.regex(pattern, s) == 0


# ---------------------------------------------------------------------------------------
# glob.match

GLOBS: list[tuple[str, list[str]]] = [
    ("*.example.com", ["api.example.com", "a.b.example.com", ".example.com", "example.com"]),
    ("api.*.com", ["api.x.com", "api.x.y.com", "api..com"]),
    ("*", ["", "abc", "a.b", "a/b", "a:b"]),
    ("**", ["", "a.b.c", "a/b"]),
    ("/api/**", ["/api/", "/api/a/b", "/api", "/apix"]),
    ("/api/*/users", ["/api/v1/users", "/api//users", "/api/v1/v2/users"]),
    ("**.example.com", ["a.example.com", "example.com", ".example.com"]),
    ("a?c", ["abc", "a.c", "aéc", "a/c"]),
    ("[abc]*", ["a", "abc", "d", ""]),
    ("[!a-c]x", ["dx", "ax", "éx"]),
    ("{GET,HEAD}", ["GET", "HEAD", "{GET,HEAD}", "GE"]),
    ("{a,b{c,d}}", ["a", "bc", "bd", "b"]),
    ("*:read", ["doc:read", "a:b:read", ":read"]),
    ("users:*:read", ["users:1:read", "users::read", "users:1:2:read"]),
    ("\\*literal", ["*literal", "xliteral"]),
    ("a/**/b", ["a/b", "a/x/y/b", "ab"]),
    ("**/secret", ["secret", "a/secret", "a/b/secret", "asecret"]),
    ("*.{png,jpg}", ["a.png", "a.jpg", "a.gif", "a.b.png"]),
    ("é*ü", ["éü", "éxyzü", "eü"]),
    ("[é]", ["é", "\xc3"]),
    ("?", ["a", "é", "."]),
    ("a,b", ["a,b", "a"]),
    ("", ["", "a"]),
    ("[]-]", ["]", "-", "a"]),
    ("[a-c-e]", ["d", "-", "e"]),
]
DELIMITERS: list[list[str] | None] = [None, [], ["/"], [".", "/"], [":"], [","], ["", "."]]


def opa_reads_differently(pattern: str, delimiters: list[str] | None) -> bool:
    """An empty ``{…}`` alternative beside non-empty ones: A1 matches it as OPA does
    (the empty string), regorus's globset drops it."""
    from policies.compiler.patterns.glob_parse import (
        GlobParser,
        glob_rewrite,
        has_empty_alternative,
    )

    try:
        chars = glob_rewrite([(c, i) for i, c in enumerate(pattern)], delimiters)
        return has_empty_alternative(GlobParser(chars).parse())
    except PatternError:
        return False


@pytest.mark.parametrize(("pattern", "samples"), GLOBS, ids=[p for p, _ in GLOBS])
@pytest.mark.parametrize("delimiters", DELIMITERS, ids=[json.dumps(d) for d in DELIMITERS])
def test_glob_corpus_agrees_with_regorus(
    matcher: Matcher,
    oracle: Oracle,
    pattern: str,
    samples: list[str],
    delimiters: list[str] | None,
) -> None:
    blob = compile_glob(pattern, delimiters)
    for s in [*samples, "a\0b"]:
        assert matcher.dfa(blob, s) == oracle.glob(pattern, delimiters, s), s

    @settings(SETTINGS, max_examples=12)
    @given(mutations(samples, "a./:,é*"))
    def check(s: str) -> None:
        assert matcher.dfa(blob, s) == oracle.glob(pattern, delimiters, s)

    check()


_GLOB_SOUP = [
    "a",
    "b",
    ".",
    "/",
    "*",
    "**",
    "?",
    "[",
    "]",
    "[!",
    "[^",
    "-",
    "{",
    "}",
    ",",
    "\\",
    "é",
    ":",
    "a-c",
    "\\*",
    "\\{",
    "\\,",
    "!",
    "^",
]
_GLOB_DELIMS: list[list[str] | None] = [
    None,
    [],
    ["."],
    ["/"],
    [":"],
    [".", "/"],
    [".", ":"],
    [",", "."],
    ["-"],
    [".", "."],
    ["\0"],
    ["a"],
    ["*"],
    ["{"],
    ["\\"],
]


@SETTINGS
@given(
    st.lists(st.sampled_from(_GLOB_SOUP), max_size=7).map("".join),
    st.sampled_from(_GLOB_DELIMS),
    st.lists(st.text("ab./:éx-c,*{", max_size=7), min_size=1, max_size=6),
)
def test_generated_globs_agree_with_regorus(
    matcher: Matcher,
    oracle: Oracle,
    pattern: str,
    delimiters: list[str] | None,
    subjects: list[str],
) -> None:
    try:
        blob = compile_glob(pattern, delimiters)
    except PatternError as err:
        assert not err.unsupported
        assert oracle.glob(pattern, delimiters, "a") == -1, (pattern, delimiters)
        return
    if opa_reads_differently(pattern, delimiters):
        return  # test_empty_glob_alternatives_match_the_empty_string_as_in_opa
    for s in [*subjects, pattern, pattern.replace("*", "ab")]:
        assert matcher.dfa(blob, s) == oracle.glob(pattern, delimiters, s), (pattern, s)


@pytest.mark.parametrize(
    ("pattern", "delimiters", "subject", "expected"),
    [
        ("{**/,}x", None, "x", 1),
        ("{**/,}x", None, "a/x", 1),
        ("{**/,}x", None, "ax", 0),  # the first alternative needs its "/"
        ("{a,}b", None, "b", 1),
        ("{a,}b", None, "ab", 1),
        ("{a,}b", None, "cb", 0),
        ("{,a}", ["."], "", 1),
        ("x{,.y}", ["."], "x.y", 1),
        ("x{,.y}", ["."], "x.", 0),
        ("{a,{b,}}c", [], "c", 1),
        ("{,}", [], "", 1),
        ("{,}", [], "a", 0),
    ],
)
def test_empty_glob_alternatives_match_the_empty_string_as_in_opa(
    matcher: Matcher, pattern: str, delimiters: list[str] | None, subject: str, expected: int
) -> None:
    """OPA (gobwas/glob) lets an empty alternative match the empty string; regorus's
    globset drops it. A1 follows OPA on both the DFA and the run-time RE2 path."""
    from policies.runtime.host.regex import glob_matches

    assert matcher.dfa(compile_glob(pattern, delimiters), subject) == expected
    assert glob_matches(pattern, delimiters, subject) is bool(expected)


@pytest.mark.parametrize(
    ("pattern", "delimiters", "offset"),
    [
        ("[abc", [], 0),
        ("x[!]", [], 1),
        ("a[z-a]", [], 4),
        ("{a,b", [], 0),
        ("{a,{b,c}", [], 0),
        ("a}", [], 1),
        ("ab\\", [], 2),
        ("a\0b", [], 1),
        ("*", ["ab"], 0),
        ("*", ["é"], 0),
    ],
)
def test_invalid_globs(oracle: Oracle, pattern: str, delimiters: list[str], offset: int) -> None:
    assert oracle.glob(pattern, delimiters, "a") == -1
    with pytest.raises(PatternError) as info:
        compile_glob(pattern, delimiters)
    assert info.value.offset == offset
    assert not info.value.unsupported


# ---------------------------------------------------------------------------------------
# net.cidr_contains


def _v4_text(draw: st.DrawFn) -> str:
    octets = draw(st.lists(st.integers(0, 255), min_size=4, max_size=4))
    if draw(st.integers(0, 9)) == 0:  # leading zeros: ipnet accepts them, std does not
        return ".".join(f"{o:03d}" for o in octets)
    return ".".join(map(str, octets))


@st.composite
def networks(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return f"{_v4_text(draw)}/{draw(st.integers(0, 32))}"
    addr = draw(st.ip_addresses(v=6))
    text = addr.exploded if draw(st.booleans()) else str(addr)
    return f"{text}/{draw(st.integers(0, 128))}"


@st.composite
def subjects_near(draw: st.DrawFn, network: str) -> str:
    """Addresses and networks inside, at the edge of, or outside ``network``."""
    net = ipaddress.ip_network(_canonical(network), strict=False)
    width = net.max_prefixlen
    bits = int(net.network_address)
    flip = draw(st.integers(0, width - 1))
    value = (
        bits ^ (1 << flip)
        if draw(st.booleans())
        else bits | draw(st.integers(0, (1 << (width - net.prefixlen)) - 1))
    )
    addr = ipaddress.ip_address(value) if width == 32 else ipaddress.IPv6Address(value)
    text = str(addr)
    if width == 128 and draw(st.booleans()):
        text = addr.exploded.upper()
    if draw(st.booleans()):
        text += f"/{draw(st.integers(0, width))}"
    return text


def _canonical(network: str) -> str:
    addr, _, prefix = network.partition("/")
    if "." in addr and ":" not in addr:
        addr = ".".join(str(int(o)) for o in addr.split("."))
    return f"{addr}/{prefix}"


@SETTINGS
@given(st.data())
def test_cidr_contains_agrees_with_regorus_and_ipaddress(
    matcher: Matcher, oracle: Oracle, data: st.DataObject
) -> None:
    network = data.draw(networks())
    blob = compile_cidr(network)
    net = ipaddress.ip_network(_canonical(network), strict=False)
    for _ in range(5):
        s = data.draw(st.one_of(subjects_near(network), st.ip_addresses().map(str)))
        got = matcher.cidr(blob, s)
        assert got == oracle.cidr(network, s), (network, s)
        sub = ipaddress.ip_network(s, strict=False)
        expected = sub.version == net.version and sub.subnet_of(net)  # type: ignore[arg-type]
        assert got == int(expected), (network, s)


_IP_SOUP = [
    "1",
    "10",
    "255",
    "256",
    "0",
    "00",
    "010",
    ".",
    ":",
    "::",
    "ff",
    "FFFF",
    "12345",
    "/",
    "8",
    "32",
    "128",
    "08",
    "033",
    "1.2.3.4",
    "%",
    " ",
    "a",
    "g",
    "ffff:",
]


@SETTINGS
@given(
    st.sampled_from(["10.0.0.0/8", "::/0", "0.0.0.0/0", "fd00::/8", "::ffff:0:0/96"]),
    st.lists(st.sampled_from(_IP_SOUP), min_size=1, max_size=9).map("".join),
)
def test_cidr_subject_parsing_agrees_with_regorus(
    matcher: Matcher, oracle: Oracle, network: str, subject: str
) -> None:
    assert matcher.cidr(compile_cidr(network), subject) == oracle.cidr(network, subject)


@pytest.mark.parametrize(
    ("network", "subject", "expected"),
    [
        ("10.0.0.0/8", "10.1.2.3", 1),
        ("10.0.0.0/8", "010.1.2.3", -1),  # std's parser: no leading zeros in a bare address
        ("10.0.0.0/8", "010.1.2.3/16", 1),  # ipnet's parser allows them in a CIDR
        ("10.0.0.0/8", "10.0.0.0/7", 0),
        ("10.0.0.0/8", "::ffff:10.1.2.3", 0),  # other family: false, not an error
        ("10.1.2.3/8", "10.200.0.0", 1),  # host bits in the network are ignored
        ("::/0", "1:2:3:4:5:6:7::8/128", 1),  # ipnet: "::" may stand for no group
        ("::/0", "1:2:3:4:5:6:7::8", -1),
        ("::/0", "::1.2.3.4", 1),
        ("::/0", "fe80::1%eth0", -1),
        ("10.0.0.0/8", "", -1),
        ("10.0.0.0/8", "10.0.0.1/33", -1),
    ],
)
def test_cidr_cases(
    matcher: Matcher, oracle: Oracle, network: str, subject: str, expected: int
) -> None:
    assert oracle.cidr(network, subject) == expected
    assert matcher.cidr(compile_cidr(network), subject) == expected


@pytest.mark.parametrize(
    "network",
    [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0.0/008",
        "1.2.3/8",
        "::/129",
        "x",
        "::1/1a",
        "256.0.0.0/8",
        "10.0.0.0/8 ",
        "[::1]/128",
        "::/0128",
    ],
)
def test_invalid_cidrs(oracle: Oracle, network: str) -> None:
    assert oracle.cidr(network, "10.0.0.1") == -1
    with pytest.raises(PatternError):
        compile_cidr(network)


def test_cidr_blob_layout() -> None:
    blob = compile_cidr("192.168.77.1/20")
    assert len(blob) == 32
    assert struct.unpack_from("<4I", blob) == (patterns.CIDR_MAGIC, 1, 4, 20)
    assert blob[16:20] == bytes([192, 168, 64, 0]) and blob[20:] == bytes(12)
    blob6 = compile_cidr("2001:db8::1/32")
    assert struct.unpack_from("<4I", blob6)[2:] == (6, 32)
    assert blob6[16:] == ipaddress.ip_network("2001:db8::/32").network_address.packed


def test_cidr_non_string_subject(matcher: Matcher) -> None:
    blob = compile_cidr("10.0.0.0/8")
    assert matcher.cidr(blob, None) == -1
    assert matcher.cidr(blob, 10) == -1
    assert matcher.cidr(compile_regex("a"), "10.0.0.1") == -1  # wrong blob kind
