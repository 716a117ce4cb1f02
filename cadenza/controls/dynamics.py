"""Dynamics control: frame level in dBFS, smoothed over about one second.

``20 * log10(RMS)`` of each Hann-windowed 2048-sample frame (hop 256, centred), with the
window's own RMS divided out so a full-scale sine reads -3 dBFS; then a Savitzky–Golay
filter (87 frames ≈ 1.01 s, polynomial order 1) as in Music ControlNet, and a floor at
-100 dB so digital silence is a number, not ``-inf``.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from cadenza.controls.base import DB_CEIL, DB_FLOOR
from cadenza.controls.spectrum import parseval_weights

SMOOTH_FRAMES = 87  # ≈ 1.01 s at 86.13 frames/s
SMOOTH_ORDER = 1


def dynamics_weights() -> np.ndarray:
    """(F, 1) projection giving the window-normalised mean square of each frame."""
    return parseval_weights()[:, None]


def level_db_from_mean_square(ms: np.ndarray) -> np.ndarray:
    """(B, T) mean square → (B, T) unsmoothed frame level in dBFS, floored at -100."""
    return 10.0 * np.log10(np.maximum(ms.astype(np.float64), 10 ** (DB_FLOOR / 10)))


def smooth_linear(values: np.ndarray, window: int = SMOOTH_FRAMES, axis: int = -1) -> np.ndarray:
    """The Savitzky–Golay smoothing of ``smooth_db`` alone (linear, float64), along ``axis``.

    Shorter clips use the longest odd window that fits. Being linear, it also applies to the
    columns of a matrix, which is how dynamics guidance solves through it.
    """
    n = values.shape[axis]
    window = min(window, n if n % 2 else n - 1)
    if window <= SMOOTH_ORDER + 1:  # two frames or fewer: nothing to smooth
        return values.astype(np.float64)
    return scipy.signal.savgol_filter(values.astype(np.float64), window, SMOOTH_ORDER, axis=axis, mode="interp")


def smooth_db(level_db: np.ndarray, window: int = SMOOTH_FRAMES) -> np.ndarray:
    """Savitzky–Golay smoothing along the last axis, clipped to the control's dB range."""
    return np.clip(smooth_linear(level_db, window), DB_FLOOR, DB_CEIL).astype(np.float32)


def dynamics_from_projection(proj: np.ndarray) -> np.ndarray:
    """(B, T, 1) projection by ``dynamics_weights`` → (B, T) smoothed dynamics in dBFS."""
    return smooth_db(level_db_from_mean_square(proj[..., 0]))

