"""Exact controls from the score: the top voice's pitch class and the beat grid, per frame.

The rendered corpus knows what was played, so its melody and rhythm controls need no
estimation: the melody is the highest sounding non-drum note at each frame centre and the
beats are the tempo grid of the meter. (Dynamics are taken from the rendered audio, since
the level that matters is the one the synthesiser produced.)
"""

from __future__ import annotations

import numpy as np

from cadenza.audio.format import FRAME_RATE, num_frames
from cadenza.controls.base import ControlSet, beats_to_activations


def top_voice(notes: np.ndarray, n_frames: int, t0: float = 0.0) -> np.ndarray:
    """(T,) MIDI pitch of the highest note sounding at each frame centre, -1 where silent.

    ``notes`` are (K, 3) rows of start_s, end_s, pitch; frame ``i`` is at ``t0 + i / FRAME_RATE``
    and a note sounds there when ``start <= t < end``.
    """
    top = np.full(n_frames, -1, dtype=np.int64)
    if len(notes) == 0:
        return top
    first = np.clip(np.ceil((notes[:, 0] - t0) * FRAME_RATE - 1e-9), 0, n_frames).astype(np.int64)
    stop = np.clip(np.ceil((notes[:, 1] - t0) * FRAME_RATE - 1e-9), 0, n_frames).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    if counts.sum() == 0:
        return top
    # every (note, frame) pair without a Python loop: repeat starts, add a running offset
    idx = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    np.maximum.at(top, idx, np.repeat(notes[:, 2].astype(np.int64), counts))
    return top


def runs_to_notes(pitch: np.ndarray) -> np.ndarray:
    """(K, 3) rows of start_s, end_s, pitch for runs of equal voiced pitch in a frame track."""
    if len(pitch) == 0:
        return np.zeros((0, 3))
    change = np.flatnonzero(np.diff(pitch)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(pitch)]])
    values = pitch[starts]
    keep = values >= 0
    return np.stack([starts[keep] / FRAME_RATE, stops[keep] / FRAME_RATE, values[keep].astype(np.float64)], axis=1)


def score_controls(notes: np.ndarray, beats: np.ndarray, t0: float, n_samples: int) -> ControlSet:
    """Melody (top voice) and rhythm (beat grid) for the clip ``[t0, t0 + n_samples / sr)``.

    Melody mask is 1 on voiced frames (silence left free, as in audio extraction); the rhythm
    mask is 1 everywhere. Dynamics are left free for the caller to fill from the audio.
    """
    T = num_frames(n_samples)
    top = top_voice(notes, T, t0)
    voiced = top >= 0
    cs = ControlSet.empty(T)
    melody = np.zeros((T, 12), np.float32)
    melody[np.flatnonzero(voiced), top[voiced] % 12] = 1.0
    cs.melody, cs.melody_mask = melody, voiced.astype(np.float32)
    cs.melody_notes = runs_to_notes(top)
    end = (T - 1) / FRAME_RATE
    beats = np.asarray(beats, dtype=np.float64).reshape(-1, 2)
    rel = beats.copy()
    rel[:, 0] -= t0
    rel = rel[(rel[:, 0] >= -0.5 / FRAME_RATE) & (rel[:, 0] <= end)]
    rel[:, 0] = np.clip(rel[:, 0], 0.0, None)
    cs.beats = rel
    cs.rhythm, cs.rhythm_mask = beats_to_activations(rel, T), np.ones(T, np.float32)
    return cs.validate()
