"""``Cadenza``: the one pipeline: text encoder + generator + representation → audio.

    from cadenza import Cadenza
    gen = Cadenza.load()                       # the shipped model (or Cadenza.load("runs/gen/model"))
    wave, sr = gen.generate("calm piano ballad", melody="C4:1 E4:1 G4:2", dynamics="crescendo",
                            bpm=90, duration=6, seed=0)
    result = gen.run(GenerationRequest("calm piano ballad", duration=6))   # wave, sample_rate, info, controls

Why one pipeline: every generator family (``cadenza.protocols.Generator``, found by
``cadenza.registry.load_model``) is served by the same code. The pipeline encodes the prompt,
resolves the controls, encodes known audio into the representation's frames, walks long
outputs in overlapping windows and hands each window to ``generator.sample`` with the known
frames held fixed, then decodes and blends. Generation, continuation and inpainting are one
known-mask path (``run``); ``generate`` / ``continue_audio`` / ``inpaint`` only build the
``GenerationRequest``. Results are returned (``GenerationResult``), never kept on the object,
so one loaded model can serve concurrent jobs; ``last_info`` / ``last_controls`` remain as a
deprecated mirror of the latest wrapper call.

Controls may be given as ``ControlSet``s, creator files or strings (melody.csv / .mid / a note
string; dynamics.csv / a shape name; rhythm.csv / a tempo via ``bpm``) — all fitted to the
requested duration — or as raw frame arrays, which must already have one row per frame.
``evaluate`` scores any audio against controls with the evaluation's own adherence metric.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cadenza.audio import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE, check_waveform, frames_for_duration, resample
from cadenza.conditioning.cfg import parse_control_scale
from cadenza.conditioning.controls import check_trained_on, controls_to_tensors
from cadenza.conditioning.dynamics_guidance import check_strength
from cadenza.conditioning.text import TextEncoder, build_text_encoder
from cadenza.controls.base import ControlSet
from cadenza.controls.registry import CONTROLS, ControlSpec, _resolve, control_names
from cadenza.errors import CadenzaError
from cadenza.generators.model import resolve_model_dir
from cadenza.limits import MAX_GUIDANCE, check_duration, check_float, check_guidance, check_sample_rate, check_seed, check_seeds, check_steps, check_threads
from cadenza.protocols import GenerationRequest, Generator
from cadenza.registry import load_model
from cadenza.representations.mel import MelRepresentation, VocoderHandle, load_vocoder_handle

__all__ = [
    "Cadenza", "GenerationRequest", "GenerationResult", "VocoderHandle", "blend_weights", "controls_summary",
    "load_vocoder_handle", "resolve_controls",
]

FADE_FRAMES = 6  # crossfade between given and generated audio (≈ 70 ms)
ControlInput = Any  # ControlSet | np.ndarray | str | os.PathLike | None
ProgressCallback = Callable[[int, int], None]  # (steps done, steps in total)


def _check_frames(name: str, arr: np.ndarray, n_frames: int, spec: ControlSpec) -> np.ndarray:
    try:
        arr = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # objects, strings, ragged lists
        raise CadenzaError(f"{name} control: an array of {np.asarray(arr).dtype} is not numbers", "give float frame values (or a file / ControlSet)") from None
    ok_shapes = [(n_frames, *spec.shape)] + [(n_frames, *other) for other in spec.array_shapes]
    if arr.shape not in ok_shapes:
        raise CadenzaError(
            f"{name} control has shape {arr.shape} but the output has {n_frames} frames (expected {ok_shapes[0]})",
            f"give one row per frame ({FRAME_RATE:.2f} frames/s: {n_frames} frames for this duration), "
            "or pass a ControlSet / control file, which is fitted to the duration",
        )
    return arr


def check_control_names(names: Any) -> None:
    """One clear error for a control keyword that names no registered control."""
    unknown = sorted(set(names) - set(control_names()))
    if unknown:
        raise CadenzaError(f"unknown control '{unknown[0]}'", f"controls are {', '.join(control_names())}")


def resolve_controls(
    n_frames: int,
    melody: ControlInput = None,
    dynamics: ControlInput = None,
    rhythm: ControlInput = None,
    controls: ControlSet | None = None,
    bpm: float | None = None,
    meter: str | int = 4,
    **more: ControlInput,
) -> tuple[ControlSet, dict[str, str]]:
    """Every way of giving controls → one ControlSet of ``n_frames`` frames, plus a source per control.

    The shipped three keep their positional places; any other registered control is a keyword
    (``chords=...``). How each is read (arrays, files, strings, ``bpm``) is its registry entry's.
    """
    check_control_names(more)
    given = {"melody": melody, "dynamics": dynamics, "rhythm": rhythm, **more}
    sources = {name: "free" for name in control_names()}
    if controls is not None:
        if not isinstance(controls, ControlSet):
            raise CadenzaError(f"controls must be a ControlSet, got {type(controls).__name__}", "use Cadenza.extract_controls or ControlSet.load")
        out = controls.fit_length(n_frames)
        sources.update({name: "ControlSet" for name in out.given()})
    else:
        out = ControlSet.empty(n_frames)

    def one(name: str, value: ControlInput) -> ControlSet | None:
        spec = CONTROLS[name]
        if value is None:
            return None
        if isinstance(value, ControlSet):
            sources[name] = "ControlSet"
            return value.fit_length(n_frames)
        if isinstance(value, (np.ndarray, list, torch.Tensor)):
            sources[name] = "array"
            arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            arr = _check_frames(name, arr, n_frames, spec)
            if arr.shape[1:] != spec.shape and spec.array_ref:  # the control's other array form (melody: pitch classes)
                return _resolve(spec.array_ref)(arr, n_frames)
            return ControlSet(n_frames, **{name: arr, spec.mask_field: np.ones(n_frames, np.float32)})
        if isinstance(value, (str, os.PathLike)):
            sources[name] = str(value)
            return spec.render(value, n_frames, bpm=bpm or 120.0)  # each control's creator formats (controls/registry.py)
        raise CadenzaError(f"{name}: cannot use a {type(value).__name__} as a control", "give a file path, a string, an array or a ControlSet")

    for name in control_names():
        cs = one(name, given.get(name))
        if cs is not None:
            out = out.with_control(name, cs)
    if bpm is not None:  # a control made from the tempo (rhythm) when it is not given otherwise
        for spec in CONTROLS.values():
            if spec.tempo_ref and given.get(spec.name) is None:
                out = out.with_control(spec.name, _resolve(spec.tempo_ref)(bpm, meter, n_frames).fit_length(n_frames))
                sources[spec.name] = f"bpm {bpm:g}, meter {meter}"
    return out, sources


def controls_summary(cs: ControlSet, sources: dict[str, str]) -> dict[str, dict]:
    """Per control: where it came from and on what fraction of the frames it is given."""
    summary = {}
    for name, spec in CONTROLS.items():
        mask = spec.mask(cs)
        entry: dict[str, Any] = {"given": bool(mask.any()), "coverage": round(float(mask.mean()), 4), "source": sources.get(name, "free")}
        entry.update(spec.summary(cs))
        summary[name] = entry
    return summary


def _windows_to_sample(known: np.ndarray, window: int, overlap: int) -> list[tuple[int, int]]:
    """The [start, end) frame windows that long-form sampling visits, left to right.

    Windows of ``window`` frames overlap by ``overlap``; one whose frames are all known already
    (given audio, or earlier windows) is skipped. Planned before sampling so progress has a total.
    """
    have = np.asarray(known, dtype=bool).copy()
    n_frames = len(have)
    spans, start = [], 0
    while True:
        end = min(start + window, n_frames)
        if end - start < 2:
            break
        if not have[start:end].all():
            spans.append((start, end))
            have[start:end] = True
        if end == n_frames:
            break
        start = end - overlap
    return spans


def _mono(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """A checked mono float32 waveform from NumPy or torch, (channels, samples) mixed down."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = check_waveform(audio, "audio")
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def _window_progress(progress: ProgressCallback | None, window: int, n_windows: int) -> ProgressCallback | None:
    """The sampler's per-window ``(step, n)`` callback, turned into steps over all windows."""
    if progress is None:
        return None
    return lambda step, n: progress(window * n + step, n_windows * n)


