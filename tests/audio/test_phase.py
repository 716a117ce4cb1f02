"""Phase from magnitude: locked phase-vocoder integration and fast Griffin-Lim refinement."""

from __future__ import annotations

import math

import numpy as np
import torch

from cadenza.audio import MelSpectrogram
from cadenza.audio.phase import peak_advances, phase_from_magnitude, refine_phase

SR, N_FFT, HOP = 22050, 1024, 256
WINDOW = torch.hann_window(N_FFT)


def _stft(wave: torch.Tensor) -> torch.Tensor:
    return torch.stft(wave, N_FFT, HOP, N_FFT, WINDOW, center=True, return_complex=True)


def _istft(spec: torch.Tensor) -> torch.Tensor:
    return torch.istft(spec, N_FFT, HOP, N_FFT, WINDOW, center=True, length=HOP * (spec.shape[-1] - 1))


def _chord(seconds: float = 2.0) -> torch.Tensor:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(0.2 * np.sin(2 * np.pi * f * t + k) for k, f in enumerate((261.6, 329.6, 392.0, 1046.5)))
    return torch.from_numpy(wave.astype(np.float32))[None]


def test_peak_advance_is_the_interpolated_frequency() -> None:
    """A 440 Hz tone (bin 20.43): its peak bin and the lobe around it advance at 440 Hz, not at their centres."""
    mag = _stft(torch.from_numpy(np.sin(2 * np.pi * 440.0 * np.arange(SR) / SR).astype(np.float32))[None]).abs()
    advance, ref = peak_advances(mag, N_FFT, HOP)
    mid = mag.shape[-1] // 2
    assert int(ref[0, 19, mid]) == int(ref[0, 21, mid]) == 20
    hz = advance[0, 18:23, mid] / (2 * math.pi * HOP) * SR
    assert torch.allclose(hz, torch.full_like(hz, 440.0), atol=3.0)


def test_locked_phase_beats_random_phase_and_refinement_improves_it() -> None:
    """From the true magnitude, the locked phase re-analyses far closer than random phases, and
    Griffin-Lim iterations from it bring the spectral error down further."""
    audio = _chord()
    mel = MelSpectrogram()
    target = mel(audio)
    mag = _stft(audio).abs()

    def mel_l1(spec: torch.Tensor) -> float:
        return float((mel(_istft(spec)) - target).abs().mean())

    locked = phase_from_magnitude(mag, N_FFT, HOP)
    random = torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    unit = torch.polar(torch.ones_like(mag), locked)
    assert mel_l1(mag * unit) < 0.7 * mel_l1(torch.polar(mag, random))
    assert torch.equal(refine_phase(mag, unit, 0, N_FFT, HOP, WINDOW), mag * unit)
    assert mel_l1(refine_phase(mag, unit, 4, N_FFT, HOP, WINDOW)) < mel_l1(mag * unit)


