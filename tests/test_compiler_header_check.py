"""A decision that visibly sets a framing or proxy-control header is refused at build time.

The names come from ``policies.headers`` (the sidecar drops the same names at run
time). The compiler refuses what it can see for certain, with ``file:line:col``
and exit 2, and leaves computed names to the sidecar.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_files, compile_sources
from policies.headers import forbidden_header_reason
from policies.runtime import PolicyModule

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "policies" / "library"
ENTRY = "a1/authz/decision"
HEAD = "package a1.authz\nimport rego.v1\n"

FORBIDDEN = [
    "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
    "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "host",
    "Content-Length", "x-envoy-original-path", "X-Envoy-Upstream-Rq-Timeout-Ms", ":path",
    ":authority", "bad name", "x-a1-cell",
]  # fmt: skip


def build(body: str, entry: str = ENTRY) -> bytes:
    return compile_sources({"a.rego": HEAD + body}, None, [entry])


def refused_at(body: str, line: int, col: int, entry: str = ENTRY) -> str:
    with pytest.raises(CompileError) as info:
        build(body, entry)
    err = info.value
    assert err.exit_code == 2
    assert str(err).startswith(f"a.rego:{line}:{col}: error: decision sets a forbidden header: ")
    return str(err)


@pytest.mark.parametrize("name", FORBIDDEN)
def test_a_constant_forbidden_name_in_the_decision_is_refused(name: str) -> None:
    body = f'decision := {{"allow": true, "headers": {{"x-ok": "1", "{name}": "0"}}}}\n'
    message = refused_at(body, 3, body.index(f'"{name}"') + 1)  # the forbidden key itself
    assert repr(name.lower())[:20] in message


def test_the_decision_with_a_computed_part_points_at_the_key() -> None:
    body = (
        "decision := {\n"
        '\t"allow": input.ok,\n'
        '\t"headers": {"x-user": input.user, "transfer-encoding": "chunked"},\n'
        "}\n"
    )
    assert "'transfer-encoding' is a framing or hop-by-hop header" in refused_at(body, 5, 37)


def test_headers_through_a_rule_a_local_a_default_and_an_else() -> None:
    refused_at('h := {"connection": "close"}\ndecision := {"headers": h}\n', 3, 7)
    refused_at('decision := {"headers": h} if {\n\th := {"upgrade": "h2c"}\n}\n', 4, 8)
    refused_at('default decision := {"headers": {"te": "x"}}\n', 3, 34)
    refused_at(
        'decision := {"allow": false} if input.x\nelse := {"headers": {"host": "evil"}}\n', 4, 22
    )


def test_a_partial_object_rule_named_headers_under_a_package_entrypoint() -> None:
    body = 'headers[k] := "1" if k := "x-envoy-retry-on"\nheaders[k] := "2" if k := "x-fine"\n'
    refused_at(body, 3, 28, entry="a1/authz")
    # the same names under another entrypoint's result are not the decision's headers
    build(body + "decision := {\"allow\": true}\n")


def test_a_control_character_in_a_constant_value_is_refused() -> None:
    with pytest.raises(CompileError, match=r"a\.rego:3:26: error: decision header 'x-a': header "
                       "value contains a control character"):
        build('decision := {"headers": {"x-a": "1\\r\\nx-b: 2"}}\n')


def test_what_the_compiler_cannot_see_is_left_to_the_sidecar() -> None:
    # computed names, names from input, other keys than "headers", unreachable rules
    for body in [
        'decision := {"headers": {concat("-", ["content", "length"]): "0"}}\n',
        'decision := {"headers": {input.name: "0"}}\n',
        'decision := {"allow": true, "extra": {"content-length": "0"}}\n',
        'decision := {"headers": object.union({}, {"x-a": "1"})}\n',
        'other := {"headers": {"content-length": "0"}}\ndecision := {"allow": true}\n',
        'decision := {"headers": {"x-a1-subject": "u1", "x-request-id": "r"}}\n',
    ]:
        PolicyModule.load(build(body))


def test_the_shipped_policy_still_builds() -> None:
    PolicyModule.load(compile_files([LIBRARY / "authz.rego"], LIBRARY / "data.json", [ENTRY]))


def test_compile_files_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "authz.rego"
    src.write_text(HEAD + 'decision := {"allow": true, "headers": {":path": "/admin"}}\n')
    with pytest.raises(CompileError, match=rf"^{src}:3:41: error: .*':path' is a pseudo-header"):
        compile_files([src], None, [ENTRY])


def test_the_cli_refuses_with_exit_2_and_one_line(tmp_path: Path) -> None:
    src = tmp_path / "authz.rego"
    src.write_text(HEAD + 'decision := {"allow": true, "headers": {"content-length": "0"}}\n')
    out = tmp_path / "out.wasm"
    res = subprocess.run(
        [sys.executable, "-m", "a1.cli", "policy", "build", str(src), "-e", ENTRY, "-o", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr == (
        f"a1: {src}:3:41: error: decision sets a forbidden header: "
        "'content-length' is a framing or hop-by-hop header\n"
    )
    assert not out.exists()


@settings(max_examples=80, deadline=None)
@given(st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\'),
               min_size=1, max_size=20))
def test_the_compiler_and_the_sidecar_rule_agree(name: str) -> None:
    """Refused at build time exactly when ``policies.headers`` forbids the name."""
    body = f'decision := {{"allow": true, "headers": {{"{name}": "v"}}}}\n'
    try:
        build(body)
    except CompileError as err:
        assert forbidden_header_reason(name) is not None, str(err)
        assert "decision sets a forbidden header" in str(err)
    else:
        assert forbidden_header_reason(name) is None
