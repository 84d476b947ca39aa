"""Nesting limits: deep Rego literals, data and input are refused before parsing,
fast, with a located one-line error (never a RecursionError or a long build)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policies.compiler import CompileError, compile_sources, load_data
from policies.compiler.frontend import parse_sources
from policies.compiler.limits import (
    JSON_MAX_DEPTH,
    REGO_MAX_DEPTH,
    REGO_MAX_FIRST_CHAIN,
    REGO_MAX_OPERATORS,
    check_json,
    check_rego,
)

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = [20, 24, 1000, 100_000]
FAST = 2.0  # seconds: depth 20 took 32 s before the limit


def rego_nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return f"package p\nx := {open_ * depth}1{close * depth}\n"


@pytest.mark.parametrize(
    ("depth", "shape"),
    [(d, s) for d in DEPTHS for s in [("[", "]"), ('{"a": ', "}"), ("{", "}")]]
    + [(d, ("(", ")")) for d in (REGO_MAX_DEPTH + 1, 1000, 100_000)]
    + [(d, ("[1, ", "]")) for d in (REGO_MAX_DEPTH + 1, 1000, 100_000)],
)
def test_deep_rego_literal_is_refused_fast(depth: int, shape: tuple[str, str]) -> None:
    src = rego_nested(depth, *shape)
    started = time.perf_counter()
    with pytest.raises(CompileError) as err:
        compile_sources({"p.rego": src}, None, ["p/x"])
    assert time.perf_counter() - started < FAST
    assert err.value.exit_code == 2
    text = str(err.value)
    assert text.startswith("p.rego:2:") and "nesting deeper than" in text, text
    assert "\n" not in text


def test_every_parse_checks_the_limits_first() -> None:
    """``a1 policy test`` and ``eval`` on sources parse without compiling: the
    limits hold there too, as the parser's own first step."""
    started = time.perf_counter()
    with pytest.raises(CompileError, match="nesting deeper than"):
        parse_sources({"p.rego": rego_nested(REGO_MAX_DEPTH + 1, "(", ")")})
    with pytest.raises(CompileError, match="data document: nesting deeper than"):
        parse_sources({"p.rego": "package p\n"}, _deep_list(JSON_MAX_DEPTH + 1))
    assert time.perf_counter() - started < FAST


def _deep_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_limit_points_at_the_first_bracket_past_it() -> None:
    src = rego_nested(REGO_MAX_FIRST_CHAIN + 1)
    with pytest.raises(CompileError) as err:
        compile_sources({"p.rego": src}, None, ["p/x"])
    assert err.value.loc is not None
    assert (err.value.loc.line, err.value.loc.col) == (2, 6 + REGO_MAX_FIRST_CHAIN)


def test_wide_literals_below_the_limits_compile() -> None:
    """Only the first-element chain doubles regorus's parse time; later elements
    may nest up to the plain depth limit."""
    deep = REGO_MAX_DEPTH - 1
    src = "package p\nx := " + "[1, " * deep + "2" + "]" * deep + "\n"
    started = time.perf_counter()
    compile_sources({"p.rego": src}, None, ["p/x"])
    src = rego_nested(REGO_MAX_FIRST_CHAIN)
    compile_sources({"p.rego": src}, None, ["p/x"])
    assert time.perf_counter() - started < FAST


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    text = (
        "package p\n# " + "[" * 100 + "\n"
        'x := "' + "[" * 100 + '"\n'
        "y := `" + "{" * 100 + "`\n"
        'z := "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["\n'
    )
    check_rego("p.rego", text)
    compile_sources({"p.rego": text}, None, ["p/x"])


