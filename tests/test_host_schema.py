"""``json.match_schema`` / ``json.verify_schema`` (``policies/runtime/host/schema.py``).

regorus lacks both; expected errors are spelled as OPA's gojsonschema spells them,
and what A1 cannot spell so is an error, never a different answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.runtime.host import REGISTRY
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import RegoSet

SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}},
    "required": ["id"],
}


def match(document: Any, schema: Any) -> Any:
    return REGISTRY["json.match_schema"].fn(document, schema)


def refused(document: Any, schema: Any) -> str:
    with pytest.raises(BuiltinError) as info:
        match(document, schema)
    return str(info.value)


def test_a_matching_document() -> None:
    assert match({"id": 5}, SCHEMA) == [True, []]
    assert match('{"id": 5, "tags": []}', SCHEMA) == [True, []]  # JSON text, either side
    assert match({"id": 5.0}, '{"properties": {"id": {"type": "integer"}}}') == [True, []]
    assert match({"id": 1, "tags": RegoSet([1, 2])}, SCHEMA) == [True, []]  # a set is an array


def test_errors_spelled_as_gojsonschema() -> None:
    desc = "Invalid type. Expected: integer, given: string"
    assert match({"id": "x"}, SCHEMA) == [
        False,
        [{"error": f"id: {desc}", "type": "invalid_type", "field": "id", "desc": desc}],
    ]
    assert match({"id": 1.5}, SCHEMA)[1][0]["desc"].endswith("given: number")
    assert (
        match(
            {"a": {"b": [0, True]}},
            {"properties": {"a": {"properties": {"b": {"items": {"type": "integer"}}}}}},
        )[1][0]["field"]
        == "a.b.1"
    )
    assert match({}, {"required": ["a", "b"]}) == [
        False,
        [
            {"error": "(root): a is required", "type": "required", "field": "(root)",
             "desc": "a is required"},
            {"error": "(root): b is required", "type": "required", "field": "(root)",
             "desc": "b is required"},
        ],
    ]  # fmt: skip


def test_errors_it_cannot_spell_are_refused() -> None:
    assert "`enum`" in refused({"v": "a"}, {"enum": []})
    assert "`minimum`" in refused(1, {"minimum": 2})
    assert "several" in refused({"id": "x", "tags": 1}, SCHEMA)
    assert "types" not in refused(1, {"type": ["string", "null"]})  # a list of types


def test_invalid_schemas_and_references() -> None:
    assert "invalid schema" in refused({}, {"type": "unknown"})
    assert "invalid JSON" in refused("{", SCHEMA)
    assert "unresolvable $ref" in refused({}, {"$ref": "https://example.com/schema.json"})
    assert match({"a": 1}, {
        "definitions": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/definitions/n"}}
    }) == [True, []]  # fmt: skip
    assert "not supported" in refused(
        {}, {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    assert match(1, {"$schema": "http://json-schema.org/draft-04/schema#"}) == [True, []]


def test_verify_schema() -> None:
    verify = REGISTRY["json.verify_schema"].fn
    assert verify(SCHEMA) == [True, None]
    assert verify('{"type": "string"}') == [True, None]
    with pytest.raises(BuiltinError, match="invalid schema"):
        verify({"type": 5})
    with pytest.raises(BuiltinError, match="operand 1 must be"):
        verify(5)


def test_deep_documents_are_refused() -> None:
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    assert "nested deeper" in refused(deep, {})
    assert "nested deeper" in refused("[" * 500 + "]" * 500, {})
