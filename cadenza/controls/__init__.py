"""Time-varying controls: melody, dynamics and rhythm, each with a per-frame mask."""

from cadenza.controls.base import CONTROL_NAMES, ControlSet, beats_to_activations

__all__ = ["CONTROL_NAMES", "ControlSet", "beats_to_activations"]