def test_shipped_policy_and_corpus_are_far_below_the_limits() -> None:
    from tests.policy_corpus import CORPUS, HEADER

    texts = [p.read_text() for p in (ROOT / "policies" / "library").glob("*.rego")]
    texts += [HEADER + body for body in CORPUS.values()]
    for text in texts:
        check_rego("x.rego", text, limit=REGO_MAX_DEPTH // 4, chain_limit=REGO_MAX_FIRST_CHAIN // 2)


JSON_DEPTHS = [JSON_MAX_DEPTH + 1, 1000, 100_000]


@pytest.mark.parametrize("depth", JSON_DEPTHS)
def test_deep_data_file_is_refused_fast(depth: int, tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{"a": ' * depth + "1" + "}" * depth)
    started = time.perf_counter()
    with pytest.raises(CompileError) as err:
        load_data(path)
    assert time.perf_counter() - started < FAST
    assert str(err.value) == f"{path}:1:{6 * JSON_MAX_DEPTH + 1}: error: nesting deeper than 64"


@pytest.mark.parametrize("depth", JSON_DEPTHS)
def test_deep_data_document_is_refused(depth: int) -> None:
    data: object = 1
    for _ in range(depth):
        data = {"a": data}
    with pytest.raises(CompileError) as err:
        compile_sources({"p.rego": "package p\nx := data.a\n"}, data, ["p/x"])
    assert "nesting deeper than" in str(err.value)


@pytest.mark.parametrize("depth", [20, 24, JSON_MAX_DEPTH - 1])
def test_data_and_input_below_the_limit_are_fast(depth: int) -> None:
    from policies.runtime import PolicyModule

    data: object = 1
    for i in range(depth):
        data = {"a": data} if i % 2 else [data]
    started = time.perf_counter()
    src = "package p\nx := data.d\ny := input\n"
    module = PolicyModule.load(compile_sources({"p.rego": src}, {"d": data}, ["p/x", "p/y"]))
    assert module.evaluator("p/x").evaluate({}, json_form=True) == data
    assert module.evaluator("p/y").evaluate(data, json_form=True) == data
    assert time.perf_counter() - started < FAST


def test_json_scan_skips_strings_and_escapes() -> None:
    check_json("x", json.dumps({"s": "[" * 1000 + '\\"{' * 100}))
    with pytest.raises(CompileError):
        check_json("x", '["\\\\", ' + "[" * 100 + "]" * 100 + "]")


def test_recursion_error_is_a_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort: any RecursionError in the compile entry is one located line."""
    import policies.compiler as compiler

    def explode(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(compiler, "parse_sources", explode)
    with pytest.raises(CompileError) as err:
        compiler.compile_sources({"b.rego": "package p\n", "a.rego": "package q\n"}, None, ["p"])
    assert str(err.value) == "a.rego:1:1: error: program nested too deeply to compile"


def a1_policy(*args: str) -> subprocess.CompletedProcess[str]:
    started = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "a1.cli", "policy", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.perf_counter() - started < 10
    return res


def assert_one_line_nesting_error(res: subprocess.CompletedProcess[str], place: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith(f"a1: {place}:") and "nesting deeper than" in res.stderr


@pytest.mark.parametrize("depth", DEPTHS)
def test_cli_build_deep_source(depth: int, tmp_path: Path) -> None:
    src = tmp_path / "p.rego"
    src.write_text(rego_nested(depth))
    res = a1_policy("build", str(src), "-e", "p/x", "-o", str(tmp_path / "o.wasm"))
    assert_one_line_nesting_error(res, f"{src}:2")


@pytest.mark.parametrize("depth", JSON_DEPTHS)
def test_cli_deep_data_and_input(depth: int, tmp_path: Path) -> None:
    ok = tmp_path / "ok.rego"
    ok.write_text("package p\nx := input\n")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * depth + "]" * depth)
    res = a1_policy("build", str(ok), "--data", str(deep), "-e", "p/x", "-o", str(tmp_path / "o"))
    assert_one_line_nesting_error(res, f"{deep}:1")
    res = a1_policy("eval", str(ok), "-e", "p/x", "--input", str(deep))
    assert_one_line_nesting_error(res, f"{deep}:1")


@pytest.mark.parametrize("n", [REGO_MAX_OPERATORS + 1, 3000, 100_000])
@pytest.mark.parametrize("joiner", ["+\n", "-\n", " | ", " == "])
def test_long_operator_chains_are_refused_fast(n: int, joiner: str) -> None:
    """``1 + 1 + …`` deepens regorus's syntax tree like brackets do (its JSON grows
    with the square of the depth); about 2000 unary minuses crash its parser."""
    terms = "-\n" * n + "1" if joiner == "-\n" else joiner.join(["1"] * n)
    started = time.perf_counter()
    with pytest.raises(CompileError) as err:
        compile_sources({"p.rego": f"package p\nx := {terms}\n"}, None, ["p/x"])
    assert time.perf_counter() - started < FAST
    assert "operators chained in one expression" in str(err.value)
    assert str(err.value).startswith("p.rego:")


def test_operator_counts_reset_per_statement_and_element() -> None:
    """Many short expressions, in a body, an array or on separate lines, are fine."""
    body = "\n".join(f"    input.a{i} + 1 > {i}" for i in range(REGO_MAX_OPERATORS * 2))
    elements = ",\n".join(f"{i} + 1" for i in range(REGO_MAX_OPERATORS * 2))
    lines = "\n".join(f"r{i} := {i} + 1" for i in range(REGO_MAX_OPERATORS * 2))
    chain = " +\n".join(["1"] * (REGO_MAX_OPERATORS - 1))
    src = (
        f"package p\nimport rego.v1\nallow if {{\n{body}\n}}\narr := [{elements}]\n"
        f"{lines}\nlong := {chain}\n"
    )
    check_rego("p.rego", src)
    compile_sources({"p.rego": src}, None, ["p/arr", "p/long"])


def test_cli_policy_test_checks_nesting(tmp_path: Path) -> None:
    (tmp_path / "p_test.rego").write_text(
        "package p\nimport rego.v1\ntest_x if " + "[" * 30 + "1" + "]" * 30 + "\n"
    )
    res = a1_policy("test", str(tmp_path))
    assert_one_line_nesting_error(res, f"{tmp_path / 'p_test.rego'}:3")
