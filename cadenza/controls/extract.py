"""Extract melody, dynamics and rhythm controls from audio (the front door).

``extract_controls`` (one waveform), ``extract_controls_batch`` ((B, N) waveforms, melody and
dynamics computed for the whole batch from one shared STFT) and ``extract_from_file``
all return ``ControlSet``s on the canonical frame grid (``T = N // 256 + 1`` at 22.05 kHz).

What is set per control (see ``melody.py``, ``dynamics.py``, ``rhythm.py`` for the recipes):

- melody: one-hot pitch class on voiced frames, mask 1 on voiced frames only (silence is
  left free); ``melody_notes`` are runs of equal pitch class written in octave 4 (MIDI 60-71);
- dynamics: dBFS on every frame, mask 1 everywhere; ``dynamics_points`` one row per frame;
- rhythm: activations from ``beats_to_activations``, mask 1 everywhere (a beat-free passage
  is a statement too); ``beats`` rows of ``time_s, is_downbeat``. The tracker is the trained
  one when its weights ship (``rhythm_tracker="default"``), else the DSP one (``"dsp"``).

Controls not asked for are left free (mask 0).
"""

from __future__ import annotations

import os
from functools import lru_cache
from collections.abc import Iterable, Sequence

import numpy as np

from cadenza.audio.format import SAMPLE_RATE, frame_times, num_frames
from cadenza.audio.io import check_waveform, load_audio, resample
from cadenza.controls.base import CONTROL_NAMES, ControlSet, beats_to_activations
from cadenza.controls.dynamics import dynamics_from_projection, dynamics_weights
from cadenza.controls.melody import melody_from_projection, melody_weights, notes_from_frames
from cadenza.controls.rhythm import DSPBeatTracker, RhythmTracker, get_rhythm_tracker, onset_from_projection, onset_weights
from cadenza.controls.spectrum import analyse
from cadenza.errors import CadenzaError


def parse_control_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """``"melody,rhythm"`` or an iterable of names → validated tuple in canonical order."""
    items = names.split(",") if isinstance(names, str) else list(names)
    wanted = {str(n).strip().lower() for n in items if str(n).strip()}
    unknown = sorted(wanted - set(CONTROL_NAMES))
    if unknown:
        raise CadenzaError(f"unknown control(s): {', '.join(unknown)}", f"choose from {', '.join(CONTROL_NAMES)}")
    if not wanted:
        raise CadenzaError("no controls chosen to extract", f"name at least one of {', '.join(CONTROL_NAMES)}")
    return tuple(n for n in CONTROL_NAMES if n in wanted)


def extract_controls_batch(
    batch: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    controls: str | Sequence[str] = CONTROL_NAMES,
    rhythm_tracker: str | RhythmTracker = "default",
) -> list[ControlSet]:
    """(B, N) equal-length waveforms → one ``ControlSet`` per row.

    One STFT and one matrix product serve melody, dynamics and (for the DSP tracker) the onset
    envelope of the whole batch; only the beat DP runs per clip.
    """
    names = parse_control_names(controls)
    batch = np.asarray(batch)
    if batch.ndim != 2:
        raise CadenzaError(
            f"a batch of waveforms must be 2-D (clips, samples), got shape {batch.shape}",
            "stack equal-length mono clips with np.stack; use extract_controls for one clip",
        )
    batch = check_waveform(batch, "audio batch")
    if batch.shape[0] == 0:
        raise CadenzaError("the audio batch holds no clips", "pass at least one waveform")
    batch = resample(batch, int(sample_rate), SAMPLE_RATE)
    tracker = get_rhythm_tracker(rhythm_tracker) if "rhythm" in names else None
    n_clips, n_frames = batch.shape[0], num_frames(batch.shape[1])

    # one STFT and one matrix product over its power serve every control asked for
    parts = tuple(n for n in names if n != "rhythm") + (("rhythm",) if isinstance(tracker, DSPBeatTracker) else ())
    cols: dict[str, np.ndarray] = {}
    if parts:
        weights, widths = _projection(parts)
        cols = dict(zip(parts, np.split(analyse(batch, weights), np.cumsum(widths)[:-1], axis=-1)))

    melody = voiced = dynamics = onset = lowflux = None
    if "melody" in cols:
        melody, voiced = melody_from_projection(cols["melody"])
    if "dynamics" in cols:
        dynamics = dynamics_from_projection(cols["dynamics"])
    if "rhythm" in cols:
        onset, lowflux = onset_from_projection(cols["rhythm"])

    times = frame_times(n_frames)
    out = []
    for b in range(n_clips):
        cs = ControlSet.empty(n_frames)
        if melody is not None:
            cs.melody, cs.melody_mask = melody[b], voiced[b]
            cs.melody_notes = notes_from_frames(melody[b], voiced[b])
        if dynamics is not None:
            cs.dynamics, cs.dynamics_mask = dynamics[b], np.ones(n_frames, np.float32)
            cs.dynamics_points = np.stack([times, dynamics[b].astype(np.float64)], axis=1)
        if tracker is not None:
            if onset is not None:
                beats = tracker.track_features(onset[b], lowflux[b])
            else:
                beats = _checked_beats(tracker.track(batch[b], SAMPLE_RATE), tracker)
            cs.beats = beats
            cs.rhythm, cs.rhythm_mask = beats_to_activations(beats, n_frames), np.ones(n_frames, np.float32)
        out.append(cs.validate())
    return out


@lru_cache(maxsize=8)
def _projection(parts: tuple[str, ...]) -> tuple[np.ndarray, list[int]]:
    """The stacked (F, C) weights for the controls in ``parts`` and each one's column count."""
    make = {"melody": melody_weights, "dynamics": dynamics_weights, "rhythm": onset_weights}
    weights = [make[name]() for name in parts]
    return np.ascontiguousarray(np.concatenate(weights, axis=1)), [w.shape[1] for w in weights]


def _checked_beats(beats: np.ndarray, tracker: RhythmTracker) -> np.ndarray:
    """Validate what a plug-in tracker returned, so its mistakes are named rather than obscure."""
    arr = np.asarray(beats, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        raise CadenzaError(
            f"rhythm tracker {type(tracker).__name__} returned beats of shape {arr.shape}",
            "a tracker must return (K, 2) finite rows of time_s, is_downbeat",
        )
    return arr[np.argsort(arr[:, 0], kind="stable")]


def extract_controls(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    controls: str | Sequence[str] = CONTROL_NAMES,
    rhythm_tracker: str | RhythmTracker = "default",
) -> ControlSet:
    """One mono waveform (N,) → its ``ControlSet`` (resampled to 22.05 kHz first if needed)."""
    audio = check_waveform(audio, "audio")
    if audio.ndim != 1:
        raise CadenzaError(
            f"extract_controls takes one mono waveform (samples,), got shape {audio.shape}",
            "mix channels down with cadenza.audio.to_mono, or use extract_controls_batch for (clips, samples)",
        )
    return extract_controls_batch(audio[None], sample_rate, controls, rhythm_tracker)[0]


def extract_from_file(
    path: str | os.PathLike,
    controls: str | Sequence[str] = CONTROL_NAMES,
    rhythm_tracker: str | RhythmTracker = "default",
) -> ControlSet:
    """Load any supported audio file (mono, 22.05 kHz) and extract its controls."""
    return extract_controls(load_audio(path), SAMPLE_RATE, controls, rhythm_tracker)