def _span_mask(n_frames: int, start: Any, end: Any) -> np.ndarray:
    """The known-frame mask of inpainting seconds [start, end) of a clip of ``n_frames`` frames (0 = regenerate)."""
    total = (n_frames - 1) / FRAME_RATE
    start, end = check_float("start", start, unit=" s"), check_float("end", end, unit=" s")
    if not (0 <= start < end <= total + 1e-6):
        raise CadenzaError(f"inpainting span [{start:g}, {end:g}) s is not inside the clip (0 to {total:.2f} s)", "give 0 <= start < end <= clip length")
    f0, f1 = int(np.floor(start * FRAME_RATE)), int(np.ceil(end * FRAME_RATE)) + 1
    mask = np.ones(n_frames, np.float32)
    mask[f0 : min(f1, n_frames)] = 0
    return mask


def _rep_name(representation: Any) -> str:
    """How a result's record names what decoded it: the vocoder's name, or a codec's model id."""
    return str(getattr(representation, "name", None) or getattr(representation, "model_id", None) or type(representation).__name__)


def nearest_frames(n_to: int, rate_to: float, n_from: int, rate_from: float) -> np.ndarray:
    """For each of ``n_to`` frames at ``rate_to``, the index of the frame at ``rate_from`` nearest its time.

    Why: the controls and a known-frame mask live on the mel grid (86.13 fps); a family whose
    representation has another frame rate (a codec) needs them on its own grid. Equal rates give
    the identity, so the mel family is untouched.
    """
    idx = np.floor(np.arange(n_to, dtype=np.float64) * (rate_from / rate_to) + 0.5).astype(np.int64)
    return np.clip(idx, 0, max(n_from - 1, 0))


