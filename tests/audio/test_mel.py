import numpy as np
import pytest
import torch

from cadenza.audio import (
    HOP_LENGTH, SAMPLE_RATE, MelConfig, MelSpectrogram, denormalize_log_mel, griffin_lim, normalize_log_mel, num_frames,
)
from cadenza.errors import CadenzaError


def test_shape_follows_frame_grid():
    mel = MelSpectrogram()
    for n in (22050, 22050 + 100, 5 * HOP_LENGTH):
        out = mel(torch.zeros(n))
        assert out.shape == (128, num_frames(n))


def test_batched_equals_single():
    mel = MelSpectrogram()
    x = torch.randn(3, 8000) * 0.1
    batched = mel(x)
    for i in range(3):
        torch.testing.assert_close(batched[i], mel(x[i]), rtol=1e-5, atol=1e-5)


def test_tone_lands_in_right_band_and_silence_at_floor():
    cfg = MelConfig()
    mel = MelSpectrogram(cfg)
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    out = mel(0.5 * torch.sin(2 * torch.pi * 1000 * t))
    import librosa

    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.f_min, fmax=cfg.f_max)[1:-1]
    peak_band = int(out[:, 20:-20].mean(dim=1).argmax())
    assert abs(centres[peak_band] - 1000) < 100
    silent = mel(torch.zeros(SAMPLE_RATE))
    assert torch.allclose(silent, torch.full_like(silent, np.log(1e-5)))


def test_normalisation_roundtrip():
    x = torch.linspace(-11.5, 3.0, 50)
    torch.testing.assert_close(denormalize_log_mel(normalize_log_mel(x)), x)
    assert normalize_log_mel(torch.tensor(np.log(1e-5))).item() == pytest.approx(-1.0)


def test_griffin_lim_reconstructs_a_tone():
    mel = MelSpectrogram()
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    wave = griffin_lim(mel(x), n_iter=16)
    assert wave.shape == (HOP_LENGTH * (num_frames(SAMPLE_RATE) - 1),)
    spec = torch.fft.rfft(wave).abs()
    peak_hz = spec.argmax().item() * SAMPLE_RATE / len(wave)
    assert abs(peak_hz - 440) < 15
    # the round trip's mel is much closer to the input than silence's is
    err = (mel(wave)[:, 5:-5] - mel(x)[:, : mel(wave).shape[-1]][:, 5:-5]).abs().mean()
    assert err < 1.5


def test_errors():
    mel = MelSpectrogram()
    with pytest.raises(CadenzaError, match="too short"):
        mel(torch.zeros(100))
    with pytest.raises(CadenzaError, match="expects"):
        mel(torch.zeros(1, 2, 3000))
    with pytest.raises(CadenzaError, match="expected a log-mel"):
        griffin_lim(torch.zeros(1, 80, 10))
