"""The compiler's IR: Rego with names resolved and syntax sugar removed.

The front end (``frontend.py``) builds it from regorus's AST; the back end
(``codegen.py``) turns it into WAT. Every node keeps its source location so a
late error still names ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @classmethod
    def at(cls, file: str, text: str, offset: int) -> Loc:
        """Where character ``offset`` of ``text`` is."""
        line_start = text.rfind("\n", 0, offset) + 1
        return cls(file, text.count("\n", 0, offset) + 1, offset - line_start + 1)


# --------------------------------------------------------------------- terms


@dataclass
class Const:
    """A constant value (JSON types, plus ``RegoSet`` for set literals)."""

    value: Any
    loc: Loc


@dataclass
class Local:
    """A body-local variable; ``_`` is renamed to a fresh name per use."""

    name: str
    loc: Loc


@dataclass
class InputRoot:
    loc: Loc


@dataclass
class DataRoot:
    """``data``, resolved later against rules and the data document."""

    loc: Loc


@dataclass
class Ref:
    """``base[k0][k1]...``; keys are terms (constants for ``.field``)."""

    base: Term
    keys: list[Term]
    loc: Loc


@dataclass
class Call:
    """A call of a builtin (``name`` dotted) or a user function (``func`` set)."""

    name: str
    args: list[Term]
    loc: Loc
    func: RulePath | None = None


@dataclass
class BinOp:
    op: Literal["+", "-", "*", "/", "%", "|", "&"]
    lhs: Term
    rhs: Term
    loc: Loc


@dataclass
class Compare:
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    lhs: Term
    rhs: Term
    loc: Loc


@dataclass
class Member:
    """``value in coll`` or ``key, value in coll`` as a boolean expression."""

    key: Term | None
    value: Term
    coll: Term
    loc: Loc


@dataclass
class ArrayLit:
    items: list[Term]
    loc: Loc


@dataclass
class SetLit:
    items: list[Term]
    loc: Loc


@dataclass
class ObjectLit:
    items: list[tuple[Term, Term]]
    loc: Loc


@dataclass
class Compr:
    kind: Literal["array", "set", "object"]
    head: Term
    value: Term | None  # object comprehensions only
    body: list[Lit]
    loc: Loc


@dataclass
class RuleRef:
    """A reference to a rule (complete, partial set or partial object).

    ``override`` holds ``(value,)`` when the data document has a value at the
    rule's path: as in regorus, the rule is still evaluated (its errors count)
    but the value is the data's.
    """

    path: RulePath
    loc: Loc
    override: tuple[Any] | None = None


@dataclass
class PackageRef:
    """A reference to a package (or a prefix of packages): the object of its rules."""

    path: tuple[str, ...]
    loc: Loc


@dataclass
class DataDoc:
    """The base data document at ``path`` (string keys), where a ``with data.…`` of the
    program may replace it or a part of it: never folded into a constant. ``value``
    is ``(value,)`` in the data document, None where it has nothing."""

    path: tuple[str, ...]
    value: tuple[Any] | None
    loc: Loc


@dataclass
class Fail:
    """A term regorus rejects only once it is evaluated (an unknown function, a
    wrong number of arguments): evaluating it is an error, reaching it is not."""

    message: str
    loc: Loc
    args: list[Term] = field(default_factory=list)  # still evaluated first
    refused: str | None = None
    """Refused instead (``unsupported: <refused>``) when code for it is generated, that
    is when an entrypoint reaches it: a call of a function nobody defines, which OPA
    refuses at compile time and regorus when it evaluates it."""


Term = (
    Const
    | Local
    | InputRoot
    | DataRoot
    | Ref
    | Call
    | BinOp
    | Compare
    | Member
    | ArrayLit
    | SetLit
    | ObjectLit
    | Compr
    | RuleRef
    | PackageRef
    | DataDoc
    | Fail
)

RulePath = tuple[str, ...]  # package path + rule name


def call_key(call: Call) -> str:
    """What a ``with`` on a function names: a builtin's name, ``data.<path>`` of a rule."""
    return "data." + ".".join(call.func) if call.func is not None else call.name


# ------------------------------------------------------------------ literals


@dataclass
class MockFn:
    """A function named as a ``with`` replacement (``with count as mock_count``): a user
    function (``func``) or a builtin (``name`` only)."""

    name: str
    func: RulePath | None
    loc: Loc


@dataclass
class With:
    """``with target as value``. ``target`` is ``("input", ...)``, ``("data", ...)`` or
    ``("function", key)`` (``key``: a builtin's name, or ``data.`` and a user function's
    path, as ``call_key`` names calls); a function is replaced by ``value`` or by the
    function ``replacement``."""

    target: tuple[str, ...]
    value: Term | None
    loc: Loc
    replacement: MockFn | None = None


@dataclass
class ExprLit:
    """Succeeds when the term is defined and not ``false``."""

    term: Term
    loc: Loc
    withs: list[With] = field(default_factory=list)


@dataclass
class AssignLit:
    """``:=`` and ``=``: unify ``lhs`` with ``rhs``; either side may bind variables."""

    lhs: Term
    rhs: Term
    declare: bool  # True for ``:=``
    loc: Loc
    withs: list[With] = field(default_factory=list)


@dataclass
class NotLit:
    body: list[Lit]
    loc: Loc


@dataclass
class SomeInLit:
    key: Term | None
    value: Term
    coll: Term
    loc: Loc
    withs: list[With] = field(default_factory=list)


@dataclass
class SomeDeclLit:
    names: list[str]
    loc: Loc


@dataclass
class EveryLit:
    key: str | None
    value: str
    domain: Term
    body: list[Lit]
    loc: Loc


Lit = ExprLit | AssignLit | NotLit | SomeInLit | SomeDeclLit | EveryLit


# --------------------------------------------------------------------- rules


@dataclass
class Body:
    lits: list[Lit]
    value: Term | None  # the head value for this body (else branches carry their own)
    key: Term | None = None  # partial set element / partial object key
    loc: Loc | None = None
    first_only: bool = False  # regorus stops `p[k] if ...` (no value) at its first solution
    keys: list[Term] | None = None  # a `tree` rule's body: the path its value goes to


@dataclass
class Definition:
    """One ``Spec`` of a rule: a body and its ``else`` chain."""

    bodies: list[Body]  # bodies[0] is the main body, the rest is its else chain
    args: list[Term] | None  # functions only
    loc: Loc


@dataclass
class Rule:
    path: RulePath
    kind: Literal["complete", "set", "object", "function", "tree"]
    """``tree``: heads with references (``p.q[k].r := v``) that build one nested
    object together; each body puts its value at its ``keys`` (undefined when none)."""
    defs: list[Definition]
    default: Term | None
    loc: Loc
    arity: int = 0
    skeleton: dict[str, Any] | None = None  # a `tree` rule's objects before any body runs
    soft_skeleton: dict[str, Any] | None = None  # ... and after, where no value is


@dataclass
class Program:
    rules: dict[RulePath, Rule]
    packages: set[tuple[str, ...]]
    data: Any  # the base data document
    sources: dict[str, str]
