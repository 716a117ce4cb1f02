"""The one list of controls: each control's name, frame shape, event form, and how it is
extracted, rendered from a creator's input and scored.

Why: the names and shapes of melody, dynamics and rhythm used to be written out again in the
control set, the conditioning, the pipeline and the evaluation. Everything that needs "which
controls exist, and what does one frame of each look like" reads :data:`CONTROLS` (or
``CONTROL_NAMES``, derived from it), so adding a control (chords next) is one entry here plus
the functions it names, in one module, and its tests. Each :class:`ControlSpec` satisfies ``cadenza.protocols.Control``.

The behaviour is named by ``"module:function"`` strings and imported on first use: this module
sits below the code it names (``controls.base`` imports it for the names, and the scoring lives
in ``cadenza.eval.adherence``), so a real import either way would be a cycle or a step up the
layers. ``ControlSet``, its npz files, the limits, the control encoder, the pipeline, the studio
and the evaluation all loop over :data:`CONTROLS`; docs/architecture.md lists what stays per
control (a trained network's channels, extraction from audio) and why.
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
    """One control: its frames, events, network input, studio form, metrics and where their code lives.

    Every layer that used to name melody, dynamics and rhythm reads these fields instead, so a
    new control is one ``register_control`` call (and the functions it names) plus its tests.
    """

    name: str
    shape: tuple[int, ...]  # trailing shape of one frame in a ControlSet: (12,), (), (2,)
    events: str  # the ControlSet field holding its event-level form (notes, points, beats); also its npz key
    about: str
    render_ref: str  # "module:function"(source, n_frames, **options) -> ControlSet
    render_options: tuple[str, ...] = ()  # keyword options render passes through (e.g. bpm for note strings)
    score_prefixes: tuple[str, ...] = ()  # the adherence metrics that belong to this control
    extract_ref: str = "cadenza.controls.extract:extract_controls"
    score_ref: str = "cadenza.eval.adherence:compare_controls"
    # events: columns per row, and whether a row is an interval [start_s, end_s, ...] or a point [time_s, ...]
    event_cols: int = 2
    event_kind: str = "points"
    check_ref: str | None = None  # "module:function"(values, mask) raising CadenzaError on values out of range
    # network input: (value - input_center) / input_scale, fixed constants (no data statistic in the model)
    input_center: float = 0.0
    input_scale: float = 1.0
    array_ref: str | None = None  # "module:function"(array, n_frames) -> ControlSet for arrays of another shape
    array_shapes: tuple[tuple[int, ...], ...] = ()  # those other trailing shapes (melody: () = pitch classes)
    summary_ref: str | None = None  # "module:function"(controls) -> extra entries of the generation summary
    tempo_ref: str | None = None  # "module:function"(bpm, meter, n_frames) -> ControlSet, used when only bpm is given
    metrics_ref: str | None = None  # "module:function"(given, generated) -> this control's adherence metrics
    aggregate_ref: str | None = None  # "module:function"(per-clip scores) -> this control's summaries over clips
    headline: tuple[tuple[str, str], ...] = ()  # (short name, metric key) of the studio's one-line adherence
    columns: tuple[tuple[str, str, float, int], ...] = ()  # eval table columns: (key, label, scale, digits)
    studio_modes: tuple[str, ...] = ("none",)  # the studio form's choices for this control
    studio_ref: str | None = None  # "module:function"(fields, spec, duration, limits) -> parsed mode dict
    studio_build_ref: str | None = None  # "module:function"(request, spec, folder, n_frames) -> ControlSet

    @property
    def dim(self) -> int:
        """Numbers per frame (1 for a scalar control such as dynamics)."""
        return int(math.prod(self.shape)) if self.shape else 1

    @property
    def mask_field(self) -> str:
        return f"{self.name}_mask"

    @property
    def npz_frame_keys(self) -> tuple[str, str]:
        """Its frame-level members of a controls ``.npz`` (values, mask)."""
        return (self.name, self.mask_field)

    def frame_shape(self, n_frames: int) -> tuple[int, ...]:
        return (int(n_frames), *self.shape)

    def values(self, controls: "ControlSet") -> np.ndarray:
        return getattr(controls, self.name)

    def mask(self, controls: "ControlSet") -> np.ndarray:
        return getattr(controls, self.mask_field)

    def network_input(self, values: Any) -> Any:
        """Values as the control encoder sees them (dynamics: dB → about [-1, 1]); others unchanged."""
        if self.input_center == 0.0 and self.input_scale == 1.0:
            return values
        return (values - self.input_center) / self.input_scale

    def check(self, values: np.ndarray, mask: np.ndarray) -> None:
        """Raise a CadenzaError when values are outside what this control means."""
        if self.check_ref:
            _resolve(self.check_ref)(values, mask)

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

    def metrics(self, given: "ControlSet", generated: "ControlSet") -> dict[str, float]:
        """This control's adherence metrics of ``generated`` against ``given`` (lengths already equal)."""
        return _resolve(self.metrics_ref)(given, generated) if self.metrics_ref else {}

    def aggregate(self, scores: "list[dict[str, float]]") -> dict[str, float]:
        """This control's summaries over many clips' ``metrics``."""
        return _resolve(self.aggregate_ref)(scores) if self.aggregate_ref else {}

    def score(self, given: "ControlSet", got: "ControlSet") -> dict[str, float]:
        """This control's adherence metrics (``cadenza eval``'s), inside ``given``'s mask."""
        metrics = _resolve(self.score_ref)(given.select([self.name]), got)
        return {k: v for k, v in metrics.items() if k.startswith(self.score_prefixes)}

    def summary(self, controls: "ControlSet") -> dict[str, Any]:
        """Extra entries of this control in a generation's summary (e.g. the dB range), where given."""
        return _resolve(self.summary_ref)(controls) if self.summary_ref and self.mask(controls).any() else {}


