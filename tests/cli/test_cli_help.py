"""Every command and sub-command of ``cadenza`` shows examples in its ``--help``."""

from __future__ import annotations

import re
import shlex

import pytest
import typer

from cadenza.cli import app, main


def _all_commands() -> list[tuple[str, ...]]:
    """The path of every command and group under the root (the root itself is ``()``)."""
    paths: list[tuple[str, ...]] = []

    def walk(cmd: typer.core.TyperCommand | typer.core.TyperGroup, path: tuple[str, ...]) -> None:
        paths.append(path)
        if hasattr(cmd, "commands"):  # a group (typer ships its own click, so no isinstance)
            for name, sub in sorted(cmd.commands.items()):
                if not sub.hidden:
                    walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


COMMANDS = _all_commands()


def test_the_walk_finds_every_verb() -> None:
    names = {" ".join(p) for p in COMMANDS}
    for verb in ("controls extract", "controls make melody", "data build", "data index", "train generator", "train list",
                 "generate", "vocode", "serve", "history list", "eval run", "eval make-cases"):
        assert verb in names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "cadenza")
def test_help_has_examples(path: tuple[str, ...], capsys) -> None:
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^[\s│]*Examples:", text, flags=re.M), f"'cadenza {' '.join(path)} --help' has no Examples section"
    # a command line of this very verb (a group's examples may show any of its sub-commands)
    verb = " ".join(["cadenza", *path])
    assert re.search(rf"^[\s│]*{re.escape(verb)}(\s|$)", text, flags=re.M), f"no '{verb} ...' example line in its help"


def _example_lines() -> list[str]:
    """Every ``cadenza ...`` line of every help text (raw, before rich wraps it), comments dropped."""
    lines: set[str] = set()

    def walk(cmd) -> None:
        for line in (cmd.help or "").splitlines():
            line = line.strip()
            if line.startswith("cadenza "):
                lines.add(re.sub(r"\s{2,}\(.*\)$", "", line).strip())
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return sorted(lines)


@pytest.mark.parametrize("line", _example_lines())
def test_examples_parse(line: str) -> None:
    """Each example names real verbs and options with values of the right type (parsed, not run)."""
    args = shlex.split(line)[1:]
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("cadenza", args)
    while hasattr(cmd, "commands"):  # resolve sub-commands the way click does when it runs them
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []  # click 8.2+ / older
        rest = [*protected, *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
