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


# ---------------------------------------------------------------- eval --inputs


FAIL_POLICY = """package p
import rego.v1
x := 10 / input.d
n := count([1 | some i in numbers.range(1, input.n); some j in numbers.range(1, input.n); i != j])
"""


def test_eval_inputs_prints_one_line_per_input_line(tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text(FAIL_POLICY)
    lines = [
        b'{"d": 2}',
        b'{"d": 0}',  # division by zero
        b"",  # blank
        b"   ",  # blank
        b"{bad",  # invalid JSON
        b'{"d": "\xff"}',  # not UTF-8
        b'{"d": NaN}',  # not JSON
        b"[" * 100 + b"]" * 100,  # too deep
        b'{"d": 1e999}',  # not finite
        b'{"d": "s"}',  # type error
        b'{"d": 5}',
    ]
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(b"\n".join(lines) + b"\n")
    res = a1("policy", "eval", str(src), "-e", "p/x", "--inputs", str(inputs))
    assert res.returncode == 1
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == len(lines)
    codes = [o["error"]["code"] if "error" in o else o for o in out]
    assert codes == [
        {"result": 5},
        "eval_error",
        "empty_line",
        "empty_line",
        "invalid_json",
        "invalid_utf8",
        "invalid_json",
        "too_deep",
        "invalid_input",
        "eval_error",
        {"result": 2},
    ]
    for i, o in enumerate(out, 1):
        if "error" in o:
            assert o["error"]["message"].startswith(f"{inputs}:{i}:"), o
    assert out[5]["error"]["message"] == f"{inputs}:6: not valid UTF-8 at byte 35"
    assert out[7]["error"]["message"] == f"{inputs}:8:65: nesting deeper than 64"
    assert res.stderr.strip() == f"a1: {inputs}: 9 of 11 inputs failed"
    assert "Traceback" not in res.stderr


def test_eval_inputs_fuel_and_memory_have_their_codes(tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text(FAIL_POLICY + "r := count(numbers.range(1, input.n))\n")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 3000}\n{"n": 3}\n')
    res = a1("policy", "eval", str(src), "-e", "p/n", "--inputs", str(inputs))
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out[0]["error"]["code"] == "fuel_exhausted" and out[1] == {"result": 6}
    inputs.write_text('{"n": 100000000}\n{"n": 3}\n')
    res = a1("policy", "eval", str(src), "-e", "p/r", "--inputs", str(inputs))
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out[0]["error"]["code"] == "memory_cap" and out[1] == {"result": 3}
    assert res.returncode == 1


def test_eval_inputs_result_too_large_has_its_code(tmp_path: Path) -> None:
    """A tiny policy whose result is a 2^20-leaf tree of shared records."""
    src = tmp_path / "p.rego"
    rules = [f"a{i} := [a{i - 1}, a{i - 1}]" for i in range(1, 21)]
    src.write_text("package p\nimport rego.v1\na0 := [input.x, input.x]\n" + "\n".join(rules))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"x": 1}\n')
    res = a1("policy", "eval", str(src), "-e", "p/a20", "--inputs", str(inputs))
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["error"]["code"] for o in out] == ["result_too_large"]
    assert res.returncode == 1


def test_eval_inputs_all_good_exits_0_without_final_newline(tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text(FAIL_POLICY)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"d": 1}\r\n{"d": 2}')
    res = a1("policy", "eval", str(src), "-e", "p/x", "--inputs", str(inputs))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ['{"result": 10}', '{"result": 5}']
    assert res.stderr == ""


# ---------------------------------------------------------------- one-line CLI errors


def assert_one_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "ok_rego": b"package p\nimport rego.v1\nx := input\n",
        "bad_rego": b'package p\n# caf\xc3\xa9\nx := "\xff"\n',
        "bad_json": b'{"a": "\xe9"}',
        "ok_json": b"{}",
    }
    out = {}
    for name, data in paths.items():
        out[name] = tmp_path / name.replace("_", ".")
        out[name].write_bytes(data)
    out["dir"] = tmp_path / "adir"
    out["dir"].mkdir()
    out["tmp"] = tmp_path
    return out


