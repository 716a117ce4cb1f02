"""The ``cadenza`` command: one CLI with verbs, built on typer and rich.

Each group of verbs lives in its own module under ``cadenza/cli/`` and is registered here.
Errors from user input (``CadenzaError``) print as one red line with a hint; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import sys

import typer

from cadenza import __version__
from cadenza.cli.errors import console, print_error
from cadenza.errors import CadenzaError

__all__ = ["app", "console", "main", "print_error"]

app = typer.Typer(
    name="cadenza",
    help=(
        "Cadenza: controllable music generation (text + melody, dynamics and rhythm controls).\n\n"
        "Examples:\n\n"
        "  cadenza controls extract song.wav --out song.npz --csv song_controls/\n\n"
        "  cadenza controls make melody --notes \"C4:1 E4:1 G4:2\" --bpm 100 --out melody.csv\n\n"
        "  cadenza controls plot song.wav --out song.png\n\n"
        "  cadenza generate \"calm folk tune on flute\" --melody \"C4:1 D4:1 E4:2\" --bpm 100 --out tune.wav\n\n"
        "  cadenza serve   (the web studio on http://127.0.0.1:7860)\n\n"
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
    from cadenza.cli import codec as codec_cli

    app.add_typer(codec_cli.app, name="codec")
    from cadenza.cli import serve as serve_cli

    serve_cli.register(app)
    from cadenza.cli import eval as eval_cli
    app.add_typer(eval_cli.app, name="eval")
    __import__("cadenza.cli.models", fromlist=["register"]).register(app)


_register()


def _command_path(args: list[str]) -> str:
    """'cadenza controls extract' for ``["controls", "extract", "x.wav"]``: the verb the arguments name."""
    cmd, path = typer.main.get_command(app), ["cadenza"]
    for arg in args:
        if arg.startswith("-"):  # --debug and the like, before the verb
            continue
        cmd = getattr(cmd, "commands", {}).get(arg)
        if cmd is None:
            break
        path.append(arg)
    return " ".join(path)


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (missing option, bad value). Newer typer ships its own copy of click,
    so its exceptions are not ``click.ClickException``: recognise them by their interface."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app; any failure is one error line and a hint, never a traceback.

    ``CadenzaError`` (bad input) prints its message and hint and returns 2, as do usage errors
    (a missing option, a value of the wrong type). Anything else is a bug: it is named in one
    line with a hint to rerun with ``--debug``, which re-raises so the traceback shows.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False, prog_name="cadenza")
        return 0
    except CadenzaError as err:
        if debug:
            raise
        print_error(err.message, err.hint or f"see '{_command_path(args)} --help'")
        return 2
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except (KeyboardInterrupt, typer.Abort):
        console.print("[red]interrupted[/]")
        return 130
    except Exception as exc:
        if _is_usage_error(exc):
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help is printed already
                return exc.exit_code
            ctx = getattr(exc, "ctx", None)
            print_error(exc.format_message(), f"see '{ctx.command_path if ctx is not None else 'cadenza'} --help'")
            return exc.exit_code
        if debug:
            raise
        print_error(f"unexpected {type(exc).__name__}: {exc}", "run again with --debug for the full traceback, and report it")
        return 1


if __name__ == "__main__":
    sys.exit(main())
