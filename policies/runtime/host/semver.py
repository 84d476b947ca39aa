"""``semver.compare`` and ``semver.is_valid``: Semantic Versioning 2.0.0, written out.

A version is ``MAJOR.MINOR.PATCH``, each a decimal without leading zeros that
fits 64 bits (the Rust ``semver`` crate's bound, which regorus uses), then an
optional ``-pre.release`` (identifiers of ``[0-9A-Za-z-]``, numeric ones without
leading zeros) and an optional ``+build`` (identifiers of ``[0-9A-Za-z-]``).
Precedence ignores the build; a release outranks its pre-releases; pre-release
identifiers compare numerically when both are numeric, numeric below
alphanumeric, ASCII order otherwise, and a shorter list that is a prefix first.
"""

from __future__ import annotations

import re
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want

__all__ = ["MAX_VERSION"]

MAX_VERSION = 1024
"""Longest version string read; a longer one is invalid."""

_NUM = r"(0|[1-9][0-9]*)"
_IDENT = r"[0-9A-Za-z-]+"
_VERSION = re.compile(
    rf"{_NUM}\.{_NUM}\.{_NUM}(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+({_IDENT}(?:\.{_IDENT})*))?",
    re.ASCII,
)
_U64_MAX = 2**64 - 1

Version = tuple[int, int, int, tuple[str, ...]]


def _parse(text: str) -> Version | None:
    if len(text) > MAX_VERSION:
        return None
    m = _VERSION.fullmatch(text)
    if m is None:
        return None
    core = tuple(int(g) for g in m.groups()[:3])
    if any(n > _U64_MAX for n in core):
        return None
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    if any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre):
        return None
    return core[0], core[1], core[2], pre


def _pre_key(ident: str) -> tuple[int, int | str]:
    return (0, int(ident)) if ident.isdigit() else (1, ident)


def _compare(a: Version, b: Version) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    pa, pb = a[3], b[3]
    if not pa or not pb:
        return (not pa) - (not pb)
    ka, kb = [_pre_key(p) for p in pa], [_pre_key(p) for p in pb]
    return (ka > kb) - (ka < kb)


@builtin("semver.is_valid")
def is_valid(version: Any) -> bool:
    return _parse(want("semver.is_valid", 1, version, "string")) is not None


@builtin("semver.compare")
def compare(a: Any, b: Any) -> int:
    fn = "semver.compare"
    va = _parse(want(fn, 1, a, "string"))
    vb = _parse(want(fn, 2, b, "string"))
    if va is None or vb is None:
        raise BuiltinError(f"{fn}: invalid semver: {(a if va is None else b)[:MAX_VERSION]!r}")
    return _compare(va, vb)
