"""The ``cadenza`` command: one CLI with verbs, built on typer and rich.

Each group of verbs lives in its own module under ``cadenza/cli/`` and is registered here.
Errors from user input (``CadenzaError``) print as one red line with a hint; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from cadenza import __version__
from cadenza.errors import CadenzaError

console = Console(stderr=True)

app = typer.Typer(
    name="cadenza",
    help=(
        "Cadenza: controllable music generation (text + melody, dynamics and rhythm controls).\n\n"
        "Examples:\n\n"
        "  cadenza controls extract song.wav --out song.npz --csv song_controls/\n\n"
        "  cadenza controls make melody --notes \"C4:1 E4:1 G4:2\" --bpm 100 --out melody.csv\n\n"
        "  cadenza controls plot song.wav --out song.png\n\n"
        "  cadenza --debug controls extract broken.wav --out x.npz   (full traceback on errors)"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    if version:
        print(f"cadenza {__version__}")
        raise typer.Exit()


def _register() -> None:
    from cadenza.cli import controls, generate, vocode

    app.add_typer(controls.app, name="controls")
    from cadenza.cli import data as data_cli

    app.add_typer(data_cli.app, name="data")
    generate.register(app)
    from cadenza.cli import train as train_cli

    app.add_typer(train_cli.app, name="train")
    app.command("vocode")(vocode.vocode)
    from cadenza.cli import serve as serve_cli

    serve_cli.register(app)
    from cadenza.cli import eval as eval_cli
    app.add_typer(eval_cli.app, name="eval")


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning ``CadenzaError`` into a one-line message."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
        return 0
    except CadenzaError as err:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {err.message}", highlight=False)
        if err.hint:
            console.print(f"[yellow]hint:[/] {err.hint}", highlight=False)
        return 2
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.Abort):
            return 1
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if debug:
            raise
        console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc}", highlight=False)
        console.print("[yellow]hint:[/] run again with --debug for the full traceback, and report it", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
