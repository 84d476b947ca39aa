"""uuid.parse and uuid.rfc4122 (``policies/runtime/host/uuid.py``)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler import compile_sources
from policies.runtime import PolicyError, PolicyModule
from policies.runtime.host import REGISTRY
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import UNDEFINED
from tests.host_diff import Pair

V1 = "c9d3f6a0-f1d5-11ee-8c90-0242ac120002"


def parse(text: Any) -> Any:
    return REGISTRY["uuid.parse"].fn(text)


def test_version_1_fields() -> None:
    u = uuid.UUID(V1)
    assert parse(V1) == {
        "version": 1,
        "variant": "RFC4122",
        "time": (u.time - 0x01B21DD213814000) * 100,
        "nodeid": "02-42-ac-12-00-02",
        "macvariables": "local:unicast",
        "clocksequence": u.clock_seq,
    }


def test_every_form_the_uuid_crate_reads() -> None:
    for text in [V1, V1.upper(), V1.replace("-", ""), "{" + V1 + "}", "urn:uuid:" + V1]:
        assert parse(text) == parse(V1), text
    for text in [V1[:-1], V1 + "0", V1.replace("-", "", 1), "{" + V1, "URN:UUID:" + V1, "",
                 "g" * 32, V1 + "\n"]:  # fmt: skip
        assert parse(text) is UNDEFINED, text
    with pytest.raises(BuiltinError, match="operand 1 must be string"):
        parse(1)


def test_versions_and_variants() -> None:
    assert parse("00000000-0000-0000-0000-000000000000") == {"version": 0, "variant": "NCS"}
    assert parse("ffffffff-ffff-ffff-ffff-ffffffffffff") == {"version": 15, "variant": "Future"}
    assert parse(str(uuid.uuid4()))["version"] == 4
    v2 = parse("000003e8-0bd1-21ef-b600-325096b39f47")
    assert (v2["id"], v2["domain"], v2["version"]) == (1000, "Person", 2)
    v7 = parse("018f2d6e-1c3a-7b8e-9c1d-2f3a4b5c6d7e")
    assert v7["time"] == 0x018F2D6E1C3A * 1_000_000
    # before 1582 the u64 arithmetic wraps, as regorus's does
    assert parse("00000000-0000-1000-8000-000000000000")["time"] == 6227451273709551616


@functools.cache
def pair() -> Pair:
    return Pair({"parse": "uuid.parse(input.a)"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.integers(0, 2**128 - 1), form=st.integers(0, 5), data=st.data())
def test_agrees_with_regorus(bits: int, form: int, data: Any) -> None:
    u = uuid.UUID(int=bits)
    text = [str(u), u.hex, "{" + str(u) + "}", "urn:uuid:" + str(u), str(u).upper(), ""][form]
    if form == 5:
        text = data.draw(st.text("0123456789abcdefg-{}:", max_size=40))
    # times past int64 (a u64 in regorus) are refused by A1's values rather than rounded
    pair().check("parse", {"a": text}, tolerate=("beyond int64",))


def evaluator(body: str) -> Any:
    src = {"p.rego": f"package p\nimport rego.v1\n{body}\n"}
    return PolicyModule.load(compile_sources(src, None, ["p/x"])).evaluator()


def test_rfc4122_is_one_value_per_key_per_evaluation() -> None:
    ev = evaluator(
        'x := [uuid.rfc4122("a"), uuid.rfc4122("a"), uuid.rfc4122("b"), uuid.rfc4122(input.k)]'
    )
    first = ev.evaluate({"k": "a"})
    assert first[0] == first[1] == first[3] != first[2]
    assert uuid.UUID(first[0]).version == 4
    second = ev.evaluate({"k": "a"})
    assert second[0] != first[0]  # a new evaluation, new values


def test_rfc4122_is_impure_and_bounded() -> None:
    assert REGISTRY["uuid.rfc4122"].pure is False
    ev = evaluator('x := [uuid.rfc4122(sprintf("%d", [i])) | some i in numbers.range(1, 2000)]')
    with pytest.raises(PolicyError, match="more than 1024 keys"):
        ev.evaluate({})
    with pytest.raises(PolicyError, match="operand 1 must be string"):
        evaluator("x := uuid.rfc4122(input.k)").evaluate({"k": 1})
