"""Reading and writing audio in the canonical format, with one-line errors for bad files.

``load_audio`` always returns float32 mono at the requested rate, or raises ``CadenzaError``
naming the file and what is wrong with it (missing, empty, corrupt, unsupported, too short,
NaN/Inf). Silence is valid. ``save_audio`` writes atomically: a temporary file in the same
folder, then ``os.replace``, so an interrupted write never leaves a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from cadenza.audio.format import SAMPLE_RATE
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
_SUBTYPES = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality); a no-op when the rates match."""
    if orig_sr == target_sr:
        return audio
    if not (isinstance(orig_sr, (int, float, np.integer, np.floating)) and isinstance(target_sr, (int, float, np.integer, np.floating))) or orig_sr <= 0 or target_sr <= 0:
        raise CadenzaError(f"invalid sample rate {orig_sr} -> {target_sr}", "sample rates must be positive integers")
    from cadenza.limits import check_sample_rate

    check_sample_rate(orig_sr, "source sample rate")  # before soxr sizes its output by the ratio
    check_sample_rate(target_sr, "target sample rate")
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)
    # soxr wants (frames, channels)
    return soxr.resample(audio.T, orig_sr, target_sr, quality="HQ").T.astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels; ``audio`` is (samples,) or (channels, samples)."""
    return audio if audio.ndim == 1 else audio.mean(axis=0)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    mono: bool = True,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Load an audio file as float32, resampled to ``sample_rate``; (samples,) if mono else (channels, samples)."""
    path = Path(path)
    if not path.exists():
        raise CadenzaError(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise CadenzaError(f"{path}: is a folder, not an audio file", "pass one audio file")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise CadenzaError(
            f"{path}: unsupported audio format '{path.suffix or '(none)'}'",
            f"convert it to one of {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    if path.stat().st_size == 0:
        raise CadenzaError(f"{path}: file is empty (0 bytes)", "re-export or re-download the file")
    from cadenza.limits import MAX_AUDIO_FILE_BYTES, check_audio_header, check_file_size

    check_file_size(path, MAX_AUDIO_FILE_BYTES, "audio file")
    try:  # the header first: a 1 Hz or 10-hour file must be refused before it is decoded and resampled
        info = sf.info(str(path))
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CadenzaError(f"{path}: cannot decode audio ({detail})", "the file is corrupt or not really audio") from None
    check_audio_header(path, int(info.frames), int(info.samplerate), int(info.channels), int(sample_rate))
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError with terse text
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CadenzaError(f"{path}: cannot decode audio ({detail})", "the file is corrupt or not really audio") from None
    if data.shape[0] == 0:
        raise CadenzaError(f"{path}: contains no audio samples", "the file holds a header but no sound")
    if not np.isfinite(data).all():
        raise CadenzaError(f"{path}: contains NaN or infinite samples", "re-export the audio; the file is damaged")
    audio = data.T  # (channels, samples)
    if mono:
        audio = to_mono(audio)
    audio = resample(np.ascontiguousarray(audio), int(sr), sample_rate)
    duration = audio.shape[-1] / sample_rate
    if duration < min_seconds:
        raise CadenzaError(
            f"{path}: too short ({duration:.3f} s; at least {min_seconds:g} s needed)", "use a longer recording"
        )
    return np.ascontiguousarray(audio, dtype=np.float32)


def check_waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate an in-memory waveform (1-D or channels x samples, finite, non-empty) and return float32."""
    try:
        audio = np.asarray(audio)
    except (TypeError, ValueError):  # e.g. a ragged list
        raise CadenzaError(f"{name}: not an array of samples", "pass a NumPy array (samples,) or (channels, samples)") from None
    if audio.dtype.kind not in "fiub":  # objects, strings, complex: not samples
        raise CadenzaError(f"{name}: expected real-valued samples, got an array of {audio.dtype}", "pass float32 samples in [-1, 1]")
    if audio.ndim not in (1, 2):
        raise CadenzaError(f"{name}: expected a 1-D waveform or (channels, samples), got shape {audio.shape}")
    if audio.shape[-1] == 0:
        raise CadenzaError(f"{name}: waveform is empty")
    if not np.isfinite(audio).all():
        raise CadenzaError(f"{name}: waveform contains NaN or infinite values", "clean the signal before passing it")
    return audio.astype(np.float32, copy=False)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write audio atomically (temp file + rename). Float input is clipped to [-1, 1]."""
    path = Path(path)
    audio = check_waveform(audio, str(path))
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise CadenzaError(f"{path}: cannot write format '{ext or '(none)'}'", f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    data = np.clip(audio, -1.0, 1.0)
    data = data if data.ndim == 1 else data.T
    with atomic_path(path, suffix=f".tmp{ext}") as tmp:  # soundfile picks the container from the name
        sf.write(tmp, data, sample_rate, subtype=_SUBTYPES[ext])
    return path


def peak_normalize(audio: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so the absolute peak sits at ``peak_db`` dBFS; silence stays silence."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-9:
        return audio.astype(np.float32, copy=True)
    return (audio * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def loudness_normalize(audio: np.ndarray, target_db: float = -20.0, peak_limit_db: float = -1.0) -> np.ndarray:
    """Scale to an RMS level of ``target_db`` dBFS, then back off if the peak would exceed ``peak_limit_db``."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms < 1e-9:
        return audio.astype(np.float32, copy=True)
    out = audio * (10 ** (target_db / 20) / rms)
    peak = float(np.max(np.abs(out)))
    limit = 10 ** (peak_limit_db / 20)
    if peak > limit:
        out = out * (limit / peak)
    return out.astype(np.float32)
