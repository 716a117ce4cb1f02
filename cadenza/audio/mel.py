"""The canonical mel spectrogram and its Griffin-Lim inverse (the no-training baseline vocoder).

Canonical mel config (shared by the vocoder, the generator and the data cache):

- 22.05 kHz mono, n_fft = win = 1024 (46 ms Hann window), hop 256 (≈ 86 frames/s), centred
  frames with reflect padding, so ``T = n_samples // 256 + 1``;
- 128 Slaney-normalised mel bands from 0 Hz to 11.025 kHz (the full band: music has
  energy above the 8 kHz speech vocoders stop at);
- magnitude (not power) mel, compressed as ``log(clamp(mel, 1e-5))`` — the Vocos/HiFi-GAN
  convention, so values lie in about [-11.5, 4].

The generator rescales this log-mel to [-1, 1] with fixed constants (see ``normalize_log_mel``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import librosa
import numpy as np
import torch
from torch import nn

from cadenza.audio.format import HOP_LENGTH, SAMPLE_RATE
from cadenza.audio.phase import MelTarget, inverse_stft, phase_from_magnitude, refine_phase
from cadenza.errors import CadenzaError

LOG_FLOOR = 1e-5
LOG_MEL_MIN = float(np.log(LOG_FLOOR))  # ≈ -11.51: digital silence
LOG_MEL_MAX = 3.0  # a full-scale tone lands near 2–3 in a 1024-point magnitude STFT


@dataclass(frozen=True)
class MelConfig:
    """Hyper-parameters of the mel front end; saved beside every model that reads mels."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = HOP_LENGTH
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = SAMPLE_RATE / 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MelConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class MelSpectrogram(nn.Module):
    """Batched waveform → log-magnitude mel: (B, N) or (N,) → (B, n_mels, T) or (n_mels, T)."""

    def __init__(self, config: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.config = config
        fb = librosa.filters.mel(
            sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max
        )
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude (B, n_fft//2+1, T)."""
        c = self.config
        spec = torch.stft(
            audio, c.n_fft, c.hop_length, c.win_length, self.window, center=True, pad_mode="reflect", return_complex=True
        )
        return spec.abs()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        squeeze = audio.dim() == 1
        if squeeze:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise CadenzaError(f"mel front end expects (batch, samples) audio, got shape {tuple(audio.shape)}")
        if audio.shape[-1] <= self.config.n_fft // 2:
            raise CadenzaError(
                f"audio too short for a spectrogram: {audio.shape[-1]} samples",
                f"give at least {self.config.n_fft // 2 + 1} samples ({(self.config.n_fft // 2 + 1) / self.config.sample_rate:.3f} s)",
            )
        mel = torch.matmul(self.mel_basis, self.magnitude(audio.float()))
        logmel = torch.log(torch.clamp(mel, min=LOG_FLOOR))
        return logmel.squeeze(0) if squeeze else logmel


@lru_cache(maxsize=8)
def _mel_pinv(config: "MelConfig") -> torch.Tensor:
    """Pseudo-inverse of the mel filter bank, computed once per config (a pinv costs ~100 ms)."""
    fb = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max
    )
    return torch.linalg.pinv(torch.from_numpy(fb).double()).float()


@lru_cache(maxsize=8)
def _mel_basis(config: "MelConfig") -> torch.Tensor:
    """The Slaney mel filter bank (n_mels, n_fft // 2 + 1), float32, computed once per config."""
    fb = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max)
    return torch.from_numpy(fb).float()


