"""Build-time compilation of constant patterns: regexes and globs to DFAs, CIDRs to networks.

A policy's ``regex.match``, ``glob.match`` and ``net.cidr_contains`` with a constant
pattern are compiled here, once, into position-independent blobs that the runtime
(``policies/runtime/a1rt_match.c``) walks without allocating. The semantics are
regorus's, because regorus is the differential oracle:

- regexes follow Rust's ``regex`` crate (``Regex::is_match``: unanchored search over
  Unicode scalar values, Unicode-aware ``\\d \\s \\w``, ``.`` excludes only ``\\n``);
- globs follow regorus's rewriting of delimiters plus the ``globset`` crate
  (``literal_separator``), which matches *bytes*, full match;
- CIDRs follow the ``ipnet`` crate's parser (leading zeros allowed in octets).

The blob layouts are documented in ``docs/patterns.md``.
"""

from __future__ import annotations

from policies.compiler.patterns.automata import build_dfa, fold_bytes, minimise, serialise
from policies.compiler.patterns.cidr import compile_cidr
from policies.compiler.patterns.constants import (
    CIDR_MAGIC,
    DFA_CAP,
    DFA_MAGIC,
    F_BYTES,
    F_FULL,
    F_NUL_ERROR,
)
from policies.compiler.patterns.errors import PatternError, invalid
from policies.compiler.patterns.glob_parse import DOT_STAR, GlobParser, glob_ast, glob_rewrite
from policies.compiler.patterns.nodes import Node
from policies.compiler.patterns.regex_parse import RegexParser

__all__ = [
    "CIDR_MAGIC",
    "DFA_CAP",
    "DFA_MAGIC",
    "F_BYTES",
    "F_FULL",
    "F_NUL_ERROR",
    "PatternError",
    "compile_cidr",
    "compile_glob",
    "compile_regex",
    "glob_delimiters",
]


def compile_regex(pattern: str) -> bytes:
    """Compile ``regex.match(pattern, s)`` to a search DFA blob over Unicode scalar values.

    Raises :class:`PatternError` for patterns Rust's ``regex`` rejects and for the
    constructs A1 does not compile: look-around, backreferences, word boundaries,
    ``\\p{..}`` classes, the ``i m x R -u`` flags, and automata past :data:`DFA_CAP`.
    """
    node = RegexParser(pattern).parse()
    return serialise(minimise(build_dfa(node, search=True)), 0)


def glob_delimiters(delimiters: list[object] | None) -> list[str] | None:
    """regorus's delimiter handling: ``null`` stays ``None``; ``[]`` and ``[""]`` mean ``["."]``."""
    if delimiters is None:
        return None
    if not isinstance(delimiters, list) or not all(isinstance(d, str) for d in delimiters):
        raise invalid("glob.match delimiters must be an array of strings or null", 0)
    if any(len(d.encode("utf-8")) > 1 for d in delimiters):  # type: ignore[union-attr]
        raise invalid("glob delimiters must be single characters", 0)
    chosen = [d for d in delimiters if d]  # type: ignore[misc]
    return chosen or ["."]


def compile_glob(pattern: str, delimiters: list[str] | None) -> bytes:
    """Compile ``glob.match(pattern, delimiters, s)`` to a full-match DFA blob over bytes.

    The subject rewriting regorus applies before matching (``/`` to NUL, each delimiter
    ``d`` to ``/d/``, ``:`` to NUL) is folded into the automaton's byte transitions.
    """
    delims = glob_delimiters(delimiters)  # type: ignore[arg-type]
    if delims is not None and "\0" in pattern:
        raise invalid("string contains internal glob placeholder (NUL)", pattern.index("\0"))
    chars = glob_rewrite([(c, i) for i, c in enumerate(pattern)], delims)
    tokens = GlobParser(chars).parse()
    if len(tokens) == 1 and tokens[0].kind == "rprefix":
        node: Node = DOT_STAR
    else:
        node, _ = glob_ast(tokens)
    dfa = minimise(build_dfa(node, search=False))
    mapping: list[bytes | None] = []
    for b in range(256):
        if b == 0 and delims is not None:
            mapping.append(None)
            continue
        rewritten = glob_rewrite([(chr(b), 0)], delims) if b < 0x80 else [(chr(b), 0)]
        mapping.append(bytes(ord(c) for c, _ in rewritten))
    if dfa.flags:
        dfa = minimise(fold_bytes(dfa, mapping))
    return serialise(dfa, F_FULL | F_BYTES | (F_NUL_ERROR if delims is not None else 0))