def blend_weights(known_frames: np.ndarray, n_samples: int, fade_frames: int = FADE_FRAMES) -> np.ndarray:
    """Per-sample weight of the given audio: 1 deep inside known frames, ramping to 0 at their edges."""
    from scipy.ndimage import distance_transform_edt

    known = np.asarray(known_frames, dtype=bool)
    if not known.any() or known.all():
        return np.full(n_samples, float(known.all()), np.float32)
    # frames to the nearest unknown frame; the clip's own ends are not seams, so pad with "known"
    dist = distance_transform_edt(np.pad(known, 1, constant_values=True))[1:-1]
    w_frames = np.clip((dist - 1) / max(fade_frames, 1), 0.0, 1.0)
    return np.interp(np.arange(n_samples) / HOP_LENGTH, np.arange(len(known)), w_frames).astype(np.float32)


@dataclass(frozen=True)
class GenerationResult:
    """What one request made: returned by ``Cadenza.run``, never stored on the pipeline.

    ``wave`` is (samples,) for one seed, (n_seeds, samples) for several; ``info`` is the record
    written beside the audio (task, prompt, settings, controls summary, seed, model id,
    timings); ``controls`` the ``ControlSet`` the generator followed (to score the output
    against); ``frames`` the sampled representation frames (B, …, T) before decoding.
    """

    wave: np.ndarray
    sample_rate: int
    info: dict
    controls: ControlSet
    frames: torch.Tensor | None = None


@dataclass(frozen=True)
class _Known:
    """A request's known audio on the output grid: frames to hold, their mask, the audio to blend back."""

    frames: torch.Tensor  # (1, channels, n_frames) in the representation's units (codes for a codec)
    mask: torch.Tensor  # (1, n_frames) on the representation's frame grid, 1 = keep
    control_mask: np.ndarray  # the same on the control (mel) grid: blending back and the control frame count
    wave: np.ndarray  # the given audio at the pipeline's rate (mono)
    info: dict  # task-specific entries of the result's info


