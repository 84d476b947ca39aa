"""What a host builtin is: a Python function the policy calls through ``env.a1_host_call``.

Builtins that are better done by the host (signature checks through
``cryptography``, time zones, RE2 patterns, JSON) live in this package, one
module per family. Each registers itself with ``@builtin("name")``; the
compiler reads the registry to know which calls it may emit, the evaluator to
bind a module's ``host_builtins`` list to functions.

Arguments arrive decoded (``policies.runtime.values``): ``None``, ``bool``,
``int``/``float``, ``str``, ``list``, ``RegoSet``, ``dict`` (non-string keys
as tuples, ``FrozenDict``s, ``RegoSet``s). A builtin returns a value of those
types (``set``/``frozenset``/``tuple`` are accepted too), or ``UNDEFINED``.
It raises ``BuiltinError`` for what regorus (or OPA, where regorus lacks the
builtin) reports as an evaluation error: the policy traps and the caller denies.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.runtime.values import RegoSet

__all__ = [
    "REGISTRY",
    "BuiltinError",
    "EvalContext",
    "HostBuiltin",
    "builtin",
    "type_name",
    "want",
]


class BuiltinError(Exception):
    """A builtin applied to arguments it refuses: an evaluation error (deny)."""


@dataclass
class EvalContext:
    """Per-evaluation state shared by every impure builtin of one evaluation.

    ``now_ns`` is read once per evaluation, as OPA does: ``time.now_ns()`` and
    ``io.jwt.decode_verify``'s expiry check see the same instant. ``memo`` holds
    what a random builtin answered, by (builtin, arguments), so that it answers the
    same within one evaluation (OPA's ``rand.intn``, ``uuid.rfc4122``). Its
    builtins bound its size.
    """

    _now: int | None = field(default=None)
    memo: dict[Any, Any] = field(default_factory=dict)

    def now_ns(self) -> int:
        if self._now is None:
            self._now = time.time_ns()
        return self._now

    def reset(self) -> None:
        """A new evaluation: a new instant, nothing remembered."""
        self._now = None
        if self.memo:
            self.memo.clear()


@dataclass(frozen=True)
class HostBuiltin:
    name: str
    arity: int
    fn: Callable[..., Any]
    pure: bool  # False: the result depends on more than the arguments (the clock)


REGISTRY: dict[str, HostBuiltin] = {}


def builtin(name: str, *, pure: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as the host builtin ``name``.

    A pure builtin is called ``fn(*args)``; an impure one ``fn(ctx, *args)`` with
    the evaluation's ``EvalContext``. The arity is the function's own.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters)
        arity = len(params) - (0 if pure else 1)
        if name in REGISTRY:
            raise AssertionError(f"host builtin {name} registered twice")
        REGISTRY[name] = HostBuiltin(name, arity, fn, pure)
        return fn

    return register


def type_name(v: Any) -> str:
    """Rego's name for a value's type, for error messages."""
    if v is None:
        return "null"
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list or t is tuple:
        return "array"
    if isinstance(v, (RegoSet, set, frozenset)):
        return "set"
    if isinstance(v, dict):
        return "object"
    return t.__name__


_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "array": lambda v: type(v) is list or type(v) is tuple,
    "set": lambda v: isinstance(v, (RegoSet, set, frozenset)),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def want(fn: str, position: int, value: Any, *kinds: str) -> Any:
    """``value`` if its Rego type is one of ``kinds``; else the type error regorus reports.

    ``position`` counts from 1, as the message does ("operand 1 must be string").
    """
    for kind in kinds:
        if _KINDS[kind](value):
            return value
    expected = " or ".join(kinds)
    raise BuiltinError(f"{fn}: operand {position} must be {expected} but got {type_name(value)}")
