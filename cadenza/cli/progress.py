"""The one progress bar of every long-running verb (data build/index/cache, generate, vocode, controls extract).

It draws on stderr, so whatever a verb prints on stdout (JSON, CSV, tables) stays clean to pipe.
It starts at the first update, not when created: a verb that fails while checking its input
prints its one-line error with no empty bar above it. ``quiet=True`` (the verbs' ``--quiet``)
gives a bar that draws nothing. On a terminal it animates; written to a file or a pipe, rich
prints only the final state once, a single summary line for logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

QUIET_HELP = "No progress bar (errors and the final summary are still printed)."


class Bar:
    """What a verb updates: ``update(done, total, info)`` or ``advance()``; both may be passed as callbacks."""

    def __init__(self, description: str, total: int | None, console: Console | None, enabled: bool) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._created = time.monotonic()  # the clock rich uses; elapsed counts from here, not the first update

    def _start(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self._console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total, info="")
        self._progress.tasks[-1].start_time = self._created

    def update(self, done: int, total: int | None = None, info: str | None = None) -> None:
        """``done`` of ``total`` finished (``total`` None: unchanged); ``info`` is a short text after the bar."""
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if not self.enabled:
            return
        if self._progress is None:
            self._start()
        fields = {} if info is None else {"info": info}
        self._progress.update(self._task, completed=self.done, total=self.total, **fields)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        """``n`` more finished."""
        self.update(self.done + n, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def progress_bar(description: str, total: int | None = None, *, quiet: bool = False, console: Console | None = None) -> Iterator[Bar]:
    """A ``Bar`` for the body of a ``with``; stopped (final state drawn once) when the body ends."""
    bar = Bar(description, total, console, enabled=not quiet)
    try:
        yield bar
    finally:
        bar.close()
