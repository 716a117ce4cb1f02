"""The basic-pitch melody cross-check (skipped cleanly when the optional package is absent)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadenza.audio import FRAME_RATE, SAMPLE_RATE, num_frames
from cadenza.controls import ControlSet
from cadenza.errors import CadenzaError
from cadenza.eval import pitch_check
from cadenza.eval.pitch_check import crosscheck_melody, pitch_classes_from_f0, pitch_tracker_available

SR = SAMPLE_RATE
NOTES = [60, 62, 64, 65, 67, 69, 71, 72, 74, 77]  # C4 .. F5
NOTE_S = 0.3

needs_tracker = pytest.mark.skipif(not pitch_tracker_available(), reason="basic-pitch/onnxruntime not installed (optional)")


def sine_melody() -> tuple[np.ndarray, ControlSet]:
    """Sine notes and the matching given melody (mask 1 away from note boundaries)."""
    parts = []
    for m in NOTES:
        t = np.arange(int(NOTE_S * SR)) / SR
        ramp = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
        parts.append(0.3 * ramp * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t))
    audio = np.concatenate(parts).astype(np.float32)
    T = num_frames(audio.size)
    t = np.arange(T) / FRAME_RATE
    idx = np.minimum((t // NOTE_S).astype(int), len(NOTES) - 1)
    pos = t - idx * NOTE_S
    inside = (pos > 0.04) & (pos < NOTE_S - 0.04)
    cs = ControlSet.empty(T)
    cs.melody = np.eye(12, dtype=np.float32)[np.array(NOTES)[idx] % 12] * inside[:, None]
    cs.melody_mask = inside.astype(np.float32)
    return audio, cs.validate()


def test_pitch_classes_from_f0() -> None:
    f0 = np.array([261.63, 277.18, 440.0, 880.0, 0.0, 493.88 * 1.02])
    voiced = np.array([True, True, True, True, False, True])
    np.testing.assert_array_equal(pitch_classes_from_f0(f0, voiced), [0, 1, 9, 9, -1, 11])


@needs_tracker
def test_sine_melody_cross_check_is_accurate() -> None:
    audio, given = sine_melody()
    out = crosscheck_melody(audio, SR, given)
    assert out["melody_accuracy"] >= 0.9
    assert out["voiced_fraction"] >= 0.9
    assert out["melody_frames"] == int(given.melody_mask.sum())
    assert out["tracker"].startswith("basic-pitch")


@needs_tracker
def test_cross_check_on_resampled_audio_and_wrong_melody() -> None:
    audio, given = sine_melody()
    import soxr

    at_16k = soxr.resample(audio, SR, 16000).astype(np.float32)
    assert crosscheck_melody(at_16k, 16000, given)["melody_accuracy"] >= 0.9
    shifted = ControlSet.empty(given.n_frames)
    shifted.melody = np.roll(given.melody, 1, axis=1)  # every pitch class one semitone up
    shifted.melody_mask = given.melody_mask
    assert crosscheck_melody(audio, SR, shifted.validate())["melody_accuracy"] <= 0.1


@needs_tracker
def test_silence_is_unvoiced_and_counts_as_wrong() -> None:
    _, given = sine_melody()
    silence = np.zeros((given.n_frames - 1) * 256, np.float32)
    out = crosscheck_melody(silence, SR, given)
    assert out["melody_accuracy"] == 0.0 and out["voiced_fraction"] == 0.0


@needs_tracker
def test_cross_check_input_errors() -> None:
    audio, given = sine_melody()
    with pytest.raises(CadenzaError, match="frames but the controls"):
        crosscheck_melody(audio[: audio.size // 2], SR, given)
    with pytest.raises(CadenzaError, match="voicing threshold"):
        crosscheck_melody(audio, SR, given, voicing_threshold=1.5)
    empty = crosscheck_melody(audio, SR, ControlSet.empty(given.n_frames))
    assert math.isnan(empty["melody_accuracy"]) and empty["melody_frames"] == 0


def test_absent_package_gives_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(pitch_check, "pitch_tracker_available", lambda: False)
    pitch_check._model.cache_clear()
    try:
        with pytest.raises(CadenzaError, match="basic-pitch") as info:
            crosscheck_melody(np.zeros(4096, np.float32), SR, ControlSet.empty(17))
        assert "pip install" in info.value.hint
    finally:
        pitch_check._model.cache_clear()
