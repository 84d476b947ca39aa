"""Run OPA's own conformance cases through A1's compiler, as a user would.

    python -m tests.opa_cases DIR [--json OUT] [--show wrong,error,refused,build]

``DIR`` holds OPA's YAML case files (``v1/test/cases/testdata/v1`` of OPA's
repository; A1 does not ship them). Each usable case (a query ``data.<ref> = x``
with one expected binding, or an expected error) is compiled with
``compile_sources`` and evaluated with the compiled module, exactly as
``a1 policy eval`` would, and lands in one bucket:

- ``pass``: the value OPA expects, undefined where OPA is undefined, or an
  error where OPA expects one (at build or evaluation time);
- ``wrong``: a value other than OPA's, or a value where OPA expects an error;
- ``error``: an evaluation error where OPA has a value or undefined (A1 follows
  regorus: a builtin given bad arguments is an error, OPA's non-strict mode makes
  it undefined; the sidecar denies either way). Not counted as compiled;
- ``refused``: refused at build time as ``unsupported`` (fails closed, never wrong);
- ``build``: another build error where OPA builds the policy.

The goal: no ``wrong`` at all, and as few ``refused``/``build`` as possible.
This is a measurement tool, not a test: OPA's cases stay OPA's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import regorus
import yaml

from policies.compiler import CompileError, compile_sources
from policies.runtime import UNDEFINED, PolicyError, PolicyModule
from policies.runtime.values import to_json_compatible

QUERY = re.compile(r"^\s*data((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*=\s*x\s*$")
BUCKETS = ("pass", "wrong", "error", "refused", "build")


def _input_term(term: str) -> Any:
    """OPA's ``input_term`` is Rego: regorus turns it into JSON."""
    engine = regorus.Engine()
    engine.add_policy("input_term.rego", f"package input_term\nx := {term}\n")
    return engine.eval_rule("data.input_term.x")


def _is_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _normal(value: Any, sort: bool) -> Any:
    """JSON form with numbers compared by value; arrays sorted when OPA sorts bindings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _normal(v, sort) for k, v in value.items()}
    items = [_normal(v, sort) for v in value]
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if sort else items


def run_case(case: dict[str, Any]) -> tuple[str, str]:
    """(bucket, detail) for one case, or ("unusable", why)."""
    match = QUERY.match(case.get("query", ""))
    if match is None:
        return "unusable", "query is not `data.<ref> = x`"
    wants_error = "want_error" in case or "want_error_code" in case
    results = case.get("want_result")
    if not wants_error and (not isinstance(results, list) or len(results) > 1):
        return "unusable", "no single expected binding"
    entry = match.group(1)[1:].replace(".", "/")
    modules = {f"module{i}.rego": text for i, text in enumerate(case.get("modules") or [])}
    try:
        input_doc = _input_term(case["input_term"]) if "input_term" in case else case.get("input")
    except (RuntimeError, TypeError):  # TypeError: a set of objects (unhashable)
        return "unusable", "input_term regorus cannot read"
    if not _is_json(input_doc):
        return "unusable", "input is no JSON document (a set): a request's input never is"
    try:
        module = PolicyModule.load(compile_sources(modules, case.get("data"), [entry]))
    except CompileError as err:
        if wants_error:
            return "pass", f"build error as expected: {err}"
        return ("refused" if err.kind == "unsupported" else "build"), str(err)
    try:
        got = module.evaluator(entry).evaluate(
            input_doc if input_doc is not None else UNDEFINED, json_form=True
        )
    except PolicyError as err:
        return ("pass" if wants_error else "error"), str(err)
    if wants_error:
        return "wrong", f"value {json.dumps(to_json_compatible(got))[:200]} where OPA errs"
    sort = bool(case.get("sort_bindings"))
    want = _normal(results[0]["x"], sort) if results else UNDEFINED
    mine = UNDEFINED if got is UNDEFINED else _normal(got, sort)
    if mine == want:
        return "pass", ""
    shown = "undefined" if got is UNDEFINED else json.dumps(got)[:200]
    expected = "undefined" if want is UNDEFINED else json.dumps(results[0]["x"])[:200]
    return "wrong", f"got {shown}, OPA {expected}"


def run_dir(root: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as err:
            rows.append({"file": str(path.relative_to(root)), "note": "", "bucket": "unusable",
                         "detail": f"YAML: {str(err).splitlines()[0]}"})  # fmt: skip
            continue
        for doc in docs:
            for case in (doc or {}).get("cases") or []:
                try:
                    bucket, detail = run_case(case)
                except Exception as err:  # the runner must survive any case: say which
                    bucket, detail = "crash", f"{type(err).__name__}: {err}"
                rows.append({"file": str(path.relative_to(root)), "note": case.get("note", ""),
                             "bucket": bucket, "detail": detail})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.opa_cases")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--json", type=Path, help="write every case's bucket and detail here")
    parser.add_argument("--show", default="wrong,crash", help="buckets to list case by case")
    args = parser.parse_args(argv)
    rows = run_dir(args.dir)
    counts = Counter(r["bucket"] for r in rows)
    usable = sum(counts[b] for b in BUCKETS)
    compiled = counts["pass"] + counts["wrong"]  # answered; "error" is not counted as compiled
    show = set(args.show.split(","))
    for r in rows:
        if r["bucket"] in show:
            print(f"{r['bucket']:8} {r['file']}: {r['note']}: {r['detail']}")
    why = Counter(
        re.sub(r"^\S+:\d+:\d+: ", "", r["detail"])[:90] for r in rows if r["bucket"] == "refused"
    )
    print("\nmost common refusals:")
    for reason, n in why.most_common(25):
        print(f"{n:5}  {reason}")
    print(f"\n{len(rows)} cases, {usable} usable ({counts['unusable']} unusable)")
    for b in (*BUCKETS, "crash"):
        print(f"  {b:8} {counts[b]:5}  {100 * counts[b] / max(usable, 1):5.1f}%")
    print(f"  compiled {compiled:5}  {100 * compiled / max(usable, 1):5.1f}% of usable")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
