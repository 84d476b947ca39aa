"""``io.jwt.*``: JSON Web Tokens decoded, verified and signed by the host, with OPA's semantics.

regorus has none of these, so OPA's documented behaviour is the reference and
``cryptography`` does the signature work (the tests check it against PyJWT).

What an attacker controls here is the token, and often the key set too (a
policy may read either from the request), so every path is bounded and closed:

- a token over ``MAX_TOKEN`` bytes, a key set over ``MAX_KEYSET`` bytes or
  ``MAX_KEYS`` keys, an RSA key over ``MAX_RSA_BITS`` bits (or with a public
  exponent over 64 bits: a slow verification) is refused with one line;
- ``alg: none`` and any algorithm outside HS/RS/PS/ES 256/384/512 never verify;
- the algorithm picks the key type: an HS token never verifies against an RSA
  or EC key (the classic confusion: the public key's PEM used as an HMAC
  secret), an RS/PS/ES token never against a secret; ES is tied to its curve;
- a JWK whose ``alg`` disagrees with its ``kty``, with the token's ``alg`` or
  with the ``verify_*`` builtin called never verifies (its ``use`` is not read,
  as in OPA: key sets mark signing keys ``enc`` too); an ``OKP`` key other than
  Ed25519 (X25519 agrees keys) is skipped; EdDSA is Ed25519;
- HMACs are compared in constant time.

Where OPA is looser than RFC 7518 in ways that only ever turn a false into a
true for odd signers (an ES signature of the wrong length, a P-384 key under
ES256), this is stricter; everything else follows OPA (``verify_hs*`` reads
no header, PSS salts of any length verify, a token with ``aud`` needs an
``aud`` constraint).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from policies.core.bounded import ENTRY_OVERHEAD, ByteLRU, sizeof
from policies.runtime.host.base import BuiltinError, EvalContext, builtin, want
from policies.runtime.values import to_json_compatible

__all__ = ["MAX_JSON_DEPTH", "MAX_KEYS", "MAX_KEYSET", "MAX_RSA_BITS", "MAX_TOKEN"]

MAX_TOKEN: Final = 64 * 1024
MAX_KEYSET: Final = 256 * 1024
MAX_KEYS: Final = 64
MAX_RSA_BITS: Final = 8192
MAX_JSON_DEPTH: Final = 64
_MAX_RSA_EXPONENT_BITS: Final = 64
_MAX_NESTING: Final = 8  # cty: JWT layers decode_verify follows

_HASHES: Final = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HASHLIB: Final = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_CURVES: Final = {"256": ("P-256", ec.SECP256R1), "384": ("P-384", ec.SECP384R1),
                  "512": ("P-521", ec.SECP521R1)}  # fmt: skip
_CURVE_BYTES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}
# The io.jwt.verify_* builtins, one per algorithm (OPA has none for EdDSA).
VERIFY_ALGORITHMS: Final = frozenset(
    f"{f}{n}" for f in ("HS", "RS", "PS", "ES") for n in _HASHES
)
ALGORITHMS: Final = VERIFY_ALGORITHMS | {"EdDSA"}  # what decode_verify and encode_sign take
_KTY: Final = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_HEADER_FIELDS: Final = frozenset({"alg", "kid", "typ", "cty", "crit"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


# ---------------------------------------------------------------- encodings


def _b64url(text: str, what: str) -> bytes:
    """base64url as OPA decodes it: padding optional (RFC 7515 appendix C), CR/LF ignored."""
    s = text.replace("\r", "").replace("\n", "")
    if _B64URL.fullmatch(s) is None:
        raise BuiltinError(f"{what} had invalid encoding: illegal base64url data")
    if not s.endswith("="):
        if len(s) % 4 == 1:
            raise BuiltinError(f"{what} had invalid encoding: illegal base64url data")
        s += "=" * (-len(s) % 4)
    try:
        return base64.urlsafe_b64decode(s)
    except (binascii.Error, ValueError):
        raise BuiltinError(f"{what} had invalid encoding: illegal base64url data") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} out of range")
    return value


def _json(data: bytes | str, what: str) -> Any:
    """Strict JSON (no NaN, no infinities), nested at most ``MAX_JSON_DEPTH`` levels; bytes
    are UTF-8 with invalid sequences replaced, as Go reads them (no UTF-16 guessing)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise BuiltinError(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise BuiltinError(f"{what} is not valid JSON: {str(err).splitlines()[0]}") from None
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BuiltinError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return value


def _json_object(data: bytes | str, what: str) -> dict[str, Any]:
    value = _json(data, what)
    if not isinstance(value, dict):
        raise BuiltinError(f"{what} is not a JSON object")
    return value


def _go_json(value: Any) -> str:
    """A value as OPA serialises it before signing (Go's ``json.Marshal``): keys sorted,
    compact, HTML characters and line separators escaped, so HS tokens match OPA's."""
    text = json.dumps(
        to_json_compatible(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    header: str  # the three base64url sections as written
    payload: str
    signature: str

    @property
    def signing_input(self) -> bytes:
        return _utf8(f"{self.header}.{self.payload}")

    def decoded_header(self) -> dict[str, Any]:
        header = _json_object(_b64url(self.header, "JWT header"), "JWT header")
        if "enc" in header:  # as OPA: an encrypted token is refused, never read as a JWS
            raise BuiltinError("JWT is a JWE object, which is not supported")
        return header

    def decoded_payload(self) -> bytes:
        return _b64url(self.payload, "JWT payload")

    def decoded_signature(self) -> bytes:
        return _b64url(self.signature, "JWT signature")


def _split(fn: str, value: Any) -> _Token:
    text = want(fn, 1, value, "string")
    if len(text) > MAX_TOKEN or len(_utf8(text)) > MAX_TOKEN:
        raise BuiltinError(f"{fn}: token longer than {MAX_TOKEN} bytes")
    if "." not in text:
        raise BuiltinError(f"{fn}: encoded JWT had no period separators")
    parts = text.split(".")
    if len(parts) != 3:
        raise BuiltinError(f"{fn}: encoded JWT must have 3 sections, found {len(parts)}")
    return _Token(*parts)


@dataclass(frozen=True)
class _Header:
    alg: str
    kid: str
    cty: str
    crit_understood: bool


def _header(header: dict[str, Any]) -> _Header:
    """The fields OPA reads from a header; a field of the wrong type is an error."""
    fields: dict[str, str] = {}
    for name in ("alg", "kid", "typ", "cty"):
        v = header.get(name, "")
        if type(v) is not str:
            raise BuiltinError(f"JWT header field {name} must be a string")
        fields[name] = v
    crit = header.get("crit", [])
    if not isinstance(crit, list) or any(type(c) is not str for c in crit):
        raise BuiltinError("JWT header field crit must be an array of strings")
    understood = all(c in _HEADER_FIELDS for c in crit)
    return _Header(fields["alg"], fields["kid"], fields["cty"], understood)


def _with_context(fn: str, call: Callable[[], Any]) -> Any:
    """Run ``call``, naming ``fn`` in any refusal that does not already."""
    try:
        return call()
    except BuiltinError as err:
        msg = str(err)
        raise BuiltinError(msg if msg.startswith(f"{fn}:") else f"{fn}: {msg}") from None


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class _Key:
    kty: str  # "RSA", "EC", "OKP", "oct"
    key: Any  # RSAPublicKey, EllipticCurvePublicKey, Ed25519PublicKey, or bytes (oct)
    alg: str = ""  # the JWK's alg ("" for a certificate or a JWK without one)
    kid: str = ""
    curve: str = ""  # EC: "P-256" ...; OKP: "Ed25519"
    usable: bool = True  # False: a JWK that can never verify (its alg and kty disagree)

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a signature made with ``alg``."""
        if not self.usable or alg not in ALGORITHMS or (self.alg and self.alg != alg):
            return False
        if self.kty != _KTY[alg[:2]]:
            return False
        if alg == "EdDSA":
            return self.curve == "Ed25519"
        return alg[:2] != "ES" or self.curve == _CURVES[alg[2:]][0]


def _check_rsa(n: int, e: int) -> None:
    if n.bit_length() > MAX_RSA_BITS:
        raise BuiltinError(f"RSA key of {n.bit_length()} bits (at most {MAX_RSA_BITS})")
    if e.bit_length() > _MAX_RSA_EXPONENT_BITS:
        raise BuiltinError(f"RSA public exponent over {_MAX_RSA_EXPONENT_BITS} bits")


def _from_public(key: Any) -> _Key:
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        _check_rsa(numbers.n, numbers.e)
        return _Key("RSA", key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return _Key("EC", key, curve=curve.get(key.curve.name, ""))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return _Key("OKP", key, curve="Ed25519")
    # Ed448, DSA, ...: no JWT algorithm here verifies with it
    return _Key(type(key).__name__, key, usable=False)


def _pem_keys(text: str) -> list[_Key]:
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----", text)
    if len(blocks) != 1:
        raise BuiltinError("expected exactly one PEM block (certificate or public key)")
    data = text.strip().encode("ascii", "replace")
    try:
        if blocks[0] == "CERTIFICATE":
            return [_from_public(x509.load_pem_x509_certificate(data).public_key())]
        if blocks[0] == "PUBLIC KEY":
            return [_from_public(serialization.load_pem_public_key(data))]
    except (ValueError, UnsupportedAlgorithm, TypeError) as err:
        raise BuiltinError(f"failed to parse a PEM {blocks[0].lower()}: {err}") from None
    raise BuiltinError("failed to extract a key from the PEM block " + repr(blocks[0]))


def _b64_int(jwk: dict[str, Any], name: str) -> int:
    v = jwk.get(name)
    if type(v) is not str or not v:
        raise BuiltinError(f"JWK field {name} missing or not a string")
    return int.from_bytes(_b64url(v, f"JWK field {name}"), "big")


def _jwk_str(jwk: dict[str, Any], name: str) -> str:
    v = jwk.get(name, "")
    if type(v) is not str:
        raise BuiltinError(f"JWK field {name} must be a string")
    return v


def _jwk(jwk: Any) -> _Key | None:
    """A public (or symmetric) key from a JWK; None for a key type nobody signs JWTs with."""
    if not isinstance(jwk, dict):
        raise BuiltinError("a JWK must be a JSON object")
    kty, alg, kid, _use = (_jwk_str(jwk, f) for f in ("kty", "alg", "kid", "use"))
    # As OPA, a key's "use" does not stop it verifying (a JWKS marks some "enc").
    usable = not alg or (alg in ALGORITHMS and _KTY[alg[:2]] == kty)
    if kty == "RSA":
        n, e = _b64_int(jwk, "n"), _b64_int(jwk, "e")
        _check_rsa(n, e)
        try:
            key: Any = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as err:
            raise BuiltinError(f"malformed RSA JWK: {err}") from None
        return _Key("RSA", key, alg, kid, usable=usable)
    if kty == "EC":
        crv = _jwk_str(jwk, "crv")
        curves = {name: cls for name, cls in _CURVES.values()}
        if crv not in curves:
            raise BuiltinError(f"unsupported JWK curve {crv!r}")
        x, y = _b64_int(jwk, "x"), _b64_int(jwk, "y")
        try:
            key = ec.EllipticCurvePublicNumbers(x, y, curves[crv]()).public_key()
        except ValueError as err:
            raise BuiltinError(f"malformed EC JWK: {err}") from None
        usable = usable and (not alg or _CURVES[alg[2:]][0] == crv)
        return _Key("EC", key, alg, kid, curve=crv, usable=usable)
    if kty == "oct":
        k = _jwk_str(jwk, "k")
        return _Key("oct", _b64url(k, "JWK field k"), alg, kid, usable=usable)
    if kty == "OKP":
        if _jwk_str(jwk, "crv") != "Ed25519":
            return None  # X25519 keys agree keys, Ed448 is not a JWT algorithm here
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(
                _b64url(_jwk_str(jwk, "x"), "JWK field x")
            )
        except ValueError as err:
            raise BuiltinError(f"malformed OKP JWK: {err}") from None
        return _Key("OKP", key, alg, kid, curve="Ed25519", usable=usable)
    raise BuiltinError(f"unsupported JWK key type {kty!r}")


@functools.lru_cache(maxsize=16)  # at most 4 MiB of key-set text kept
def _keys(text: str) -> tuple[_Key, ...]:
    """The keys a ``cert`` string holds: one PEM certificate or public key, or a JWK or
    JWK set as JSON. Cached: a policy checks every request against the same keys."""
    if len(text) > MAX_KEYSET or len(_utf8(text)) > MAX_KEYSET:
        raise BuiltinError(f"key set longer than {MAX_KEYSET} bytes")
    if "-----BEGIN" in text:
        return tuple(_pem_keys(text))
    doc = _json_object(text, "JWK")
    raw = doc.get("keys") if "keys" in doc else [doc]
    if not isinstance(raw, list):
        raise BuiltinError("JWK set field keys must be an array")
    if len(raw) > MAX_KEYS:
        raise BuiltinError(f"JWK set of {len(raw)} keys (at most {MAX_KEYS})")
    return tuple(k for k in map(_jwk, raw) if k is not None)


def _keys_of(fn: str, position: int, value: Any) -> tuple[_Key, ...]:
    text = want(fn, position, value, "string")
    return _with_context(fn, lambda: _keys(text))


# ---------------------------------------------------------------- signatures


def _verify(alg: str, key: _Key, data: bytes, sig: bytes) -> bool:
    """Whether ``sig`` is ``alg``'s signature of ``data`` under ``key`` (never raises)."""
    if not key.fits(alg):
        return False
    family, bits = alg[:2], alg[2:]
    try:
        if family == "HS":
            return hmac.compare_digest(hmac.new(key.key, data, _HASHLIB[bits]).digest(), sig)
        if alg == "EdDSA":
            key.key.verify(sig, data)
            return True
        h = _HASHES[bits]()
        if family == "RS":
            key.key.verify(sig, data, padding.PKCS1v15(), h)
        elif family == "PS":
            pss = padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.AUTO)
            key.key.verify(sig, data, pss, h)
        else:
            size = _CURVE_BYTES[key.curve]
            if len(sig) != 2 * size:
                return False
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            key.key.verify(encode_dss_signature(r, s), data, ec.ECDSA(h))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _verify_with(keys: tuple[_Key, ...], header: _Header, alg: str, token: _Token) -> bool:
    """OPA's key choice: the key whose ``kid`` the header names, else any key whose own
    ``alg`` (if it has one) is the header's."""
    sig = token.decoded_signature()
    data = token.signing_input
    if header.kid:
        for key in keys:
            if key.kid == header.kid:
                return (not key.alg or key.alg == header.alg) and _verify(alg, key, data, sig)
    for key in keys:
        if key.alg and key.alg != header.alg:
            continue
        if _verify(alg, key, data, sig):
            return True
    return False


def _sign(alg: str, key: Any, data: bytes) -> bytes:
    family, bits = alg[:2], alg[2:]
    if family == "HS":
        return hmac.new(key, data, _HASHLIB[bits]).digest()
    if alg == "EdDSA":
        return key.sign(data)  # type: ignore[no-any-return]
    h = _HASHES[bits]()
    if family == "RS":
        return key.sign(data, padding.PKCS1v15(), h)  # type: ignore[no-any-return]
    if family == "PS":
        pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        return key.sign(data, pss, h)  # type: ignore[no-any-return]
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _private_jwk(jwk: Any, alg: str) -> Any:
    """The signing key a JWK (or the first key of a JWK set) holds, of ``alg``'s type."""
    if isinstance(jwk, dict) and isinstance(jwk.get("keys"), list) and jwk["keys"]:
        jwk = jwk["keys"][0]
    if not isinstance(jwk, dict):
        raise BuiltinError("the key must be a JWK object")
    kty = _jwk_str(jwk, "kty")
    if kty != _KTY[alg[:2]]:
        raise BuiltinError(f"JWK key type {kty!r} cannot sign {alg}")
    key_alg = _jwk_str(jwk, "alg")
    if key_alg and key_alg != alg:
        raise BuiltinError(f"JWK alg {key_alg} cannot sign {alg}")
    try:
        if kty == "oct":
            return _b64url(_jwk_str(jwk, "k"), "JWK field k")
        if kty == "RSA":
            n, e, d = (_b64_int(jwk, f) for f in ("n", "e", "d"))
            _check_rsa(n, e)
            if all(f in jwk for f in ("p", "q")):
                p, q = _b64_int(jwk, "p"), _b64_int(jwk, "q")
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            public = rsa.RSAPublicNumbers(e, n)
            numbers = rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                rsa.rsa_crt_iqmp(p, q), public,
            )  # fmt: skip
            return numbers.private_key()
        if kty == "OKP":
            if _jwk_str(jwk, "crv") != "Ed25519":
                raise BuiltinError(f"JWK curve {jwk.get('crv')!r} cannot sign {alg}")
            d = _b64url(_jwk_str(jwk, "d"), "JWK field d")
            return ed25519.Ed25519PrivateKey.from_private_bytes(d)
        crv_name, curve = _CURVES[alg[2:]]
        if _jwk_str(jwk, "crv") != crv_name:
            raise BuiltinError(f"JWK curve {jwk.get('crv')!r} cannot sign {alg}")
        x, y, d = (_b64_int(jwk, f) for f in ("x", "y", "d"))
        point = ec.EllipticCurvePublicNumbers(x, y, curve())
        return ec.EllipticCurvePrivateNumbers(d, point).private_key()
    except (ValueError, TypeError) as err:
        raise BuiltinError(f"malformed {kty} JWK: {err}") from None


def _encode_sign(headers_json: str, payload_json: str, key: Any) -> str:
    if len(_utf8(headers_json)) + len(_utf8(payload_json)) > MAX_TOKEN:
        raise BuiltinError(f"headers and payload longer than {MAX_TOKEN} bytes")
    fields = _json_object(headers_json, "JWT header")
    header = _header(fields)
    if header.alg not in ALGORITHMS:
        raise BuiltinError(f"unknown signature algorithm {header.alg!r}")
    if fields.get("typ", "") in ("", "JWT"):
        _json(payload_json, "JWT payload")  # type is JWT: the payload must be JSON
    signer = _private_jwk(key, header.alg)
    signing_input = f"{_b64url_encode(_utf8(headers_json))}.{_b64url_encode(_utf8(payload_json))}"
    signature = _sign(header.alg, signer, signing_input.encode("ascii"))
    return f"{signing_input}.{_b64url_encode(signature)}"


# ---------------------------------------------------------------- builtins


@builtin("io.jwt.decode")
def decode(jwt: Any) -> list[Any]:
    """``[header, payload, signature as hex]``, nothing verified; a malformed token is an error."""
    fn = "io.jwt.decode"
    token = _split(fn, jwt)

    def run() -> list[Any]:
        header = token.decoded_header()
        payload = _json_object(token.decoded_payload(), "JWT payload")
        return [header, payload, token.decoded_signature().hex()]

    return _with_context(fn, run)  # type: ignore[no-any-return]


@dataclass
class _Constraints:
    keys: tuple[_Key, ...] | None = None
    secret: str = ""
    alg: str = ""
    iss: str = ""
    aud: str = ""
    time: int | float | None = None


def _constraints(fn: str, value: Any) -> _Constraints:
    want(fn, 2, value, "object")
    c = _Constraints()
    for name, v in value.items():
        if name == "cert":
            c.keys = _keys_of(fn, 2, v)
        elif name in ("secret", "alg", "iss", "aud"):
            if type(v) is not str:
                raise BuiltinError(f"{fn}: {name} constraint must be a string")
            setattr(c, name, v)
        elif name == "time":
            if type(v) is not int and type(v) is not float:
                raise BuiltinError(f"{fn}: time constraint must be a number")
            c.time = v
        else:
            raise BuiltinError(f"{fn}: unknown token validation constraint: {name}")
    if c.keys is not None and c.secret:
        raise BuiltinError(f"{fn}: duplicate key constraints (cert and secret)")
    if c.keys is None and not c.secret:
        raise BuiltinError(f"{fn}: no key constraint (cert or secret)")
    return c


def _claims_hold(fn: str, c: _Constraints, now_ns: int | float, claims: dict[str, Any]) -> bool:
    """OPA's registered-claim checks: exp, nbf against ``now_ns``; iss and aud."""
    for name in ("exp", "nbf"):
        if name in claims:
            v = claims[name]
            if type(v) is not int and type(v) is not float:
                raise BuiltinError(f"{fn}: {name} value must be a number")
            # Exact, as OPA: integers compare as integers, anything else as fractions.
            if type(v) is int and type(now_ns) is int:
                now, at = now_ns, v * 1_000_000_000
            else:
                now, at = Fraction(now_ns), Fraction(v) * 1_000_000_000
            if (name == "exp" and now >= at) or (name == "nbf" and now < at):
                return False
    if c.iss and claims.get("iss") != c.iss:
        return False
    if "aud" in claims:
        aud = claims["aud"]
        if not c.aud:
            return False
        if isinstance(aud, list):
            return c.aud in [a for a in aud if type(a) is str]
        return aud == c.aud
    return not c.aud


# Verified tokens by (token, secret, cert text, alg): what a signature check depends on.
# A sidecar sees the same bearer token on many requests; the claims' time, issuer and
# audience checks still run on every call. Bounded in entries and bytes.
_VERIFIED: ByteLRU[tuple[Any, dict[str, Any]] | bool] = ByteLRU(1024, 8 << 20)


@builtin("io.jwt.decode_verify", pure=False)
def decode_verify(ctx: EvalContext, jwt: Any, constraints: Any) -> list[Any]:
    """``[true, header, payload]`` when the signature and every claim check out, else
    ``[false, {}, {}]``; a malformed token or constraint is an error (as OPA)."""
    fn = "io.jwt.decode_verify"
    unverified: list[Any] = [False, {}, {}]
    token = _split(fn, jwt)
    c = _constraints(fn, constraints)
    cert = constraints.get("cert")
    key = (jwt, c.secret, cert if isinstance(cert, str) else None, c.alg)
    verified = _VERIFIED.get(key)
    if verified is None:
        verified = _with_context(fn, lambda: _verified(fn, token, c)) or False
        _VERIFIED.put(key, verified, sizeof(key) + sizeof(verified) + ENTRY_OVERHEAD)
    if verified is False:
        return unverified
    raw_header, claims = verified  # type: ignore[misc]
    now = c.time if c.time is not None else ctx.now_ns()
    if not _claims_hold(fn, c, now, claims):
        return unverified
    return [True, raw_header, claims]


def _verified(fn: str, token: _Token, c: _Constraints) -> tuple[Any, dict[str, Any]] | None:
    """The header and claims of a token whose signatures (every nested layer's) check
    out under ``c``'s key and algorithm; None when one does not."""
    tok = token
    for _ in range(_MAX_NESTING):
        raw_header = tok.decoded_header()
        header = _header(raw_header)
        if not header.alg or not header.crit_understood:
            return None
        if c.alg and c.alg != header.alg:
            return None
        if c.keys is not None:
            ok = _verify_with(c.keys, header, header.alg, tok)
        else:
            secret = _Key("oct", _utf8(c.secret))
            ok = _verify(header.alg, secret, tok.signing_input, tok.decoded_signature())
        if not ok:
            return None
        payload = tok.decoded_payload()
        if header.cty.upper() != "JWT":
            break
        try:
            tok = _split(fn, payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise BuiltinError("nested JWT is not UTF-8") from None
    else:
        raise BuiltinError(f"JWT nested deeper than {_MAX_NESTING} levels")
    return raw_header, _json_object(payload, "JWT payload")


def _verifier(alg: str) -> Callable[[Any, Any], bool]:
    fn = f"io.jwt.verify_{alg.lower()}"

    if alg.startswith("HS"):

        def verify_hs(jwt: Any, secret: Any) -> bool:
            # as OPA: the signature alone, the header unread
            token = _split(fn, jwt)
            key = want(fn, 2, secret, "string")
            sig = _with_context(fn, token.decoded_signature)
            return _verify(alg, _Key("oct", _utf8(key)), token.signing_input, sig)

        return verify_hs

    def verify(jwt: Any, certificate: Any) -> bool:
        token = _split(fn, jwt)
        keys = _keys_of(fn, 2, certificate)

        def run() -> bool:
            header = _header(token.decoded_header())
            return _verify_with(keys, header, alg, token)

        return _with_context(fn, run)  # type: ignore[no-any-return]

    return verify


for _alg in sorted(VERIFY_ALGORITHMS):
    builtin(f"io.jwt.verify_{_alg.lower()}")(_verifier(_alg))


@builtin("io.jwt.encode_sign", pure=False)
def encode_sign(ctx: EvalContext, headers: Any, payload: Any, key: Any) -> str:
    """A signed token from objects (serialised as OPA does). Impure: ES and PS signatures
    are randomised, so two calls differ and the policy must not be cached."""
    fn = "io.jwt.encode_sign"
    want(fn, 1, headers, "object")
    want(fn, 2, payload, "object")
    want(fn, 3, key, "object")
    return _with_context(  # type: ignore[no-any-return]
        fn, lambda: _encode_sign(_go_json(headers), _go_json(payload), to_json_compatible(key))
    )


@builtin("io.jwt.encode_sign_raw", pure=False)
def encode_sign_raw(ctx: EvalContext, headers: Any, payload: Any, key: Any) -> str:
    """A signed token from JSON texts, used byte for byte as the header and payload."""
    fn = "io.jwt.encode_sign_raw"
    want(fn, 1, headers, "string")
    want(fn, 2, payload, "string")
    want(fn, 3, key, "string")
    if len(key) > MAX_KEYSET:
        raise BuiltinError(f"{fn}: key longer than {MAX_KEYSET} bytes")
    return _with_context(  # type: ignore[no-any-return]
        fn, lambda: _encode_sign(headers, payload, _json(key, "JWK"))
    )
