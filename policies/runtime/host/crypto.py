"""``crypto.*`` digests and HMACs, as OPA has them (regorus has none): lowercase hex strings.

Only OPA's own names: ``crypto.md5``, ``crypto.sha1``, ``crypto.sha256``,
``crypto.hmac.{md5,sha1,sha256,sha512}`` and ``crypto.hmac.equal``. Strings are
hashed as their UTF-8 bytes, as Go does. ``crypto.hmac.equal`` compares in
constant time, so a policy checking a request's MAC leaks nothing through timing.
The work is linear in the argument, which the evaluator's argument budget bounds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final

from policies.runtime.host.base import builtin, want

__all__: list[str] = []

_DIGESTS: Final[dict[str, Callable[..., Any]]] = {
    "md5": hashlib.md5,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}
_HMACS: Final[dict[str, Callable[..., Any]]] = {**_DIGESTS, "sha512": hashlib.sha512}


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def _digest(name: str, algorithm: Callable[..., Any]) -> Callable[[Any], str]:
    fn = f"crypto.{name}"

    def digest(x: Any) -> str:
        return algorithm(_utf8(want(fn, 1, x, "string"))).hexdigest()  # type: ignore[no-any-return]

    return digest


def _hmac(name: str, algorithm: Callable[..., Any]) -> Callable[[Any, Any], str]:
    fn = f"crypto.hmac.{name}"

    def mac(x: Any, key: Any) -> str:
        message = _utf8(want(fn, 1, x, "string"))
        secret = _utf8(want(fn, 2, key, "string"))
        return hmac.new(secret, message, algorithm).hexdigest()

    return mac


for _name, _algorithm in _DIGESTS.items():
    builtin(f"crypto.{_name}")(_digest(_name, _algorithm))

for _name, _algorithm in _HMACS.items():
    builtin(f"crypto.hmac.{_name}")(_hmac(_name, _algorithm))


@builtin("crypto.hmac.equal")
def hmac_equal(mac1: Any, mac2: Any) -> bool:
    """Whether two MACs are equal, compared in constant time (of their length)."""
    a = _utf8(want("crypto.hmac.equal", 1, mac1, "string"))
    b = _utf8(want("crypto.hmac.equal", 2, mac2, "string"))
    return hmac.compare_digest(a, b)
