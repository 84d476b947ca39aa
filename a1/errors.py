"""The one error type the CLI turns into a message and an exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, bad config, a missing tool.

    ``code`` is the process exit code; the message already names the place
    (``file:line:col``, a field, a header).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
