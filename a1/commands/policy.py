"""``a1 policy build | eval | test``: the policy workflow on the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from a1.errors import UserError
from policies.compiler import (
    CompileError,
    assemble,
    compile_files,
    compile_sources,
    load_data,
    read_sources,
    to_wat,
)
from policies.compiler.frontend import parse_sources
from policies.runtime import UNDEFINED, BundleError, PolicyError, PolicyModule
from policies.runtime.values import to_json_compatible


def register(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="compile, evaluate and test Rego policies")
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    build = psub.add_parser("build", help="compile Rego to a WebAssembly policy module")
    build.add_argument("sources", nargs="+", type=Path, metavar="SRC.rego")
    build.add_argument("--data", type=Path, help="JSON data document compiled into the module")
    build.add_argument(
        "-e",
        "--entrypoint",
        action="append",
        default=[],
        help="rule or package path, e.g. a1/authz/decision (repeatable)",
    )
    build.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wasm")
    build.add_argument("--wat", type=Path, metavar="OUT.wat",
                       help="also write the generated WebAssembly text, for inspection")
    build.set_defaults(func=_build)

    ev = psub.add_parser("eval", help="evaluate a module (or Rego sources) on an input")
    ev.add_argument("module", nargs="+", type=Path, metavar="MODULE.wasm|SRC.rego")
    group = ev.add_mutually_exclusive_group(required=True)
    group.add_argument("--input", type=Path, help="input document (JSON)")
    group.add_argument("--inputs", type=Path, help="one input document per line (JSONL)")
    ev.add_argument("-e", "--entrypoint", help="entrypoint (default: the module's first)")
    ev.add_argument("--data", type=Path, help="data document, when compiling Rego sources")
    ev.set_defaults(func=_eval)

    test = psub.add_parser("test", help="run the test_* rules of the Rego files in DIR")
    test.add_argument("dir", type=Path)
    test.add_argument("-v", "--verbose", action="store_true", help="print every test")
    test.set_defaults(func=_test)


def _compile_error(err: CompileError) -> UserError:
    return UserError(str(err), err.exit_code)


def _build(args: argparse.Namespace) -> int:
    if not args.entrypoint:
        raise UserError("at least one -e/--entrypoint is required (e.g. -e a1/authz/decision)", 2)
    started = time.perf_counter()
    try:
        data = load_data(args.data) if args.data else None
        wat, meta = to_wat(read_sources(args.sources), data, args.entrypoint)
        wasm = assemble(wat, meta)
    except CompileError as err:
        raise _compile_error(err) from None
    if args.wat:
        args.wat.write_text(wat)
    args.output.write_bytes(wasm)
    took = (time.perf_counter() - started) * 1000
    print(f"wrote {args.output} ({len(wasm)} bytes, {took:.0f} ms)", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace) -> tuple[PolicyModule, str | None]:
    paths: list[Path] = args.module
    if len(paths) == 1 and paths[0].suffix == ".wasm":
        try:
            wasm = paths[0].read_bytes()
        except OSError as err:
            raise UserError(f"{paths[0]}: {err.strerror}", 2) from None
        try:
            return PolicyModule.load(wasm, source=str(paths[0])), args.entrypoint
        except BundleError as err:
            raise UserError(str(err), 2) from None
    entrypoint = args.entrypoint or _default_entrypoint(paths)
    try:
        wasm = compile_files(paths, args.data, [entrypoint])
        return PolicyModule.load(wasm, source="<compiled>"), entrypoint
    except CompileError as err:
        raise _compile_error(err) from None


def _default_entrypoint(paths: list[Path]) -> str:
    """The first module's package, as ``opa eval data.<package>`` would print it."""
    try:
        program = parse_sources({str(paths[0]): paths[0].read_text()})
    except OSError as err:
        raise UserError(f"{paths[0]}: {err.strerror}", 2) from None
    except CompileError as err:
        raise _compile_error(err) from None
    return "/".join(sorted(program.packages)[0])


def _read_inputs(args: argparse.Namespace) -> Iterator[tuple[str, Any]]:
    path: Path = args.input or args.inputs
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: {err.strerror}", 2) from None
    if args.input:
        yield str(path), _parse_json(text, str(path))
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield f"{path}:{lineno}", _parse_json(line, f"{path}:{lineno}")


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        place = f"{where}:{err.lineno}:{err.colno}" if ":" not in where else f"{where}:{err.colno}"
        raise UserError(f"{place}: invalid JSON: {err.msg}", 2) from None


def result_object(value: Any) -> dict[str, Any]:
    """``{"result": value}``, or ``{}`` when undefined (``value`` in JSON form)."""
    return {} if value is UNDEFINED else {"result": value}


def _eval(args: argparse.Namespace) -> int:
    module, entrypoint = _load(args)
    try:
        evaluator = module.evaluator(entrypoint)
    except BundleError as err:
        raise UserError(str(err), 2) from None
    status = 0
    for where, doc in _read_inputs(args):
        try:
            value = evaluator.evaluate(doc, json_form=True)
        except PolicyError as err:
            print(f"a1: {where}: {err}", file=sys.stderr)
            status = 1
            continue
        except ValueError as err:
            print(f"a1: {where}: {err}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps(result_object(value), sort_keys=True))
    return status


def _test(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UserError(f"{args.dir}: not a directory", 2)
    files = sorted(args.dir.rglob("*.rego"))
    if not files:
        raise UserError(f"{args.dir}: no .rego files", 2)
    data: dict[str, Any] = {}
    for data_file in sorted(args.dir.rglob("data.json")):
        try:
            _merge(data, load_data(data_file))
        except CompileError as err:
            raise _compile_error(err) from None
    sources = {str(f): f.read_text() for f in files}
    try:
        program = parse_sources(sources, data)
    except CompileError as err:
        raise _compile_error(err) from None
    tests = sorted(
        p for p, r in program.rules.items() if p[-1].startswith("test_") and r.kind == "complete"
    )
    if not tests:
        raise UserError(f"{args.dir}: no test_* rules found", 2)
    entrypoints = ["/".join(p) for p in tests]
    try:
        module = PolicyModule.load(compile_sources(sources, data, entrypoints))
    except CompileError as err:
        raise _compile_error(err) from None
    failed = 0
    for entry in entrypoints:
        name = "data." + entry.replace("/", ".")
        started = time.perf_counter()
        try:
            value = module.evaluator(entry).evaluate({})
            ok, detail = value is True, "" if value is True else f" (got {_show(value)})"
        except PolicyError as err:
            ok, detail = False, f" (error: {err})"
        took = (time.perf_counter() - started) * 1e6
        failed += not ok
        if args.verbose or not ok:
            print(f"{'PASS' if ok else 'FAIL'}: {name} ({took:.0f}µs){detail}")
    total = len(entrypoints)
    print(f"{'PASS' if not failed else 'FAIL'}: {total - failed}/{total}")
    return 1 if failed else 0


def _show(value: Any) -> str:
    return "undefined" if value is UNDEFINED else json.dumps(to_json_compatible(value))


def _merge(into: dict[str, Any], doc: Any) -> None:
    if not isinstance(doc, dict):
        raise UserError("data documents must be JSON objects", 2)
    for key, value in doc.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
