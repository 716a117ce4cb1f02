"""One exception type for every user-facing failure.

The CLI prints ``CadenzaError`` as a single line (message + hint) instead of a traceback,
so every check on user input raises it with a message that names the thing that was wrong
and a hint that says how to fix it.
"""

from __future__ import annotations


class CadenzaError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    MAX_CHARS = 400  # a message quoting the user's input (a 15,000-character note string) is cut in the middle

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = _shorten(str(message), self.MAX_CHARS)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else _shorten(str(hint), self.MAX_CHARS)

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


def _shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and end around an ellipsis (still one readable line)."""
    if len(text) <= limit:
        return text
    tail = limit // 5
    return f"{text[: limit - tail - 5]} ... {text[-tail:]}"
