"""Control adherence metrics: known answers on synthesised tunes, chance on noise, masks, NaN handling."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import mir_eval
import numpy as np
import pytest

from cadenza.audio import FRAME_RATE, SAMPLE_RATE
from cadenza.controls import ControlSet
from cadenza.controls.base import beats_to_activations
from cadenza.controls.extract import extract_controls
from cadenza.errors import CadenzaError
from cadenza.eval.adherence import (
    aggregate_scores,
    beat_times_from_activation,
    compare_controls,
    control_adherence,
    dynamics_correlation,
    melody_accuracy,
    score_clip,
    score_clips,
)

SR = SAMPLE_RATE
TUNE = [60, 64, 67, 72, 65, 69, 62, 71]


def tune_over_clicks(bpm: float = 120.0, bars: int = 2, meter: int = 4, lead: float = 0.25) -> np.ndarray:
    """A tone per beat (varying level) over a click track whose bar starts are louder and higher."""
    period = 60.0 / bpm
    n = bars * meter
    audio = np.zeros(int((lead + n * period + 0.3) * SR), np.float32)
    click = int(0.03 * SR)
    env_click = np.exp(-np.arange(click) / (0.004 * SR))
    for i in range(n):
        a = int((lead + i * period) * SR)
        t = np.arange(int(0.95 * period * SR)) / SR
        f = 440.0 * 2 ** ((TUNE[i % len(TUNE)] - 69) / 12)
        env = np.minimum(1, np.minimum(t, t[::-1]) / 0.01) * (0.2 + 0.1 * np.sin(i))
        audio[a : a + t.size] += env * np.sin(2 * np.pi * f * t)
        down = i % meter == 0
        audio[a : a + click] += (0.9 if down else 0.3) * env_click * np.sin(2 * np.pi * (1500 if down else 1000) * np.arange(click) / SR)
    return audio


@pytest.fixture(scope="module")
def tune() -> tuple[np.ndarray, ControlSet]:
    audio = tune_over_clicks()
    return audio, extract_controls(audio)


def test_clip_scored_against_its_own_controls_is_near_perfect(tune) -> None:
    audio, given = tune
    s = score_clip(given, audio)
    assert s["melody_accuracy"] >= 0.95 and s["melody_frames"] > 0.8 * given.n_frames
    assert s["dynamics_r"] >= 0.99
    assert s["beat_f1"] >= 0.95 and s["beat_ref"] == 8
    assert s["downbeat_f1"] >= 0.95


def test_white_noise_scores_at_chance_on_a_random_melody(tune, rng) -> None:
    audio, given = tune
    T = given.n_frames
    pcs = np.repeat(rng.integers(0, 12, size=T // 20 + 1), 20)[:T]  # random notes of 20 frames
    random_melody = replace(given, melody=np.eye(12, dtype=np.float32)[pcs], melody_mask=np.ones(T, np.float32)).validate()
    noise = (0.1 * rng.standard_normal(audio.size)).astype(np.float32)
    s = score_clip(random_melody.select(["melody"]), noise)
    assert 0.0 <= s["melody_accuracy"] <= 0.25
    assert s["melody_frames"] == T


def test_unvoiced_generated_frames_count_as_wrong(tune) -> None:
    _, given = tune
    silent = ControlSet.empty(given.n_frames)  # nothing voiced in the "generated" audio
    assert melody_accuracy(given, silent) == 0.0


def _perturbed(cs: ControlSet, frames: np.ndarray, rng: np.random.Generator) -> ControlSet:
    """A copy with melody, dynamics and beats changed on ``frames`` only."""
    out = replace(cs, melody=cs.melody.copy(), dynamics=cs.dynamics.copy(), melody_mask=cs.melody_mask.copy())
    out.melody[frames] = np.eye(12, dtype=np.float32)[(cs.pitch_classes()[frames] + 5) % 12]
    out.melody_mask[frames] = 1.0
    out.dynamics[frames] = rng.uniform(-60, -10, frames.size).astype(np.float32)
    t = frames / FRAME_RATE
    keep = ~((cs.beats[:, 0] >= t.min()) & (cs.beats[:, 0] <= t.max()))
    extra = np.stack([np.linspace(t.min(), t.max(), 7)[1:-1] + 0.11, np.zeros(5)], axis=1)
    out.beats = np.concatenate([cs.beats[keep], extra])
    return out.validate()


def test_masks_exclude_exactly_what_they_should(tune, rng) -> None:
    _, full = tune
    T = full.n_frames
    half = T // 2
    mask = (np.arange(T) < half).astype(np.float32)
    given = replace(full, melody_mask=full.melody_mask * mask, dynamics_mask=mask, rhythm_mask=mask).validate()
    base = compare_controls(given, full)
    keys = ["melody_accuracy", "dynamics_r", "beat_f1", "downbeat_f1"]
    assert all(base[k] >= 0.95 for k in keys)

    outside = compare_controls(given, _perturbed(full, np.arange(half + 2, T), rng))
    assert [outside[k] for k in keys] == [base[k] for k in keys]
    assert outside["melody_frames"] == base["melody_frames"]

    inside = compare_controls(given, _perturbed(full, np.arange(10, half - 10), rng))
    assert all(inside[k] < base[k] - 0.2 for k in keys[:3])


def test_beat_f1_matches_mir_eval_on_the_trimmed_span(tune) -> None:
    _, full = tune
    T = full.n_frames
    mask = ((np.arange(T) > 60) & (np.arange(T) < 300)).astype(np.float32)
    gen = replace(full, beats=full.beats + np.array([0.05, 0.0]))  # 50 ms late: inside the window
    late = replace(full, beats=full.beats + np.array([0.09, 0.0]))  # 90 ms late: outside
    given = replace(full, rhythm_mask=mask).validate()
    t_lo, t_hi = 61 / FRAME_RATE, 299 / FRAME_RATE
    for est, expected_f1 in ((gen, 1.0), (late, 0.0)):
        s = compare_controls(given, est)
        ref_t = full.beat_times()[(full.beat_times() >= t_lo - 0.006) & (full.beat_times() <= t_hi + 0.006)]
        est_t = est.beat_times()[(est.beat_times() >= t_lo - 0.006) & (est.beat_times() <= t_hi + 0.006)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert s["beat_f1"] == pytest.approx(mir_eval.beat.f_measure(ref_t, est_t, 0.07))
        assert s["beat_f1"] == pytest.approx(expected_f1)
        assert s["beat_ref"] == ref_t.size < len(full.beats)


def test_beats_recovered_from_activations_when_no_event_list(tune) -> None:
    _, full = tune
    act = beats_to_activations(full.beats, full.n_frames)
    times = beat_times_from_activation(act[:, 0])
    np.testing.assert_allclose(times, np.round(full.beat_times() * FRAME_RATE) / FRAME_RATE, atol=1e-9)
    no_events = replace(full, beats=np.zeros((0, 2)))
    assert compare_controls(no_events, full)["beat_f1"] >= 0.95


def test_constant_dynamics_give_nan_with_a_reason_and_are_left_out(tune) -> None:
    _, full = tune
    flat = replace(full, dynamics=np.full(full.n_frames, -20.0, np.float32)).validate()
    s = compare_controls(flat, full)
    assert math.isnan(s["dynamics_r"]) and "given dynamics constant" in s["dynamics_r_undefined"]
    assert math.isnan(dynamics_correlation(full, flat))
    good = compare_controls(full, full)
    agg = aggregate_scores([s, good])
    assert agg["dynamics_r_nan"] == 1 and agg["dynamics_r_clips"] == 1
    assert agg["dynamics_r_micro"] == pytest.approx(good["dynamics_r"])
    assert math.isfinite(agg["dynamics_r_macro"])  # pooled frames still vary


def test_aggregate_pools_exactly(tune, rng) -> None:
    _, full = tune
    gens = [_perturbed(full, np.arange(a, a + 80), rng) for a in (20, 150, 250)]
    scores = [compare_controls(full, g) for g in gens]
    agg = aggregate_scores(scores)
    x = np.concatenate([full.dynamics for _ in gens])
    y = np.concatenate([g.dynamics for g in gens])
    assert agg["dynamics_r_macro"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert agg["dynamics_r_micro"] == pytest.approx(np.mean([s["dynamics_r"] for s in scores]))
    correct = sum(s["melody_correct"] for s in scores)
    assert agg["melody_accuracy_pooled"] == pytest.approx(correct / sum(s["melody_frames"] for s in scores))
    matched = sum(s["beat_matched"] for s in scores)
    p, r = matched / sum(s["beat_est"] for s in scores), matched / sum(s["beat_ref"] for s in scores)
    assert agg["beat_f1_pooled"] == pytest.approx(2 * p * r / (p + r))
    assert agg["n_clips"] == 3


def test_no_rhythm_given_means_undefined_not_zero(tune) -> None:
    _, full = tune
    s = compare_controls(full.select(["melody"]), full)
    assert math.isnan(s["beat_f1"]) and math.isnan(s["dynamics_r"]) and s["melody_accuracy"] >= 0.95
    agg = aggregate_scores([s])
    assert agg["beat_f1_nan"] == 1 and math.isnan(agg["beat_f1_mean"])


def test_headline_summary_is_none_where_a_control_was_not_given(tune) -> None:
    _, full = tune
    s = control_adherence(full.select(["melody", "rhythm"]), full.fit_length(full.n_frames + 1))
    assert set(s) == {"melody_acc", "dynamics_r", "beat_f1", "downbeat_f1"}
    assert s["dynamics_r"] is None
    assert s["melody_acc"] >= 0.95 and s["beat_f1"] >= 0.95
    shifted = replace(full, melody=np.roll(full.melody, 3, axis=1))
    assert control_adherence(full.select(["melody"]), shifted)["melody_acc"] < 0.1


def test_bad_inputs_raise_cadenza_error(tune) -> None:
    audio, given = tune
    with pytest.raises(CadenzaError, match="frames but the controls"):
        compare_controls(given, ControlSet.empty(given.n_frames // 2))
    with pytest.raises(CadenzaError, match="no control is given"):
        score_clip(ControlSet.empty(given.n_frames), audio)
    with pytest.raises(CadenzaError, match="mono"):
        score_clip(given, np.stack([audio, audio]))
    with pytest.raises(CadenzaError, match="one control set per"):
        score_clips([given], [])
    with pytest.raises(CadenzaError, match="no clip scores"):
        aggregate_scores([])


def test_small_length_mismatch_is_tolerated(tune) -> None:
    audio, given = tune
    s = score_clip(given.select(["melody"]), audio[: audio.size - 300])  # one frame short
    assert s["n_frames"] == given.n_frames and s["melody_accuracy"] >= 0.94


def test_batched_scoring_equals_per_clip_scoring(tune, rng) -> None:
    audio, given = tune
    quiet = (0.5 * audio).astype(np.float32)
    shorter = audio[: audio.size - 2048]
    givens = [given, given.select(["melody", "dynamics"]), given.fit_length(given.n_frames - 8)]
    scores, agg = score_clips(givens, [audio, quiet, shorter])
    for g, a, s in zip(givens, [audio, quiet, shorter], scores):
        one = score_clip(g, a)
        assert one.keys() == s.keys()
        for k in one:
            assert (one[k] == s[k]) or (isinstance(one[k], float) and math.isnan(one[k]) and math.isnan(s[k])), k
    assert agg["n_clips"] == 3 and agg["beat_f1_nan"] == 1
