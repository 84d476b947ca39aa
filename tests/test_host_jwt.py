"""``io.jwt.*`` host builtins, against tokens and keys minted independently (PyJWT, cryptography).

regorus has no io.jwt builtins, so PyJWT is the oracle: what it signs must verify
here, what it rejects must not; the attacks (algorithm confusion, alg none, kid
games, oversized tokens and key sets) each keep a test. The last part runs the
builtins through the real compiler, as the OPA-Envoy primer's policy does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from policies.compiler import compile_sources
from policies.runtime import PolicyError, PolicyModule
from policies.runtime.host import REGISTRY, BuiltinError, EvalContext

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

NOW_S = 1_700_000_000
NOW_NS = NOW_S * 10**9
SECRET = "correct horse battery staple"


def call(name: str, *args: Any, now_ns: int = NOW_NS) -> Any:
    """Call a registered builtin as the evaluator does (impure ones get a context)."""
    b = REGISTRY[name]
    if b.pure:
        return b.fn(*args)
    ctx = EvalContext(now_ns)
    return b.fn(ctx, *args)


def decode_verify(token: str, constraints: dict[str, Any], now_ns: int = NOW_NS) -> list[Any]:
    return call("io.jwt.decode_verify", token, constraints, now_ns=now_ns)  # type: ignore[no-any-return]


def verify(alg: str, token: str, key: str) -> bool:
    return call(f"io.jwt.verify_{alg.lower()}", token, key)  # type: ignore[no-any-return]


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw(header: str, payload: str, signature: str = "") -> str:
    """A token from JSON texts as written, unsigned unless a signature is given."""
    return f"{b64(header)}.{b64(payload)}.{signature}"


def pem(public_key: Any) -> str:
    return public_key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def jwk(public_key: Any, **extra: str) -> dict[str, Any]:
    algo = RSAAlgorithm if isinstance(public_key, rsa.RSAPublicKey) else ECAlgorithm
    return {**json.loads(algo.to_jwk(public_key)), **extra}


# ---------------------------------------------------------------- keys (generated once)


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {alg: ec.generate_private_key(curve()) for alg, curve in CURVES.items()}


def signer(alg: str, rsa_keys: list[Any], ec_keys: dict[str, Any]) -> tuple[Any, Any]:
    """(private key for PyJWT, the matching verification key as a PEM string)."""
    if alg.startswith("HS"):
        return SECRET, SECRET
    key = ec_keys[alg] if alg.startswith("ES") else rsa_keys[0]
    return key, pem(key.public_key())


ALGS = [f"{f}{n}" for f in ("HS", "RS", "PS", "ES") for n in (256, 384, 512)]


# ---------------------------------------------------------------- io.jwt.decode


def test_decode_returns_header_payload_and_the_signature_as_hex() -> None:
    token = pyjwt.encode({"sub": "alice", "n": 1.5}, SECRET, algorithm="HS256")
    header, payload, sig = call("io.jwt.decode", token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert payload == {"sub": "alice", "n": 1.5}
    assert sig == base64.urlsafe_b64decode(token.split(".")[2] + "=").hex()


def test_decode_reads_an_unsigned_token_and_padded_sections() -> None:
    token = pyjwt.encode({"a": 1}, None, algorithm="none")
    assert call("io.jwt.decode", token) == [{"alg": "none", "typ": "JWT"}, {"a": 1}, ""]
    h, p = base64.urlsafe_b64encode(b'{"alg":"none"}').decode(), b64('{"b":2}')
    assert call("io.jwt.decode", f"{h}.{p}.")[1] == {"b": 2}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("nodots", "no period separators"),
        ("a.b", "3 sections, found 2"),
        ("a.b.c.d.e", "3 sections, found 5"),
        (b64("{}") + "!." + b64("{}") + ".", "JWT header had invalid encoding"),
        (b64("{}") + "." + b64("{}") + "aa.", "JWT payload had invalid encoding"),
        (b64("{}") + "." + b64("{}") + ".a+b", "JWT signature had invalid encoding"),
        (raw("[]", "{}"), "JWT header is not a JSON object"),
        (raw("{}", "not json"), "JWT payload is not valid JSON"),
        (raw("{}", '{"a": NaN}'), "not valid JSON"),
        (raw("{}", '{"a": 1e999}'), "not valid JSON"),
        (raw("{}", "[" * 10 + "]" * 10), "not a JSON object"),
        (raw("{}", '{"a":' + "[" * 100 + "]" * 100 + "}"), "nested deeper"),
        (raw("{}", '{"a":' + "[" * 5000 + "]" * 5000 + "}"), "nested"),
    ],
)
def test_decode_refuses_a_malformed_token_in_one_line(token: str, message: str) -> None:
    with pytest.raises(BuiltinError, match=message) as err:
        call("io.jwt.decode", token)
    assert str(err.value).startswith("io.jwt.decode: ") and "\n" not in str(err.value)


def test_payload_bytes_are_read_as_go_reads_them() -> None:
    invalid_utf8 = b'{"a":"' + bytes([255]) + b'"}'
    assert call("io.jwt.decode", b64("{}") + "." + b64(invalid_utf8) + ".")[1] == {"a": "\ufffd"}
    utf16 = '{"a":1}'.encode("utf-16")  # Python's json.loads would guess this; Go does not
    with pytest.raises(BuiltinError, match="JWT payload is not valid JSON"):
        call("io.jwt.decode", b64("{}") + "." + b64(utf16) + ".")


def test_decode_refuses_a_non_string_and_a_huge_token() -> None:
    with pytest.raises(BuiltinError, match="operand 1 must be string but got number"):
        call("io.jwt.decode", 1)
    huge = pyjwt.encode({"pad": "x" * 70_000}, SECRET, algorithm="HS256")
    for name, args in [
        ("io.jwt.decode", (huge,)),
        ("io.jwt.decode_verify", (huge, {"secret": SECRET})),
        ("io.jwt.verify_hs256", (huge, SECRET)),
    ]:
        with pytest.raises(BuiltinError, match="token longer than 65536 bytes"):
            call(name, *args)


# ---------------------------------------------------------------- every algorithm


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_verifies_what_pyjwt_signs(
    alg: str, rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    private, public = signer(alg, rsa_keys, ec_keys)
    token = pyjwt.encode({"sub": "alice"}, private, algorithm=alg)
    assert verify(alg, token, public) is True
    constraint = {"secret": public} if alg.startswith("HS") else {"cert": public}
    assert decode_verify(token, constraint) == [True, {"alg": alg, "typ": "JWT"}, {"sub": "alice"}]
    if not alg.startswith("HS"):  # the same key as a JWK and inside a JWK set
        key = jwk(private.public_key(), alg=alg)
        assert verify(alg, token, json.dumps(key)) is True
        assert decode_verify(token, {"cert": json.dumps({"keys": [key]})})[0] is True


@pytest.mark.parametrize("alg", ALGS)
def test_a_tampered_payload_or_header_never_verifies(
    alg: str, rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    private, public = signer(alg, rsa_keys, ec_keys)
    token = pyjwt.encode({"role": "user"}, private, algorithm=alg)
    h, _, s = token.split(".")
    forged = f"{h}.{b64(json.dumps({'role': 'admin'}))}.{s}"
    other = {"HS": "HS512", "RS": "PS256", "PS": "RS256", "ES": "ES256"}[alg[:2]]
    other = "HS256" if other == alg else other
    relabelled = f"{b64(json.dumps({'alg': other, 'typ': 'JWT'}))}.{token.split('.', 1)[1]}"
    constraint = {"secret": public} if alg.startswith("HS") else {"cert": public}
    for bad in (forged, relabelled):
        assert verify(alg, bad, public) is False
        assert decode_verify(bad, constraint) == [False, {}, {}]


@pytest.mark.parametrize("alg", ALGS)
def test_the_wrong_key_never_verifies(
    alg: str, rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    private, _ = signer(alg, rsa_keys, ec_keys)
    token = pyjwt.encode({"sub": "a"}, private, algorithm=alg)
    if alg.startswith("HS"):
        assert verify(alg, token, SECRET + "!") is False
        assert decode_verify(token, {"secret": SECRET + "!"})[0] is False
        return
    wrong = rsa_keys[1] if alg[:2] in ("RS", "PS") else ec.generate_private_key(CURVES[alg]())
    assert verify(alg, token, pem(wrong.public_key())) is False
    assert decode_verify(token, {"cert": pem(wrong.public_key())})[0] is False


def test_verify_uses_the_builtins_own_algorithm(rsa_keys: list[Any]) -> None:
    token = pyjwt.encode({"a": 1}, rsa_keys[0], algorithm="RS256")
    public = pem(rsa_keys[0].public_key())
    assert verify("RS256", token, public) is True
    assert verify("RS384", token, public) is False
    assert verify("PS256", token, public) is False
    assert verify("HS256", token, public) is False


def test_verify_hs_reads_only_the_signature_as_opa_does() -> None:
    token = pyjwt.encode({"a": 1}, SECRET, algorithm="HS256")
    assert verify("HS384", token, SECRET) is False
    # OPA's verify_hs* never decodes the header: an HS256 MAC over any header verifies
    header = "not-even-json"
    mac = hmac.new(SECRET.encode(), f"{header}.{b64('{}')}".encode(), hashlib.sha256).digest()
    assert verify("HS256", f"{header}.{b64('{}')}.{b64(mac)}", SECRET) is True


def test_an_es_key_on_another_curve_never_verifies(ec_keys: dict[str, Any]) -> None:
    token = pyjwt.encode({"a": 1}, ec_keys["ES384"], algorithm="ES384")
    assert verify("ES256", token, pem(ec_keys["ES384"].public_key())) is False
    assert verify("ES384", token, pem(ec_keys["ES256"].public_key())) is False


def test_a_certificate_verifies_like_its_public_key(rsa_keys: list[Any]) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa_keys[0]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    token = pyjwt.encode({"a": 1}, key, algorithm="RS256")
    assert verify("RS256", token, cert_pem) is True
    assert decode_verify(token, {"cert": cert_pem})[0] is True
    with pytest.raises(BuiltinError, match="exactly one PEM block"):
        verify("RS256", token, cert_pem + cert_pem)
    with pytest.raises(BuiltinError, match="failed to parse a PEM certificate"):
        verify("RS256", token, cert_pem.replace("MII", "MIJ", 1))
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(BuiltinError, match="failed to extract a key"):
        verify("RS256", token, private_pem)


# ---------------------------------------------------------------- the attacks


def test_alg_none_never_verifies() -> None:
    token = pyjwt.encode({"sub": "admin"}, None, algorithm="none")
    assert decode_verify(token, {"secret": SECRET}) == [False, {}, {}]
    assert decode_verify(token, {"secret": SECRET, "alg": "none"}) == [False, {}, {}]
    assert verify("HS256", token, SECRET) is False
    for alg in ("None", "NONE", "", "HS257"):
        h = b64(json.dumps({"alg": alg}))
        assert decode_verify(f"{h}.{b64('{}')}.", {"secret": SECRET})[0] is False


def test_an_hs_token_signed_with_the_public_key_never_verifies_against_it(
    rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    for public in (pem(rsa_keys[0].public_key()), pem(ec_keys["ES256"].public_key())):
        # the classic confusion: the verifier's public key used as an HMAC secret
        h, p = b64('{"alg":"HS256","typ":"JWT"}'), b64('{"role":"admin"}')
        mac = hmac.new(public.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
        token = f"{h}.{p}.{b64(mac)}"
        assert decode_verify(token, {"cert": public}) == [False, {}, {}]
        assert verify("RS256", token, public) is False
        assert verify("ES256", token, public) is False
        for key in (jwk(rsa_keys[0].public_key()), jwk(ec_keys["ES256"].public_key())):
            assert decode_verify(token, {"cert": json.dumps(key)})[0] is False


def test_an_asymmetric_token_never_verifies_against_a_secret(rsa_keys: list[Any]) -> None:
    token = pyjwt.encode({"a": 1}, rsa_keys[0], algorithm="RS256")
    assert decode_verify(token, {"secret": pem(rsa_keys[0].public_key())})[0] is False


def test_an_oct_jwk_verifies_hs_tokens_only() -> None:
    key = {"kty": "oct", "k": b64(SECRET)}
    token = pyjwt.encode({"a": 1}, SECRET, algorithm="HS256")
    assert decode_verify(token, {"cert": json.dumps(key)})[0] is True
    assert decode_verify(token, {"cert": json.dumps({**key, "alg": "HS384"})})[0] is False
    assert decode_verify(token, {"cert": json.dumps({**key, "alg": "RS256"})})[0] is False


def test_a_jwk_whose_alg_disagrees_never_verifies_its_use_does_not_matter(
    rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    token = pyjwt.encode({"a": 1}, rsa_keys[0], algorithm="RS256")
    public = rsa_keys[0].public_key()
    assert verify("RS256", token, json.dumps(jwk(public, alg="RS256"))) is True
    for extra in ({"alg": "ES256"}, {"alg": "HS256"}, {"alg": "RS384"}):
        key = json.dumps(jwk(public, **extra))
        assert verify("RS256", token, key) is False
        assert decode_verify(token, {"cert": key})[0] is False
    # As OPA: a JWKS may mark a signing key "enc"; it verifies all the same.
    assert decode_verify(token, {"cert": json.dumps(jwk(public, use="enc"))})[0] is True
    es = pyjwt.encode({"a": 1}, ec_keys["ES256"], algorithm="ES256")
    mislabelled = json.dumps(jwk(ec_keys["ES256"].public_key(), alg="ES384"))
    assert verify("ES256", es, mislabelled) is False


def test_a_jwks_selects_the_key_by_kid(rsa_keys: list[Any], ec_keys: dict[str, Any]) -> None:
    keys = [jwk(k.public_key(), kid=f"k{i}", alg="RS256") for i, k in enumerate(rsa_keys)]
    keys.append(jwk(ec_keys["ES256"].public_key(), kid="e", alg="ES256"))
    keys.append({"kty": "OKP", "crv": "Ed25519", "x": b64(b"\0" * 32), "kid": "ed"})
    jwks = json.dumps({"keys": keys})

    def token(key: Any, alg: str = "RS256", kid: str | None = None) -> str:
        return pyjwt.encode({"a": 1}, key, algorithm=alg, headers={"kid": kid} if kid else None)

    assert decode_verify(token(rsa_keys[1], kid="k1"), {"cert": jwks})[0] is True
    assert verify("RS256", token(rsa_keys[2], kid="k2"), jwks) is True
    assert decode_verify(token(ec_keys["ES256"], "ES256", "e"), {"cert": jwks})[0] is True
    # a kid that names a key pins that key: another key's signature does not verify
    assert decode_verify(token(rsa_keys[0], kid="k1"), {"cert": jwks})[0] is False
    assert verify("RS256", token(rsa_keys[0], kid="k1"), jwks) is False
    # no kid, or one that names no key: every key of the token's alg is tried
    assert decode_verify(token(rsa_keys[2]), {"cert": jwks})[0] is True
    assert decode_verify(token(rsa_keys[2], kid="gone"), {"cert": jwks})[0] is True
    # the kid of a key of another alg: no key verifies
    assert decode_verify(token(rsa_keys[0], kid="e"), {"cert": jwks})[0] is False


def test_oversized_key_sets_and_keys_are_refused(rsa_keys: list[Any]) -> None:
    token = pyjwt.encode({"a": 1}, rsa_keys[0], algorithm="RS256")
    one = jwk(rsa_keys[0].public_key())
    with pytest.raises(BuiltinError, match="JWK set of 65 keys"):
        verify("RS256", token, json.dumps({"keys": [one] * 65}))
    with pytest.raises(BuiltinError, match="key set longer than 262144 bytes"):
        decode_verify(token, {"cert": json.dumps({"keys": [one], "pad": "x" * 262_144})})
    big_n = (1 << 8199) | 1
    big = {"kty": "RSA", "n": b64(big_n.to_bytes(1025, "big")), "e": "AQAB"}
    with pytest.raises(BuiltinError, match="RSA key of 8200 bits"):
        verify("RS256", token, json.dumps(big))
    big_pem = pem(rsa.RSAPublicNumbers(65537, big_n).public_key())
    with pytest.raises(BuiltinError, match=r"io\.jwt\.decode_verify: RSA key of 8200 bits"):
        decode_verify(token, {"cert": big_pem})
    huge_e = {**one, "e": b64((3 << 70).to_bytes(9, "big"))}
    with pytest.raises(BuiltinError, match="exponent over 64 bits"):
        verify("RS256", token, json.dumps(huge_e))


@pytest.mark.parametrize(
    ("cert", "message"),
    [
        ("not json", "JWK is not valid JSON"),
        ("[]", "JWK is not a JSON object"),
        ('{"keys": {}}', "keys must be an array"),
        ('{"keys": [1]}', "a JWK must be a JSON object"),
        ('{"kty": "XYZ"}', "unsupported JWK key type"),
        ('{"kty": "RSA", "e": "AQAB"}', "JWK field n missing"),
        ('{"kty": "RSA", "n": "!!", "e": "AQAB"}', "JWK field n had invalid encoding"),
        ('{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}', "malformed EC JWK"),
        ('{"kty": "EC", "crv": "secp256k1", "x": "AQ", "y": "AQ"}', "unsupported JWK curve"),
        ('{"kty": "RSA", "kid": 7, "n": "AQ", "e": "AQAB"}', "JWK field kid must be a string"),
    ],
)
def test_a_malformed_key_is_an_error(cert: str, message: str) -> None:
    token = pyjwt.encode({"a": 1}, SECRET, algorithm="HS256")
    with pytest.raises(BuiltinError, match=message):
        verify("RS256", token, cert)
    with pytest.raises(BuiltinError, match=message):
        decode_verify(token, {"cert": cert})


def test_an_unknown_critical_header_never_verifies() -> None:
    headers = {"crit": ["exp"], "exp": 1}
    token = pyjwt.encode({"a": 1}, SECRET, algorithm="HS256", headers=headers)
    assert decode_verify(token, {"secret": SECRET})[0] is False
    ok = pyjwt.encode({"a": 1}, SECRET, algorithm="HS256", headers={"crit": ["kid"], "kid": "x"})
    assert decode_verify(ok, {"secret": SECRET})[0] is True
    bad = raw('{"alg":"HS256","kid":5}', "{}", "AA")
    with pytest.raises(BuiltinError, match="kid must be a string"):
        decode_verify(bad, {"secret": SECRET})


def test_a_malformed_signature_is_an_error_but_a_short_one_is_false(ec_keys: Any) -> None:
    token = pyjwt.encode({"a": 1}, ec_keys["ES256"], algorithm="ES256")
    head, _, sig = token.rpartition(".")
    with pytest.raises(BuiltinError, match="JWT signature had invalid encoding"):
        decode_verify(f"{head}.{sig[:-1]}*", {"cert": pem(ec_keys["ES256"].public_key())})
    assert verify("ES256", f"{head}.{sig[:-4]}", pem(ec_keys["ES256"].public_key())) is False


# ---------------------------------------------------------------- decode_verify's claims


def hs(claims: dict[str, Any], **headers: Any) -> str:
    return pyjwt.encode(claims, SECRET, algorithm="HS256", headers=headers or None)


def test_exp_and_nbf_against_the_evaluations_clock_and_the_time_constraint() -> None:
    c = {"secret": SECRET}
    assert decode_verify(hs({"exp": NOW_S + 1}), c)[0] is True
    assert decode_verify(hs({"exp": NOW_S}), c)[0] is False  # expired at its exp second
    assert decode_verify(hs({"exp": NOW_S}), c, now_ns=NOW_NS - 1)[0] is True
    assert decode_verify(hs({"nbf": NOW_S}), c)[0] is True
    assert decode_verify(hs({"nbf": NOW_S + 0.5}), c)[0] is False  # not yet valid
    assert decode_verify(hs({"exp": NOW_S - 10}), {**c, "time": NOW_NS - 20 * 10**9})[0] is True
    assert decode_verify(hs({"nbf": NOW_S + 10}), {**c, "time": (NOW_S + 10) * 1e9})[0] is True
    real = time.time_ns()  # without a fixed context, the builtin reads the real clock
    fresh = hs({"exp": real // 10**9 + 3600})
    assert REGISTRY["io.jwt.decode_verify"].fn(EvalContext(), fresh, c)[0] is True
    with pytest.raises(BuiltinError, match="exp value must be a number"):
        decode_verify(hs({"exp": "tomorrow"}), c)
    with pytest.raises(BuiltinError, match="nbf value must be a number"):
        decode_verify(hs({"nbf": True}), c)


def test_issuer_and_audience() -> None:
    c = {"secret": SECRET}
    assert decode_verify(hs({"iss": "a"}), {**c, "iss": "a"})[0] is True
    assert decode_verify(hs({"iss": "b"}), {**c, "iss": "a"})[0] is False
    assert decode_verify(hs({}), {**c, "iss": "a"})[0] is False
    assert decode_verify(hs({"iss": "b"}), c)[0] is True  # no iss constraint: any issuer
    assert decode_verify(hs({"aud": "api"}), {**c, "aud": "api"})[0] is True
    assert decode_verify(hs({"aud": ["x", "api"]}), {**c, "aud": "api"})[0] is True
    assert decode_verify(hs({"aud": ["x", "y"]}), {**c, "aud": "api"})[0] is False
    assert decode_verify(hs({"aud": "web"}), {**c, "aud": "api"})[0] is False
    # as OPA: a token with an audience needs an aud constraint, and the other way round
    assert decode_verify(hs({"aud": "api"}), c)[0] is False
    assert decode_verify(hs({}), {**c, "aud": "api"})[0] is False


def test_the_alg_constraint() -> None:
    assert decode_verify(hs({}), {"secret": SECRET, "alg": "HS256"})[0] is True
    assert decode_verify(hs({}), {"secret": SECRET, "alg": "HS512"})[0] is False


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({}, "no key constraint"),
        ({"secret": ""}, "no key constraint"),
        ({"secret": "s", "cert": '{"kty":"oct","k":"cw"}'}, "duplicate key constraints"),
        ({"secret": "s", "leeway": 1}, "unknown token validation constraint: leeway"),
        ({"secret": 1}, "secret constraint must be a string"),
        ({"secret": "s", "time": "now"}, "time constraint must be a number"),
        ({"cert": 1}, "operand 2 must be string"),
    ],
)
def test_bad_constraints_are_errors(constraints: dict[str, Any], message: str) -> None:
    with pytest.raises(BuiltinError, match=message):
        decode_verify(hs({}), constraints)
    with pytest.raises(BuiltinError, match="operand 2 must be object"):
        call("io.jwt.decode_verify", hs({}), "secret")


def test_a_nested_token_verifies_layer_by_layer() -> None:
    inner = hs({"sub": "alice"})
    outer = pyjwt.api_jws.PyJWS().encode(
        inner.encode(), SECRET, algorithm="HS384", headers={"cty": "JWT"}
    )
    ok, header, payload = decode_verify(outer, {"secret": SECRET})
    assert (ok, header, payload) == (True, {"alg": "HS256", "typ": "JWT"}, {"sub": "alice"})
    tampered = inner[:-2] + ("AA" if not inner.endswith("AA") else "BB")
    outer_bad = pyjwt.api_jws.PyJWS().encode(
        tampered.encode(), SECRET, algorithm="HS384", headers={"cty": "JWT"}
    )
    assert decode_verify(outer_bad, {"secret": SECRET})[0] is False
    assert decode_verify(outer, {"secret": SECRET, "alg": "HS384"})[0] is False  # each layer


# ---------------------------------------------------------------- encode_sign


def oct_key(secret: str = SECRET) -> dict[str, str]:
    return {"kty": "oct", "k": b64(secret)}


def test_encode_sign_hs256_matches_pyjwt_byte_for_byte() -> None:
    token = call("io.jwt.encode_sign", {"typ": "JWT", "alg": "HS256"}, {"sub": "x"}, oct_key())
    assert token == pyjwt.encode({"sub": "x"}, SECRET, algorithm="HS256")


def test_encode_sign_serialises_as_go_does() -> None:
    payload = {"b": "<&>\u2028", "a": [1, 2.5, None, True]}
    token = call("io.jwt.encode_sign", {"alg": "HS256"}, payload, oct_key())
    raw = base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    assert raw == '{"a":[1,2.5,null,true],"b":"\\u003c\\u0026\\u003e\\u2028"}'
    assert call("io.jwt.decode", token)[1] == payload


@pytest.mark.parametrize("alg", ALGS)
def test_encode_sign_with_every_algorithm_verifies_in_pyjwt_and_here(
    alg: str, rsa_keys: list[Any], ec_keys: dict[str, Any]
) -> None:
    private, public = signer(alg, rsa_keys, ec_keys)
    algo = RSAAlgorithm if alg[0] in "RP" else ECAlgorithm
    key = oct_key() if alg.startswith("HS") else json.loads(algo.to_jwk(private))
    token = call("io.jwt.encode_sign", {"alg": alg}, {"sub": "alice"}, key)
    verify_key = private if alg.startswith("HS") else private.public_key()
    assert pyjwt.decode(token, verify_key, algorithms=[alg]) == {"sub": "alice"}
    assert verify(alg, token, public) is True
    raw = call("io.jwt.encode_sign_raw", json.dumps({"alg": alg}), '{"x": 1}', json.dumps(key))
    assert raw.split(".")[1] == b64('{"x": 1}')  # the texts are signed byte for byte
    assert pyjwt.decode(raw, verify_key, algorithms=[alg]) == {"x": 1}


def test_encode_sign_refuses_what_it_cannot_sign(rsa_keys: list[Any]) -> None:
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_keys[0]))
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"alg": "none"}, oct_key(), "unknown signature algorithm 'none'"),
        ({}, oct_key(), "unknown signature algorithm ''"),
        ({"alg": "RS256"}, oct_key(), "JWK key type 'oct' cannot sign RS256"),
        ({"alg": "HS256"}, rsa_jwk, "JWK key type 'RSA' cannot sign HS256"),
        ({"alg": "ES256"}, rsa_jwk, "JWK key type 'RSA' cannot sign ES256"),
        ({"alg": "HS256"}, {**oct_key(), "alg": "HS512"}, "JWK alg HS512 cannot sign HS256"),
        ({"alg": "RS256"}, {k: v for k, v in rsa_jwk.items() if k != "d"}, "JWK field d"),
    ]
    for headers, key, message in cases:
        with pytest.raises(BuiltinError, match=message):
            call("io.jwt.encode_sign", headers, {}, key)
    with pytest.raises(BuiltinError, match="operand 2 must be object"):
        call("io.jwt.encode_sign", {"alg": "HS256"}, "x", oct_key())
    with pytest.raises(BuiltinError, match="payload is not valid JSON"):
        call("io.jwt.encode_sign_raw", '{"alg":"HS256"}', "not json", json.dumps(oct_key()))
    # a payload that is no JWT may be any text
    plain = call(
        "io.jwt.encode_sign_raw", '{"alg":"HS256","typ":"text"}', "hi", '{"kty":"oct","k":"cw"}'
    )
    assert plain.split(".")[1] == b64("hi")
    with pytest.raises(BuiltinError, match="longer than 65536 bytes"):
        call("io.jwt.encode_sign_raw", '{"alg":"HS256"}', json.dumps("x" * 70_000), "{}")


def test_rsa_jwk_without_primes_still_signs(rsa_keys: list[Any]) -> None:
    full = json.loads(RSAAlgorithm.to_jwk(rsa_keys[0]))
    bare = {k: full[k] for k in ("kty", "n", "e", "d")}
    token = call("io.jwt.encode_sign", {"alg": "RS256"}, {"a": 1}, bare)
    assert pyjwt.decode(token, rsa_keys[0].public_key(), algorithms=["RS256"]) == {"a": 1}


# ---------------------------------------------------------------- properties (PyJWT the oracle)

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False,
    allow_infinity=False) | TEXT,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
    max_leaves=12,
)  # fmt: skip
CLAIMS = st.dictionaries(TEXT.filter(lambda k: k not in ("exp", "nbf", "iss", "aud")), JSON,
                         max_size=5)  # fmt: skip
SECRETS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(CLAIMS, SECRETS, SECRETS, st.sampled_from(["HS256", "HS384", "HS512"]))
def test_any_claims_pyjwt_signs_verify_with_its_secret_only(
    claims: dict[str, Any], secret: str, other: str, alg: str
) -> None:
    token = pyjwt.encode(claims, secret, algorithm=alg)
    assert decode_verify(token, {"secret": secret}) == [True, {"alg": alg, "typ": "JWT"}, claims]
    assert verify(alg, token, secret) is True
    assert call("io.jwt.decode", token)[1] == claims
    if other != secret:
        assert decode_verify(token, {"secret": other}) == [False, {}, {}]
        assert verify(alg, token, other) is False


@settings(max_examples=150, deadline=None)
@given(CLAIMS, SECRETS, st.dictionaries(TEXT.filter(lambda k: k != "alg"), JSON, max_size=3))
def test_decode_of_encode_sign_round_trips(
    claims: dict[str, Any], secret: str, extra: dict[str, Any]
) -> None:
    headers = {**extra, "alg": "HS256"}
    headers.pop("crit", None)
    token = call("io.jwt.encode_sign", headers, claims, oct_key(secret))
    assert call("io.jwt.decode", token)[:2] == [headers, claims]
    assert pyjwt.decode(token, secret.encode(), algorithms=["HS256"],
                        options={"verify_aud": False}) == claims  # fmt: skip


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(CLAIMS)
def test_es_round_trip_verifies_and_is_randomised(
    ec_keys: dict[str, Any], claims: dict[str, Any]
) -> None:
    key = json.loads(ECAlgorithm.to_jwk(ec_keys["ES256"]))
    a = call("io.jwt.encode_sign", {"alg": "ES256"}, claims, key)
    b = call("io.jwt.encode_sign", {"alg": "ES256"}, claims, key)
    assert a != b
    public = pem(ec_keys["ES256"].public_key())
    assert decode_verify(a, {"cert": public})[2] == claims
    assert pyjwt.decode(b, ec_keys["ES256"].public_key(), algorithms=["ES256"]) == claims


# ---------------------------------------------------------------- through the compiler

PRIMER = """package envoy.authz

