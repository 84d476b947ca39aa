"""Compile and sign the spec's policy: real compiler, real signature, memoised by content."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.pipeline import compile as pc
from control.pipeline import compile_bundle, policy_digest
from control.spec import add_cell, load_spec
from control.spec.model import Policy
from policies.bundle import SigningKey, TrustedKeys, verify_bundle
from policies.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    pc.clear_cache()
    yield
    pc.clear_cache()


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spec"
    shutil.copytree(EXAMPLE, d)
    return d


def test_the_bundle_is_signed_and_named_by_its_module(spec_dir: Path) -> None:
    key = SigningKey.generate()
    spec = load_spec(spec_dir)
    version, bundle = compile_bundle(spec.policy, key)
    verified = verify_bundle(bundle, TrustedKeys([key.public_key()]), source="test")
    assert verified.version == version == hashlib.sha256(verified.module).hexdigest()
    assert verified.entrypoint == "a1/authz/decision"
    with pytest.raises(ConfigError):  # another key does not verify it
        verify_bundle(bundle, TrustedKeys([SigningKey.generate().public_key()]), source="t")


def test_an_unrelated_spec_change_never_recompiles(spec_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.generate()
    first = compile_bundle(load_spec(spec_dir).policy, key)
    add_cell(spec_dir, "cell-4", ["127.0.0.1:10114"])

    def no_compiler(*_: object, **__: object) -> bytes:
        raise AssertionError("recompiled")

    monkeypatch.setattr(pc, "compile_sources", no_compiler)
    assert compile_bundle(load_spec(spec_dir).policy, key) is first


def test_the_digest_covers_sources_data_entrypoint_and_key() -> None:
    base = Policy(sources={"p.rego": "package a\nx := 1\n"}, entrypoint="a/x", data={"k": 1})
    key = "00" * 8
    seen = {policy_digest(base, key)}
    for other, kid in [
        (Policy({"p.rego": "package a\nx := 2\n"}, "a/x", {"k": 1}), key),
        (Policy({"q.rego": "package a\nx := 1\n"}, "a/x", {"k": 1}), key),
        (Policy({"p.rego": "package a\nx := 1\n"}, "a/y", {"k": 1}), key),
        (Policy({"p.rego": "package a\nx := 1\n"}, "a/x", {"k": 2}), key),
        (Policy({"p.rego": "package a\nx := 1\n"}, "a/x", None), key),
        (base, "11" * 8),
    ]:
        seen.add(policy_digest(other, kid))
    assert len(seen) == 7
    # Framed: moving a byte between two fields never collides.
    a = Policy({"p.rego": "ab"}, "c")
    b = Policy({"p.rego": "a"}, "bc")
    assert policy_digest(a, key) != policy_digest(b, key)


def test_a_new_key_or_new_data_is_a_new_bundle(spec_dir: Path) -> None:
    key = SigningKey.generate()
    spec = load_spec(spec_dir)
    v1, b1 = compile_bundle(spec.policy, key)
    v1b, b1b = compile_bundle(spec.policy, SigningKey.generate())
    assert v1b == v1 and b1b != b1  # same module, another signer
    (spec_dir / "policy" / "data.json").write_text(json.dumps(
        {"a1": {"tenants": {"suspended": ["t-1"]}}}))
    v2, _ = compile_bundle(load_spec(spec_dir).policy, key)
    assert v2 != v1


def test_a_compile_error_names_the_spec_and_the_rego_place(spec_dir: Path) -> None:
    rego = spec_dir / "policy" / "authz.rego"
    lines = rego.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("default allow"))
    lines.insert(at + 1, "allow if http.send({\"url\": \"http://x\"}).status_code == 200")
    rego.write_text("\n".join(lines) + "\n")
    spec = load_spec(spec_dir)  # the loader reads Rego; the compiler judges it
    with pytest.raises(ConfigError) as info:
        compile_bundle(spec.policy, SigningKey.generate(), origin=str(spec_dir))
    message = str(info.value)
    assert message.startswith(f"{spec_dir}: policy/authz.rego:{at + 2}:"), message
    assert "\n" not in message and "http.send" in message


def test_a_syntax_error_names_its_place(spec_dir: Path) -> None:
    (spec_dir / "policy" / "authz.rego").write_text("package a1.authz\n\ndecision := {\n")
    spec = load_spec(spec_dir)
    with pytest.raises(ConfigError) as info:
        compile_bundle(spec.policy, SigningKey.generate())
    assert str(info.value).startswith("policy: policy/authz.rego:"), str(info.value)


def test_an_entrypoint_the_module_lacks_is_refused(spec_dir: Path) -> None:
    text = (spec_dir / "platform.yaml").read_text()
    (spec_dir / "platform.yaml").write_text(text.replace("entrypoint: a1/authz/decision",
                                                         "entrypoint: a1/authz/nothing"))
    with pytest.raises(ConfigError, match="nothing"):
        compile_bundle(load_spec(spec_dir).policy, SigningKey.generate())


def test_the_memo_is_bounded_in_entries_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.generate()
    src = "package a\n\nx := data.v\n"

    def policy(i: int) -> Policy:
        return Policy({"p.rego": src}, "a/x", {"v": i})

    for i in range(pc.MAX_ENTRIES + 3):
        compile_bundle(policy(i), key)
    entries, size = pc.cache_info()
    assert entries == pc.MAX_ENTRIES
    # The most recent ones stayed; the oldest left.
    assert pc.policy_digest(policy(pc.MAX_ENTRIES + 2), key.key_id) in pc._memo
    assert pc.policy_digest(policy(0), key.key_id) not in pc._memo
    one = size // entries
    monkeypatch.setattr(pc, "MAX_BYTES", one * 2 + one // 2)
    compile_bundle(policy(1000), key)
    entries, size = pc.cache_info()
    assert entries == 2 and size <= pc.MAX_BYTES
    # A bundle larger than the whole budget is still returned, and held alone.
    monkeypatch.setattr(pc, "MAX_BYTES", 1)
    _, bundle = compile_bundle(policy(1001), key)
    assert pc.cache_info() == (1, len(bundle))
