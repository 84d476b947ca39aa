"""``json.match_schema`` and ``json.verify_schema``: JSON Schema with the ``jsonschema`` library.

regorus lacks both; A1 follows OPA, which validates with gojsonschema (drafts 4, 6
and 7; draft 7 where the schema names none). The document and the schema are a
value or JSON text. ``json.match_schema`` answers ``[true, []]`` or ``[false, errors]``,
each error an object ``{"error", "type", "field", "desc"}`` spelled as gojsonschema
spells it. A1 spells only the errors whose wording it knows to be gojsonschema's
(a wrong type, a missing required property) and refuses the rest (``enum``,
``pattern``, several unrelated errors whose order gojsonschema leaves to Go's map
order…) with an evaluation error, rather than answer with different text.

An invalid schema is an evaluation error in both builtins (OPA's
``json.verify_schema`` answers ``[false, message]`` with gojsonschema's message,
which A1 does not reproduce). ``$ref`` resolves only inside the schema: nothing is
fetched, as the sidecar must not reach the network on a request.
"""

from __future__ import annotations

import ast
from typing import Any

import jsonschema
import referencing
import referencing.exceptions

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.host.jsonfns import MAX_DEPTH, parse_json
from policies.runtime.values import RegoSet

__all__ = ["MAX_ERRORS"]

MAX_ERRORS = 1024
"""Most validation errors collected for one document."""

_DRAFTS = {
    "http://json-schema.org/draft-04/schema": jsonschema.Draft4Validator,
    "http://json-schema.org/draft-06/schema": jsonschema.Draft6Validator,
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
}
_GO_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


def _no_retrieval(uri: str) -> Any:
    raise referencing.exceptions.NoSuchResource(ref=uri)


_REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_no_retrieval)


def _json(fn: str, position: int, value: Any, depth: int = 0) -> Any:
    """The value as OPA hands it to gojsonschema: JSON text parsed, sets as arrays."""
    if depth == 0 and type(value) is str:
        return parse_json(value, fn)
    if depth > MAX_DEPTH:
        raise BuiltinError(f"{fn}: operand {position} nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, RegoSet | set | frozenset):
        from policies.runtime.values import rego_sort_key

        return [_json(fn, position, v, depth + 1) for v in sorted(value, key=rego_sort_key)]
    if isinstance(value, list | tuple):
        return [_json(fn, position, v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise BuiltinError(f"{fn}: operand {position} has a non-string object key")
            out[k] = _json(fn, position, v, depth + 1)
        return out
    return value


def _validator(fn: str, schema: Any) -> Any:
    if not isinstance(schema, dict | bool):
        raise BuiltinError(f"{fn}: the schema must be an object or a boolean")
    declared = schema.get("$schema") if isinstance(schema, dict) else None
    if declared is None:
        cls = jsonschema.Draft7Validator
    else:
        cls = _DRAFTS.get(str(declared).rstrip("#"))
        if cls is None:
            raise BuiltinError(f"{fn}: $schema {str(declared)[:80]} is not supported")
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise BuiltinError(f"{fn}: invalid schema: {err.message[:200]}") from None
    except RecursionError:
        raise BuiltinError(f"{fn}: schema nested too deeply") from None
    return cls(schema, registry=_REGISTRY, format_checker=None)


def _field(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(root)"


def _go_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if type(value) is str:
        return "string"
    return "array" if isinstance(value, list) else "object"


def _error(fn: str, err: jsonschema.ValidationError) -> dict[str, str]:
    """gojsonschema's ``ResultError`` for one error, or a refusal where its text is unknown."""
    field = _field(err.absolute_path)
    if err.validator == "type" and isinstance(err.validator_value, str):
        kind = "invalid_type"
        desc = f"Invalid type. Expected: {err.validator_value}, given: {_go_type(err.instance)}"
    elif err.validator == "required":
        # jsonschema reports each missing property on its own, as gojsonschema does
        try:
            missing = ast.literal_eval(str(err.message).removesuffix(" is a required property"))
        except (ValueError, SyntaxError):
            missing = None
        if type(missing) is not str:
            raise BuiltinError(f"{fn}: reporting this `required` error is not supported")
        kind = "required"
        desc = f"{missing} is required"
    else:
        raise BuiltinError(
            f"{fn}: reporting a `{err.validator}` error as OPA does is not supported"
        )
    return {"error": f"{field}: {desc}", "type": kind, "field": field, "desc": desc}


def _errors(fn: str, validator: Any, document: Any) -> list[dict[str, str]]:
    found: list[jsonschema.ValidationError] = []
    try:
        for err in validator.iter_errors(document):
            found.append(err)
            if len(found) > MAX_ERRORS:
                raise BuiltinError(f"{fn}: more than {MAX_ERRORS} validation errors")
    except referencing.exceptions.Unresolvable as err:
        raise BuiltinError(f"{fn}: unresolvable $ref {str(err)[:120]}") from None
    except RecursionError:
        raise BuiltinError(f"{fn}: schema or document nested too deeply") from None
    # gojsonschema reports required properties in the schema's order (as jsonschema
    # does); other errors come in Go map order: several of those are refused.
    several_kinds = not all(e.validator == "required" for e in found)
    if len(found) > 1 and (several_kinds or len({tuple(e.absolute_path) for e in found}) > 1):
        raise BuiltinError(f"{fn}: reporting several validation errors is not supported")
    return [_error(fn, err) for err in found]


@builtin("json.match_schema")
def match_schema(document: Any, schema: Any) -> list[Any]:
    fn = "json.match_schema"
    want(fn, 1, document, "string", "object", "array", "set", "number", "boolean", "null")
    want(fn, 2, schema, "string", "object", "boolean")
    validator = _validator(fn, _json(fn, 2, schema))
    errors = _errors(fn, validator, _json(fn, 1, document))
    return [not errors, errors]


@builtin("json.verify_schema")
def verify_schema(schema: Any) -> list[Any]:
    fn = "json.verify_schema"
    want(fn, 1, schema, "string", "object", "boolean")
    _validator(fn, _json(fn, 1, schema))
    return [True, None]
