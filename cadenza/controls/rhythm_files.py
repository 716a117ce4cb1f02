"""Creator rhythm: ``rhythm.csv`` (v1) beat lists, tempo/meter grids and stretched templates.

A rhythm is a list of beats, ``time, downbeat`` (1 on the first beat of each bar). Frame
activations come from ``beats_to_activations`` (1 on the beat's nearest frame, 0.5 on the
frames either side). The mask says where the rhythm is *given*: from the first beat (less
the one-frame activation spread, so its peak keeps its shape) to half a beat period after
the last beat, where the period is the median gap between beats. Between given beats the
mask is 1, so "no beat here" is a constraint too; outside that span the model is free.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE, time_to_frame
from cadenza.controls._csvio import (
    fmt_number,
    parse_number,
    quantize,
    read_table,
    resolve_frames,
    warn,
    write_table,
)
from cadenza.controls.base import BEAT_WIDTH_FRAMES, ControlSet, beats_to_activations
from cadenza.controls.notes import check_bpm
from cadenza.errors import CadenzaError

RHYTHM_HEADER = ("time", "downbeat")
STRETCH_RANGE = (0.5, 2.0)  # the paper stretched templates 0.8-1.2x; allow more, refuse nonsense
_COMPOUND = {"6/8": 2, "9/8": 3, "12/8": 4}
METER_HINT = "use 2, 3, 4, 5, 6 or 7 (beats per bar, i.e. N/4), 2/2, 3/2, or compound 6/8, 9/8, 12/8 (beats = dotted quarters)"


def parse_meter(meter: str | int) -> int:
    """Beats per bar for a meter: ``4`` or ``4/4`` → 4, ``3/4`` → 3, ``6/8`` → 2 (dotted-quarter beats)."""
    text = str(meter).strip().replace(" ", "")
    if text in _COMPOUND:
        return _COMPOUND[text]
    m = re.fullmatch(r"(\d+)(?:/(\d+))?", text)
    if m:
        beats, unit = int(m.group(1)), m.group(2)
        if 2 <= beats <= 7 and unit in (None, "4", "2"):
            return beats
    raise CadenzaError(f"unknown meter '{meter}'", METER_HINT)


def parse_rhythm_csv(path: str | os.PathLike) -> np.ndarray:
    """Read and validate ``rhythm.csv`` → (K, 2) ``time, downbeat`` rows."""
    rows = read_table(path, RHYTHM_HEADER, "rhythm")
    out = np.zeros((len(rows), 2), dtype=np.float64)
    for k, (line, (t_text, d_text)) in enumerate(rows):
        where = f"{path}, line {line}"
        t = parse_number(t_text, where, "time")
        d = parse_number(d_text, where, "downbeat")
        if t < 0:
            raise CadenzaError(f"{where}: time {t_text} s is negative", "beat times are seconds from the start of the clip, ≥ 0")
        if k > 0 and t <= out[k - 1, 0]:
            raise CadenzaError(
                f"{where}: beat times out of order (time {t_text} s is not after the previous {fmt_number(out[k - 1, 0])} s)",
                "list beats in time order, one per line, no duplicates",
            )
        if d not in (0.0, 1.0):
            raise CadenzaError(f"{where}: downbeat must be 0 or 1, got '{d_text}'", "write 1 on the first beat of each bar, else 0")
        out[k] = (t, d)
    return out


def rhythm_from_beats(beats: np.ndarray, n_frames: int | None = None, source: str = "rhythm", duration: float | None = None) -> ControlSet:
    """Beats (K, 2) ``time, downbeat`` (strictly increasing) → a rhythm-only ``ControlSet``.

    A single beat has no period, so its mask covers just its activation (the beat's frame ± 1).
    """
    beats = np.asarray(beats, dtype=np.float64).reshape(-1, 2)
    if len(beats) == 0:
        raise CadenzaError(f"{source}: no beats", "list at least one beat (two or more to set a tempo)")
    period = float(np.median(np.diff(beats[:, 0]))) if len(beats) > 1 else 2 * BEAT_WIDTH_FRAMES / FRAME_RATE
    last = int(time_to_frame(beats[-1, 0] + period / 2))
    T = resolve_frames(n_frames, duration, source, fallback=last + 1)
    beat_frames = time_to_frame(beats[:, 0])
    inside = beat_frames < T
    if not inside.any():
        raise CadenzaError(
            f"{source}: every beat lies after the end of the clip ({fmt_number((T - 1) / FRAME_RATE)} s)",
            "shift the beats earlier or make the clip longer",
        )
    if not inside.all():
        warn(f"{source}: {int((~inside).sum())} beat(s) lie after the end of the clip and are ignored")
        beats = beats[inside]
        last = int(time_to_frame(beats[-1, 0] + period / 2))
    first = max(0, int(beat_frames[0]) - BEAT_WIDTH_FRAMES)
    mask = np.zeros(T, dtype=np.float32)
    mask[first : min(last, T - 1) + 1] = 1.0
    return replace(ControlSet.empty(T), rhythm=beats_to_activations(beats, T), rhythm_mask=mask, beats=beats.copy())


def read_rhythm_csv(path: str | os.PathLike, n_frames: int | None = None, duration: float | None = None) -> ControlSet:
    """``rhythm.csv`` → ``ControlSet`` (clip length from ``n_frames``/``duration``, else half a beat past the last beat)."""
    return rhythm_from_beats(parse_rhythm_csv(path), n_frames, str(path), duration)


def beat_grid(bpm: float, meter: str | int, start: float, end: float) -> np.ndarray:
    """Beats every ``60 / bpm`` s from ``start`` to ``end`` inclusive; a downbeat every bar from the first beat."""
    bpm = check_bpm(bpm, "rhythm")
    per_bar = parse_meter(meter)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise CadenzaError(f"rhythm: start {start} s must be a finite time ≥ 0", "times are seconds from the start of the clip")
    if end <= start:
        raise CadenzaError(f"rhythm: end {fmt_number(end)} s is not after start {fmt_number(start)} s", "give start < end")
    period = 60.0 / bpm
    count = int(math.floor((end - start) / period + 1e-9)) + 1
    k = np.arange(count)
    return np.stack([quantize(start + k * period), (k % per_bar == 0).astype(np.float64)], axis=1)


def rhythm_from_bpm(
    bpm: float,
    meter: str | int = 4,
    n_frames: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    duration: float | None = None,
) -> ControlSet:
    """A steady beat grid at ``bpm`` in ``meter`` from ``start`` to ``end`` s (default: the clip's end).

    ``bpm`` counts beats: quarter notes in N/4, dotted quarters in 6/8, 9/8, 12/8 (so 6/8 at
    60 bpm has two beats a bar, one per second, and a downbeat every second beat).
    """
    T = resolve_frames(n_frames, duration, "rhythm")
    clip_end = (T - 1) / FRAME_RATE
    if start > clip_end:
        raise CadenzaError(f"rhythm: starts at {fmt_number(start)} s, after the end of the clip ({fmt_number(clip_end)} s)", "give a start inside the clip")
    grid = beat_grid(bpm, meter, start, clip_end if end is None else min(end, clip_end))
    if len(grid) < 2:
        raise CadenzaError(
            f"rhythm: only one beat at {fmt_number(bpm)} bpm fits between {fmt_number(start)} s and the end",
            "use a longer span or a faster tempo",
        )
    return rhythm_from_beats(grid, T, f"rhythm {fmt_number(bpm)} bpm")


def stretch_rhythm(template: ControlSet | np.ndarray, factor: float, n_frames: int | None = None, duration: float | None = None) -> ControlSet:
    """Time-stretch a rhythm template's beats by ``factor`` (> 1 slower, < 1 faster), anchored at 0 s.

    The paper made created rhythms this way (0.8-1.2x); factors outside 0.5-2x are refused.
    """
    beats = template.beats if isinstance(template, ControlSet) else np.asarray(template, dtype=np.float64).reshape(-1, 2)
    if len(beats) == 0:
        raise CadenzaError("rhythm template has no beats", "read the template from a rhythm.csv or build it with rhythm_from_bpm")
    lo, hi = STRETCH_RANGE
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and lo <= factor <= hi):
        raise CadenzaError(f"stretch factor {factor} is outside {lo:g}-{hi:g}", "e.g. 0.9 (10% faster) or 1.1 (10% slower)")
    stretched = np.stack([quantize(beats[:, 0] * factor), beats[:, 1]], axis=1)
    if n_frames is None and duration is None and isinstance(template, ControlSet):
        n_frames = template.n_frames
    if n_frames is not None or duration is not None:
        # beats a slower stretch pushes past the clip's end are expected, not worth a warning
        T = resolve_frames(n_frames, duration, "rhythm stretch")
        inside = time_to_frame(stretched[:, 0]) < T
        stretched = stretched[inside] if inside.sum() >= 2 else stretched
        n_frames, duration = T, None
    return rhythm_from_beats(stretched, n_frames, f"rhythm stretched {fmt_number(factor)}x", duration)


def rhythm_rows(cs: ControlSet) -> np.ndarray:
    """Beats to write: the kept ``beats``, or the peaks of the beat activation (≥ 0.5) when only frames are known."""
    if len(cs.beats):
        return cs.beats
    from scipy.signal import find_peaks

    act = np.concatenate([[0.0], cs.rhythm[:, 0], [0.0]])  # pad so peaks at the edges count
    peaks, _ = find_peaks(act, height=0.5, distance=BEAT_WIDTH_FRAMES + 1)
    peaks = peaks - 1
    down = (cs.rhythm[peaks, 1] >= 0.5).astype(np.float64)
    return np.stack([quantize(peaks / FRAME_RATE), down], axis=1)


def write_rhythm_csv(cs: ControlSet, path: str | os.PathLike) -> Path:
    """Write the rhythm as ``rhythm.csv`` (atomic)."""
    beats = rhythm_rows(cs)
    if len(beats) == 0:
        raise CadenzaError(f"{path}: this control set has no rhythm to write", "give a rhythm (or skip rhythm.csv)")
    return write_table(path, RHYTHM_HEADER, [[fmt_number(t), str(int(d > 0.5))] for t, d in beats])
