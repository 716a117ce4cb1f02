"""A second opinion on melody adherence from a learned pitch tracker (Spotify's basic-pitch).

The chroma-argmax melody used for training and scoring can be fooled by strong harmonics or
accompaniment; for monophonic material a trained f0 tracker is an independent check. We use
basic-pitch (Bittner et al., ICASSP 2022) because its small model ships inside the wheel as
ONNX, runs offline on onnxruntime, and needs neither TensorFlow nor torchaudio (torchcrepe was
ruled out: ``import torchcrepe`` imports torchaudio). It is optional:

    pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime resampy

Conveniently basic-pitch works at 22.05 kHz with a 256-sample hop, so its frames sit on the
canonical grid. Per frame we take the contour salience (3 bins per semitone from A0), call the
frame voiced when the peak salience reaches ``voicing_threshold``, refine f0 with the
salience-weighted mean of the bins around the peak, and map it to a pitch class.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import math
from functools import lru_cache
from typing import Any

import numpy as np

from cadenza.audio.format import SAMPLE_RATE, num_frames
from cadenza.audio.io import check_waveform, resample
from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError

DEFAULT_VOICING_THRESHOLD = 0.3
_REFINE_RADIUS = 2  # contour bins either side of the peak used to refine f0 (± 2/3 semitone)
INSTALL_HINT = "pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime resampy (see install.sh)"


def pitch_tracker_available() -> bool:
    """True when basic-pitch and onnxruntime can be imported (without importing them)."""
    return importlib.util.find_spec("basic_pitch") is not None and importlib.util.find_spec("onnxruntime") is not None


def _quiet_import() -> Any:
    """Import basic_pitch.inference without its import-time warnings about absent back ends.

    Those warnings go through ``logging.warning``, which would also install a root handler; a
    temporary ``NullHandler`` plus ``logging.disable`` keep the caller's logging untouched.
    """
    root = logging.getLogger()
    null = logging.NullHandler()
    previous = root.manager.disable
    root.addHandler(null)
    logging.disable(logging.WARNING)
    try:
        import basic_pitch
        import basic_pitch.inference as inference
    finally:
        logging.disable(previous)
        root.removeHandler(null)
    return basic_pitch, inference


@lru_cache(maxsize=1)
def _model() -> tuple[Any, Any, Any]:
    """The basic-pitch ONNX model (loaded once), its inference module and constants."""
    if not pitch_tracker_available():
        raise CadenzaError("the pitch cross-check needs basic-pitch and onnxruntime, which are not installed", INSTALL_HINT)
    try:
        basic_pitch, inference = _quiet_import()
        import basic_pitch.constants as constants

        path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
        model = inference.Model(path)
    except CadenzaError:
        raise
    except Exception as exc:  # a broken install: name it instead of a deep traceback
        raise CadenzaError(f"cannot load the basic-pitch ONNX model ({type(exc).__name__}: {exc})", INSTALL_HINT) from None
    return model, inference, constants


def tracker_name() -> str:
    """``basic-pitch <version> (onnx)``, recorded in every cross-check result."""
    try:
        return f"basic-pitch {importlib.metadata.version('basic-pitch')} (onnx)"
    except importlib.metadata.PackageNotFoundError:
        return "basic-pitch (absent)"


def salience(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(T, 264) contour salience on the canonical frame grid (T = n_samples // 256 + 1)."""
    model, inference, c = _model()
    audio = check_waveform(audio, "audio")
    if audio.ndim != 1:
        raise CadenzaError(f"the pitch cross-check takes one mono waveform, got shape {audio.shape}", "mix down with cadenza.audio.to_mono")
    audio = resample(audio, int(sample_rate), SAMPLE_RATE)
    n_frames = num_frames(audio.size)
    # basic-pitch's windowing (30 overlapping frames, 15 trimmed each side), fed from memory, but
    # with a hop of exactly 142 frames so the kept frames tile the grid without the drift of its
    # own hop (which is 141.27 frames: 0.7 frame, ~8 ms, gained per 1.6 s window)
    trim = 15
    keep = c.AUDIO_N_SAMPLES // c.FFT_HOP + 1 - 2 * trim  # 142 frames kept per window
    padded = np.concatenate([np.zeros(trim * c.FFT_HOP, np.float32), audio])
    windows = np.stack([w for w, _ in inference.window_audio_file(padded, keep * c.FFT_HOP)])  # (W, N, 1)
    contour = model.predict(windows)["contour"]  # (W, 172, 264)
    out = np.asarray(contour[:, trim : trim + keep], np.float32).reshape(-1, contour.shape[-1])[:n_frames]
    if out.shape[0] < n_frames:
        out = np.pad(out, ((0, n_frames - out.shape[0]), (0, 0)))
    return out