CONTROLS: dict[str, ControlSpec] = {}


def register_control(spec: ControlSpec) -> ControlSpec:
    """Add (or replace) a control; the order of registration is the order everywhere."""
    if spec.event_kind not in ("points", "intervals"):
        raise CadenzaError(f"control '{spec.name}': event_kind must be 'points' or 'intervals', got '{spec.event_kind}'")
    CONTROLS[spec.name] = spec
    return spec


def unregister_control(name: str) -> None:
    """Remove a control added by ``register_control`` (tests and plug-ins); the shipped three stay."""
    if name in SHIPPED_CONTROLS:
        raise CadenzaError(f"control '{name}' ships with Cadenza and cannot be removed")
    CONTROLS.pop(name, None)


register_control(ControlSpec(
    name="melody", shape=(12,), events="melody_notes", event_cols=3, event_kind="intervals",
    about="top-1 pitch class per frame, one-hot (a zero row where unvoiced)",
    render_ref="cadenza.controls.files:read_melody", render_options=("bpm",), score_prefixes=("melody_",),
    check_ref="cadenza.controls.base:check_melody",
    array_ref="cadenza.controls.base:melody_from_array", array_shapes=((),),
    metrics_ref="cadenza.eval.adherence:melody_metrics", aggregate_ref="cadenza.eval.adherence:melody_aggregate",
    headline=(("melody_acc", "melody_accuracy"),),
    columns=(("melody_accuracy_mean", "melody acc %", 100.0, 1),),
    studio_modes=("none", "notes", "midi", "audio"),
    studio_ref="cadenza.app.validation:parse_melody_form", studio_build_ref="cadenza.app.validation:build_melody",
))
register_control(ControlSpec(
    name="dynamics", shape=(), events="dynamics_points",
    about="smoothed loudness in dBFS",
    render_ref="cadenza.controls.files:read_dynamics", score_prefixes=("dynamics_",),
    check_ref="cadenza.controls.base:check_dynamics", input_center=-35.0, input_scale=25.0,
    summary_ref="cadenza.controls.base:dynamics_summary",
    metrics_ref="cadenza.eval.adherence:dynamics_metrics", aggregate_ref="cadenza.eval.adherence:dynamics_aggregate",
    headline=(("dynamics_r", "dynamics_r"),),
    columns=(("dynamics_r_micro", "dyn r micro ×100", 100.0, 1), ("dynamics_r_macro", "dyn r macro ×100", 100.0, 1)),
    studio_modes=("none", "shape", "drawn"),
    studio_ref="cadenza.app.validation:parse_dynamics_form", studio_build_ref="cadenza.app.validation:build_dynamics",
))
register_control(ControlSpec(
    name="rhythm", shape=(2,), events="beats",
    about="beat and downbeat activations in [0, 1]",
    render_ref="cadenza.controls.files:read_rhythm", score_prefixes=("beat_", "downbeat_"),
    check_ref="cadenza.controls.base:check_rhythm", summary_ref="cadenza.controls.base:rhythm_summary",
    tempo_ref="cadenza.controls.files:rhythm_from_bpm",
    metrics_ref="cadenza.eval.adherence:rhythm_metrics", aggregate_ref="cadenza.eval.adherence:rhythm_aggregate",
    headline=(("beat_f1", "beat_f1"), ("downbeat_f1", "downbeat_f1")),
    columns=(("beat_f1_mean", "beat F1 %", 100.0, 1), ("downbeat_f1_mean", "downbeat F1 %", 100.0, 1)),
    studio_modes=("none", "bpm", "audio"),
    studio_ref="cadenza.app.validation:parse_span_form", studio_build_ref="cadenza.app.validation:build_rhythm",
))

# the controls Cadenza ships, in the channel order of the shipped generator: the default control
# list of a model whose config names none (CONTROL_NAMES keeps that meaning for callers)
SHIPPED_CONTROLS: tuple[str, ...] = tuple(CONTROLS)
CONTROL_NAMES: tuple[str, ...] = SHIPPED_CONTROLS


def control_names() -> tuple[str, ...]:
    """Every registered control, in registration order (read now, so controls added later count)."""
    return tuple(CONTROLS)


def control(name: str) -> ControlSpec:
    """The spec of control ``name`` (one CadenzaError naming the choices otherwise)."""
    if name not in CONTROLS:
        raise CadenzaError(f"unknown control '{name}'", f"choose from {', '.join(CONTROLS)}")
    return CONTROLS[name]


def frame_shapes() -> dict[str, tuple[int, ...]]:
    """``{name: trailing frame shape}`` of every control: what frame arrays must look like."""
    return {name: spec.shape for name, spec in CONTROLS.items()}