import input.attributes.request.http

default allow := false

allow if {
    is_token_valid
    action_allowed
}

is_token_valid if {
    token.valid
    now := time.now_ns() / 1000000000
    token.payload.nbf <= now
    now < token.payload.exp
}

action_allowed if {
    http.method == "GET"
    token.payload.role == "guest"
    glob.match("/people/*", ["/"], http.path)
}

action_allowed if {
    http.method == "GET"
    token.payload.role == "admin"
    glob.match("/people/*", ["/"], http.path)
}

action_allowed if {
    http.method == "POST"
    token.payload.role == "admin"
    glob.match("/people", ["/"], http.path)
    lower(input.parsed_body.firstname) != base64url.decode(token.payload.sub)
}

token := {"valid": valid, "payload": payload} if {
    [_, encoded] := split(http.headers.authorization, " ")
    [valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}
"""


def request(token: str, method: str = "GET", path: str = "/people/1") -> dict[str, Any]:
    http = {"method": method, "path": path, "headers": {"authorization": f"Bearer {token}"}}
    return {"attributes": {"request": {"http": http}}, "parsed_body": {"firstname": "bob"}}


class Clock:
    """``time.time_ns`` under a test's control: each read moves it on by ``step`` ns."""

    def __init__(self) -> None:
        self.step = 0
        self.reads: list[int] = []

    def __call__(self) -> int:
        value = NOW_NS + self.step * len(self.reads)
        self.reads.append(value)
        return value


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time_ns", fake)
    return fake


def primer_token(role: str, exp: int = NOW_S + 3600, secret: str = "secret") -> str:
    claims = {"role": role, "sub": b64("alice"), "nbf": NOW_S - 60, "exp": exp}
    return pyjwt.encode(claims, secret, algorithm="HS256")


def test_the_opa_envoy_primer_policy_runs_unchanged(clock: Clock) -> None:
    module = PolicyModule.load(compile_sources({"p.rego": PRIMER}, None, ["envoy/authz/allow"]))
    assert module.meta.pure is False  # the clock: never cached
    assert "io.jwt.decode_verify" in module.meta.host_builtins
    ev = module.evaluator()
    assert ev.evaluate(request(primer_token("guest"))) is True
    assert ev.evaluate(request(primer_token("admin"), "POST", "/people")) is True
    assert ev.evaluate(request(primer_token("guest"), "POST", "/people")) is False
    assert ev.evaluate(request(primer_token("guest", secret="wrong"))) is False
    assert ev.evaluate(request(primer_token("guest", exp=NOW_S))) is False
    assert ev.evaluate(request(primer_token("guest", exp=NOW_S + 1))) is True
    with pytest.raises(PolicyError, match=r"io\.jwt\.decode_verify: encoded JWT had no period"):
        module.evaluator().evaluate(request("garbage"))


def test_decode_verify_and_time_now_ns_see_one_instant_per_evaluation(clock: Clock) -> None:
    clock.step = 2 * 10**9  # two reads in one evaluation would disagree by two seconds
    src = """package p
x := {"valid": valid, "expired_by_clock": expired, "now": time.now_ns()} if {
    [valid, _, _] := io.jwt.decode_verify(input.token, {"secret": "s"})
    [_, payload, _] := io.jwt.decode(input.token)
    expired := time.now_ns() >= payload.exp * 1000000000
}
"""
    module = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"]))
    ev = module.evaluator()
    # exp exactly at the evaluation's instant: expired for both, whichever reads first
    at = pyjwt.encode({"exp": NOW_S}, "s", algorithm="HS256")
    assert ev.evaluate({"token": at}) == {"valid": False, "expired_by_clock": True, "now": NOW_NS}
    # the next evaluation reads the clock once more (two seconds on): exp one second past it
    after = pyjwt.encode({"exp": NOW_S + 3}, "s", algorithm="HS256")
    result = ev.evaluate({"token": after})
    assert result["now"] == NOW_NS + 2 * 10**9
    assert result["valid"] is True and result["expired_by_clock"] is False
    assert len(clock.reads) == 2  # one read per evaluation


def test_a_huge_token_denies_through_the_compiler() -> None:
    src = 'package p\nx := io.jwt.decode_verify(input.t, {"secret": "s"})\n'
    module = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"]))
    huge = pyjwt.encode({"pad": "x" * 70_000}, "s", algorithm="HS256")
    with pytest.raises(PolicyError, match="token longer than 65536 bytes"):
        module.evaluator().evaluate({"t": huge})


def test_opa_test_style_minting_and_verifying_in_one_policy() -> None:
    src = """package p
key := {"kty": "oct", "k": "czNjcmV0"}
token := io.jwt.encode_sign({"alg": "HS256", "typ": "JWT"}, {"sub": input.sub}, key)
x := [io.jwt.verify_hs256(token, "s3cret"), io.jwt.decode(token)[1], token]
"""
    module = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"]))
    ok, payload, token = module.evaluator().evaluate({"sub": "alice"})
    assert ok is True and payload == {"sub": "alice"}
    assert token == pyjwt.encode({"sub": "alice"}, "s3cret", algorithm="HS256")


def test_a_verified_token_is_remembered_but_its_claims_are_checked_on_every_call() -> None:
    from policies.runtime.host.jwt import _VERIFIED

    token = hs({"exp": NOW_S + 60, "iss": "a"})
    c = {"secret": SECRET}
    assert decode_verify(token, c)[0] is True
    assert decode_verify(token, c)[0] is True  # from the cache
    assert decode_verify(token, c, now_ns=NOW_NS + 61 * 10**9)[0] is False  # expired since
    assert decode_verify(token, {**c, "iss": "b"})[0] is False
    assert decode_verify(token, {"secret": SECRET + "x"})[0] is False  # another key: no hit
    assert decode_verify(token, {**c, "alg": "HS384"})[0] is False
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert decode_verify(tampered, c)[0] is False
    assert len(_VERIFIED) <= _VERIFIED.max_entries and _VERIFIED.bytes <= _VERIFIED.max_bytes


def test_eddsa_tokens_verify_with_an_ed25519_jwk_or_pem_and_sign() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    token = pyjwt.encode({"sub": "x"}, private, algorithm="EdDSA")
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    okp = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw_public)}
    assert decode_verify(token, {"cert": json.dumps(okp)}) == [
        True,
        {"alg": "EdDSA", "typ": "JWT"},
        {"sub": "x"},
    ]
    assert decode_verify(token, {"cert": pem(public)})[0] is True
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    assert decode_verify(token, {"cert": pem(other)})[0] is False
    assert decode_verify(token, {"cert": json.dumps({**okp, "crv": "X25519"})})[0] is False
    assert decode_verify(token, {"secret": "x"})[0] is False  # no HMAC on an EdDSA token
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signed = call("io.jwt.encode_sign", {"alg": "EdDSA"}, {"a": 1}, {**okp, "d": b64(raw_private)})
    assert pyjwt.decode(signed, public, algorithms=["EdDSA"]) == {"a": 1}
    assert "io.jwt.verify_eddsa" not in REGISTRY  # OPA has no such builtin


def test_a_jwe_is_refused_not_read_as_a_signed_token() -> None:
    token = raw('{"alg": "HS256", "enc": "A128GCM"}', '{"a": 1}', "c2ln")
    for fn, args in [("io.jwt.decode", ()), ("io.jwt.decode_verify", ({"secret": SECRET},))]:
        with pytest.raises(BuiltinError, match="JWT is a JWE object, which is not supported"):
            call(fn, token, *args)
