"""Control adherence: how faithfully generated audio follows the controls it was given.

The recipe follows Music ControlNet's evaluation: extract controls from the generated audio
with the same extractor that made the training controls (``extract_controls``), then compare
with the given controls **inside each control's mask only** (partial controls are scored in
their given spans):

- melody accuracy: frame-wise pitch-class agreement over frames where the melody mask is 1 and
  a pitch class is given; a generated frame that is unvoiced (silent) counts as wrong;
- dynamics: Pearson r between given and generated dB over masked frames. ``micro`` is the paper's
  name for per-clip r averaged over clips, ``macro`` for r over all clips' frames pooled. r is
  undefined for a constant sequence (or fewer than 3 frames); such a clip gets NaN with a reason,
  is left out of the mean and counted in ``dynamics_r_nan``;
- beat and downbeat F1: events matched one-to-one within ±70 ms (``mir_eval.util.match_events``,
  the matching inside ``mir_eval.beat.f_measure``), both sides' times trimmed to the frames
  where the rhythm mask is 1. With no given beat in the span F1 is undefined (NaN).

Per-clip results are flat dicts of floats/ints (JSON-ready, NaN for undefined) that also carry
the sufficient statistics (correct counts, beat matches, dynamics moments) so ``aggregate_scores``
can pool exactly instead of averaging averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mir_eval
import numpy as np
import scipy.signal

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE, time_to_frame
from cadenza.audio.io import check_waveform, resample
from cadenza.controls.base import ControlSet
from cadenza.controls.registry import CONTROLS
from cadenza.errors import CadenzaError

BEAT_WINDOW_S = 0.07
MIN_DYNAMICS_FRAMES = 3
CONSTANT_DB_STD = 1e-6  # below this spread (dB) a curve is constant and r is undefined
MAX_LENGTH_MISMATCH = 0.05  # generated audio may differ from the controls' length by 5 % at most

# ---------------------------------------------------------------------------- melody


def melody_counts(given: ControlSet, generated: ControlSet) -> tuple[int, int]:
    """(correct frames, scored frames): scored = melody mask 1 and a pitch class given."""
    ref = given.pitch_classes()
    est = generated.pitch_classes()  # -1 where the generated audio is unvoiced: never equal to ref >= 0
    scored = (given.melody_mask > 0) & (ref >= 0)
    return int(np.count_nonzero(est[scored] == ref[scored])), int(np.count_nonzero(scored))


def melody_accuracy(given: ControlSet, generated: ControlSet) -> float:
    """Fraction of scored frames whose generated pitch class matches the given one (NaN if none)."""
    correct, total = melody_counts(given, generated)
    return correct / total if total else math.nan


# ---------------------------------------------------------------------------- dynamics


def _moments(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Count, means and centred second moments: enough to pool Pearson r across clips stably."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.size
    if n == 0:
        return {"n": 0, "mean_x": 0.0, "mean_y": 0.0, "m2_x": 0.0, "m2_y": 0.0, "c_xy": 0.0}
    mx, my = float(x.mean()), float(y.mean())
    dx, dy = x - mx, y - my
    return {"n": int(n), "mean_x": mx, "mean_y": my, "m2_x": float(dx @ dx), "m2_y": float(dy @ dy), "c_xy": float(dx @ dy)}


def merge_moments(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Chan et al.'s parallel update: the moments of the concatenation, without re-reading frames."""
    out = _moments(np.zeros(0), np.zeros(0))
    for p in parts:
        if p["n"] == 0:
            continue
        na, nb = out["n"], p["n"]
        n = na + nb
        dx, dy = p["mean_x"] - out["mean_x"], p["mean_y"] - out["mean_y"]
        f = na * nb / n
        out = {
            "n": n,
            "mean_x": out["mean_x"] + dx * nb / n,
            "mean_y": out["mean_y"] + dy * nb / n,
            "m2_x": out["m2_x"] + p["m2_x"] + dx * dx * f,
            "m2_y": out["m2_y"] + p["m2_y"] + dy * dy * f,
            "c_xy": out["c_xy"] + p["c_xy"] + dx * dy * f,
        }
    return out


