"""The builtins the compiler supports, and the runtime exports behind them.

Each Rego builtin maps to one ``a1rt`` export taking value pointers and
returning a value pointer (0 = undefined). Builtins with a constant pattern
(``regex.match``, ``glob.match``, ``net.cidr_contains``) are compiled at build
time and handled in ``codegen``; ``time.now_ns`` is a host import. Every other
builtin is a host builtin (``policies.runtime.host``): a Python function the
policy calls through ``env.a1_host_call``. A name the runtime has in C is
never looked up among the host's.
"""

from __future__ import annotations

import functools

import regorus

from policies.runtime.host import REGISTRY as HOST_BUILTINS
from policies.runtime.host import HostBuiltin

# rego name -> (runtime export, arity)
BUILTINS: dict[str, tuple[str, int]] = {
    "startswith": ("a1_b_startswith", 2),
    "endswith": ("a1_b_endswith", 2),
    "contains": ("a1_b_contains", 2),
    "lower": ("a1_b_lower", 1),
    "upper": ("a1_b_upper", 1),
    "concat": ("a1_b_concat", 2),
    "split": ("a1_b_split", 2),
    "trim": ("a1_b_trim", 2),
    "trim_prefix": ("a1_b_trim_prefix", 2),
    "trim_suffix": ("a1_b_trim_suffix", 2),
    "trim_space": ("a1_b_trim_space", 1),
    "replace": ("a1_b_replace", 3),
    "count": ("a1_b_count", 1),
    "sum": ("a1_b_sum", 1),
    "product": ("a1_b_product", 1),
    "max": ("a1_b_max", 1),
    "min": ("a1_b_min", 1),
    "object.get": ("a1_b_object_get", 3),
    "array.concat": ("a1_b_array_concat", 2),
    "array.slice": ("a1_b_array_slice", 3),
    "is_string": ("a1_b_is_string", 1),
    "is_number": ("a1_b_is_number", 1),
    "is_boolean": ("a1_b_is_boolean", 1),
    "is_array": ("a1_b_is_array", 1),
    "is_set": ("a1_b_is_set", 1),
    "is_object": ("a1_b_is_object", 1),
    "is_null": ("a1_b_is_null", 1),
    "type_name": ("a1_b_type_name", 1),
    "to_number": ("a1_b_to_number", 1),
    "abs": ("a1_b_abs", 1),
    "round": ("a1_b_round", 1),
    "ceil": ("a1_b_ceil", 1),
    "floor": ("a1_b_floor", 1),
    "numbers.range": ("a1_b_numbers_range", 2),
    "indexof": ("a1_b_indexof", 2),
    "substring": ("a1_b_substring", 3),
    "strings.reverse": ("a1_b_strings_reverse", 1),
    "format_int": ("a1_b_format_int", 2),
    "object.keys": ("a1_b_object_keys", 1),
    "object.remove": ("a1_b_object_remove", 2),
    "object.union": ("a1_b_object_union", 2),
    "union": ("a1_b_union", 1),
    "intersection": ("a1_b_intersection", 1),
    "sort": ("a1_b_sort", 1),
    "array.reverse": ("a1_b_array_reverse", 1),
}

# Builtins whose first argument must be a compile-time constant.
PATTERN_BUILTINS: dict[str, int] = {"regex.match": 2, "glob.match": 3, "net.cidr_contains": 2}

IMPURE_BUILTINS: dict[str, int] = {"time.now_ns": 0}

__all__ = [
    "BUILTINS", "HOST_BUILTINS", "IMPURE_BUILTINS", "PATTERN_BUILTINS", "host_builtin",
    "known_builtin", "regorus_builtins",
]  # fmt: skip


def host_builtin(name: str) -> HostBuiltin | None:
    """The host builtin a call of ``name`` compiles to (None: a C builtin, or no builtin)."""
    if name in BUILTINS or name in IMPURE_BUILTINS:
        return None
    return HOST_BUILTINS.get(name)


@functools.cache
def regorus_builtins() -> frozenset[str]:
    """Every builtin the pinned regorus knows, as regorus lists them itself: a call
    of any other name that is no function of the policy is an error there."""
    engine = regorus.Engine()
    engine.add_policy("probe.rego", "package probe\nnames := opa.runtime().builtins\n")
    return frozenset([*engine.eval_rule("data.probe.names"), "print"])


def known_builtin(name: str) -> bool:
    """Whether a call of ``name`` (no function of the policy) names a builtin: one regorus
    knows, or one only the host has (``io.jwt.*``, ``crypto.*``, …)."""
    return name in HOST_BUILTINS or name in regorus_builtins()
