"""Cadenza: controllable music generation (Music ControlNet) that trains and runs on a CPU."""

__version__ = "0.1.0"

from cadenza.errors import CadenzaError

__all__ = ["CadenzaError", "__version__"]
