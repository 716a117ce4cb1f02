"""The canonical audio format and frame grid every Cadenza model and control shares.

All models work on 22.05 kHz mono audio. Spectrogram frames are centred STFT frames with a
hop of 256 samples (about 86.13 frames per second): frame ``i`` is centred on sample
``i * HOP_LENGTH``, so a clip of ``n`` samples has ``n // HOP_LENGTH + 1`` frames. Controls
(melody, dynamics, rhythm) live on exactly this grid, so a control of length ``T`` lines up
one-to-one with a mel spectrogram of ``T`` frames.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE: int = 22050
HOP_LENGTH: int = 256
FRAME_RATE: float = SAMPLE_RATE / HOP_LENGTH  # ≈ 86.13 frames per second


def num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames on the canonical grid for ``num_samples`` samples (centred frames)."""
    return int(num_samples) // hop_length + 1


def frames_for_duration(seconds: float, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> int:
    """Frames on the canonical grid for a clip of ``seconds``."""
    return num_frames(int(round(seconds * sample_rate)), hop_length)


def frame_times(n_frames: int, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Centre time in seconds of each frame."""
    return np.arange(n_frames) * (hop_length / sample_rate)


def time_to_frame(seconds: np.ndarray | float, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Nearest frame index for each time (not clipped)."""
    return np.rint(np.asarray(seconds, dtype=np.float64) * sample_rate / hop_length).astype(np.int64)
