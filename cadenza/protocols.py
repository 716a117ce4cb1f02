"""The three interfaces every method family plugs into, and the one request type they share.

Why: Cadenza is about to carry more families (codec + token LMs, masked generation, flow
matching, VAEs, DDSP). A pipeline, the studio and the evaluation can serve all of them only if
each family is reached through the same few calls. These are structural ``Protocol``s: a class
satisfies one by having the members, without inheriting anything, so the existing classes
(``Vocoder``, the controls in ``cadenza.controls.registry``) satisfy them as they are.

- :class:`Representation`: what a generator samples in. ``encode(wave)`` gives frames (latents,
  or codes when ``discrete``), ``decode(frames)`` gives the waveform back; ``frame_rate``
  frames per second of audio at ``sample_rate``. The shipped one is the mel vocoder.
- :class:`Generator`: ``sample(request, conditions, progress)`` returns frames of its
  representation for a :class:`GenerationRequest`, given pre-computed ``conditions`` (text
  states, control tensors, known frames and their mask).
- :class:`Control`: a time-varying control: ``extract`` it from audio, ``render`` it from a
  creator's file or string, ``score`` given against got; its frame ``shape`` / ``dim`` and
  per-frame ``mask``.

This module imports nothing from Cadenza but ``errors`` (it is the bottom layer): the types it
names in annotations are only for readers and type checkers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from cadenza.errors import CadenzaError

if TYPE_CHECKING:
    import torch

    from cadenza.controls.base import ControlSet

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in total)
ControlInput = Any  # a ControlSet, a creator file path or string, a frame array, or None


@runtime_checkable
class Representation(Protocol):
    """Waveform ↔ frames: the space a generator samples in (mel, latents or codec tokens)."""

    sample_rate: int
    frame_rate: float
    discrete: bool

    def encode(self, wave: "np.ndarray | torch.Tensor") -> "torch.Tensor":
        """Waveform (N,) or (B, N) at ``sample_rate`` → frames (…, T): latents, or integer codes when ``discrete``."""
        ...

    def decode(self, frames: "torch.Tensor") -> "torch.Tensor":
        """Frames as ``encode`` returns them → waveform."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A trained model that turns a request plus its conditions into representation frames."""

    def sample(self, request: "GenerationRequest", conditions: Mapping[str, Any], progress: ProgressCallback | None = None) -> "torch.Tensor":
        """Frames (B = one per seed, …, T) for ``request``; ``progress(done, total)`` after each step.

        ``conditions`` holds what the pipeline prepared once for every family: ``text`` (the
        encoded prompt), ``controls`` (tensors and masks per control), and, for continuation
        and inpainting, ``known`` frames with their ``known_mask``.
        """
        ...


@runtime_checkable
class Control(Protocol):
    """One time-varying control on the canonical frame grid, with a per-frame mask."""

    name: str
    shape: tuple[int, ...]  # the trailing shape of one frame: (12,) melody, () dynamics, (2,) rhythm
    dim: int  # numbers per frame (1 for a scalar control)

    def extract(self, audio: np.ndarray, sample_rate: int) -> "ControlSet":
        """This control measured from a mono waveform (the other controls left free)."""
        ...

    def render(self, source: "str | os.PathLike", n_frames: int, **options: Any) -> "ControlSet":
        """This control from a creator's file or string (a CSV, a MIDI file, a note string, a shape name)."""
        ...

    def score(self, given: "ControlSet", got: "ControlSet") -> dict[str, float]:
        """How well ``got`` (extracted from the output) follows ``given``, inside the given mask."""
        ...

    def mask(self, controls: "ControlSet") -> np.ndarray:
        """The (T,) per-frame mask of this control in ``controls`` (1 = given, 0 = free)."""
        ...


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation asks for, in one value the CLI, the Python API, the studio and
    evaluation all build and a pipeline serves (results come back, nothing is stored on a model).

    ``controls`` maps a control's name to how it is given (a ``ControlSet``, a file, a string or
    a frame array); ``control_set`` is a whole ``ControlSet`` given at once. ``known_audio`` with
    ``known_mask`` (per output frame, 1 = keep) makes the request a continuation or an
    inpainting: one known-mask path for all three tasks. ``None`` means "the model's default"
    for ``duration``, ``steps``, ``cfg``, ``control_cfg``, ``sampler``, ``dynamics_guidance``
    (a loudness correction in [0, 1] that diffusion generators apply inside the dynamics mask) and
    ``downbeat_cfg`` (the downbeat guidance scale of diffusion generators, ``cadenza.conditioning.cfg``).
    """

    prompt: str
    duration: float | None = None
    seeds: tuple[int, ...] = (0,)
    controls: Mapping[str, ControlInput] = field(default_factory=dict)
    control_set: "ControlSet | None" = None
    bpm: float | None = None
    meter: str | int = 4
    known_audio: np.ndarray | None = None
    known_sample_rate: int | None = None
    known_mask: np.ndarray | None = None
    steps: int | None = None
    cfg: float | None = None
    control_cfg: float | Mapping[str, float] | None = None
    sampler: str | None = None
    dynamics_guidance: float | None = None
    downbeat_cfg: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise CadenzaError(f"prompt must be a string, got {type(self.prompt).__name__}")
        seeds = (self.seeds,) if isinstance(self.seeds, (int, np.integer)) else tuple(self.seeds)
        if not seeds:
            raise CadenzaError("no seeds given", "pass seeds=(0,) or a list of seeds")
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in seeds):
            raise CadenzaError(f"seeds must be integers, got {list(seeds)!r}", "e.g. seeds=(0, 1, 2)")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        object.__setattr__(self, "controls", dict(self.controls or {}))
        if self.duration is not None and not (isinstance(self.duration, (int, float)) and math.isfinite(self.duration) and self.duration > 0):
            raise CadenzaError(f"duration must be a positive number of seconds, got {self.duration!r}")
        if (self.known_mask is not None) and self.known_audio is None:
            raise CadenzaError("known_mask given without known_audio", "pass the audio whose frames the mask keeps")

    @property
    def task(self) -> str:
        """'generate', 'continue' or 'inpaint' (known frames at the start only, or elsewhere)."""
        if self.known_audio is None:
            return "generate"
        if self.known_mask is None:
            return "continue"
        mask = np.asarray(self.known_mask) > 0
        first_free = int(np.argmin(mask)) if not mask.all() else len(mask)
        return "continue" if not mask[first_free:].any() else "inpaint"

    def with_defaults(self, sampling: Mapping[str, Any]) -> "GenerationRequest":
        """A copy with the model's ``sampling`` defaults (its config section) where this one says None."""
        pick = {"duration": "duration", "steps": "steps", "cfg": "cfg", "control_cfg": "control_cfg", "sampler": "sampler",
                "dynamics_guidance": "dynamics_guidance", "downbeat_cfg": "downbeat_cfg"}
        return replace(self, **{attr: sampling[key] for attr, key in pick.items() if getattr(self, attr) is None and key in sampling})
