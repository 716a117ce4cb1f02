"""How closely generated audio follows its controls, measured as in Music ControlNet.

Compare the controls that were asked for with those extracted from the output:

- melody accuracy: frame-wise agreement of the pitch class, over frames where the melody
  was given and voiced;
- dynamics: Pearson r between asked and extracted dB curves over the given frames (×100 in
  reports);
- rhythm: beat F1 with mir_eval's 70 ms window, on beat times inside the given span (the
  asked beats from the ControlSet's events, or the activation peaks when it has none).

Each metric is computed only where its control was given (partial controls count only inside
their span) and is ``None`` when the control was not given.
"""

from __future__ import annotations

import numpy as np

from cadenza.audio import FRAME_RATE
from cadenza.controls.base import ControlSet

BEAT_WINDOW_S = 0.07


def _beats(cs: ControlSet, downbeats: bool = False) -> np.ndarray:
    if len(cs.beats):
        b = cs.beats
        return b[b[:, 1] > 0.5, 0] if downbeats else b[:, 0]
    act = cs.rhythm[:, 1 if downbeats else 0]
    peaks = np.flatnonzero((act >= 0.99) & (cs.rhythm_mask > 0))
    return peaks / FRAME_RATE


def _inside(times: np.ndarray, mask: np.ndarray) -> np.ndarray:
    idx = np.clip(np.rint(np.asarray(times) * FRAME_RATE).astype(int), 0, len(mask) - 1)
    return np.asarray(times)[mask[idx] > 0] if len(times) else np.asarray(times)


def melody_accuracy(target: ControlSet, generated: ControlSet) -> float | None:
    sel = (target.melody_mask > 0) & (target.melody.sum(1) > 0.5)
    if not sel.any():
        return None
    return float((target.melody[sel].argmax(1) == generated.melody[sel].argmax(1)).mean())


def dynamics_correlation(target: ControlSet, generated: ControlSet) -> float | None:
    sel = target.dynamics_mask > 0
    if sel.sum() < 3:
        return None
    a, b = target.dynamics[sel], generated.dynamics[sel]
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def beat_f1(target: ControlSet, generated: ControlSet, downbeats: bool = False) -> float | None:
    import mir_eval

    mask = target.rhythm_mask
    if not mask.any():
        return None
    ref = np.sort(_inside(_beats(target, downbeats), mask))
    est = np.sort(_inside(_beats(generated, downbeats), mask))
    if len(ref) == 0:
        return None
    if len(est) == 0:
        return 0.0
    return float(mir_eval.onset.f_measure(ref, est, window=BEAT_WINDOW_S)[0])


def control_adherence(target: ControlSet, generated: ControlSet) -> dict[str, float | None]:
    """All metrics; ``generated`` is ``extract_controls`` of the output (fitted to the target's length)."""
    generated = generated.fit_length(target.n_frames)
    return {
        "melody_acc": melody_accuracy(target, generated),
        "dynamics_r": dynamics_correlation(target, generated),
        "beat_f1": beat_f1(target, generated),
        "downbeat_f1": beat_f1(target, generated, downbeats=True),
    }
