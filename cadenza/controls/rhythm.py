"""Rhythm control: beat and downbeat times from audio, behind a small tracker interface.

Music ControlNet used a trained RNN beat tracker. Cadenza's trained one (``"neural"``, a small
TCN in ``beat_tracker.py``) is the default (``"default"``) when its shipped weights are
present; the signal-processing tracker here (``"dsp"``) is the fallback, and any other tracker
can be added through ``register_rhythm_tracker``:

1. onset envelope: half-wave rectified spectral flux of a 64-band mel from the shared
   analysis STFT, compressed as ``log(1 + 100 * mel / max)`` rather than in dB: with the long
   2048-sample window a dB scale reacts to the faint leakage of a note entering the window
   edge and puts onsets up to 70 ms early; this compression keeps them within about ±15 ms
   on clicks, noise bursts, kicks and tones;
2. tempo: autocorrelation of the envelope weighted by a log-normal prior around 120 BPM
   (one octave wide), refined to a fractional period by parabolic interpolation;
3. beats: Ellis' (2007) dynamic program (as in ``librosa.beat``), vectorised in blocks of
   half a beat period, since no frame can link to a predecessor less than half a period back;
4. downbeats: for meters 2, 3 and 4 and every bar phase, the contrast between the accent
   (onset strength plus low-frequency flux, each divided by its mean over the neighbouring
   beats so a crescendo is not an accent) on the would-be downbeats and on the
   other beats; the best meter/phase wins, ties going to 4/4. A 6/8 bar counted in dotted
   quarters shows up as meter 2. With fewer than two bars of beats the first beat is
   marked as the downbeat.

A tracker returns (K, 2) rows of ``time_s, is_downbeat``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import librosa
import numpy as np
import scipy.ndimage

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE
from cadenza.audio.io import check_waveform, resample
from cadenza.controls.spectrum import N_FFT, analyse
from cadenza.errors import CadenzaError

N_MELS = 64
COMPRESSION = 100.0  # λ in log(1 + λ * mel / max)
LOW_HZ = 200.0  # bands below this make the low-frequency (kick/bass) accent
START_BPM = 120.0
STD_OCTAVES = 1.0
MIN_BPM, MAX_BPM = 30.0, 300.0
TIGHTNESS = 100.0
TRIM_FRACTION = 0.1
METERS = (4, 3, 2)  # in order of preference on ties


@runtime_checkable
class RhythmTracker(Protocol):
    """Anything that turns a waveform into beat times with downbeat flags."""

    def track(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(N,) mono waveform → (K, 2) float rows ``time_s, is_downbeat`` (1.0 or 0.0), sorted by time."""
        ...


