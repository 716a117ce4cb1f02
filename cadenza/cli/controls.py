"""``cadenza controls ...``: extract, plot and make time-varying controls."""

from __future__ import annotations

import typer

app = typer.Typer(help="Extract, plot and make melody / dynamics / rhythm controls.", no_args_is_help=True)
