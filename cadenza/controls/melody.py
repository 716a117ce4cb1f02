"""Melody control: the loudest pitch class per frame above middle C (Music ControlNet's recipe).

Steps: a second-order Butterworth high-pass at 261.2 Hz (so bass lines do not win the
argmax), a 12-bin chromagram of the linear power spectrum (librosa's chroma filter bank,
A440 tuning, C = 0), the top-1 pitch class per frame as a one-hot row.

Voicing (our choice, not the paper's): a frame whose high-passed level is under
``SILENCE_DB`` (-60 dBFS) has no meaningful top pitch class. It gets a zero row **and mask
0**, so silence leaves the generator free there instead of asking for an arbitrary pitch.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import scipy.signal

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE
from cadenza.controls.spectrum import N_FFT, parseval_weights

HIGHPASS_HZ = 261.2  # middle C
HIGHPASS_ORDER = 2
SILENCE_DB = -60.0
NOTE_OCTAVE_BASE = 60  # melody_notes are written in octave 4: MIDI 60 + pitch class


def highpass_sos(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The middle-C Butterworth high-pass as second-order sections (for time-domain use)."""
    return scipy.signal.butter(HIGHPASS_ORDER, HIGHPASS_HZ, btype="highpass", fs=sample_rate, output="sos")


@lru_cache(maxsize=4)
def melody_weights(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(F, 13) projection: 12 chroma columns of the high-passed power, then its mean square.

    The high-pass enters as its power response ``|H(f)|²`` on every column.
    """
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    _, h = scipy.signal.sosfreqz(highpass_sos(sample_rate), worN=freqs, fs=sample_rate)
    hp = np.abs(h) ** 2
    chroma = librosa.filters.chroma(sr=sample_rate, n_fft=N_FFT, n_chroma=12, tuning=0.0, base_c=True)
    return (np.concatenate([chroma.T, parseval_weights()[:, None]], axis=1) * hp[:, None]).astype(np.float32)


def melody_from_projection(proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 13) projection by ``melody_weights`` → one-hot melody (B, T, 12) and voiced mask (B, T)."""
    voiced = proj[..., 12].astype(np.float64) >= 10 ** (SILENCE_DB / 10)
    onehot = (proj[..., :12].argmax(axis=-1)[..., None] == np.arange(12)) & voiced[..., None]
    return onehot.astype(np.float32), voiced.astype(np.float32)


def notes_from_frames(onehot: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Run-length encode voiced frames into (K, 3) rows ``start_s, end_s, midi`` (octave 4).

    Chroma has no octave, so every note is written as MIDI ``60 + pitch class``. A note
    covers frames ``i..j`` as ``[i / FRAME_RATE, (j + 1) / FRAME_RATE)``.
    """
    pc = np.where(voiced > 0.5, onehot.argmax(axis=1), -1)
    if pc.size == 0:
        return np.zeros((0, 3))
    change = np.flatnonzero(np.diff(pc)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [pc.size]))
    keep = pc[starts] >= 0
    starts, ends = starts[keep], ends[keep]
    return np.stack([starts / FRAME_RATE, ends / FRAME_RATE, NOTE_OCTAVE_BASE + pc[starts]], axis=1).astype(np.float64)
