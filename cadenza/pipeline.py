"""``Cadenza``: the user-facing generator (text + optional, partial, time-varying controls → audio).

    from cadenza import Cadenza
    gen = Cadenza.load()                       # the shipped model (or Cadenza.load("runs/gen/model"))
    wave, sr = gen.generate("calm piano ballad", melody="C4:1 E4:1 G4:2", dynamics="crescendo",
                            bpm=90, duration=6, seed=0)

Controls may be given as ``ControlSet``s, creator files or strings (melody.csv / .mid / a note
string; dynamics.csv / a shape name; rhythm.csv / a tempo via ``bpm``) — all fitted to the
requested duration — or as raw frame arrays, which must already have one row per frame.
Anything longer than the model's window is generated as overlapping windows joined by
inpainting; ``continue_audio`` and ``inpaint`` use the same inpainting sampler with the given
audio's frames held fixed. ``evaluate`` scores any audio against controls with the evaluation's
own adherence metric.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cadenza.audio import (
    FRAME_RATE,
    HOP_LENGTH,
    SAMPLE_RATE,
    MelSpectrogram,
    check_waveform,
    denormalize_log_mel,
    frames_for_duration,
    griffin_lim,
    normalize_log_mel,
    resample,
)
from cadenza.conditioning.cfg import parse_control_scale
from cadenza.conditioning.controls import controls_to_tensors
from cadenza.conditioning.text import TextEncoder, build_text_encoder
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.controls.registry import CONTROLS
from cadenza.errors import CadenzaError
from cadenza.generators.diffusion import SAMPLERS, sample
from cadenza.generators.model import load_generator, weights_digest
from cadenza.limits import MAX_DURATION_S, check_duration, check_float, check_guidance, check_sample_rate, check_seed, check_seeds, check_steps, check_threads

FADE_FRAMES = 6  # crossfade between given and generated audio (≈ 70 ms)
ControlInput = Any  # ControlSet | np.ndarray | str | os.PathLike | None
ProgressCallback = Callable[[int, int], None]  # (steps done, steps in total)


@dataclass
class VocoderHandle:
    """Log-mel → waveform: the trained vocoder when there is one, else Griffin-Lim."""

    name: str
    vocoder: Any = None
    gl_iters: int = 32
    note: str = ""

    def __call__(self, logmel: torch.Tensor) -> np.ndarray:
        if self.vocoder is not None:
            wave = self.vocoder.decode_chunked(logmel) if logmel.shape[-1] > 2048 else self.vocoder.decode(logmel)
        else:
            wave = griffin_lim(logmel, n_iter=self.gl_iters)
        return wave.detach().cpu().numpy().astype(np.float32)


def load_vocoder_handle(
    name: str, fallback: str = "griffin-lim", gl_iters: int = 32, precision: str = "auto",
    phase_iters: int | None = None, mel_iters: int | None = None,
) -> VocoderHandle:
    """The config's vocoder ('default', a folder, or 'griffin-lim'); with ``fallback="griffin-lim"``, Griffin-Lim if it is not there.

    ``precision`` ("auto", "fp32", "bf16") is the vocoder network's; see ``resolve_precision``;
    ``phase_iters`` / ``mel_iters`` override its refinement schedule (``load_vocoder``).
    """
    if name == "griffin-lim":
        return VocoderHandle("griffin-lim", None, gl_iters)
    from cadenza.representations.vocoder import load_vocoder, resolve_vocoder_dir

    folder = resolve_vocoder_dir(name)
    if fallback == "griffin-lim" and not (folder / "config.json").is_file():
        # only a vocoder that is not there falls back; a damaged one or a wrong option is an error to fix
        return VocoderHandle("griffin-lim", None, gl_iters, note=f"vocoder '{name}' is not there (no {folder / 'config.json'}); used Griffin-Lim")
    return VocoderHandle(f"vocos:{name}", load_vocoder(name, precision=precision, phase_iters=phase_iters, mel_iters=mel_iters), gl_iters)


def _as_pitch_frames(arr: np.ndarray, n_frames: int) -> ControlSet:
    """(T, 12) one-hot rows (mask 1 everywhere) or (T,) pitch classes with -1 = free."""
    if arr.ndim == 1:
        if not np.isin(arr, np.arange(-1, 12)).all():
            raise CadenzaError("melody pitch classes must be integers -1 (free) or 0-11 (C..B)")
        pc = arr.astype(np.int64)
        onehot = np.zeros((len(pc), 12), np.float32)
        onehot[np.arange(len(pc))[pc >= 0], pc[pc >= 0]] = 1
        mask = (pc >= 0).astype(np.float32)
    else:
        onehot, mask = arr.astype(np.float32), np.ones(len(arr), np.float32)
    cs = ControlSet.empty(n_frames)
    cs.melody, cs.melody_mask = onehot, mask
    return cs.validate()


def _check_frames(name: str, arr: np.ndarray, n_frames: int, trailing: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # objects, strings, ragged lists
        raise CadenzaError(f"{name} control: an array of {np.asarray(arr).dtype} is not numbers", "give float frame values (or a file / ControlSet)") from None
    ok_shapes = [(n_frames, *trailing)] + ([(n_frames,)] if name == "melody" else [])
    if arr.shape not in ok_shapes:
        raise CadenzaError(
            f"{name} control has shape {arr.shape} but the output has {n_frames} frames (expected {ok_shapes[0]})",
            f"give one row per frame ({FRAME_RATE:.2f} frames/s: {n_frames} frames for this duration), "
            "or pass a ControlSet / control file, which is fitted to the duration",
        )
    return arr


def resolve_controls(
    n_frames: int,
    melody: ControlInput = None,
    dynamics: ControlInput = None,
    rhythm: ControlInput = None,
    controls: ControlSet | None = None,
    bpm: float | None = None,
    meter: str | int = 4,
) -> tuple[ControlSet, dict[str, str]]:
    """Every way of giving controls → one ControlSet of ``n_frames`` frames, plus a source per control."""
    from cadenza.controls import files

    sources = {name: "free" for name in CONTROL_NAMES}
    if controls is not None:
        if not isinstance(controls, ControlSet):
            raise CadenzaError(f"controls must be a ControlSet, got {type(controls).__name__}", "use Cadenza.extract_controls or ControlSet.load")
        out = controls.fit_length(n_frames)
        sources.update({name: "ControlSet" for name in out.given()})
    else:
        out = ControlSet.empty(n_frames)

    def one(name: str, value: ControlInput) -> ControlSet | None:
        if value is None:
            return None
        if isinstance(value, ControlSet):
            sources[name] = "ControlSet"
            return value.fit_length(n_frames)
        if isinstance(value, (np.ndarray, list, torch.Tensor)):
            sources[name] = "array"
            arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            arr = _check_frames(name, arr, n_frames, CONTROLS[name].shape)
            if name == "melody":
                return _as_pitch_frames(arr, n_frames)
            cs = ControlSet.empty(n_frames)
            setattr(cs, name, arr)
            setattr(cs, f"{name}_mask", np.ones(n_frames, np.float32))
            return cs.validate()
        if isinstance(value, (str, os.PathLike)):
            sources[name] = str(value)
            return CONTROLS[name].render(value, n_frames, bpm=bpm or 120.0)  # each control's creator formats (controls/registry.py)
        raise CadenzaError(f"{name}: cannot use a {type(value).__name__} as a control", "give a file path, a string, an array or a ControlSet")

    for name, value in (("melody", melody), ("dynamics", dynamics), ("rhythm", rhythm)):
        cs = one(name, value)
        if cs is not None:
            out = out.with_control(name, cs)
    if rhythm is None and bpm is not None:
        out = out.with_control("rhythm", files.rhythm_from_bpm(bpm, meter, n_frames).fit_length(n_frames))
        sources["rhythm"] = f"bpm {bpm:g}, meter {meter}"
    return out, sources


def controls_summary(cs: ControlSet, sources: dict[str, str]) -> dict[str, dict]:
    """Per control: where it came from and on what fraction of the frames it is given."""
    summary = {}
    for name in CONTROL_NAMES:
        mask = getattr(cs, f"{name}_mask")
        entry: dict[str, Any] = {"given": bool(mask.any()), "coverage": round(float(mask.mean()), 4), "source": sources.get(name, "free")}
        if name == "dynamics" and mask.any():
            vals = cs.dynamics[mask > 0]
            entry["range_db"] = [round(float(vals.min()), 2), round(float(vals.max()), 2)]
        if name == "rhythm" and mask.any():
            entry["beats"] = int(len(cs.beats))
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


@dataclass
class Cadenza:
    """A loaded generator (network + text encoder + vocoder) with the generation API."""

    net: torch.nn.Module
    config: dict
    folder: Path
    text_encoder: TextEncoder
    vocoder: VocoderHandle
    model_id: str = ""
    last_info: dict = field(default_factory=dict)
    last_controls: ControlSet | None = None
    sample_rate: int = SAMPLE_RATE

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str | os.PathLike | None = None, vocoder: str | None = None, threads: int | None = None) -> "Cadenza":
        """The model folder ``model`` (None: the shipped model); ``vocoder`` overrides the config's."""
        threads = check_threads(threads)
        if threads:
            torch.set_num_threads(int(threads))
        net, config, folder = load_generator(model)
        text = build_text_encoder(config.get("text_encoder", "minilm"), config["model"].get("text_dim", 384))
        voc = load_vocoder_handle(
            vocoder or config.get("vocoder", "default"), config.get("vocoder_fallback", "griffin-lim"), int(config.get("griffin_lim_iters", 32))
        )
        model_id = f"{config.get('model_id', 'cadenza-generator')}@{weights_digest(folder)}"
        return cls(net, config, folder, text, voc, model_id)

    @property
    def sampling(self) -> dict:
        return self.config.get("sampling", {})

    # ------------------------------------------------------------------ helpers
    def _duration_frames(self, duration: float | None, default: float) -> tuple[float, int]:
        duration = check_duration(default if duration is None else duration)
        return duration, frames_for_duration(duration)

    def _mel_of(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        sample_rate = check_sample_rate(sample_rate)
        audio = check_waveform(audio, "audio")
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        audio = resample(audio, sample_rate, SAMPLE_RATE)
        return normalize_log_mel(MelSpectrogram()(torch.from_numpy(np.ascontiguousarray(audio)))).clamp(-1, 1)

    def _check_args(self, steps: int | None, cfg: float | None, sampler: str | None) -> tuple[int, float, str]:
        steps = check_steps(self.sampling.get("steps", 25) if steps is None else steps)
        cfg = check_guidance(self.sampling.get("cfg", 3.0) if cfg is None else cfg)
        sampler = sampler or self.sampling.get("sampler", "dpmsolver++")
        if not isinstance(sampler, str) or sampler not in SAMPLERS:
            raise CadenzaError(f"unknown sampler '{sampler}'", f"choose one of {', '.join(SAMPLERS)}")
        return steps, cfg, sampler

    def _check_control_cfg(self, control_cfg: Any) -> float | dict[str, float]:
        """Control guidance scale(s): the argument, else the config's ``sampling.control_cfg`` (0 = off)."""
        value = self.sampling.get("control_cfg", 0.0) if control_cfg is None else control_cfg
        return parse_control_scale(value, CONTROL_NAMES)

    def _sample_mel(
        self,
        prompts: list[str],
        cs: ControlSet,
        n_frames: int,
        seeds: list[int],
        steps: int,
        cfg: float,
        sampler: str,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        progress: ProgressCallback | None = None,
        control_cfg: float | dict[str, float] = 0.0,
    ) -> torch.Tensor:
        """Normalised mels (B, n_mels, T); windows of ``max_window_s`` joined by inpainting when longer.

        ``known`` is in normalised-mel units too; sampling itself runs on standardised mels.
        ``progress(done, total)`` counts sampler steps over all windows that need sampling.
        """
        b = len(seeds)
        text = self.text_encoder.encode(prompts)
        if len(text) != b:
            text = text.repeat(b // len(text))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        ctrl = {k: v.expand(b, *v.shape[1:]).contiguous() for k, v in controls_to_tensors(cs).items()}
        window = frames_for_duration(float(self.sampling.get("max_window_s", 24.0)))
        overlap = min(frames_for_duration(float(self.sampling.get("window_overlap_s", 2.0))), window // 2)
        n_mels = self.net.n_mels
        out = torch.zeros(b, n_mels, n_frames) if known is None else self.net.standardize(known).expand(b, -1, -1).clone()
        have = torch.zeros(b, n_frames) if known_mask is None else known_mask.expand(b, -1).clone().float()
        spans = _windows_to_sample((have > 0).all(0).numpy(), window, overlap)
        for i, (start, end) in enumerate(spans):
            sl = slice(start, end)
            k_mask = have[:, sl]
            x = sample(
                self.net, text, {k: v[:, sl] for k, v in ctrl.items()}, end - start, gens, steps=steps, cfg=cfg,
                sampler=sampler, diffusion=self.config.get("diffusion"),
                known=out[..., sl] if bool((k_mask > 0).any()) else None, known_mask=k_mask,
                callback=_window_progress(progress, i, len(spans)), control_cfg=control_cfg,
            )
            out[..., sl] = x
            have[:, sl] = 1
        return self.net.destandardize(out)

    def _render(self, mel: torch.Tensor, n_samples: int) -> np.ndarray:
        """Vocode normalised mels to exactly ``n_samples`` samples each, peak-limited below full scale."""
        wave = self.vocoder(denormalize_log_mel(mel.clamp(-1.0, 1.0)))  # the data range; stray values only add noise
        if wave.shape[-1] < n_samples:
            wave = np.pad(wave, ((0, 0), (0, n_samples - wave.shape[-1])))
        wave = wave[:, :n_samples]
        peak = np.abs(wave).max(axis=-1, keepdims=True)
        return np.where(peak > 0.99, wave * (0.99 / np.maximum(peak, 1e-9)), wave).astype(np.float32)

    def _finish(self, info: dict, seeds: Sequence[int], t0: float, timings: dict) -> None:
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        self.last_info = {
            **info, "seed": list(seeds) if len(seeds) > 1 else seeds[0], "model_id": self.model_id,
            "model_dir": str(self.folder), "vocoder": self.vocoder.name, "sample_rate": self.sample_rate,
            "timings": timings, "threads": torch.get_num_threads(),
        }
        if self.vocoder.note:
            self.last_info["vocoder_note"] = self.vocoder.note

    # ------------------------------------------------------------------ public API
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
    ) -> tuple[np.ndarray, int]:
        """Audio for ``prompt`` under the given controls: ``(waveform, sample_rate)``.

        ``seed`` may be a list: one output per seed, generated as one batch, returned as
        (n_seeds, samples). ``duration`` defaults to the ControlSet's length when one is
        given, else the config's (6 s for the shipped model). ``progress(done, total)`` is
        called after every sampler step (all windows of a long output counted together).
        ``cfg`` guides on the text; ``control_cfg`` on the controls, inside their masks: one
        scale for all given controls, or per control (``{"melody": 3, "rhythm": 2}`` or
        ``"melody=3,rhythm=2"``); None takes the config's ``sampling.control_cfg``, 0 is off.
        """
        t0 = time.perf_counter()
        steps, cfg, sampler = self._check_args(steps, cfg, sampler)
        control_cfg = self._check_control_cfg(control_cfg)
        default = controls.duration if isinstance(controls, ControlSet) else float(self.sampling.get("duration", 6.0))
        duration, n_frames = self._duration_frames(duration, default)
        cs, sources = resolve_controls(n_frames, melody, dynamics, rhythm, controls, bpm, meter)
        seeds = check_seeds(seed)
        if not seeds:
            raise CadenzaError("no seeds given", "pass seed=0 or a list of seeds")
        t1 = time.perf_counter()
        mel = self._sample_mel([prompt], cs, n_frames, seeds, steps, cfg, sampler, progress=progress, control_cfg=control_cfg)
        t2 = time.perf_counter()
        wave = self._render(mel, int(round(duration * SAMPLE_RATE)))
        t3 = time.perf_counter()
        info = {
            "task": "generate", "prompt": prompt, "duration_s": duration, "n_frames": n_frames, "steps": steps,
            "cfg": cfg, "control_cfg": control_cfg, "sampler": sampler, "controls": controls_summary(cs, sources),
        }
        self._finish(info, seeds, t0, {"controls_s": round(t1 - t0, 3), "sampling_s": round(t2 - t1, 3), "vocoder_s": round(t3 - t2, 3)})
        self.last_controls = cs
        return (wave[0] if len(seeds) == 1 else wave), self.sample_rate

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
    ) -> tuple[np.ndarray, int]:
        """Extend ``audio``: the output starts with it and runs to ``duration`` seconds in total
        (default: the clip plus the config's duration). Controls cover the whole output."""
        t0 = time.perf_counter()
        steps, cfg, sampler = self._check_args(steps, cfg, sampler)
        control_cfg = self._check_control_cfg(control_cfg)
        given = self._mel_of(audio, sample_rate)
        clip_s = (given.shape[-1] - 1) / FRAME_RATE
        duration, n_frames = self._duration_frames(duration, clip_s + float(self.sampling.get("duration", 6.0)))
        n_known = given.shape[-1] - 2  # the last frames see reflect padding: let the model redo them
        if duration <= clip_s + 0.1 or n_known < 1:
            raise CadenzaError(
                f"continuation needs a total duration longer than the given clip ({clip_s:.2f} s), got {duration:g} s",
                "--duration is the total length of the output, clip included",
            )
        cs, sources = resolve_controls(n_frames, melody, dynamics, rhythm, controls, bpm, meter)
        known = torch.zeros(1, self.net.n_mels, n_frames)
        known[..., :n_known] = given[:, :n_known]
        known_mask = torch.zeros(1, n_frames)
        known_mask[:, :n_known] = 1
        t1 = time.perf_counter()
        mel = self._sample_mel([prompt], cs, n_frames, [check_seed(seed)], steps, cfg, sampler, known, known_mask, progress, control_cfg)
        t2 = time.perf_counter()
        n_samples = int(round(duration * SAMPLE_RATE))
        wave = self._render(mel, n_samples)[0]
        original = resample(check_waveform(audio).reshape(-1, np.shape(audio)[-1]).mean(0), sample_rate, SAMPLE_RATE)
        w = blend_weights(known_mask[0].numpy() > 0, n_samples)
        orig = np.zeros(n_samples, np.float32)
        orig[: min(len(original), n_samples)] = original[:n_samples]
        wave = (w * orig + (1 - w) * wave).astype(np.float32)
        info = {
            "task": "continue", "prompt": prompt, "duration_s": duration, "given_s": round(clip_s, 3), "n_frames": n_frames,
            "steps": steps, "cfg": cfg, "control_cfg": control_cfg, "sampler": sampler, "controls": controls_summary(cs, sources),
        }
        self._finish(info, [check_seed(seed)], t0, {"sampling_s": round(t2 - t1, 3), "vocoder_s": round(time.perf_counter() - t2, 3)})
        return wave, self.sample_rate

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
    ) -> tuple[np.ndarray, int]:
        """Regenerate seconds [start, end) of ``audio`` and keep the rest; same length as the input."""
        t0 = time.perf_counter()
        steps, cfg, sampler = self._check_args(steps, cfg, sampler)
        control_cfg = self._check_control_cfg(control_cfg)
        given = self._mel_of(audio, sample_rate)
        n_frames = given.shape[-1]
        total = (n_frames - 1) / FRAME_RATE
        start, end = check_float("start", start, unit=" s"), check_float("end", end, unit=" s")
        if not (0 <= start < end <= total + 1e-6):
            raise CadenzaError(f"inpainting span [{start:g}, {end:g}) s is not inside the clip (0 to {total:.2f} s)", "give 0 <= start < end <= clip length")
        f0, f1 = int(np.floor(start * FRAME_RATE)), int(np.ceil(end * FRAME_RATE)) + 1
        known_mask = torch.ones(1, n_frames)
        known_mask[:, f0 : min(f1, n_frames)] = 0
        cs, sources = resolve_controls(n_frames, melody, dynamics, rhythm, controls, bpm, meter)
        t1 = time.perf_counter()
        mel = self._sample_mel([prompt], cs, n_frames, [check_seed(seed)], steps, cfg, sampler, given[None], known_mask, progress, control_cfg)
        t2 = time.perf_counter()
        original = resample(check_waveform(audio).reshape(-1, np.shape(audio)[-1]).mean(0), sample_rate, SAMPLE_RATE)
        n_samples = len(original)
        wave = self._render(mel, n_samples)[0]
        w = blend_weights(known_mask[0].numpy() > 0, n_samples)
        wave = (w * original + (1 - w) * wave).astype(np.float32)
        info = {
            "task": "inpaint", "prompt": prompt, "span_s": [float(start), float(end)], "duration_s": round(total, 3),
            "steps": steps, "cfg": cfg, "control_cfg": control_cfg, "sampler": sampler, "controls": controls_summary(cs, sources),
        }
        self._finish(info, [check_seed(seed)], t0, {"sampling_s": round(t2 - t1, 3), "vocoder_s": round(time.perf_counter() - t2, 3)})
        return wave, self.sample_rate

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
