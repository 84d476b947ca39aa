"""Pattern syntax trees shared by the regex and glob parsers; symbols are code points
(regex) or bytes (glob)."""

from __future__ import annotations

from dataclasses import dataclass

from policies.compiler.patterns.constants import NFA_CAP
from policies.compiler.patterns.ranges import Ranges


@dataclass(frozen=True)
class Set:
    ranges: Ranges


@dataclass(frozen=True)
class Cat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    item: Node
    lo: int
    hi: int | None


@dataclass(frozen=True)
class Assert:
    end: bool  # False: start of text (^, \A); True: end of text ($, \z)


Node = Set | Cat | Alt | Rep | Assert


def literal(cp: int) -> Set:
    return Set(((cp, cp),))


def nfa_size(node: Node) -> int:
    """NFA states the node expands to, saturating at the cap (guards ``a{1000}{1000}``)."""
    if isinstance(node, Set | Assert):
        return 2
    if isinstance(node, Cat | Alt):
        return min(NFA_CAP + 1, 2 + sum(nfa_size(i) for i in node.items))
    copies = node.lo if node.hi is None else node.hi
    return min(NFA_CAP + 1, 2 + nfa_size(node.item) * max(copies, 1) + 2 * (copies + 1))
