"""``a1 policy build | eval | test`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "policies" / "library"


def a1(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "a1.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


@pytest.fixture(scope="module")
def authz_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "authz.wasm"
    res = a1(
        "policy",
        "build",
        str(LIBRARY / "authz.rego"),
        "--data",
        str(LIBRARY / "data.json"),
        "-e",
        "a1/authz/decision",
        "-e",
        "a1/authz/allow",
        "-e",
        "a1/authz",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    return out


def test_eval_prints_one_result_object(authz_wasm: Path, tmp_path: Path) -> None:
    doc = {
        "method": "GET",
        "path": "/t/acme/items",
        "tenant": "acme",
        "subject": {"sub": "u1", "tenant": "acme", "roles": ["reader"]},
    }
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(doc))
    res = a1("policy", "eval", str(authz_wasm), "--input", str(inp), "-e", "a1/authz/decision")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "result": {
            "allow": True,
            "status": 200,
            "reason": "allowed",
            "headers": {"x-a1-subject": "u1"},
        }
    }


def test_eval_undefined_prints_empty_object(tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text("package p\nimport rego.v1\nx := 1 if input.a\n")
    inp = tmp_path / "in.json"
    inp.write_text("{}")
    res = a1("policy", "eval", str(src), "--input", str(inp), "-e", "p/x")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "{}"


def test_eval_sets_print_sorted(tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text("package p\nimport rego.v1\ns contains x if some x in input.xs\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"xs": ["b", "a", "b"]}\n{"xs": [3, 1]}\n')
    res = a1("policy", "eval", str(src), "--inputs", str(inp))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines == [{"result": {"s": ["a", "b"]}}, {"result": {"s": [1, 3]}}]


def test_build_unsupported_exits_3_without_traceback(tmp_path: Path) -> None:
    src = tmp_path / "bad.rego"
    src.write_text("package p\nimport rego.v1\nx := http.send({})\n")
    res = a1("policy", "build", str(src), "-e", "p/x", "-o", str(tmp_path / "o.wasm"))
    assert res.returncode == 3
    assert res.stderr.strip() == f"a1: {src}:3:6: unsupported: builtin function `http.send`"


def test_build_syntax_error_exits_2(tmp_path: Path) -> None:
    src = tmp_path / "bad.rego"
    src.write_text("package p\nx := {\n")
    res = a1("policy", "build", str(src), "-e", "p/x", "-o", str(tmp_path / "o.wasm"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith(f"a1: {src}:")


def test_eval_bad_json_names_the_place(authz_wasm: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in.json"
    inp.write_text('{"method": }')
    res = a1("policy", "eval", str(authz_wasm), "--input", str(inp))
    assert res.returncode == 2
    assert res.stderr.startswith(f"a1: {inp}:1:"), res.stderr


def test_eval_refuses_corrupt_module(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0garbage")
    inp = tmp_path / "in.json"
    inp.write_text("{}")
    res = a1("policy", "eval", str(bad), "--input", str(inp))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and str(bad) in res.stderr


def test_policy_test_runs_shipped_tests() -> None:
    res = a1("policy", "test", str(LIBRARY), "-v")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS: data.a1.authz_test.test_cross_tenant_denied" in res.stdout
    assert res.stdout.strip().endswith("PASS: 14/14")


def test_policy_test_reports_failures(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text(
        "package p\nimport rego.v1\nallow if input.x == 1\n"
        'test_ok if allow with input as {"x": 1}\n'
        'test_bad if allow with input as {"x": 2}\n'
    )
    res = a1("policy", "test", str(tmp_path))
    assert res.returncode == 1
    assert "FAIL: data.p.test_bad" in res.stdout
    assert res.stdout.strip().endswith("FAIL: 1/2")


def test_build_writes_wat_for_inspection(tmp_path: Path) -> None:
    out, wat = tmp_path / "p.wasm", tmp_path / "p.wat"
    src = tmp_path / "p.rego"
    src.write_text("package p\nimport rego.v1\nallow if input.user == \"admin\"\n")
    res = a1("policy", "build", str(src), "-e", "p/allow", "-o", str(out), "--wat", str(wat))
    assert res.returncode == 0, res.stderr
    text = wat.read_text()
    assert text.startswith("(module") and '(export "a1_eval"' in text
    inp = tmp_path / "in.json"
    inp.write_text('{"user": "admin"}')
    res = a1("policy", "eval", str(out), "--input", str(inp))
    assert json.loads(res.stdout) == {"result": True}
