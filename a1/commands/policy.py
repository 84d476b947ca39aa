"""``a1 policy build | eval | test``: the policy workflow on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from a1.commands import control
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
from policies.compiler.limits import JSON_MAX_DEPTH, check_json, decode_utf8
from policies.core.errors import UserError
from policies.runtime import UNDEFINED, BundleError, PolicyError, PolicyModule
from policies.runtime.module import ResultTooLarge
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

    control.register_rollout(psub)  # a1 policy rollout status|promote|abort


def _compile_error(err: CompileError) -> UserError:
    return UserError(str(err), err.exit_code)


def _build(args: argparse.Namespace) -> int:
    if not args.entrypoint:
        raise UserError("at least one -e/--entrypoint is required (e.g. -e a1/authz/decision)", 2)
    for out in (args.output, args.wat):
        if out is not None:
            _check_output(out)
    started = time.perf_counter()
    try:
        data = load_data(args.data) if args.data else None
        wat, meta = to_wat(read_sources(args.sources), data, args.entrypoint)
        wasm = assemble(wat, meta)
    except CompileError as err:
        raise _compile_error(err) from None
    if args.wat:
        _write(args.wat, wat.encode())
    _write(args.output, wasm)
    took = (time.perf_counter() - started) * 1000
    print(f"wrote {args.output} ({len(wasm)} bytes, {took:.0f} ms)", file=sys.stderr)
    return 0


def _check_output(path: Path) -> None:
    """Refuse before compiling: an output whose directory is missing is an
    error (we do not create directories), and so is a directory as the output."""
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"{path}: output directory {parent} does not exist", 2)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an output file", 2)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as err:
        raise UserError(f"{path}: cannot write: {err.strerror}", 2) from None


def _read_text(path: Path) -> str:
    """A whole UTF-8 file, or a one-line error naming it."""
    try:
        return decode_utf8(str(path), path.read_bytes())
    except OSError as err:
        raise UserError(f"{path}: {err.strerror}", 2) from None
    except CompileError as err:
        raise _compile_error(err) from None


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
    text = _read_text(paths[0])
    try:
        program = parse_sources({str(paths[0]): text})
    except CompileError as err:
        raise _compile_error(err) from None
    return "/".join(sorted(program.packages)[0])


class InputError(Exception):
    """One input line that cannot be evaluated; ``code`` is one of ``ERROR_CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


ERROR_CODES = {
    "empty_line": "a blank line (it still gets its output line, so outputs line up)",
    "invalid_utf8": "the line is not valid UTF-8",
    "too_deep": f"arrays and objects nested deeper than {JSON_MAX_DEPTH}",
    "invalid_json": "not one JSON document (NaN and Infinity are not JSON)",
    "invalid_input": "JSON the policy ABI cannot carry (an integer beyond 2^53, …)",
    "fuel_exhausted": "the evaluation ran out of fuel",
    "memory_cap": "the input or the evaluation exceeded the memory cap",
    "result_too_large": "the result exceeded the host's decoding budget",
    "eval_error": "the policy raised an error (type error, conflict, division by zero, …)",
}
"""The stable ``code`` values of ``{"error": {"code": …, "message": …}}`` lines."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str, where: str) -> Any:
    """One JSON document; ``where`` is ``file`` or ``file:line`` (the column is added)."""
    try:
        check_json(where, text)
    except CompileError as err:
        line, col = (err.loc.line, err.loc.col) if err.loc else (1, 1)
        place = f"{where}:{col}" if ":" in where else f"{where}:{line}:{col}"
        raise InputError("too_deep", f"{place}: {err.message}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        place = f"{where}:{err.colno}" if ":" in where else f"{where}:{err.lineno}:{err.colno}"
        raise InputError("invalid_json", f"{place}: invalid JSON: {err.msg}") from None
    except ValueError as err:  # NaN / Infinity
        raise InputError("invalid_json", f"{where}: invalid JSON: {err}") from None


def _input_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """``(place, document or InputError)`` for every line of a JSONL file, in order.

    Every line gets an entry, blank and broken ones included, so the outputs
    line up with the inputs. A final newline does not start another line.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: {err.strerror}", 2) from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    offset = 0
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        start, offset = offset, offset + len(raw) + 1
        try:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                at = start + err.start
                raise InputError("invalid_utf8", f"{where}: not valid UTF-8 at byte {at}") from None
            if not line.strip():
                raise InputError("empty_line", f"{where}: blank line, expected a JSON document")
            yield where, _parse_json(line, where)
        except InputError as err:
            yield where, err


def _eval_error(err: Exception, where: str) -> InputError:
    """An evaluation failure of the input at ``where`` as a stable error code."""
    message = f"{where}: {err}"
    if isinstance(err, ResultTooLarge):
        return InputError("result_too_large", message)
    if isinstance(err, PolicyError):
        if "fuel" in str(err):
            return InputError("fuel_exhausted", message)
        if err.code == 4 or "memory" in str(err):
            return InputError("memory_cap", message)
        return InputError("eval_error", message)
    return InputError("invalid_input", message)


def error_object(err: InputError) -> dict[str, Any]:
    return {"error": {"code": err.code, "message": str(err)}}


def result_object(value: Any) -> dict[str, Any]:
    """``{"result": value}``, or ``{}`` when undefined (``value`` in JSON form)."""
    return {} if value is UNDEFINED else {"result": value}


def _eval(args: argparse.Namespace) -> int:
    try:
        return _eval_all(args)
    except BrokenPipeError:  # `| head`: the reader left; stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def _eval_all(args: argparse.Namespace) -> int:
    module, entrypoint = _load(args)
    try:
        evaluator = module.evaluator(entrypoint)
    except BundleError as err:
        raise UserError(str(err), 2) from None
    if args.input:
        try:
            doc = _parse_json(_read_text(args.input), str(args.input))
        except InputError as err:
            raise UserError(str(err), 2) from None
        try:
            value = evaluator.evaluate(doc, json_form=True)
        except (PolicyError, ValueError) as err:
            raise UserError(str(_eval_error(err, str(args.input))), 1) from None
        print(json.dumps(result_object(value), sort_keys=True))
        return 0
    failed = total = 0
    for where, doc in _input_lines(args.inputs):
        total += 1
        if not isinstance(doc, InputError):
            try:
                out = result_object(evaluator.evaluate(doc, json_form=True))
            except (PolicyError, ValueError) as err:
                doc = _eval_error(err, where)
        if isinstance(doc, InputError):
            failed += 1
            out = error_object(doc)
        print(json.dumps(out, sort_keys=True))
    if failed:
        print(f"a1: {args.inputs}: {failed} of {total} inputs failed", file=sys.stderr)
    return 1 if failed else 0


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
    sources = {str(f): _read_text(f) for f in files}
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
