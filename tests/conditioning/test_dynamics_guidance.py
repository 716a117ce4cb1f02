"""Dynamics guidance: a per-frame gain on the finished mel, inside the dynamics mask only."""

import math

import numpy as np
import pytest
import torch

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.mel import MelSpectrogram
from cadenza.conditioning.dynamics_guidance import (
    DynamicsGuide,
    check_strength,
    edge_ramp,
    mel_level_db,
    mel_sampler_units,
    smoothed_mel_level_db,
)
from cadenza.controls.extract import extract_controls
from cadenza.errors import CadenzaError

N = 48


def _identity_units(n_mels: int = 128):
    """Sampler units that are the log-mel itself (so a gain of g dB adds g·ln10/20 to every bin)."""
    return (lambda x: x), torch.ones(n_mels)


def test_level_from_the_mel_tracks_the_dynamics_extractor():
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    envelope = np.linspace(0.05, 0.7, t.size)  # a crescendo of about 23 dB
    wave = (envelope * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    got = smoothed_mel_level_db(MelSpectrogram()(torch.from_numpy(wave))[None])[0].numpy()
    want = extract_controls(wave, controls=("dynamics",)).dynamics
    inner = slice(50, len(want) - 50)
    assert np.corrcoef(got[inner], want[inner])[0, 1] > 0.99
    assert np.abs(got[inner] - want[inner]).mean() < 1.5  # dB


def test_full_scale_sine_reads_minus_3_dbfs():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    wave = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    level = mel_level_db(MelSpectrogram()(torch.from_numpy(wave))[None])[0, 10:-10]
    assert abs(float(level.mean()) + 3.0) < 1.0


def test_edge_ramp_is_zero_outside_and_one_inside():
    mask = torch.zeros(1, 60)
    mask[0, 10:50] = 1
    w = edge_ramp(mask, frames=5)
    assert torch.all(w[0, :10] == 0) and torch.all(w[0, 50:] == 0)
    assert torch.allclose(w[0, 15:45], torch.ones(30))
    assert torch.all(torch.diff(w[0, 10:15]) > 0) and w[0, 10] > 0  # a fade in, not a step
    assert torch.equal(edge_ramp(torch.ones(1, 20), frames=5), torch.ones(1, 20))


def test_gain_is_the_same_on_every_bin_and_zero_outside_the_mask():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 128, N, generator=g) - 3.0
    mask = torch.zeros(1, N)
    mask[0, 12:40] = 1
    to_log_mel, scale = _identity_units()
    target = torch.linspace(-40, -5, N)[None]
    delta = DynamicsGuide(target, mask, 1.0, to_log_mel, scale).correction(x0)
    assert torch.all(delta[..., :12] == 0) and torch.all(delta[..., 40:] == 0)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta))  # a gain: one value per frame
    assert delta[..., 20:32].abs().mean() > 1e-3


def test_correction_brings_the_contour_to_the_target():
    """Applied to a flat-level mel, the gain reproduces the target's contour (the clip's overall level is kept)."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    wave = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    log_mel = MelSpectrogram()(torch.from_numpy(wave))[None]
    n = log_mel.shape[-1]
    target = torch.from_numpy(np.linspace(-30.0, -15.0, n, dtype=np.float32))[None]
    to_log_mel, scale = _identity_units()
    guide = DynamicsGuide(target, torch.ones(1, n), 1.0, to_log_mel, scale)
    before = smoothed_mel_level_db(log_mel)[0].numpy()
    after = smoothed_mel_level_db(log_mel + guide.correction(log_mel))[0].numpy()
    inner = slice(60, n - 60)
    assert np.std(before[inner]) < 0.5
    assert np.corrcoef(after[inner], target[0, inner].numpy())[0, 1] > 0.99
    assert abs(after.mean() - before.mean()) < 1.5  # contour, not absolute level


def test_partial_span_contour_is_met_inside_and_nothing_moves_outside():
    """Through the one-second smoothing: inside a 2 s span the smoothed level follows a swell; outside, no gain."""
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    log_mel = MelSpectrogram()(torch.from_numpy(wave))[None]
    n = log_mel.shape[-1]
    mask = torch.zeros(1, n)
    mask[0, 130:302] = 1  # 1.5 s to 3.5 s
    swell = torch.from_numpy(-25 + 6 * np.sin(np.linspace(0, 2 * np.pi, n)).astype(np.float32))[None]
    to_log_mel, scale = _identity_units()
    delta = DynamicsGuide(swell, mask, 1.0, to_log_mel, scale).correction(log_mel)
    assert torch.all(delta[..., :130] == 0) and torch.all(delta[..., 302:] == 0)
    after = smoothed_mel_level_db(log_mel + delta)[0].numpy()
    fitted = DynamicsGuide(swell, mask, 1.0, to_log_mel, scale).fit[0].numpy() >= 1.0  # the span less its edges
    assert 60 < fitted.sum() < 172
    assert np.corrcoef(after[fitted], swell[0].numpy()[fitted])[0, 1] > 0.97


def test_a_loud_span_between_quiet_frames_keeps_its_average_level():
    """The level anchor: a span much louder than the free frames around it is shaped, not sunk to their level.

    Without it the solve bent the span's edge frames (whose one-second smoothing hears the quiet
    outside) onto the target by lowering the whole span, up to the 24 dB limit.
    """
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    loud = (t >= 1.5) & (t < 3.5)
    wave = (np.where(loud, 0.3, 0.003) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    log_mel = MelSpectrogram()(torch.from_numpy(wave))[None]
    n = log_mel.shape[-1]
    mask = torch.zeros(1, n)
    mask[0, 130:302] = 1
    fade = torch.from_numpy(np.interp(np.arange(n), [130, 302], [-12.0, -24.0]).astype(np.float32))[None]  # decrescendo
    to_log_mel, scale = _identity_units()
    guide = DynamicsGuide(fade, mask, 1.0, to_log_mel, scale)
    gain = guide.gain_db(log_mel)[0].numpy()
    inside = mask[0].numpy() > 0
    assert abs(np.average(gain[inside], weights=guide.fit[0].numpy()[inside])) < 1.0
    assert np.abs(gain).max() < 12.0
    after = smoothed_mel_level_db(log_mel + guide.correction(log_mel))[0].numpy()
    fitted = guide.fit[0].numpy() >= 1.0
    assert after[fitted][-10:].mean() < after[fitted][:10].mean() - 3.0  # the decrescendo is there
    assert np.corrcoef(after[fitted], fade[0].numpy()[fitted])[0, 1] > 0.95


def test_sampler_units_round_trip_the_standardised_mel():
    mean, std = torch.linspace(-0.5, 0.2, 128), torch.linspace(0.2, 0.4, 128)
    to_log_mel, scale = mel_sampler_units(mean, std)
    x = torch.zeros(1, 128, 4)
    one_db = math.log(10) / 20 * scale[None, :, None] * torch.ones(1, 128, 4)
    diff = to_log_mel(x + one_db) - to_log_mel(x)
    assert torch.allclose(diff, torch.full_like(diff, math.log(10) / 20), atol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "loud", None])
def test_bad_strength_is_one_clear_error(bad):
    with pytest.raises(CadenzaError, match="dynamics guidance"):
        check_strength(bad)
