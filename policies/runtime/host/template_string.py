"""OPA's template strings (``$"a {x} b"``): one ``{expr}``'s text.

regorus (pinned) does not parse template strings, so the re-speller
(``policies.compiler.respell``) turns each one into ``concat("", [...])`` whose
expression parts are ``__a1_template_value({t | t := expr})``: the set of the
expression's values, so that an undefined expression still yields a string.
"""

from __future__ import annotations

from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.host.sprintf import rego_text


@builtin("__a1_template_value")
def template_value(values: Any) -> str:
    """``<undefined>`` for no value, a string as is, any other value as its Rego
    text; more than one value is OPA's conflict error (OPA refuses it too)."""
    want("__a1_template_value", 1, values, "set")
    if not values:
        return "<undefined>"
    if len(values) > 1:
        raise BuiltinError(
            "eval_conflict_error: template-strings must not produce multiple outputs"
        )
    (v,) = tuple(values)
    if type(v) is str:
        return v
    try:
        return rego_text(v)
    except BuiltinError:
        raise BuiltinError("template string: an expression's text is too long") from None
