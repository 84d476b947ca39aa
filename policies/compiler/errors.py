"""Compile errors: always a place (``file:line:col``) and a kind that maps to an exit code."""

from __future__ import annotations

import re
from typing import Literal

from policies.compiler.ir import Loc

Kind = Literal["syntax", "type", "unsupported"]

EXIT_CODES: dict[str, int] = {"syntax": 2, "type": 2, "unsupported": 3}


class CompileError(Exception):
    """A policy the compiler will not turn into a module.

    ``str(err)`` is the one line the user sees:
    ``file:line:col: unsupported: <construct>`` or ``file:line:col: error: <message>``.
    """

    def __init__(self, loc: Loc | None, kind: Kind, message: str) -> None:
        self.loc = loc
        self.kind = kind
        self.message = message
        where = f"{loc}: " if loc else ""
        label = "unsupported" if kind == "unsupported" else "error"
        super().__init__(f"{where}{label}: {message}")

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


def unsupported(loc: Loc | None, construct: str) -> CompileError:
    return CompileError(loc, "unsupported", construct)


_LOCATION = re.compile(r"-->\s*(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<msg>.*)$", re.MULTILINE)


def from_regorus(text: str, fallback_file: str) -> CompileError:
    """Turn a regorus parse error (a rendered report with a backtrace) into one line."""
    text = text.split("Stack backtrace", 1)[0]
    where = _LOCATION.search(text)
    what = _MESSAGE.search(text)
    message = what.group("msg").strip() if what else text.strip().splitlines()[-1:][0]
    if where:
        loc = Loc(where.group("file"), int(where.group("line")), int(where.group("col")))
    else:
        loc = Loc(fallback_file, 1, 1)
    return CompileError(loc, "syntax", message)
