"""Cross-check judges: spectral flatness, DSP beat F1 and basic-pitch melody F1 of generated audio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadenza.audio import SAMPLE_RATE, frames_for_duration
from cadenza.controls.files import read_melody, rhythm_from_bpm
from cadenza.eval.judges import JUDGE_KEYS, aggregate_judges, judge_batch, spectral_flatness
from cadenza.eval.pitch_check import pitch_tracker_available

SR = SAMPLE_RATE


def _clicks(bpm: float, seconds: float) -> np.ndarray:
    wave = np.zeros(int(seconds * SR), np.float32)
    for t in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(t * SR)
        wave[i : i + 400] += np.hanning(400).astype(np.float32) * np.sin(2 * np.pi * 1500 * np.arange(400) / SR).astype(np.float32)
    return wave


def test_flatness_tells_noise_from_tone_and_ignores_silence():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    batch = np.stack([0.1 * rng.standard_normal(SR), 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(SR)]).astype(np.float32)
    noise, tone, silence = spectral_flatness(batch)
    assert 0.4 < noise < 0.7  # white noise: e^-γ ≈ 0.56
    assert tone < 1e-3
    assert math.isnan(silence)


def test_dsp_beat_judge_rewards_the_given_tempo():
    seconds = 6.0
    n = frames_for_duration(seconds)
    given = rhythm_from_bpm(120.0, 4, n).fit_length(n)
    on, off = _clicks(120.0, seconds), _clicks(77.0, seconds)
    size = min(on.size, off.size)
    rows = judge_batch(np.stack([on[:size], off[:size]]), given)
    assert set(JUDGE_KEYS) <= set(rows[0])
    assert rows[0]["dsp_beat_f1"] > 0.8 > rows[1]["dsp_beat_f1"] + 0.2
    assert math.isnan(rows[0]["bp_melody_f1"])  # no melody given: not judged


@pytest.mark.skipif(not pitch_tracker_available(), reason="basic-pitch not installed")
def test_basic_pitch_judge_scores_the_sung_line_against_the_given_one():
    seconds = 3.0
    n = frames_for_duration(seconds)
    given = read_melody("C5:1 E5:1 G5:1 C5:1 E5:1 G5:1", n, bpm=120.0).fit_length(n)
    pcs = given.pitch_classes()
    f0 = np.where(pcs >= 0, 440.0 * 2 ** ((pcs + 72 - 69) / 12), 0.0)  # C5 = MIDI 72
    f_samples = np.repeat(f0, 256)[: int(seconds * SR)]
    wave = (0.4 * np.sin(2 * np.pi * np.cumsum(f_samples) / SR)).astype(np.float32)
    wrong = (0.4 * np.sin(2 * np.pi * np.cumsum(f_samples * 2 ** (3 / 12)) / SR)).astype(np.float32)  # a minor third off
    right_row, wrong_row = judge_batch(np.stack([wave, wrong]), given)
    assert right_row["bp_melody_f1"] > 0.8
    assert wrong_row["bp_melody_f1"] < 0.2


def test_aggregate_skips_undefined_clips():
    rows = [{k: 0.5 for k in JUDGE_KEYS}, {k: math.nan for k in JUDGE_KEYS}, None]
    agg = aggregate_judges(rows)
    assert agg["dsp_beat_f1_mean"] == 0.5
    assert math.isnan(aggregate_judges([None])["bp_melody_f1_mean"])


def test_a_weighted_loudness_judge_follows_a_crescendo_and_skips_flat_curves():
    from cadenza.controls.base import ControlSet
    from cadenza.eval.judges import a_weighted_loudness_db, masked_pearson

    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    rising = (10 ** (np.linspace(-40.0, -10.0, t.size) / 20) * np.sin(2 * np.pi * 523.25 * t)).astype(np.float32)  # linear in dB
    loud = a_weighted_loudness_db(np.stack([rising, rising[::-1].copy()]))
    n = frames_for_duration(3.0)
    assert loud.shape == (2, n)
    target = np.linspace(-40.0, -10.0, n)
    mask = np.ones(n)
    assert masked_pearson(target, loud[0], mask) > 0.95
    assert masked_pearson(target, loud[1], mask) < -0.95
    assert math.isnan(masked_pearson(np.full(n, -20.0), loud[0], mask))  # a flat target says nothing
    assert math.isnan(masked_pearson(target, loud[0], np.zeros(n)))
    given = ControlSet.empty(n)
    given.dynamics[:], given.dynamics_mask[:] = target, 1
    assert judge_batch(rising[None], given)[0]["aw_dynamics_r"] > 0.95


def test_beat_salience_is_high_for_clicks_on_the_beats_and_near_one_off_them():
    from cadenza.eval.judges import beat_salience

    n = 4 * SAMPLE_RATE
    rng = np.random.default_rng(0)
    beats = np.arange(0.5, 3.6, 0.5)
    on = (rng.normal(size=n) * 0.001).astype(np.float32)
    for b in beats:
        i = int(b * SAMPLE_RATE)
        on[i : i + 400] += np.hanning(800)[400:] * np.sin(np.arange(400) * 0.3)
    mask = np.ones(frames_for_duration(4.0))
    assert beat_salience(on, beats, mask) > 2.0
    assert beat_salience(on, beats + 0.25, mask) < 1.0  # the clicks fall between these "beats"
    assert math.isnan(beat_salience(on, np.array([]), mask))
