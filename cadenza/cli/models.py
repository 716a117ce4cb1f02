"""``cadenza models``: the registered model families, the shipped models and their ids.

Why a verb: with one registry (``cadenza.registry``) the CLI can say which families this
install knows, which models ship inside it (the id an output's JSON sidecar records), and
whether a given folder loads, through the same ``load_model`` every command uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

MODELS_HELP = """List the registered model families and the shipped models with their ids, or check model folders.

An id is model_id@ the first 12 hex digits of the weights' sha256: the id generate writes into its JSON sidecar. With folders, each is loaded through the one loader every command uses (weights checked against config.json) and its kind, type and id are printed; a missing, damaged or mismatched folder is one error line.

Examples:

  cadenza models

  cadenza models runs/gen/model

  cadenza models cadenza/weights/vocoder runs/beats/best
"""


def models_command(
    folders: Optional[list[Path]] = typer.Argument(None, help="Model folders to load and describe (default: list everything)."),
) -> None:
    """List model families and shipped models, or check model folders."""
    from cadenza.registry import families, load_model, shipped_models

    out = Console(soft_wrap=True)
    if folders:
        for folder in folders:
            loaded = load_model(folder)  # a CadenzaError here is the CLI's one error line
            n_params = sum(p.numel() for p in loaded.net.parameters()) if loaded.net is not None else 0
            out.print(f"{folder}: {loaded.kind}/{loaded.type} {loaded.model_id} ({n_params:,} parameters)", highlight=False)
        return
    table = Table(title="model families", title_justify="left")
    for col in ("kind", "type", "defined in", "trainable", "about"):
        table.add_column(col)
    for fam in families():
        table.add_row(fam.kind, fam.type, fam.module, f"cadenza train {fam.task}" if fam.task else "-", fam.about)
    out.print(table)
    shipped = Table(title="shipped models", title_justify="left")
    for col in ("kind", "type", "id", "size", "folder"):
        shipped.add_column(col)
    for model in shipped_models():
        shipped.add_row(model.family.kind, model.family.type, model.model_id, f"{model.size_bytes / 1e6:.1f} MB", str(model.folder))
    out.print(shipped)


def register(app: typer.Typer) -> None:
    """Add ``models`` to the root app."""
    app.command("models", help=MODELS_HELP)(models_command)