def test_non_utf8_source_names_line_col_and_byte(files: dict[str, Path]) -> None:
    bad, out = files["bad_rego"], files["tmp"] / "o.wasm"
    res = a1("policy", "build", str(bad), "-e", "p/x", "-o", str(out))
    assert_one_line(res, 2)
    assert res.stderr.strip() == f"a1: {bad}:3:7: error: not valid UTF-8 at byte 24"
    res = a1("policy", "eval", str(bad), "--input", str(files["ok_json"]))
    assert_one_line(res, 2, f"{bad}:3:7:", "not valid UTF-8")
    (files["dir"] / "t.rego").write_bytes(bad.read_bytes())
    res = a1("policy", "test", str(files["dir"]))
    assert_one_line(res, 2, "t.rego:3:7:", "not valid UTF-8")


def test_non_utf8_data_and_input(files: dict[str, Path]) -> None:
    ok, bad = files["ok_rego"], files["bad_json"]
    out = str(files["tmp"] / "o")
    res = a1("policy", "build", str(ok), "--data", str(bad), "-e", "p/x", "-o", out)
    assert_one_line(res, 2, f"{bad}:1:8:", "not valid UTF-8 at byte 7")
    res = a1("policy", "eval", str(ok), "-e", "p/x", "--input", str(bad))
    assert_one_line(res, 2, f"{bad}:1:8:", "not valid UTF-8 at byte 7")


def test_missing_output_directory_is_an_error(files: dict[str, Path]) -> None:
    missing = files["tmp"] / "missing" / "dir" / "x.wasm"
    res = a1("policy", "build", str(files["ok_rego"]), "-e", "p/x", "-o", str(missing))
    assert_one_line(res, 2, str(missing), "does not exist")
    assert not missing.parent.exists()
    wat = files["tmp"] / "nowhere" / "x.wat"
    out = files["tmp"] / "o.wasm"
    src = str(files["ok_rego"])
    res = a1("policy", "build", src, "-e", "p/x", "-o", str(out), "--wat", str(wat))
    assert_one_line(res, 2, str(wat), "does not exist")
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "{dir}", "-e", "p/x", "-o", "{tmp}/o.wasm"],
        ["build", "{ok_rego}", "--data", "{dir}", "-e", "p/x", "-o", "{tmp}/o.wasm"],
        ["build", "{ok_rego}", "-e", "p/x", "-o", "{dir}"],
        ["build", "{tmp}/nope.rego", "-e", "p/x", "-o", "{tmp}/o.wasm"],
        ["eval", "{ok_rego}", "-e", "p/x", "--input", "{dir}"],
        ["eval", "{ok_rego}", "-e", "p/x", "--inputs", "{dir}"],
        ["eval", "{ok_rego}", "-e", "p/x", "--inputs", "{tmp}/nope.jsonl"],
        ["eval", "{dir}", "--input", "{ok_json}"],
        ["eval", "{tmp}/nope.wasm", "--input", "{ok_json}"],
        ["test", "{tmp}/nope"],
    ],
)
def test_unreadable_paths_are_one_line(files: dict[str, Path], argv: list[str]) -> None:
    names = {k: str(v) for k, v in files.items()}
    args = [a.format(**names) for a in argv]
    res = a1("policy", *args)
    assert_one_line(res, 2, files["tmp"].name)


def test_eval_inputs_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``a1 policy eval … --inputs big.jsonl | head -1``: no traceback."""
    src = tmp_path / "p.rego"
    src.write_text(FAIL_POLICY)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(f'{{"d": {i + 1}}}\n' for i in range(20000)))
    argv = ["policy", "eval", str(src), "-e", "p/x", "--inputs", str(inputs)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "a1.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b'{"result": 10}\n'
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert b"Traceback" not in err and err == b""