def pearson_from_moments(m: dict[str, float]) -> tuple[float, str | None]:
    """(r, reason it is undefined or None). Constant sides and too few frames give NaN."""
    if m["n"] < MIN_DYNAMICS_FRAMES:
        return math.nan, f"fewer than {MIN_DYNAMICS_FRAMES} masked frames"
    sx, sy = math.sqrt(m["m2_x"] / m["n"]), math.sqrt(m["m2_y"] / m["n"])
    if sx < CONSTANT_DB_STD and sy < CONSTANT_DB_STD:
        return math.nan, "given and generated dynamics both constant"
    if sx < CONSTANT_DB_STD:
        return math.nan, "given dynamics constant"
    if sy < CONSTANT_DB_STD:
        return math.nan, "generated dynamics constant"
    return float(np.clip(m["c_xy"] / math.sqrt(m["m2_x"] * m["m2_y"]), -1.0, 1.0)), None


def dynamics_moments(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    """Moments of (given dB, generated dB) over frames where the dynamics mask is 1."""
    sel = given.dynamics_mask > 0
    return _moments(given.dynamics[sel], generated.dynamics[sel])


def dynamics_correlation(given: ControlSet, generated: ControlSet) -> float:
    """Pearson r of given vs generated dynamics in the mask (NaN when undefined)."""
    return pearson_from_moments(dynamics_moments(given, generated))[0]


# ---------------------------------------------------------------------------- rhythm


def beat_times_from_activation(activation: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Times of activation peaks: the fallback when a control set carries no event-level beats."""
    act = np.asarray(activation, np.float64)
    peaks, _ = scipy.signal.find_peaks(np.pad(act, 1), height=threshold, plateau_size=1)
    return (peaks - 1) / FRAME_RATE


def _given_beats(cs: ControlSet) -> tuple[np.ndarray, np.ndarray]:
    if len(cs.beats):
        return np.sort(cs.beat_times()), np.sort(cs.downbeat_times())
    return beat_times_from_activation(cs.rhythm[:, 0]), beat_times_from_activation(cs.rhythm[:, 1])


def in_mask(times: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Times whose nearest frame lies in the mask (the trimming applied to both sides)."""
    times = np.asarray(times, np.float64)
    frames = time_to_frame(times)
    ok = (frames >= 0) & (frames < mask.size)
    keep = np.zeros(times.size, bool)
    keep[ok] = mask[frames[ok]] > 0
    return times[keep]


def beat_counts(reference: np.ndarray, estimated: np.ndarray, window: float = BEAT_WINDOW_S) -> dict[str, int]:
    """One-to-one matches within ``window`` (mir_eval's matching) and both sides' counts."""
    reference = np.sort(np.asarray(reference, np.float64))
    estimated = np.sort(np.asarray(estimated, np.float64))
    matched = len(mir_eval.util.match_events(reference, estimated, window)) if reference.size and estimated.size else 0
    return {"ref": int(reference.size), "est": int(estimated.size), "matched": matched}


def f1_from_counts(c: dict[str, int]) -> tuple[float, float, float]:
    """(precision, recall, F1); NaN when there is no reference beat (nothing to follow)."""
    if c["ref"] == 0:
        return math.nan, math.nan, math.nan
    precision = c["matched"] / c["est"] if c["est"] else 0.0
    recall = c["matched"] / c["ref"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


# ---------------------------------------------------------------------------- one clip


def _check_lengths(given: ControlSet, generated: ControlSet) -> ControlSet:
    if generated.n_frames == given.n_frames:
        return generated
    if abs(generated.n_frames - given.n_frames) > max(2, MAX_LENGTH_MISMATCH * given.n_frames):
        raise CadenzaError(
            f"generated audio has {generated.n_frames} frames but the controls have {given.n_frames}",
            "score audio generated for these controls (same duration); check the sample rate you passed",
        )
    return generated.fit_length(given.n_frames)  # padded frames are unvoiced: they count as wrong


def melody_metrics(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    """Melody accuracy inside the melody mask, and the counts behind it."""
    correct, total = melody_counts(given, generated)
    return {"melody_accuracy": correct / total if total else math.nan, "melody_correct": correct, "melody_frames": total}


def dynamics_metrics(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    """Pearson r of given and achieved dB inside the dynamics mask, and the moments to pool it."""
    moments = dynamics_moments(given, generated)
    r, reason = pearson_from_moments(moments)
    out: dict[str, float] = {"dynamics_r": r, "dynamics_frames": moments["n"], "dynamics_r_undefined": reason or ""}  # type: ignore[dict-item]
    out.update({f"dynamics_{k}": v for k, v in moments.items() if k != "n"})
    return out


def rhythm_metrics(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    """Beat and downbeat F1 (with precision, recall and counts) inside the rhythm mask."""
    out: dict[str, float] = {}
    mask = given.rhythm_mask
    if mask.any():
        ref_beats, ref_down = _given_beats(given)
        est_beats, est_down = np.sort(generated.beat_times()), np.sort(generated.downbeat_times())
        pairs = {"beat": (ref_beats, est_beats), "downbeat": (ref_down, est_down)}
    else:
        pairs = {"beat": (np.zeros(0), np.zeros(0)), "downbeat": (np.zeros(0), np.zeros(0))}
    for name, (ref, est) in pairs.items():
        c = beat_counts(in_mask(ref, mask), in_mask(est, mask))
        p, rec, f1 = f1_from_counts(c)
        out.update({f"{name}_f1": f1, f"{name}_precision": p, f"{name}_recall": rec})
        out.update({f"{name}_{k}": v for k, v in c.items()})
    return out


def compare_controls(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    """All adherence metrics of ``generated`` (controls extracted from the output) against ``given``.

    Each registered control contributes its own (``ControlSpec.metrics``), in registry order.
    """
    generated = _check_lengths(given, generated)
    out: dict[str, float] = {"n_frames": given.n_frames}
    for spec in CONTROLS.values():
        out.update(spec.metrics(given, generated))
    return out


def headline_keys() -> dict[str, tuple[str, str]]:
    """Short name → (metric key, its control) of every registered control's headline numbers."""
    return {short: (key, spec.name) for spec in CONTROLS.values() for short, key in spec.headline}


HEADLINE = {short: key for short, (key, _) in headline_keys().items()}  # the shipped controls' four


def control_adherence(given: ControlSet, generated: ControlSet) -> dict[str, float | None]:
    """The headline numbers of ``compare_controls`` for one clip (four for the shipped controls), ``None`` where undefined.

    The short form that the studio's title line and the quick generator benchmark show: a metric
    whose control was not given, or that is undefined for this clip (NaN), is ``None``.
    ``generated`` is fitted to the given length first (extraction can differ by a frame).
    """
    scores = compare_controls(given, generated.fit_length(given.n_frames))
    names = set(given.given())
    out: dict[str, float | None] = {}
    for short, (key, name) in headline_keys().items():
        value = scores[key]
        out[short] = float(value) if name in names and math.isfinite(value) else None
    return out


def score_clip(
    given: ControlSet,
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    rhythm_tracker: str = "default",
) -> dict[str, float]:
    """Extract the given controls from ``audio`` and score them (the one call for one clip)."""
    from cadenza.controls.extract import extract_controls  # deferred: the extractor pulls in the beat tracker

    audio = check_waveform(audio, "generated audio")
    if audio.ndim != 1:
        raise CadenzaError(f"score one mono clip at a time, got shape {audio.shape}", "mix down with cadenza.audio.to_mono")
    audio = resample(audio, int(sample_rate), SAMPLE_RATE)
    names = given.given()
    if not names:
        raise CadenzaError("no control is given in this control set, so there is nothing to score", "pass the controls the audio was generated from")
    generated = extract_controls(audio, SAMPLE_RATE, controls=names, rhythm_tracker=rhythm_tracker)
    return compare_controls(given, generated)


# ---------------------------------------------------------------------------- many clips


def _nanmean(values: list[float]) -> tuple[float, int, int]:
    arr = np.asarray(values, np.float64)
    ok = np.isfinite(arr)
    return (float(arr[ok].mean()) if ok.any() else math.nan), int(ok.sum()), int((~ok).sum())


def aggregate_scores(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Summaries over clips: per-clip means (NaN clips left out and counted) and pooled values.

    Keys: ``melody_accuracy_mean`` / ``_pooled``; ``dynamics_r_micro`` (per-clip r averaged, the
    paper's micro) and ``dynamics_r_macro`` (all frames pooled, the paper's macro); for beat and
    downbeat ``_f1_mean`` and ``_f1_pooled`` (from summed matches); and for every metric
    ``_clips`` (clips where it was defined) and ``_nan`` (clips where it was not).
    """
    if not scores:
        raise CadenzaError("no clip scores to aggregate", "score at least one clip with score_clip")
    out: dict[str, float] = {"n_clips": len(scores)}
    for spec in CONTROLS.values():
        out.update(spec.aggregate(list(scores)))
    return out


def melody_aggregate(scores: list[dict[str, float]]) -> dict[str, float]:
    mean, n_ok, n_nan = _nanmean([s["melody_accuracy"] for s in scores])
    correct, total = sum(s["melody_correct"] for s in scores), sum(s["melody_frames"] for s in scores)
    return dict(
        melody_accuracy_mean=mean, melody_accuracy_pooled=correct / total if total else math.nan,
        melody_accuracy_clips=n_ok, melody_accuracy_nan=n_nan, melody_frames=total,
    )


def dynamics_aggregate(scores: list[dict[str, float]]) -> dict[str, float]:
    mean, n_ok, n_nan = _nanmean([s["dynamics_r"] for s in scores])
    pooled = merge_moments([{k: s[f"dynamics_{k}"] for k in ("mean_x", "mean_y", "m2_x", "m2_y", "c_xy")} | {"n": s["dynamics_frames"]} for s in scores])
    macro, reason = pearson_from_moments(pooled)
    return dict(
        dynamics_r_micro=mean, dynamics_r_macro=macro, dynamics_r_clips=n_ok, dynamics_r_nan=n_nan,
        dynamics_frames=pooled["n"], dynamics_r_macro_undefined=reason or "",
    )


def rhythm_aggregate(scores: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ("beat", "downbeat"):
        mean, n_ok, n_nan = _nanmean([s[f"{name}_f1"] for s in scores])
        counts = {k: sum(s[f"{name}_{k}"] for s in scores) for k in ("ref", "est", "matched")}
        p, r, f1 = f1_from_counts(counts)
        out.update({
            f"{name}_f1_mean": mean, f"{name}_f1_pooled": f1, f"{name}_precision_pooled": p, f"{name}_recall_pooled": r,
            f"{name}_f1_clips": n_ok, f"{name}_f1_nan": n_nan, f"{name}_ref": counts["ref"],
        })
    return out


def score_clips(
    givens: Sequence[ControlSet],
    audios: Sequence[np.ndarray],
    sample_rate: int = SAMPLE_RATE,
    rhythm_tracker: str = "default",
    batch_size: int = 16,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Score many (controls, audio) pairs; returns the per-clip dicts and their aggregate.

    Clips of equal length are extracted together (one batched STFT per group), which is how
    a generator's output usually arrives.
    """
    from cadenza.controls.extract import extract_controls_batch

    if len(givens) != len(audios):
        raise CadenzaError(f"{len(givens)} control sets but {len(audios)} audio clips", "pass one control set per generated clip")
    if not givens:
        raise CadenzaError("no clips to score", "pass at least one (controls, audio) pair")
    clips = []
    for i, a in enumerate(audios):
        a = check_waveform(a, f"generated audio[{i}]")
        if a.ndim != 1:
            raise CadenzaError(f"generated audio[{i}] has shape {a.shape}; score mono clips", "mix down with cadenza.audio.to_mono")
        clips.append(resample(a, int(sample_rate), SAMPLE_RATE))
    names = [n for n in CONTROLS if any(n in g.given() for g in givens)]
    if not names:
        raise CadenzaError("no control is given in any control set, so there is nothing to score", "pass the controls the audio was generated from")
    generated: list[ControlSet | None] = [None] * len(clips)
    lengths = np.array([c.size for c in clips])
    for length in np.unique(lengths):
        same = np.flatnonzero(lengths == length)
        for k in range(0, same.size, batch_size):
            idx = same[k : k + batch_size]
            for i, cs in zip(idx, extract_controls_batch(np.stack([clips[i] for i in idx]), SAMPLE_RATE, names, rhythm_tracker)):
                generated[i] = cs
    scores = [compare_controls(g, cs) for g, cs in zip(givens, generated)]
    return scores, aggregate_scores(scores)
