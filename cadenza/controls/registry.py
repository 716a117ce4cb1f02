"""The one list of controls: each control's name, frame shape, event form, and how it is
extracted, rendered from a creator's input and scored.

Why: the names and shapes of melody, dynamics and rhythm used to be written out again in the
control set, the conditioning, the pipeline and the evaluation. Everything that needs "which
controls exist, and what does one frame of each look like" reads :data:`CONTROLS` (or
``CONTROL_NAMES``, derived from it), so adding a control (chords next) is one entry here plus
its code and tests. Each :class:`ControlSpec` satisfies ``cadenza.protocols.Control``.

The behaviour is named by ``"module:function"`` strings and imported on first use: this module
sits below the code it names (``controls.base`` imports it for the names, and the scoring lives
in ``cadenza.eval.adherence``), so a real import either way would be a cycle or a step up the
layers. Today's ``ControlSet`` still has one field per control (``melody``, ``melody_mask``…);
see docs/architecture.md for what an open ``ControlSet`` still needs.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cadenza.audio.format import SAMPLE_RATE
from cadenza.errors import CadenzaError

if TYPE_CHECKING:
    from cadenza.controls.base import ControlSet


def _resolve(ref: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function (imported now, not when this module loads)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ControlSpec:
    """One control: what its frames are and where its extraction, rendering and scoring live."""

    name: str
    shape: tuple[int, ...]  # trailing shape of one frame in a ControlSet: (12,), (), (2,)
    events: str  # the ControlSet field holding its event-level form (notes, points, beats)
    about: str
    render_ref: str  # "module:function"(source, n_frames, **options) -> ControlSet
    render_options: tuple[str, ...] = ()  # keyword options render passes through (e.g. bpm for note strings)
    score_prefixes: tuple[str, ...] = ()  # the adherence metrics that belong to this control
    extract_ref: str = "cadenza.controls.extract:extract_controls"
    score_ref: str = "cadenza.eval.adherence:compare_controls"

    @property
    def dim(self) -> int:
        """Numbers per frame (1 for a scalar control such as dynamics)."""
        return int(math.prod(self.shape)) if self.shape else 1

    @property
    def mask_field(self) -> str:
        return f"{self.name}_mask"

    def frame_shape(self, n_frames: int) -> tuple[int, ...]:
        return (int(n_frames), *self.shape)

    def values(self, controls: "ControlSet") -> np.ndarray:
        return getattr(controls, self.name)

    def mask(self, controls: "ControlSet") -> np.ndarray:
        return getattr(controls, self.mask_field)

    def extract(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, **options: Any) -> "ControlSet":
        """This control measured from a mono waveform (the others free); ``options`` go to the extractor."""
        return _resolve(self.extract_ref)(audio, sample_rate, controls=(self.name,), **options)

    def render(self, source: str | os.PathLike, n_frames: int, **options: Any) -> "ControlSet":
        """This control from a creator's file or string, fitted to ``n_frames`` frames.

        Options this control does not take are ignored, so one call site can pass the union
        (e.g. ``bpm``) to every control.
        """
        kwargs = {k: v for k, v in options.items() if k in self.render_options and v is not None}
        return _resolve(self.render_ref)(source, n_frames, **kwargs).fit_length(n_frames)

    def score(self, given: "ControlSet", got: "ControlSet") -> dict[str, float]:
        """This control's adherence metrics (``cadenza eval``'s), inside ``given``'s mask."""
        metrics = _resolve(self.score_ref)(given.select([self.name]), got)
        return {k: v for k, v in metrics.items() if k.startswith(self.score_prefixes)}


CONTROLS: dict[str, ControlSpec] = {}


def register_control(spec: ControlSpec) -> ControlSpec:
    """Add (or replace) a control; the order of registration is the order everywhere."""
    CONTROLS[spec.name] = spec
    return spec


register_control(ControlSpec(
    name="melody", shape=(12,), events="melody_notes",
    about="top-1 pitch class per frame, one-hot (a zero row where unvoiced)",
    render_ref="cadenza.controls.files:read_melody", render_options=("bpm",), score_prefixes=("melody_",),
))
register_control(ControlSpec(
    name="dynamics", shape=(), events="dynamics_points",
    about="smoothed loudness in dBFS",
    render_ref="cadenza.controls.files:read_dynamics", score_prefixes=("dynamics_",),
))
register_control(ControlSpec(
    name="rhythm", shape=(2,), events="beats",
    about="beat and downbeat activations in [0, 1]",
    render_ref="cadenza.controls.files:read_rhythm", score_prefixes=("beat_", "downbeat_"),
))

CONTROL_NAMES: tuple[str, ...] = tuple(CONTROLS)


def control(name: str) -> ControlSpec:
    """The spec of control ``name`` (one CadenzaError naming the choices otherwise)."""
    if name not in CONTROLS:
        raise CadenzaError(f"unknown control '{name}'", f"choose from {', '.join(CONTROLS)}")
    return CONTROLS[name]


def frame_shapes() -> dict[str, tuple[int, ...]]:
    """``{name: trailing frame shape}`` of every control: what frame arrays must look like."""
    return {name: spec.shape for name, spec in CONTROLS.items()}
