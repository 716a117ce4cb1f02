"""One exception type for every user-facing failure.

The CLI prints ``CadenzaError`` as a single line (message + hint) instead of a traceback,
so every check on user input raises it with a message that names the thing that was wrong
and a hint that says how to fix it.
"""

from __future__ import annotations


class CadenzaError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message
