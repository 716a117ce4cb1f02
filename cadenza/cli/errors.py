"""The CLI's one-line error format, in its own module so every verb module can print it.

Why not in ``cadenza/cli/__init__.py``: the package registers the verb modules, so a verb that
imported ``print_error`` from it (``python -m cadenza.cli.train`` does) closed an import cycle.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def print_error(message: str, hint: str | None = None) -> None:
    """The CLI's error format: ``error: …`` on one line, then ``hint: …`` on one line.

    Whitespace inside a message (a library's multi-line text) is collapsed and rich's wrapping
    is off, so each stays one line that grep and log readers can take as a unit.
    """
    console.print(f"[bold red]error:[/] {' '.join(str(message).split())}", highlight=False, soft_wrap=True, markup=True)
    if hint:
        console.print(f"[yellow]hint:[/] {' '.join(str(hint).split())}", highlight=False, soft_wrap=True)
