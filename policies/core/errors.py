"""The errors every part of A1 raises for problems a user can fix: a message, never a traceback.

Kept in the shared core so that the planes (``ext_proc``, ``control``) and the
tooling (``a1``) raise the same types without importing each other.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, bad config, a missing tool.

    ``code`` is the process exit code; the message already names the place
    (``file:line:col``, a field, a header).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(UserError):
    """A config file, cell table, platform spec or policy that is refused.

    The message names the file and the field (or ``file:line:col`` for YAML
    syntax errors). Exit code 2, as for any bad startup configuration.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


def one_line(text: object, limit: int = 1000) -> str:
    """``str(text)`` (an error, usually) on one line, at most ``limit`` characters: what
    a log line, a NACK, a status page or a CLI message carries, never a traceback."""
    line = " ".join(str(text).split()) or (type(text).__name__ if isinstance(text, BaseException)
                                           else "error")
    return line if len(line) <= limit else line[: limit - 1] + "…"
