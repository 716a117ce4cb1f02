"""The mel representation every mel-frame generator shares: waveform ↔ normalised log-mel frames.

Why here and not in the pipeline: a generator family samples frames of a representation, and
the pipeline only encodes known audio into those frames and decodes what comes back. Keeping
the mel front end and the vocoder choice (trained vocoder, else Griffin-Lim) in one small
``cadenza.protocols.Representation`` lets any family that samples normalised mels (the
ControlNet model, a toy family in the tests) go through the same pipeline unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cadenza.audio import FRAME_RATE, SAMPLE_RATE, MelSpectrogram, denormalize_log_mel, griffin_lim, normalize_log_mel


@dataclass
class VocoderHandle:
    """Log-mel → waveform: the trained vocoder when there is one, else Griffin-Lim."""

    name: str
    vocoder: Any = None
    gl_iters: int = 32
    note: str = ""

    def __call__(self, logmel: torch.Tensor) -> np.ndarray:
        if self.vocoder is not None:
            wave = self.vocoder.decode_chunked(logmel) if logmel.shape[-1] > 2048 else self.vocoder.decode(logmel)
        else:
            wave = griffin_lim(logmel, n_iter=self.gl_iters)
        return wave.detach().cpu().numpy().astype(np.float32)


def load_vocoder_handle(
    name: str, fallback: str = "griffin-lim", gl_iters: int = 32, precision: str = "auto",
    phase_iters: int | None = None, mel_iters: int | None = None,
) -> VocoderHandle:
    """The config's vocoder ('default', a folder, or 'griffin-lim'); with ``fallback="griffin-lim"``, Griffin-Lim if it is not there.

    ``precision`` ("auto", "fp32", "bf16") is the vocoder network's; see ``resolve_precision``;
    ``phase_iters`` / ``mel_iters`` override its refinement schedule (``load_vocoder``).
    """
    if name == "griffin-lim":
        return VocoderHandle("griffin-lim", None, gl_iters)
    from cadenza.representations.vocoder import load_vocoder, resolve_vocoder_dir

    folder = resolve_vocoder_dir(name)
    if fallback == "griffin-lim" and not (folder / "config.json").is_file():
        # only a vocoder that is not there falls back; a damaged one or a wrong option is an error to fix
        return VocoderHandle("griffin-lim", None, gl_iters, note=f"vocoder '{name}' is not there (no {folder / 'config.json'}); used Griffin-Lim")
    return VocoderHandle(f"vocos:{name}", load_vocoder(name, precision=precision, phase_iters=phase_iters, mel_iters=mel_iters), gl_iters)


class MelRepresentation:
    """``Representation``: mono 22.05 kHz audio ↔ normalised log-mel frames (n_mels, T) in [-1, 1].

    ``encode`` is the canonical mel front end mapped to the diffusion range and clamped (what
    training sees); ``decode`` clamps to the data range (stray values only add noise), maps back
    to log-mel and vocodes with ``vocoder``. One instance is safe to share between threads.
    """

    sample_rate: int = SAMPLE_RATE
    frame_rate: float = FRAME_RATE
    discrete: bool = False

    def __init__(self, vocoder: VocoderHandle) -> None:
        self.vocoder = vocoder
        self._mel = MelSpectrogram()

    @property
    def name(self) -> str:
        return self.vocoder.name

    def encode(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A mono waveform (N,) at ``sample_rate`` → frames (n_mels, N // hop + 1)."""
        if isinstance(wave, np.ndarray):
            wave = torch.from_numpy(np.ascontiguousarray(wave))
        return normalize_log_mel(self._mel(wave)).clamp(-1, 1)

    def decode(self, frames: torch.Tensor) -> np.ndarray:
        """Frames (B, n_mels, T) → float32 waveforms (B, samples) as NumPy (what is written to disk)."""
        return self.vocoder(denormalize_log_mel(frames.clamp(-1.0, 1.0)))
