"""Pattern errors: invalid (regorus rejects it too) or unsupported (outside A1's subset)."""

from __future__ import annotations


class PatternError(ValueError):
    """A pattern that cannot be compiled: invalid, or valid but outside the supported subset.

    ``offset`` is the index (in characters) of the offending construct in the pattern,
    so the compiler can point at it. ``unsupported`` marks a construct A1 does not compile
    (``str(err)`` then starts with "unsupported"); otherwise the pattern is invalid and
    regorus rejects it too. Look-around and backreferences, which Rust's regex (and so
    regorus) also rejects, are reported as unsupported because that is what a policy
    author needs to hear.
    """

    def __init__(self, message: str, offset: int, *, unsupported: bool = False) -> None:
        self.message = message
        self.offset = offset
        self.unsupported = unsupported
        super().__init__(message)


def invalid(message: str, offset: int) -> PatternError:
    return PatternError(f"invalid pattern: {message} (at offset {offset})", offset)


def unsupported_feature(feature: str, offset: int) -> PatternError:
    return PatternError(
        f"unsupported pattern feature: {feature} (at offset {offset})", offset, unsupported=True
    )
