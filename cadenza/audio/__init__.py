"""Audio I/O, resampling and spectrograms in the canonical format (22.05 kHz mono, hop 256)."""

from cadenza.audio.format import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE, frame_times, frames_for_duration, num_frames, time_to_frame
from cadenza.audio.io import (
    SUPPORTED_EXTENSIONS,
    check_waveform,
    load_audio,
    loudness_normalize,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
)
from cadenza.audio.mel import MelConfig, MelSpectrogram, denormalize_log_mel, griffin_lim, normalize_log_mel

__all__ = [
    "FRAME_RATE", "HOP_LENGTH", "SAMPLE_RATE", "SUPPORTED_EXTENSIONS", "MelConfig", "MelSpectrogram",
    "check_waveform", "denormalize_log_mel", "frame_times", "frames_for_duration", "griffin_lim", "load_audio",
    "loudness_normalize", "normalize_log_mel", "num_frames", "peak_normalize", "resample", "save_audio",
    "time_to_frame", "to_mono",
]
