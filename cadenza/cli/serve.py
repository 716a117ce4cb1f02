"""``cadenza serve`` (the web studio) and ``cadenza history ...`` (its stored generations)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cadenza.controls.registry import CONTROL_NAMES
from cadenza.errors import CadenzaError
from cadenza.history import DEFAULT_ROOT

console = Console(stderr=True)

SERVE_HELP = """Start the Cadenza studio: a local web page to generate music with text, melody, dynamics and rhythm.

Listens on 127.0.0.1 only unless --host says otherwise. Every generation is kept under --root (SQLite history + audio, controls and figures) and can be replayed or re-run from the page.

Examples:

  cadenza serve                               (the shipped model, on http://127.0.0.1:7860)

  cadenza serve --model runs/gen/model        (a model you trained)

  cadenza serve --port 8000 --max-concurrent 2 --queue 16 --root ~/music/studio
"""


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on (0 picks a free one)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Generator model folder (default: the shipped model)."),
    max_concurrent: int = typer.Option(1, "--max-concurrent", help="Generations that run at the same time (one model copy each)."),
    queue: int = typer.Option(8, "--queue", help="Generations that may wait; past running + waiting the studio answers 'busy'."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="Folder for the history database and generated files."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest upload accepted, per file."),
    max_duration: float = typer.Option(60.0, "--max-duration", help="Longest generation accepted, in seconds."),
    no_warmup: bool = typer.Option(False, "--no-warmup", help="Skip the warm-up generation at start."),
) -> None:
    """Start the web studio."""
    from cadenza.app.config import Limits, StudioConfig
    from cadenza.app.server import serve

    if not 0 < max_upload_mb <= 2048:
        raise CadenzaError(f"--max-upload-mb {max_upload_mb:g} is out of range", "use a size between 1 and 2048 MB")
    if not 0 < max_duration <= 600:
        raise CadenzaError(f"--max-duration {max_duration:g} is out of range", "use up to 600 seconds")
    config = StudioConfig(
        host=host, port=port, model=str(model) if model else None, root=root, max_concurrent=max_concurrent, queue=queue,
        threads=threads, warmup=not no_warmup, limits=Limits(max_upload_mb=max_upload_mb, max_duration_s=max_duration),
    )
    if not config.is_loopback:
        console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the studio and fill {config.root}",
            highlight=False,
        )
    t0 = time.perf_counter()
    console.print(f"loading the model and warming up (history in {config.root}) …", highlight=False)

    def ready(url: str, studio) -> None:
        console.print(
            f"[bold green]Cadenza studio ready[/] at {url}  (model {studio.model_id}; {time.perf_counter() - t0:.1f} s; "
            f"{config.max_concurrent} at once, {config.queue} waiting; Ctrl+C to stop)",
            highlight=False,
        )

    serve(config, on_ready=ready)


HISTORY_EXAMPLES = """Examples:

  cadenza history list

  cadenza history list --root ~/music/studio --limit 5 --json
"""

history_app = typer.Typer(
    help=f"List the studio's stored generations.\n\n{HISTORY_EXAMPLES}", no_args_is_help=True, add_completion=False
)


@history_app.command("list", help=f"List past generations, newest first.\n\n{HISTORY_EXAMPLES}")
def history_list(
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="The studio folder (as given to 'cadenza serve --root')."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """List past generations, newest first."""
    from cadenza.history import History

    root = Path(root).expanduser()
    if not (root / "history.sqlite3").exists():
        raise CadenzaError(f"{root}: no studio history here", "start the studio with 'cadenza serve --root DIR', or pass the same --root")
    rows = History(root, sweep=False).list(limit=limit)
    if as_json:
        for g in rows:
            print(json.dumps(g.to_dict()))
        return
    table = Table(title=f"{len(rows)} generation(s) in {root}")
    for col in ("id", "when", "status", "prompt", "controls", "seed", "s", "model"):
        table.add_column(col)
    for g in rows:
        controls = " ".join(f"{n}:{g.request[n]['mode']}" for n in CONTROL_NAMES if g.request.get(n, {}).get("mode", "none") != "none")
        table.add_row(
            g.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g.created)), g.status, g.prompt[:40] or "(none)",
            controls or "free", str(g.seed), f"{g.duration_s:g}", g.model_id,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``history`` group to the root app."""
    app.command("serve", help=SERVE_HELP)(serve_command)
    app.add_typer(history_app, name="history")
