"""Differential-testing helpers: our compiled module against regorus, same inputs.

Results are compared as JSON (regorus prints sets as sorted arrays, and so does
the evaluator's ``json_form``), with every number as a float so 1 and 1.0 agree.
Two floats agree within a relative 1e-15 (a few units in the last place): regorus
divides and reads decimals through its own decimal arithmetic and can land a unit
or two off the correctly rounded double the runtime computes (1 / 11).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import regorus

from policies.compiler import compile_sources
from policies.runtime import UNDEFINED, PolicyError, PolicyModule

Outcome = tuple[str, Any]  # ("value", json) | ("undefined", None) | ("error", message)


def _floats(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    raise TypeError(type(value))


class Oracle:
    """One regorus engine per policy, reused across inputs."""

    def __init__(self, sources: Mapping[str, str], data: Any = None) -> None:
        self.engine = regorus.Engine()
        for name, text in sources.items():
            self.engine.add_policy(name, text)
        if data is not None:
            self.engine.add_data_json(json.dumps(data))

    def eval(self, entrypoint: str, input_doc: Any) -> Outcome:
        self.engine.set_input_json(json.dumps(input_doc, ensure_ascii=False))
        query = "data." + entrypoint.strip("/").replace("/", ".")
        try:
            out = json.loads(self.engine.eval_query_as_json(query))
        except RuntimeError as err:
            return ("error", str(err).split("Stack backtrace")[0].strip())
        if not out.get("result"):
            return ("undefined", None)
        return ("value", _floats(out["result"][0]["expressions"][0]["value"]))


class Compiled:
    """Our side: one module with every entrypoint, one evaluator per entrypoint."""

    def __init__(
        self, sources: Mapping[str, str], entrypoints: list[str], data: Any = None
    ) -> None:
        self.module = PolicyModule.load(compile_sources(sources, data, entrypoints))
        self.evaluators = {e: self.module.evaluator(e) for e in entrypoints}

    def eval(self, entrypoint: str, input_doc: Any) -> Outcome:
        try:
            value = self.evaluators[entrypoint].evaluate(input_doc, json_form=True)
        except PolicyError as err:
            return ("error", str(err))
        if value is UNDEFINED:
            return ("undefined", None)
        return ("value", _floats(value))


def agree(ours: Outcome, theirs: Outcome) -> bool:
    if ours[0] != theirs[0]:
        return False
    return ours[0] == "error" or _same(ours[1], theirs[1])


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if type(a) is float and type(b) is float:
        return math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False
