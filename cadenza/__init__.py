"""Cadenza: controllable music generation (Music ControlNet) that trains and runs on a CPU."""

__version__ = "0.1.0"

from cadenza.errors import CadenzaError

__all__ = ["Cadenza", "CadenzaError", "__version__"]


def __getattr__(name: str):
    # Lazy: `import cadenza` stays light; torch/diffusers load only when the generator is used.
    if name == "Cadenza":
        from cadenza.pipeline import Cadenza

        return Cadenza
    raise AttributeError(f"module 'cadenza' has no attribute {name!r}")
