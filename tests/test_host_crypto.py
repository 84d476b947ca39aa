"""``crypto.*`` host builtins against ``cryptography``'s digests and HMACs (regorus has none).

Known-answer vectors (FIPS 180, RFC 1321, RFC 4231) pin the encoding (UTF-8,
lowercase hex); hypothesis checks every string against the independent
implementation; the last part runs the builtins through the real compiler.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler import compile_sources
from policies.runtime import PolicyError, PolicyModule
from policies.runtime.host import REGISTRY, BuiltinError
from tests.host_diff import call

ALGORITHMS = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha512": hashes.SHA512,
}
DIGESTS = ["md5", "sha1", "sha256"]  # OPA has no crypto.sha512, only crypto.hmac.sha512
HMACS = ["md5", "sha1", "sha256", "sha512"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


def digest_oracle(name: str, data: str) -> str:
    h = hashes.Hash(ALGORITHMS[name]())
    h.update(data.encode())
    return h.finalize().hex()


def hmac_oracle(name: str, data: str, key: str) -> str:
    h = chmac.HMAC(key.encode(), ALGORITHMS[name]())
    h.update(data.encode())
    return h.finalize().hex()


def test_exactly_opas_crypto_builtins_are_registered() -> None:
    names = {n for n in REGISTRY if n.startswith("crypto.") and not n.startswith("crypto.x509.")}
    assert names == {
        "crypto.md5",
        "crypto.sha1",
        "crypto.sha256",
        "crypto.hmac.md5",
        "crypto.hmac.sha1",
        "crypto.hmac.sha256",
        "crypto.hmac.sha512",
        "crypto.hmac.equal",
    }
    assert all(REGISTRY[n].pure for n in names)


def test_known_answers() -> None:
    assert call("crypto.md5", "abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert call("crypto.sha1", "abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert call("crypto.sha256", "") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    # RFC 4231 test case 2
    data, key = "what do ya want for nothing?", "Jefe"
    assert call("crypto.hmac.sha256", data, key) == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert call("crypto.hmac.sha512", data, key).startswith("164b7a7bfcf819e2e395fbe73b56e0a3")
    assert call("crypto.hmac.md5", data, key) == "750c783e6ab0b503eaa86e310a5db738"


def test_strings_are_hashed_as_utf8() -> None:
    h = hashes.Hash(hashes.SHA256())
    h.update(b"\xc3\xa9")  # U+00E9 in UTF-8, not its Latin-1 byte
    assert call("crypto.sha256", "\u00e9") == h.finalize().hex()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DIGESTS), TEXT)
def test_digests_agree_with_cryptography(name: str, data: str) -> None:
    assert call(f"crypto.{name}", data) == digest_oracle(name, data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(HMACS), TEXT, TEXT)
def test_hmacs_agree_with_cryptography(name: str, data: str, key: str) -> None:
    assert call(f"crypto.hmac.{name}", data, key) == hmac_oracle(name, data, key)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_hmac_equal_is_string_equality(a: str, b: str) -> None:
    assert call("crypto.hmac.equal", a, b) is (a == b)
    assert call("crypto.hmac.equal", a, a) is True


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("crypto.sha256", (1,), "crypto.sha256: operand 1 must be string but got number"),
        ("crypto.md5", (None,), "crypto.md5: operand 1 must be string but got null"),
        ("crypto.sha1", ([],), "crypto.sha1: operand 1 must be string but got array"),
        ("crypto.hmac.sha256", ("x", 1), "operand 2 must be string but got number"),
        ("crypto.hmac.sha1", ({}, "k"), "operand 1 must be string but got object"),
        ("crypto.hmac.equal", ("a", True), "operand 2 must be string but got boolean"),
    ],
)
def test_wrong_types_are_errors(name: str, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(BuiltinError, match=message):
        call(name, *args)


# ---------------------------------------------------------------- through the compiler


def evaluate(body: str, input_doc: Any) -> Any:
    module = PolicyModule.load(compile_sources({"p.rego": f"package p\n{body}\n"}, None, ["p/x"]))
    assert module.meta.pure is True  # digests are functions of their arguments: cacheable
    return module.evaluator().evaluate(input_doc)


def test_a_policy_checks_a_request_signature() -> None:
    body = """
x if {
    mac := crypto.hmac.sha256(input.body, "shared-key")
    crypto.hmac.equal(mac, input.headers["x-signature"])
}
"""
    good = hmac_oracle("sha256", '{"a":1}', "shared-key")
    assert evaluate(body, {"body": '{"a":1}', "headers": {"x-signature": good}}) is True
    bad = {"body": '{"a":2}', "headers": {"x-signature": good}}
    assert evaluate(body, bad) is not True


def test_every_digest_through_the_compiler() -> None:
    body = (
        "x := [crypto.md5(input.s), crypto.sha1(input.s), crypto.sha256(input.s), "
        "crypto.hmac.sha512(input.s, input.k)]"
    )
    result = evaluate(body, {"s": "héllo", "k": "k"})
    want = [digest_oracle(n, "héllo") for n in DIGESTS] + [hmac_oracle("sha512", "héllo", "k")]
    assert result == want


def test_a_wrong_type_denies_through_the_compiler() -> None:
    with pytest.raises(PolicyError, match=r"crypto\.sha256: operand 1 must be string"):
        evaluate("x := crypto.sha256(input.n)", {"n": 5})