def f0_from_salience(sal: np.ndarray, voicing_threshold: float = DEFAULT_VOICING_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz, voiced bool) per frame: salience-weighted mean frequency around the peak bin."""
    _, _, c = _model()
    # bin 1 (not 0) is centred on A0 = 27.5 Hz (see basic_pitch.constants), so shift by one bin
    freqs = np.asarray(c.FREQ_BINS_CONTOURS, np.float64) * 2 ** (-1 / (12 * c.CONTOURS_BINS_PER_SEMITONE))
    peak = sal.argmax(axis=1)
    offsets = np.arange(-_REFINE_RADIUS, _REFINE_RADIUS + 1)
    idx = np.clip(peak[:, None] + offsets[None, :], 0, sal.shape[1] - 1)
    w = np.take_along_axis(sal, idx, axis=1).astype(np.float64)
    octaves = np.log2(freqs[idx])
    f0 = 2 ** ((w * octaves).sum(1) / np.maximum(w.sum(1), 1e-12))
    voiced = sal.max(axis=1) >= voicing_threshold
    return np.where(voiced, f0, 0.0), voiced


def pitch_classes_from_f0(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Hz → pitch class 0–11 (C = 0), -1 where unvoiced."""
    midi = 69 + 12 * np.log2(np.where(voiced, f0, 440.0) / 440.0)
    return np.where(voiced, np.rint(midi).astype(np.int64) % 12, -1)


def crosscheck_melody(
    audio: np.ndarray, sample_rate: int, given: ControlSet, voicing_threshold: float = DEFAULT_VOICING_THRESHOLD
) -> dict[str, float | str]:
    """Melody accuracy of ``audio`` against ``given`` with the f0 tracker instead of the chroma argmax.

    Scored frames are those with melody mask 1 and a given pitch class; an unvoiced frame counts
    as wrong (as in ``adherence.melody_accuracy``). ``melody_f1`` is the frame-level F1 of
    voicing and pitch class together: precision over the scored frames the tracker calls
    voiced, recall over all scored frames. Meaningful for mostly monophonic lead lines.
    """
    if not 0.0 < voicing_threshold < 1.0:
        raise CadenzaError(f"voicing threshold must lie in (0, 1), got {voicing_threshold}", "0.3 suits most material")
    sal = salience(audio, sample_rate)
    if sal.shape[0] != given.n_frames:
        if abs(sal.shape[0] - given.n_frames) > max(2, 0.05 * given.n_frames):
            raise CadenzaError(
                f"audio has {sal.shape[0]} frames but the controls have {given.n_frames}",
                "cross-check audio generated for these controls (same duration); check the sample rate",
            )
        sal = sal[: given.n_frames] if sal.shape[0] > given.n_frames else np.pad(sal, ((0, given.n_frames - sal.shape[0]), (0, 0)))
    f0, voiced = f0_from_salience(sal, voicing_threshold)
    est = pitch_classes_from_f0(f0, voiced)
    ref = given.pitch_classes()
    scored = (given.melody_mask > 0) & (ref >= 0)
    total = int(scored.sum())
    correct = int(np.count_nonzero(est[scored] == ref[scored]))
    voiced_scored = int(np.count_nonzero(voiced[scored]))
    # frame-level melody F1 (voicing + pitch class, as mir_eval's melody metrics): precision over
    # the frames the tracker calls voiced, recall (= accuracy) over the frames the control gives
    precision = correct / voiced_scored if voiced_scored else math.nan
    recall = correct / total if total else math.nan
    f1 = 2 * correct / (voiced_scored + total) if (voiced_scored + total) else math.nan
    return {
        "tracker": tracker_name(),
        "melody_accuracy": recall,
        "melody_precision": precision,
        "melody_f1": f1,
        "melody_correct": correct,
        "melody_frames": total,
        "melody_voiced_frames": voiced_scored,
        "voiced_fraction": float(voiced[scored].mean()) if total else math.nan,
        "voicing_threshold": voicing_threshold,
    }