def test_silence_and_batches() -> None:
    """No peak (silence) falls back to bin-centre advances; batch items do not interact."""
    silent = torch.zeros(1, N_FFT // 2 + 1, 10)
    advance, ref = peak_advances(silent, N_FFT, HOP)
    assert torch.equal(ref[0, :, 0], torch.arange(N_FFT // 2 + 1))
    assert torch.isfinite(phase_from_magnitude(silent, N_FFT, HOP)).all()
    mag = _stft(torch.cat([_chord(), 0.1 * _chord()])).abs()
    both = phase_from_magnitude(mag, N_FFT, HOP)
    assert torch.allclose(both[1:], phase_from_magnitude(mag[1:], N_FFT, HOP))


def test_griffin_lim_locked_start_reanalyses_closer() -> None:
    """``griffin_lim(init="locked")`` beats the classic random start at the same iterations; a bad name is refused."""
    import pytest

    from cadenza.audio import griffin_lim
    from cadenza.errors import CadenzaError

    mel = MelSpectrogram()
    target = mel(_chord())

    def mel_l1(init: str) -> float:
        return float((mel(griffin_lim(target, n_iter=8, init=init)) - target).abs().mean())

    assert mel_l1("locked") < mel_l1("random")
    with pytest.raises(CadenzaError, match="init"):
        griffin_lim(target, init="zeros")


def test_inverse_stft_equals_torch_istft() -> None:
    """The fast overlap-add inverse equals torch.istft, for any batch and length, and keeps gradients."""
    from cadenza.audio.phase import inverse_stft

    gen = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 2), (3, 57)):
        spec = torch.polar(torch.rand(batch, N_FFT // 2 + 1, frames, generator=gen), 6 * torch.rand(batch, N_FFT // 2 + 1, frames, generator=gen))
        ours = inverse_stft(spec, N_FFT, HOP, WINDOW, HOP * (frames - 1))
        assert torch.allclose(ours, _istft(spec), atol=1e-6)
    mag = torch.rand(1, N_FFT // 2 + 1, 20, requires_grad=True)
    inverse_stft(torch.polar(mag, torch.zeros_like(mag)), N_FFT, HOP, WINDOW, HOP * 19).square().sum().backward()
    assert mag.grad is not None and torch.isfinite(mag.grad).all() and mag.grad.abs().sum() > 0


def _plain_fast_griffin_lim(mag: torch.Tensor, angles: torch.Tensor, n_iter: int, momentum: float = 0.99) -> torch.Tensor:
    """The textbook fast Griffin-Lim loop through torch.stft / torch.istft (the reference)."""
    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = _stft(_istft(mag * angles))
        new = rebuilt - (momentum / (1 + momentum)) * prev
        angles = new / new.abs().clamp(min=1e-8)
        prev = rebuilt
    return mag * angles


def test_refine_phase_equals_the_plain_loop_with_and_without_gradients() -> None:
    """The frame-major, in-place refinement is the same algorithm as the textbook loop, and
    training's out-of-place path gives the same values and a finite gradient."""
    audio = _chord(1.0)
    mag = _stft(audio).abs()
    unit = torch.polar(torch.ones_like(mag), phase_from_magnitude(mag, N_FFT, HOP))
    reference = _plain_fast_griffin_lim(mag, unit, 5)
    with torch.no_grad():
        fast = refine_phase(mag, unit, 5, N_FFT, HOP, WINDOW)
    scale = reference.abs().max()
    assert fast.shape == reference.shape
    assert (fast - reference).abs().max() < 1e-4 * scale
    leaf = mag.clone().requires_grad_(True)
    trained = refine_phase(leaf, unit, 5, N_FFT, HOP, WINDOW)
    assert (trained.detach() - reference).abs().max() < 1e-4 * scale
    trained.abs().sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert torch.equal(mag, _stft(audio).abs())  # the in-place steps never touch the caller's tensors


def test_mel_consistent_iterations_on_the_plain_path_too() -> None:
    """Framings the fast path does not cover (hop not dividing n_fft) still honour ``mel``: the
    output's mel, through the same framing, moves toward the target."""
    from cadenza.audio.mel import MelConfig, _mel_basis, mel_spread
    from cadenza.audio.phase import MelTarget

    hop = 300
    audio = _chord(1.0)
    true = torch.stft(audio, N_FFT, hop, N_FFT, WINDOW, center=True, return_complex=True)
    basis, spread = _mel_basis(MelConfig()), mel_spread(MelConfig())
    target = basis @ true.abs()
    rough = true.abs() * (1 + 0.5 * torch.rand(true.shape, generator=torch.Generator().manual_seed(0)))  # a wrong magnitude
    unit = torch.polar(torch.ones_like(rough), phase_from_magnitude(rough, N_FFT, hop))

    def mel_error(spec: torch.Tensor) -> float:
        wave = torch.istft(spec, N_FFT, hop, N_FFT, WINDOW, center=True, length=hop * (spec.shape[-1] - 1))
        again = torch.stft(wave, N_FFT, hop, N_FFT, WINDOW, center=True, return_complex=True).abs()
        return float((torch.log((basis @ again).clamp(min=1e-5)) - torch.log(target.clamp(min=1e-5))).abs().mean())

    plain = refine_phase(rough, unit, 6, N_FFT, hop, WINDOW)
    consistent = refine_phase(rough, unit, 6, N_FFT, hop, WINDOW, mel=MelTarget(target, basis, spread, 5, 1.6))
    assert mel_error(consistent) < 0.8 * mel_error(plain)