@lru_cache(maxsize=8)
def mel_spread(config: "MelConfig") -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels), rows summing to 1: each bin's share of the bands that cover it.

    A per-band quantity (a log-mel, a log-gain) reaches the bins as this weighted mean; the edge
    bins no filter covers copy their nearest covered neighbour.
    """
    weights = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max
    ).astype(np.float64).T.copy()  # (n_bins, n_mels)
    covered = weights.sum(axis=1) > 0
    if not covered.any():
        raise CadenzaError("mel filter bank has no non-zero filter", "check the mel config (f_min < f_max, n_mels > 0)")
    idx = np.arange(weights.shape[0])
    nearest = np.where(covered, idx, idx[covered][np.abs(idx[covered][None, :] - idx[:, None]).argmin(axis=1)])
    weights = weights[nearest]
    return torch.from_numpy(weights / weights.sum(axis=1, keepdims=True)).float()


def mel_target(logmel: torch.Tensor, config: "MelConfig", iters: int, relax: float = 1.0) -> MelTarget:
    """The :class:`~cadenza.audio.phase.MelTarget` for ``iters`` mel-consistent refinement iterations."""
    if not 0.0 < relax < 2.0:
        raise CadenzaError(f"mel relaxation must lie in (0, 2), got {relax}", "1 is the plain projection; 1.6 is the shipped vocoder's")
    return MelTarget(torch.exp(logmel), _mel_basis(config).to(logmel), mel_spread(config).to(logmel), int(iters), float(relax))


def normalize_log_mel(logmel: torch.Tensor) -> torch.Tensor:
    """Map log-mel to about [-1, 1] with fixed constants (for diffusion models)."""
    return (logmel - LOG_MEL_MIN) / (LOG_MEL_MAX - LOG_MEL_MIN) * 2 - 1


def denormalize_log_mel(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_log_mel``."""
    return (x + 1) / 2 * (LOG_MEL_MAX - LOG_MEL_MIN) + LOG_MEL_MIN


def griffin_lim(
    logmel: torch.Tensor, config: MelConfig = MelConfig(), n_iter: int = 32, momentum: float = 0.99, seed: int = 0,
    init: str = "random", mel_iters: int = 0, mel_relax: float = 1.0,
) -> torch.Tensor:
    """Invert a log-mel with the fast Griffin-Lim algorithm (Perraudin et al. 2013).

    The mel magnitude is first mapped back to a linear magnitude with the non-negative
    least-squares-like pseudo-inverse of the filter bank (clamped at zero), then phase is
    estimated iteratively. (B, n_mels, T) → (B, hop * (T - 1)).

    ``init="random"`` is the classic algorithm (random phases, the benchmarks' baseline);
    ``init="locked"`` starts from the phase vocoder's locked phase of the magnitude
    (:mod:`cadenza.audio.phase`), which re-analyses closer for the same iterations.
    ``mel_iters`` > 0 makes the last that many iterations mel-consistent (project onto the
    target mel rather than onto the pseudo-inverse magnitude, over-relaxed by ``mel_relax``;
    :func:`refine_phase`). The default 0 is the classic algorithm, the benchmarks' floor.
    """
    squeeze = logmel.dim() == 2
    if squeeze:
        logmel = logmel.unsqueeze(0)
    if logmel.dim() != 3 or logmel.shape[1] != config.n_mels:
        raise CadenzaError(
            f"expected a log-mel of shape (batch, {config.n_mels}, frames), got {tuple(logmel.shape)}",
            "compute it with cadenza.audio.MelSpectrogram",
        )
    mel = torch.exp(logmel)
    mag = torch.clamp(_mel_pinv(config).to(logmel) @ mel, min=0.0)
    window = torch.hann_window(config.win_length, device=logmel.device, dtype=logmel.dtype)
    length = config.hop_length * (logmel.shape[-1] - 1)
    if init == "locked":
        angles = torch.polar(torch.ones_like(mag), phase_from_magnitude(mag, config.n_fft, config.hop_length))
    elif init == "random":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        angles = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=gen)).to(logmel.device)
    else:
        raise CadenzaError(f"unknown Griffin-Lim init '{init}'", "use 'random' or 'locked'")
    if mel_iters < 0:
        raise CadenzaError(f"mel_iters must be >= 0, got {mel_iters}", "0 is the classic Griffin-Lim")
    target = mel_target(logmel, config, mel_iters, mel_relax) if mel_iters else None
    spec = refine_phase(mag, angles, n_iter, config.n_fft, config.hop_length, window, momentum, target)
    wave = inverse_stft(spec, config.n_fft, config.hop_length, window, length)
    return wave.squeeze(0) if squeeze else wave
