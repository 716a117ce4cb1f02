"""The Cadenza studio (``cadenza serve``): a local web page for generating with controls, plus its history.

    from cadenza.app import Studio, StudioConfig, create_app
    studio = Studio(StudioConfig(model="runs/gen/model", root="/tmp/studio"))
    app = create_app(studio)            # an ASGI app (FastAPI); serve it with uvicorn

Heavy imports (torch, FastAPI) happen when these names are first used, so importing the
package stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

from cadenza.app.config import Limits, StudioConfig

__all__ = ["BackgroundServer", "Limits", "Studio", "StudioConfig", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "Studio":
        from cadenza.app.studio import Studio

        return Studio
    if name in ("create_app", "serve", "BackgroundServer"):
        from cadenza.app import server

        return getattr(server, name)
    raise AttributeError(f"module 'cadenza.app' has no attribute {name!r}")
