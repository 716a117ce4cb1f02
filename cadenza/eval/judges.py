"""Cross-check judges: adherence measured by extractors that generation never sees or steers by.

Cadenza's own metrics (chroma-argmax melody, RMS dynamics, the trained beat tracker) are the
ones the model was trained against, so a method that optimises them could game them: narrow
band dashes can win a chroma argmax without sounding like notes. These judges are of another
kind and are only reported, never optimised:

- melody: basic-pitch (a learned f0 tracker, ONNX) frame-level pitch-class F1 and accuracy
  inside the melody mask (``pitch_check.crosscheck_melody``), where basic-pitch is installed;
- rhythm: the DSP beat tracker (onset envelope + dynamic programming, no learning) beat and
  downbeat F1 inside the rhythm mask, scored exactly as the main metric;
- dynamics: Pearson r of the given curve with an A-weighted loudness meter (400 ms windows of
  an A-weighted 1024-point power spectrum, ``a_weighted_loudness_db``) inside the dynamics mask;
  another measure than the control's unweighted RMS over 2048-sample frames, so a method that
  only moved energy the ear barely weighs (sub-bass) would not gain here;
- beat salience: librosa's onset strength at the given beat times (±35 ms) over its mean inside
  the rhythm mask (``beat_salience``); no tracking, so it says whether the beats are marked in the
  audio even where a tracker's tempo estimate goes astray (1 = no more onset at the beats than
  elsewhere; rendered corpus clips score about 2);
- "is it still music": mean spectral flatness (Wiener entropy) of the output; white noise is
  near 1, tonal music near 0, so a rise shows noise, a collapse to ~0 shows bare tones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cadenza.audio.format import SAMPLE_RATE
from cadenza.controls.base import ControlSet

JUDGE_KEYS = ("bp_melody_f1", "bp_melody_accuracy", "dsp_beat_f1", "dsp_downbeat_f1", "beat_salience", "aw_dynamics_r", "spectral_flatness")
BEAT_TOLERANCE_S = 0.035  # onset frames this close to a given beat count as "at the beat"
LOUDNESS_WINDOW_S = 0.4  # the momentary window of loudness meters (EBU R 128)


def a_weighted_loudness_db(batch: np.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """(B, N) waveforms → (B, N // hop + 1) A-weighted loudness in dB, a 400 ms moving mean of power."""
    import librosa
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    power = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().square().double()
    with np.errstate(divide="ignore"):  # the DC bin: A-weighting is -inf dB there, a weight of 0
        weights = torch.from_numpy(10.0 ** (librosa.A_weighting(librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft), min_db=None) / 10.0))
    frame_power = torch.einsum("f,bft->bt", weights, power)
    width = max(1, int(round(LOUDNESS_WINDOW_S * sample_rate / hop)))
    kernel = torch.full((1, 1, width), 1.0 / width, dtype=torch.float64)
    padded = torch.nn.functional.pad(frame_power[:, None], (width // 2, width - 1 - width // 2), mode="replicate")
    mean_power = torch.nn.functional.conv1d(padded, kernel)[:, 0]
    return (10.0 * torch.log10(mean_power.clamp_min(1e-12))).numpy()


def beat_salience(wave: np.ndarray, beat_times: np.ndarray, mask: np.ndarray, sample_rate: int = SAMPLE_RATE, hop: int = 256) -> float:
    """Mean onset strength within ``BEAT_TOLERANCE_S`` of the given beats over its mean on all masked frames (NaN without beats)."""
    import librosa

    env = librosa.onset.onset_strength(y=np.asarray(wave, np.float32), sr=sample_rate, hop_length=hop)
    n = min(len(env), len(mask))
    env, inside = env[:n], np.asarray(mask[:n]) > 0
    times = np.arange(n) * hop / sample_rate
    beats = np.asarray(beat_times, np.float64)
    if not inside.any() or beats.size == 0:
        return math.nan
    near = np.abs(times[:, None] - beats[None, :]).min(axis=1) <= BEAT_TOLERANCE_S
    at_beats = near & inside
    mean_inside = float(env[inside].mean())
    if not at_beats.any() or mean_inside <= 0:
        return math.nan
    return float(env[at_beats].mean() / mean_inside)


def masked_pearson(given: np.ndarray, got: np.ndarray, mask: np.ndarray, min_frames: int = 16) -> float:
    """Pearson r of two curves on the frames where ``mask`` > 0 (NaN with too few frames or a flat curve)."""
    n = min(len(given), len(got), len(mask))
    keep = np.asarray(mask[:n]) > 0
    a, b = np.asarray(given[:n], np.float64)[keep], np.asarray(got[:n], np.float64)[keep]
    if a.size < min_frames or a.std() < 1e-6 or b.std() < 1e-6:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def spectral_flatness(batch: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Mean spectral flatness per clip of (B, N) waveforms (frames 60 dB below the clip's loudest left out: silence is not noise)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().square() + 1e-12
    flat = torch.exp(spec.log().mean(1)) / spec.mean(1)  # (B, T)
    power = spec.mean(1)
    loud = (power > power.amax(1, keepdim=True) * 1e-6) & (power > 1e-6)  # relative and absolute (-80 dB) floors
    flat = torch.where(loud, flat, torch.nan)
    return torch.nanmean(flat, dim=1).nan_to_num(math.nan).numpy().astype(np.float64)


def judge_batch(batch: np.ndarray, given: ControlSet, sample_rate: int = SAMPLE_RATE) -> list[dict[str, float]]:
    """The cross-check scores of every row of ``batch`` (B, N) against one ``given`` ControlSet.

    Keys: ``JUDGE_KEYS`` (NaN where the control is not given or basic-pitch is absent) plus the
    counts behind the beat F1s for pooling.
    """
    from cadenza.controls.extract import extract_controls_batch
    from cadenza.eval.adherence import compare_controls
    from cadenza.eval.pitch_check import crosscheck_melody, pitch_tracker_available

    batch = np.asarray(batch, np.float32)
    out = [{k: math.nan for k in JUDGE_KEYS} for _ in range(len(batch))]
    flat = spectral_flatness(batch)
    for row, f in zip(out, flat):
        row["spectral_flatness"] = float(f)
    names = given.given()
    if "melody" in names and pitch_tracker_available():
        for row, wave in zip(out, batch):
            m = crosscheck_melody(wave, sample_rate, given)
            row["bp_melody_f1"], row["bp_melody_accuracy"] = float(m["melody_f1"]), float(m["melody_accuracy"])
    if "dynamics" in names:
        for row, loud in zip(out, a_weighted_loudness_db(batch, sample_rate)):
            row["aw_dynamics_r"] = masked_pearson(given.dynamics, loud, given.dynamics_mask)
    if "rhythm" in names:
        for row, wave in zip(out, batch):
            row["beat_salience"] = beat_salience(wave, given.beat_times(), given.rhythm_mask, sample_rate)
        rhythm_only = given.select(["rhythm"])
        for row, cs in zip(out, extract_controls_batch(batch, sample_rate, ["rhythm"], "dsp")):
            s = compare_controls(rhythm_only, cs)
            row.update(dsp_beat_f1=float(s["beat_f1"]), dsp_downbeat_f1=float(s["downbeat_f1"]))
    return out


def aggregate_judges(rows: Sequence[dict[str, float] | None]) -> dict[str, float]:
    """Per-clip means of each judge (NaN clips left out), keyed ``<judge>_mean``."""
    out: dict[str, float] = {}
    for key in JUDGE_KEYS:
        vals = np.array([np.nan if r is None or r.get(key) is None else r[key] for r in rows], np.float64)
        out[f"{key}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    return out