# ---------------------------------------------------------------------------- features
@lru_cache(maxsize=2)
def onset_weights(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(F, 64) mel filter bank applied to the analysis power spectrum."""
    return np.ascontiguousarray(librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS).T, dtype=np.float32)


@lru_cache(maxsize=2)
def _low_bands(sample_rate: int) -> np.ndarray:
    centres = librosa.mel_frequencies(N_MELS + 2, fmax=sample_rate / 2)[1:-1]
    return centres < LOW_HZ


def onset_from_projection(mel: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 64) mel power → onset envelope (B, T) and low-frequency flux (B, T), both float64.

    Frame ``t`` holds the rise from frame ``t - 1`` to ``t`` (frame 0 holds 0).
    """
    low = _low_bands(sample_rate)
    peak = np.maximum(mel.max(axis=(1, 2), keepdims=True), 1e-20)
    comp = np.log1p((COMPRESSION / peak) * mel)
    flux = np.zeros(comp.shape, dtype=np.float64)
    flux[:, 1:] = np.maximum(np.diff(comp, axis=1), 0.0)
    onset = flux.mean(axis=-1)
    lowflux = flux[..., low].mean(axis=-1) if low.any() else np.zeros_like(onset)
    return onset, lowflux


# ---------------------------------------------------------------------------- tempo and beats
def estimate_period(onset: np.ndarray) -> float | None:
    """Beat period in frames (fractional) from the envelope's autocorrelation, or None if flat."""
    x = onset - onset.mean()
    if not np.any(x):
        return None
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    lo = max(1, int(np.floor(FRAME_RATE * 60.0 / MAX_BPM)))
    hi = min(n - 2, int(np.ceil(FRAME_RATE * 60.0 / MIN_BPM)))
    if hi <= lo + 1:
        return None
    lags = np.arange(lo, hi + 1)
    bpm = FRAME_RATE * 60.0 / lags
    prior = np.exp(-0.5 * (np.log2(bpm / START_BPM) / STD_OCTAVES) ** 2)
    score = np.maximum(ac[lags], 0.0) * prior
    if not np.any(score > 0):
        return None
    k = int(np.argmax(score))
    period = float(lags[k])
    if 0 < k < len(lags) - 1:  # parabolic peak refinement on the raw autocorrelation
        a, b, c = ac[lags[k] - 1], ac[lags[k]], ac[lags[k] + 1]
        denom = a - 2 * b + c
        if denom < 0:
            period += float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return period


def _local_score(onset: np.ndarray, period: float) -> np.ndarray:
    """Envelope normalised by its spread and smoothed by a narrow Gaussian (as librosa does)."""
    norm = onset / (onset.std(ddof=1) + 1e-12)
    p = max(1, int(round(period)))
    window = np.exp(-0.5 * (np.arange(-p, p + 1) * 32.0 / p) ** 2)
    return np.convolve(norm, window)[p : p + norm.size]  # centred, even when the window outgrows a short clip


def beat_dp(local: np.ndarray, period: float, tightness: float = TIGHTNESS) -> tuple[np.ndarray, np.ndarray]:
    """Ellis' beat DP: cumulative score and back-links, vectorised over blocks of half a period.

    Frame ``i`` may follow any frame ``i - lag`` with ``lag`` in ``[round(P/2), 2P]``, paying
    ``tightness * log(lag / P)²``. Every predecessor of a block of ``round(P/2)`` frames lies
    before the block, so each block is one vectorised step.
    """
    n = local.size
    lo = max(1, int(round(period / 2)))
    lags = np.arange(lo, max(lo, int(np.floor(2 * period))) + 1)
    penalty = -tightness * (np.log(lags) - np.log(period)) ** 2
    pad = int(lags[-1])
    cum_padded = np.full(n + pad, -np.inf)  # -inf before the clip: "no predecessor"
    back = np.full(n, -1, dtype=np.int64)
    offsets = np.arange(lo)[:, None] - lags[None, :] + pad  # predecessor slots for a block starting at 0
    rows = np.arange(lo)
    for start in range(0, n, lo):
        m = min(lo, n - start)
        scores = cum_padded[offsets[:m] + start] + penalty
        best = scores.argmax(axis=1)
        best_score = scores[rows[:m], best]
        has = best_score > -np.inf
        cum_padded[pad + start : pad + start + m] = local[start : start + m] + np.where(has, best_score, 0.0)
        back[start : start + m] = np.where(has, offsets[rows[:m], best] + start - pad, -1)
    cum = cum_padded[pad:]
    # no back-links before the first real onset (librosa's "first beat" rule)
    above = np.flatnonzero(local >= 0.01 * local.max())
    if above.size:
        back[: above[0]] = -1
    return cum, back


def _backtrack(local: np.ndarray, cum: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Beat frames: from the last strong local maximum of the cumulative score, follow back-links."""
    interior = np.zeros(cum.size, dtype=bool)
    if cum.size >= 3:
        interior[1:-1] = (cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:])
    peaks = np.flatnonzero(interior)
    if peaks.size == 0:
        return np.zeros(0, dtype=np.int64)
    tail = peaks[cum[peaks] >= 0.5 * np.median(cum[peaks])][-1]
    path = [int(tail)]
    while back[path[-1]] >= 0:  # one step per beat, not per frame
        path.append(int(back[path[-1]]))
    beats = np.array(path[::-1], dtype=np.int64)
    # trim leading/trailing beats extrapolated into near-silence: under a tenth of the median
    # beat score. (librosa's half-RMS rule also drops the unaccented beats at the ends of a
    # strongly accented bar, and the quiet beats at the start of a crescendo.)
    threshold = TRIM_FRACTION * np.median(local[beats])
    strong = np.flatnonzero(local > threshold)
    if strong.size == 0:
        return np.zeros(0, dtype=np.int64)
    return beats[(beats >= strong[0]) & (beats <= strong[-1])]


def _peak_near(x: np.ndarray, frames: np.ndarray, radius: int = 2) -> np.ndarray:
    idx = np.clip(frames[:, None] + np.arange(-radius, radius + 1)[None, :], 0, x.size - 1)
    return x[idx].max(axis=1)


def _relative_strength(x: np.ndarray, half_width: int = 4) -> np.ndarray:
    """Strength per beat over its local mean (±``half_width`` beats), z-scored.

    Dividing by the local mean removes slow level changes (a crescendo is not an accent) but
    keeps the linear contrasts between beats within a bar, which a log scale would flatten.
    """
    local = scipy.ndimage.uniform_filter1d(x, 2 * half_width + 1, mode="nearest")
    y = x / (local + 1e-9 * (x.max() + 1e-12))
    sd = y.std()
    return (y - y.mean()) / sd if sd > 1e-12 else np.zeros_like(y)


def downbeat_flags(beat_frames: np.ndarray, onset: np.ndarray, lowflux: np.ndarray) -> np.ndarray:
    """(K,) 0/1 downbeat flags from the bar phase whose beats are most accented."""
    k = beat_frames.size
    flags = np.zeros(k)
    if k == 0:
        return flags
    accent = _relative_strength(_peak_near(onset, beat_frames)) + 0.5 * _relative_strength(_peak_near(lowflux, beat_frames))
    best = (-np.inf, 0, 0)
    for meter in METERS:
        if k < 2 * meter:
            continue
        member = (np.arange(k)[None, :] % meter) == np.arange(meter)[:, None]  # (phase, beat)
        down = (member * accent).sum(1) / member.sum(1)
        other = (~member * accent).sum(1) / (~member).sum(1)
        contrast = down - other
        phase = int(np.argmax(contrast))
        if contrast[phase] > best[0] + 1e-9:
            best = (float(contrast[phase]), meter, phase)
    if best[1] == 0:
        flags[0] = 1.0
    else:
        flags[best[2] :: best[1]] = 1.0
    return flags


class DSPBeatTracker:
    """Onset envelope + tempo autocorrelation + DP beat tracker + bar-phase downbeats (no training)."""

    name = "dsp"

    def track(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = check_waveform(audio, "audio")
        if audio.ndim != 1:
            raise CadenzaError(f"beat tracking needs a mono waveform, got shape {audio.shape}", "mix down with cadenza.audio.to_mono")
        audio = resample(audio, sample_rate, SAMPLE_RATE)
        onset, lowflux = onset_from_projection(analyse(audio[None], onset_weights(SAMPLE_RATE)), SAMPLE_RATE)
        return self.track_features(onset[0], lowflux[0])

    def track_features(self, onset: np.ndarray, lowflux: np.ndarray) -> np.ndarray:
        """Beats from precomputed features (lets batch extraction share the analysis STFT)."""
        period = estimate_period(onset) if onset.size > 3 and onset.max() > 0 else None
        if period is None:
            return np.zeros((0, 2))
        local = _local_score(onset, period)
        cum, back = beat_dp(local, period)
        frames = _backtrack(local, cum, back)
        return np.stack([frames / FRAME_RATE, downbeat_flags(frames, onset, lowflux)], axis=1).reshape(-1, 2)


def _neural_tracker() -> RhythmTracker:
    """The trained TCN tracker from its shipped weights (``cadenza.controls.beat_tracker``)."""
    from cadenza.controls.beat_tracker import load_beat_tracker  # deferred: it imports torch

    return load_beat_tracker()


def _default_tracker() -> RhythmTracker:
    """The trained tracker when its shipped weights load, else the DSP tracker (with a warning)."""
    try:
        return _neural_tracker()
    except CadenzaError as err:
        warnings.warn(f"trained beat tracker unavailable ({err.message}); falling back to the 'dsp' tracker", RuntimeWarning, stacklevel=3)
        return DSPBeatTracker()


_TRACKERS: dict[str, Callable[[], RhythmTracker]] = {"dsp": DSPBeatTracker, "neural": _neural_tracker, "default": _default_tracker}


def register_rhythm_tracker(name: str, factory: Callable[[], RhythmTracker]) -> None:
    """Make a tracker available by name (e.g. a trained neural tracker, loaded lazily by ``factory``)."""
    _TRACKERS[str(name)] = factory


def rhythm_tracker_names() -> list[str]:
    return sorted(_TRACKERS)


def describe_rhythm_tracker(name: str | RhythmTracker = "default") -> str:
    """The name a report should record: ``"default (neural)"`` or ``"default (dsp)"`` after a fallback.

    ``"default"`` alone would hide which tracker ran, and results cached under it would be
    reused after the trained weights went missing.
    """
    tracker = get_rhythm_tracker(name)
    resolved = str(getattr(tracker, "name", type(tracker).__name__))
    asked = name if isinstance(name, str) else resolved
    return asked if asked == resolved else f"{asked} ({resolved})"


def get_rhythm_tracker(name: str | RhythmTracker = "default") -> RhythmTracker:
    """A tracker instance by registered name or trained model folder (an instance passes through).

    ``"default"`` is the trained ``"neural"`` tracker when its shipped weights are present and
    load, else ``"dsp"`` with a warning; ``"neural"`` asked for by name raises instead.
    """
    if not isinstance(name, str):
        if isinstance(name, RhythmTracker):
            return name
        raise CadenzaError(f"not a rhythm tracker: {type(name).__name__}", "pass a name or an object with a track(audio, sample_rate) method")
    if name in _TRACKERS:
        return _TRACKERS[name]()
    if Path(name).expanduser().is_dir():  # a trained tracker's model folder (cadenza train beats ... --out RUN → RUN/best)
        from cadenza.controls.beat_tracker import load_beat_tracker  # deferred: it imports torch

        return load_beat_tracker(Path(name).expanduser())
    raise CadenzaError(
        f"unknown rhythm tracker '{name}' (neither a tracker name nor a folder)",
        f"choose from {', '.join(rhythm_tracker_names())}, or pass the model folder of a tracker you trained (e.g. runs/beats/best)",
    )