@dataclass
class Cadenza:
    """A loaded generator family (``generator``: a ``protocols.Generator``) + text encoder + representation.

    ``last_info`` / ``last_controls`` are deprecated: the latest ``generate`` / ``continue_audio``
    / ``inpaint`` call's result, kept for old callers; concurrent users read ``run``'s result.
    """

    net: torch.nn.Module | None
    config: dict
    folder: Path
    text_encoder: TextEncoder
    vocoder: VocoderHandle | None
    model_id: str = ""
    last_info: dict = field(default_factory=dict)
    last_controls: ControlSet | None = None
    sample_rate: int = SAMPLE_RATE
    generator: Generator | None = None
    representation: MelRepresentation | None = None

    def __post_init__(self) -> None:
        if self.generator is None:  # built from a bare ControlNet network (older callers)
            from cadenza.generators.adapter import ControlNetGenerator

            self.generator = ControlNetGenerator(self.net, self.config)
        if self.representation is None:
            if self.vocoder is None:
                raise CadenzaError("a pipeline needs a representation or a vocoder", "pass vocoder= (mel families) or representation= (codec families)")
            self.representation = MelRepresentation(self.vocoder)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str | os.PathLike | None = None, vocoder: str | None = None, threads: int | None = None) -> "Cadenza":
        """The model folder ``model`` (None: the shipped model) of any registered generator family.

        ``vocoder`` overrides the config's. The folder goes through ``registry.load_model``, so
        a family registered anywhere (``@register_family(kind="generator", ...)``) loads here.
        """
        threads = check_threads(threads)
        if threads:
            torch.set_num_threads(int(threads))
        folder = resolve_model_dir(model)
        loaded = load_model(folder, kind="generator")
        config = loaded.config
        if not isinstance(loaded.model, Generator):
            raise CadenzaError(
                f"{loaded.folder}: family {loaded.family.key} has no sample(request, conditions, progress)",
                "register the family with wrap= returning a cadenza.protocols.Generator",
            )
        text = build_text_encoder(config.get("text_encoder", "minilm"), config.get("model", {}).get("text_dim", 384))
        own = getattr(loaded.model, "representation", None)  # a family that brings its own (a token model: its codec)
        if own is not None:
            if vocoder is not None:
                raise CadenzaError(f"{folder} decodes through its own representation ({_rep_name(own)}), not a vocoder", "leave out --vocoder for this model")
            return cls(loaded.net, config, folder, text, None, loaded.model_id, generator=loaded.model, representation=own)
        voc = load_vocoder_handle(
            vocoder or config.get("vocoder", "default"), config.get("vocoder_fallback", "griffin-lim"), int(config.get("griffin_lim_iters", 32))
        )
        return cls(loaded.net, config, folder, text, voc, loaded.model_id, generator=loaded.model)

    @property
    def sampling(self) -> dict:
        return self.config.get("sampling", {})

    @property
    def decoding(self) -> dict | None:
        """A token family's decoding settings (temperature, top-k/p, MAGNeT's iterations), where steps and sampler do not apply; None for diffusion."""
        gen = getattr(self, "generator", None)
        sampling = getattr(gen, "sampling", None)
        if not isinstance(sampling, dict) or not hasattr(gen, "frames_for"):
            return None
        return {k: sampling[k] for k in ("temperature", "top_k", "top_p", "iterations") if k in sampling}

    @property
    def frame_rate(self) -> float:
        """Frames per second of the representation the generator samples (the mel's 86.13, or a codec's)."""
        return float(getattr(self.representation, "frame_rate", FRAME_RATE))

    def frames_for(self, seconds: float) -> int:
        """The generator's frame count for ``seconds`` (the mel grid's own count when its rate is the mel's)."""
        if abs(self.frame_rate - FRAME_RATE) < 1e-9:
            return frames_for_duration(seconds)
        own = getattr(self.generator, "frames_for", None)
        return int(own(seconds)) if callable(own) else max(1, int(np.ceil(seconds * self.frame_rate)))

    # ------------------------------------------------------------------ requests
    def request(
        self,
        prompt: str,
        *,
        duration: float | None = None,
        seed: int | Sequence[int] = 0,
        steps: int | None = None,
        cfg: float | None = None,
        controls: ControlSet | None = None,
        bpm: float | None = None,
        meter: str | int = 4,
        sampler: str | None = None,
        control_cfg: float | dict[str, float] | str | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
        sample_rate: int = SAMPLE_RATE,
        span: tuple[float, float] | None = None,
        dynamics_guidance: float | None = None,
        downbeat_cfg: float | None = None,
        **named: ControlInput,
    ) -> GenerationRequest:
        """Loose arguments (numbers as strings, one seed or a list) → one checked ``GenerationRequest``.

        Why: the wrappers, the CLI and the studio take user input in many forms; this is the one
        place it becomes a request, so each bad value is the same one-line error everywhere.
        ``audio`` alone asks for a continuation of it; with ``span=(start, end)`` seconds, for an
        inpainting of that span (the output keeps the clip's length). Every other keyword names a
        registered control (``melody=``, ``dynamics=``, ``rhythm=``, …); an unknown one is an error.
        """
        check_control_names(named)
        self._settings(steps, cfg, sampler, control_cfg)
        if dynamics_guidance is not None:
            self._dynamics_guidance(dynamics_guidance)
        if downbeat_cfg is not None:
            self._downbeat_cfg(downbeat_cfg)
        if duration is not None:
            duration = check_duration(duration)
        seeds = tuple(check_seeds(seed))
        if not isinstance(prompt, str):
            raise CadenzaError(f"prompt must be a string, got {type(prompt).__name__}", "pass text such as 'calm piano'")
        known_audio = known_mask = None
        if audio is not None or span is not None:
            if audio is None:
                raise CadenzaError("an inpainting span needs the audio it is in", "pass audio= with span=")
            rate = check_sample_rate(sample_rate)
            known_audio = resample(_mono(audio), rate, SAMPLE_RATE)
        if span is not None:
            known_mask = _span_mask(len(known_audio) // HOP_LENGTH + 1, *span)
        return GenerationRequest(
            prompt, duration=duration, seeds=seeds, controls={name: named.get(name) for name in control_names()},
            control_set=controls, bpm=bpm, meter=meter, known_audio=known_audio, known_sample_rate=SAMPLE_RATE if known_audio is not None else None,
            known_mask=known_mask, steps=steps, cfg=cfg, control_cfg=control_cfg, sampler=sampler,
            dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg,
        )

    def _settings(self, steps: Any, cfg: Any, sampler: Any, control_cfg: Any) -> tuple[int, float, str, float | dict[str, float]]:
        """Checked sampler settings, each the argument or else the config's ``sampling`` default."""
        steps = check_steps(self.sampling.get("steps", 25) if steps is None else steps)
        cfg = check_guidance(self.sampling.get("cfg", 3.0) if cfg is None else cfg)
        choices = tuple(getattr(self.generator, "samplers", ()) or ())
        sampler = sampler or self.sampling.get("sampler", choices[0] if choices else "default")
        if not isinstance(sampler, str) or (choices and sampler not in choices):
            raise CadenzaError(f"unknown sampler '{sampler}'", "choose one of " + ", ".join(choices) if choices else "a sampler name is a string")
        # control guidance (0 = off): the argument, else the config's ``sampling.control_cfg``
        scale = parse_control_scale(self.sampling.get("control_cfg", 0.0) if control_cfg is None else control_cfg, self.trained_controls)
        return steps, cfg, sampler, scale

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` with the model's defaults filled in and its settings checked (steps, cfg, sampler, control_cfg).

        What a caller records to reproduce a run exactly (the evaluation's settings, the studio's).
        """
        if not isinstance(request, GenerationRequest):
            raise CadenzaError(f"expected a GenerationRequest, got {type(request).__name__}", "build one with Cadenza.request(...) or cadenza.protocols.GenerationRequest")
        steps, cfg, sampler, scale = self._settings(request.steps, request.cfg, request.sampler, request.control_cfg)
        return replace(request, steps=steps, cfg=cfg, sampler=sampler, control_cfg=scale,
                       dynamics_guidance=self._dynamics_guidance(request.dynamics_guidance), downbeat_cfg=self._downbeat_cfg(request.downbeat_cfg))

    @property
    def supports_dynamics_guidance(self) -> bool:
        """Whether the generator corrects loudness while sampling (diffusion over mels does; token models do not)."""
        return bool(getattr(self.generator, "supports_dynamics_guidance", False))

    def _dynamics_guidance(self, value: Any) -> float:
        """The checked strength: the argument, else the config's ``sampling.dynamics_guidance``, else 0 (off).

        A non-zero strength asked of a generator that cannot apply it is an error, not a silent no-op.
        """
        if value is None:
            return check_strength(self.sampling.get("dynamics_guidance", 0.0)) if self.supports_dynamics_guidance else 0.0
        strength = check_strength(value)
        if strength and not self.supports_dynamics_guidance:
            raise CadenzaError(
                f"this model ({self.model_id}) cannot apply dynamics guidance",
                "it is a loudness correction of the diffusion generator's mel output; leave it unset or 0 here",
            )
        return strength

    def _downbeat_cfg(self, value: Any) -> float:
        """The checked downbeat guidance scale: the argument, else the config's ``sampling.downbeat_cfg``, else 0 (off).

        Like dynamics guidance, a non-zero scale asked of a generator without that branch is an error.
        """
        supported = bool(getattr(self.generator, "supports_downbeat_cfg", False))
        default = self.sampling.get("downbeat_cfg") if supported else None
        hint = f"use 0 (off) to {MAX_GUIDANCE:g}" + (f"; this model's default is {default}" if default else "")
        if value is None:
            return check_guidance(self.sampling.get("downbeat_cfg", 0.0), "downbeat_cfg", hint) if supported else 0.0
        scale = check_guidance(value, "downbeat_cfg", hint)
        if scale and not supported:
            raise CadenzaError(
                f"this model ({self.model_id}) has no downbeat guidance",
                "it is a guidance branch of the diffusion generator; leave downbeat_cfg unset or 0 here",
            )
        return scale

    # ------------------------------------------------------------------ the one known-mask path
    def run(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        """Serve one request (generation, continuation or inpainting) and return its result.

        Nothing is stored on the pipeline. ``progress(done, total)`` is called after every
        sampler step, all windows of a long output counted together.
        """
        t0 = time.perf_counter()
        req = self.resolve(request)
        known = self._known(req)
        if known is None:
            default = req.control_set.duration if isinstance(req.control_set, ControlSet) else float(self.sampling.get("duration", 6.0))
            duration = check_duration(default if req.duration is None else req.duration)
            n_frames, n_samples = frames_for_duration(duration), int(round(duration * SAMPLE_RATE))
            n_gen = self.frames_for(duration)
            extra: dict = {"duration_s": duration, "n_frames": n_frames}
        else:
            n_frames, n_gen, n_samples, extra = len(known.control_mask), known.mask.shape[-1], known.info.pop("n_samples"), known.info
        cs, sources = self._controls(req, n_frames)
        t1 = time.perf_counter()
        frames = self._sample(req, cs, n_gen, known, progress)
        t2 = time.perf_counter()
        wave = self._render(frames, n_samples)
        if known is not None:
            w = blend_weights(known.control_mask > 0, n_samples)
            orig = np.zeros(n_samples, np.float32)
            orig[: min(len(known.wave), n_samples)] = known.wave[:n_samples]
            wave = (w * orig + (1 - w) * wave).astype(np.float32)
        t3 = time.perf_counter()
        task = "generate" if known is None else ("continue" if req.known_mask is None else "inpaint")
        info = self._info(req, task, extra, cs, sources, t0, {"controls_s": round(t1 - t0, 3), "sampling_s": round(t2 - t1, 3), "vocoder_s": round(t3 - t2, 3)})
        return GenerationResult(wave[0] if len(req.seeds) == 1 else wave, self.sample_rate, info, cs, frames)

    def run_batch(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[GenerationResult]:
        """Several generation requests that differ only in seed and controls, sampled as one batch.

        Why: the evaluation runs every control subset of a case with one prompt, length and seed;
        one batch shares the diffusion steps. Each output is vocoded on its own, so each result
        equals ``run`` of its request alone (Griffin-Lim's initial phase depends on the batch).
        """
        reqs = [self.resolve(r) for r in requests]
        if not reqs:
            raise CadenzaError("no requests to run", "pass at least one GenerationRequest")
        first = reqs[0]
        shared = ("prompt", "duration", "steps", "cfg", "sampler", "control_cfg", "dynamics_guidance", "downbeat_cfg")
        for r in reqs:
            if any(getattr(r, k) != getattr(first, k) for k in shared) or r.known_audio is not None or len(r.seeds) != 1:
                raise CadenzaError(
                    "a batch needs requests with one prompt, duration and settings, one seed each and no known audio",
                    "run the others one by one with Cadenza.run",
                )
        t0 = time.perf_counter()
        duration = check_duration(first.duration if first.duration is not None else float(self.sampling.get("duration", 6.0)))
        n_frames, n_samples = frames_for_duration(duration), int(round(duration * SAMPLE_RATE))
        resolved = [self._controls(r, n_frames) for r in reqs]
        batch = replace(first, seeds=tuple(r.seeds[0] for r in reqs))
        t1 = time.perf_counter()
        frames = self._sample(batch, [cs for cs, _ in resolved], self.frames_for(duration), None, progress)
        t2 = time.perf_counter()
        out = []
        for i, (r, (cs, sources)) in enumerate(zip(reqs, resolved)):
            t3 = time.perf_counter()
            wave = self._render(frames[i : i + 1], n_samples)[0]
            timings = {"controls_s": round(t1 - t0, 3), "sampling_s": round(t2 - t1, 3), "vocoder_s": round(time.perf_counter() - t3, 3)}
            info = self._info(r, "generate", {"duration_s": duration, "n_frames": n_frames}, cs, sources, t0, timings)
            out.append(GenerationResult(wave, self.sample_rate, info, cs, frames[i : i + 1]))
        return out

    # ------------------------------------------------------------------ steps of run
    def _known(self, req: GenerationRequest) -> _Known | None:
        """The request's known audio on the output grid, or None for a plain generation.

        Without ``known_mask`` (a continuation) the output runs to ``duration`` (default: the
        clip plus the config's duration) and the clip's frames are held, except its last two,
        which see reflect padding and are redone. With one (an inpainting), the output has the
        clip's length and the mask says which of its frames to keep.
        """
        if req.known_audio is None:
            return None
        sr = SAMPLE_RATE if req.known_sample_rate is None else req.known_sample_rate
        wave = resample(_mono(req.known_audio), check_sample_rate(sr), SAMPLE_RATE)
        given = self.representation.encode(wave)  # (channels, T): mels, or (codebooks, T) codes
        if given.dim() == 3:  # a representation that always answers with a batch axis
            given = given[0]
        n_clip, n_mel = given.shape[-1], len(wave) // HOP_LENGTH + 1
        rate = self.frame_rate
        clip_s = (n_mel - 1) / FRAME_RATE
        if req.known_mask is None:
            duration = check_duration(clip_s + float(self.sampling.get("duration", 6.0)) if req.duration is None else req.duration)
            n_known = n_clip - 2  # the clip's last frames see its end (padding): redone
            if duration <= clip_s + 0.1 or n_known < 1:
                raise CadenzaError(
                    f"continuation needs a total duration longer than the given clip ({clip_s:.2f} s), got {duration:g} s",
                    "--duration is the total length of the output, clip included",
                )
            n_frames = self.frames_for(duration)
            mask = torch.zeros(1, n_frames)
            mask[:, :n_known] = 1
            n_ctrl = frames_for_duration(duration)
            control_mask = mask[0].numpy()[nearest_frames(n_ctrl, FRAME_RATE, n_frames, rate)]
            info = {"duration_s": duration, "given_s": round(clip_s, 3), "n_frames": n_ctrl, "n_samples": int(round(duration * SAMPLE_RATE))}
        else:
            keep = np.asarray(req.known_mask, dtype=np.float32).reshape(-1)
            if keep.shape != (n_mel,):
                raise CadenzaError(f"known_mask has {keep.size} frames but the known audio has {n_mel}", "give one mask value per frame of the audio (len // 256 + 1)")
            control_mask = (keep > 0).astype(np.float32)
            n_frames = n_clip
            mask = torch.from_numpy(control_mask[nearest_frames(n_clip, rate, n_mel, FRAME_RATE)])[None]
            free = np.flatnonzero(keep <= 0)
            span = [round(free[0] / FRAME_RATE, 3), round((free[-1] + 1) / FRAME_RATE, 3)] if free.size else [0.0, 0.0]
            info = {"span_s": span, "duration_s": round(clip_s, 3), "n_samples": len(wave)}
        frames = torch.zeros(1, given.shape[0], n_frames, dtype=given.dtype)
        m = min(n_clip, n_frames)
        frames[..., :m] = given[:, :m]
        return _Known(frames, mask, control_mask, wave, info)

    @property
    def trained_controls(self) -> tuple[str, ...]:
        """The controls the generator follows: its network's (config ``model.controls``), else every registered one."""
        return tuple(getattr(self.generator, "control_names", None) or control_names())

    def _controls(self, req: GenerationRequest, n_frames: int) -> tuple[ControlSet, dict[str, str]]:
        check_control_names(req.controls)
        cs, sources = resolve_controls(n_frames, controls=req.control_set, bpm=req.bpm, meter=req.meter, **req.controls)
        check_trained_on(cs.given(), self.trained_controls)
        return cs, sources

    def _sample(
        self, req: GenerationRequest, cs: ControlSet | list[ControlSet], n_frames: int, known: _Known | None,
        progress: ProgressCallback | None,
    ) -> torch.Tensor:
        """Frames (B = one per seed, …, n_frames): windows of ``max_window_s`` joined by inpainting when longer.

        Each window goes to ``generator.sample`` with the frames already there (given audio,
        earlier windows) as known frames; the per-seed random generators are shared by all
        windows. ``cs`` may be a list (one ControlSet per batch row, for ``run_batch``).
        ``n_frames`` counts the representation's frames; the controls stay on the mel grid and
        each window gets the control frames of its own time span (the same frames when the
        representation is the mel).
        """
        b = len(req.seeds)
        text = self.text_encoder.encode([req.prompt])
        gens = [torch.Generator().manual_seed(int(s)) for s in req.seeds]
        ctrl = controls_to_tensors(cs)
        window = self.frames_for(float(self.sampling.get("max_window_s", 24.0)))
        overlap = min(self.frames_for(float(self.sampling.get("window_overlap_s", 2.0))), window // 2)
        same_grid = abs(self.frame_rate - FRAME_RATE) < 1e-9
        to_mel = FRAME_RATE / self.frame_rate
        # a generator with working units of its own (the diffusion adapter: standardised mels) keeps the
        # buffer in them, so known frames and earlier windows reach later windows without a round trip
        native = all(callable(getattr(self.generator, m, None)) for m in ("sample_native", "to_native", "from_native"))
        sample = self.generator.sample_native if native else self.generator.sample
        out = None if known is None else known.frames.expand(b, -1, -1).clone()
        if native and out is not None:
            out = self.generator.to_native(out)
        have = torch.zeros(b, n_frames) if known is None else known.mask.expand(b, -1).clone().float()
        spans = _windows_to_sample((have > 0).all(0).numpy(), window, overlap)
        for i, (start, end) in enumerate(spans):
            sl = slice(start, end)
            csl = sl if same_grid else slice(int(np.floor(start * to_mel + 0.5)), int(np.floor(end * to_mel + 0.5)))
            conditions: dict[str, Any] = {"text": text, "controls": {k: v[:, csl] for k, v in ctrl.items()}, "n_frames": end - start, "generators": gens}
            if out is not None and bool((have[:, sl] > 0).any()):
                conditions.update(known=out[..., sl], known_mask=have[:, sl])
            x = sample(req, conditions, _window_progress(progress, i, len(spans)))
            if out is None:
                out = torch.zeros(b, *x.shape[1:-1], n_frames, dtype=x.dtype)
            out[..., sl] = x
            have[:, sl] = 1
        if out is None:
            raise CadenzaError(f"nothing to generate in {n_frames} frames", "ask for a longer duration")
        return self.generator.from_native(out) if native else out

    def _render(self, frames: torch.Tensor, n_samples: int) -> np.ndarray:
        """Decode frames to exactly ``n_samples`` samples each, peak-limited below full scale."""
        wave = self.representation.decode(frames)
        if isinstance(wave, torch.Tensor):
            wave = wave.detach().cpu().float().numpy()
        wave = np.asarray(wave, dtype=np.float32).reshape(frames.shape[0], -1)
        if wave.shape[-1] < n_samples:
            wave = np.pad(wave, ((0, 0), (0, n_samples - wave.shape[-1])))
        wave = wave[:, :n_samples]
        peak = np.abs(wave).max(axis=-1, keepdims=True)
        return np.where(peak > 0.99, wave * (0.99 / np.maximum(peak, 1e-9)), wave).astype(np.float32)

    def _info(self, req: GenerationRequest, task: str, extra: dict, cs: ControlSet, sources: dict, t0: float, timings: dict) -> dict:
        """The result's record: what was asked, what was used, and how long each stage took."""
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        seeds = list(req.seeds)
        info = {
            "task": task, "prompt": req.prompt, **extra, "steps": req.steps, "cfg": req.cfg, "control_cfg": req.control_cfg,
            "dynamics_guidance": req.dynamics_guidance, "downbeat_cfg": req.downbeat_cfg,
            "sampler": req.sampler, "controls": controls_summary(cs, sources),
            "seed": seeds if len(seeds) > 1 else seeds[0], "model_id": self.model_id, "model_dir": str(self.folder),
            "vocoder": _rep_name(self.representation), "sample_rate": self.sample_rate, "timings": timings, "threads": torch.get_num_threads(),
            **({"decoding": self.decoding} if self.decoding else {}),
        }
        if self.vocoder is not None and self.vocoder.note:
            info["vocoder_note"] = self.vocoder.note
        return info

    def _legacy(self, result: GenerationResult) -> tuple[np.ndarray, int]:
        """``(wave, sample_rate)`` as the wrappers always returned, mirroring the result into the deprecated attributes."""
        self.last_info, self.last_controls = result.info, result.controls
        return result.wave, result.sample_rate

    # ------------------------------------------------------------------ public API (thin wrappers over run)
    def generate(
        self,
        prompt: str,
        melody: ControlInput = None,
        dynamics: ControlInput = None,
        rhythm: ControlInput = None,
        duration: float | None = None,
        seed: int | Sequence[int] = 0,
        steps: int | None = None,
        cfg: float | None = None,
        *,
        controls: ControlSet | None = None,
        bpm: float | None = None,
        meter: str | int = 4,
        sampler: str | None = None,
        progress: ProgressCallback | None = None,
        control_cfg: float | dict[str, float] | str | None = None,
        dynamics_guidance: float | None = None,
        downbeat_cfg: float | None = None,
        **more: ControlInput,
    ) -> tuple[np.ndarray, int]:
        """Audio for ``prompt`` under the given controls: ``(waveform, sample_rate)``.

        ``seed`` may be a list: one output per seed, generated as one batch, returned as
        (n_seeds, samples). ``duration`` defaults to the ControlSet's length when one is
        given, else the config's (6 s for the shipped model). ``progress(done, total)`` is
        called after every sampler step (all windows of a long output counted together).
        ``cfg`` guides on the text; ``control_cfg`` on the controls, inside their masks: one
        scale for all given controls, or per control (``{"melody": 3, "rhythm": 2}`` or
        ``"melody=3,rhythm=2"``); None takes the config's ``sampling.control_cfg``, 0 is off.
        ``dynamics_guidance`` (0–1) gives the finished output's loudness the contour of the given
        dynamics curve, and ``downbeat_cfg`` pushes beat 1 of each bar of the given rhythm (both
        diffusion models only); None takes the config's default, 0 is off.
        """
        request = self.request(
            prompt, melody=melody, dynamics=dynamics, rhythm=rhythm, **more, duration=duration, seed=seed, steps=steps, cfg=cfg,
            controls=controls, bpm=bpm, meter=meter, sampler=sampler, control_cfg=control_cfg, dynamics_guidance=dynamics_guidance,
            downbeat_cfg=downbeat_cfg,
        )
        return self._legacy(self.run(request, progress))

    def continue_audio(
        self,
        audio: np.ndarray,
        prompt: str,
        duration: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        melody: ControlInput = None,
        dynamics: ControlInput = None,
        rhythm: ControlInput = None,
        seed: int = 0,
        steps: int | None = None,
        cfg: float | None = None,
        *,
        controls: ControlSet | None = None,
        bpm: float | None = None,
        meter: str | int = 4,
        sampler: str | None = None,
        progress: ProgressCallback | None = None,
        control_cfg: float | dict[str, float] | str | None = None,
        dynamics_guidance: float | None = None,
        downbeat_cfg: float | None = None,
        **more: ControlInput,
    ) -> tuple[np.ndarray, int]:
        """Extend ``audio``: the output starts with it and runs to ``duration`` seconds in total
        (default: the clip plus the config's duration). Controls cover the whole output."""
        request = self.request(
            prompt, melody=melody, dynamics=dynamics, rhythm=rhythm, **more, duration=duration, seed=check_seed(seed), steps=steps, cfg=cfg,
            controls=controls, bpm=bpm, meter=meter, sampler=sampler, control_cfg=control_cfg, audio=audio, sample_rate=sample_rate,
            dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg,
        )
        return self._legacy(self.run(request, progress))

    def inpaint(
        self,
        audio: np.ndarray,
        start: float,
        end: float,
        prompt: str,
        sample_rate: int = SAMPLE_RATE,
        melody: ControlInput = None,
        dynamics: ControlInput = None,
        rhythm: ControlInput = None,
        seed: int = 0,
        steps: int | None = None,
        cfg: float | None = None,
        *,
        controls: ControlSet | None = None,
        bpm: float | None = None,
        meter: str | int = 4,
        sampler: str | None = None,
        progress: ProgressCallback | None = None,
        control_cfg: float | dict[str, float] | str | None = None,
        dynamics_guidance: float | None = None,
        downbeat_cfg: float | None = None,
        **more: ControlInput,
    ) -> tuple[np.ndarray, int]:
        """Regenerate seconds [start, end) of ``audio`` and keep the rest; same length as the input."""
        request = self.request(
            prompt, melody=melody, dynamics=dynamics, rhythm=rhythm, **more, seed=check_seed(seed), steps=steps, cfg=cfg,
            controls=controls, bpm=bpm, meter=meter, sampler=sampler, control_cfg=control_cfg, audio=audio, sample_rate=sample_rate,
            dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg,
            span=(start, end),
        )
        result = self.run(request, progress)
        result.info["span_s"] = [float(check_float("start", start)), float(check_float("end", end))]  # as asked, not as rounded to frames
        return self._legacy(result)
    def extract_controls(self, audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> ControlSet:
        """Melody, dynamics and rhythm of a waveform, ready to pass back as ``controls=``."""
        from cadenza.controls.extract import extract_controls

        return extract_controls(_mono(audio), check_sample_rate(sample_rate))

    def evaluate(
        self,
        audio: np.ndarray | torch.Tensor,
        sample_rate: int = SAMPLE_RATE,
        controls: ControlSet | None = None,
        *,
        melody: ControlInput = None,
        dynamics: ControlInput = None,
        rhythm: ControlInput = None,
        bpm: float | None = None,
        meter: str | int = 4,
        rhythm_tracker: str = "default",
    ) -> dict[str, float]:
        """How well ``audio`` follows the controls: melody accuracy, dynamics r, beat and downbeat F1.

        Controls are given as to ``generate`` (a ``ControlSet``, creator files, strings, frame
        arrays, ``bpm``), fitted to the audio's length; a lone ControlSet is scored as it is,
        so audio of another length is an error rather than a silent crop. Scoring is
        ``cadenza.eval.adherence.score_clip``, the metric of ``cadenza eval``: controls are
        extracted from the audio and compared inside each control's mask. Returns its flat dict
        (``melody_accuracy``, ``dynamics_r``, ``beat_f1``, ``downbeat_f1`` and the counts behind
        them; NaN where a metric is undefined). Stereo is mixed down; score takes one at a time.
        """
        from cadenza.eval.adherence import score_clip

        wave = resample(_mono(audio), check_sample_rate(sample_rate), SAMPLE_RATE)
        more = any(v is not None for v in (melody, dynamics, rhythm, bpm))
        if controls is None and not more:
            raise CadenzaError("no controls to score against", "pass the controls the audio was made with, e.g. controls=gen.last_controls")
        if not isinstance(controls, ControlSet) or more:
            controls, _ = resolve_controls(len(wave) // HOP_LENGTH + 1, melody, dynamics, rhythm, controls, bpm, meter)
        return score_clip(controls, wave, SAMPLE_RATE, rhythm_tracker=rhythm_tracker)
