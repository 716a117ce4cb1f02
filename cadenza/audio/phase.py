"""Phase from a magnitude spectrogram: phase-vocoder integration with identity phase locking,
and fast Griffin-Lim refinement.

Why: a mel says nothing about phase, and a network that predicts the phase frame by frame from
a finite window cannot hold a sustained tone at an arbitrary pitch (its output repeats every
frame, so only multiples of ``sr / hop`` survive). Sustained tones are most of what the corpus
holds. The classical answer (Laroche & Dolson 1999, "Improved phase vocoder time-scale
modification of audio"; Průša et al. 2017 for phase from magnitude alone) needs only the
magnitude:

- every spectral **peak** (a local maximum above a floor relative to the frame's maximum) is a
  sinusoid whose frequency comes from quadratic interpolation of the log-magnitude around it;
- its phase advances by ``2π κ hop / n_fft`` per frame (``κ`` the interpolated bin), integrated
  over time with a cumulative sum (float64, so minutes stay exact);
- the bins around a peak are **locked** to it: for ``torch.stft`` framing (``center=True``,
  window centred in the frame) a stationary sinusoid reads ``φ_k = ψ − π k`` across its main
  lobe, so each bin takes its nearest peak's integrated phase minus ``π (k − peak)``.

That phase is a far better start than random for Griffin-Lim: on held-out corpus clips
(``benchmarks/vocoder_bounds.py``) the true magnitude with the locked phase plus 2 fast
Griffin-Lim iterations re-analyses to a mel L1 of 0.116, and plus 8 to 0.078, where the true
magnitude with the phase of Griffin-Lim's 32 iterations from random phases gives 0.113. Everything is vectorised over batch, bins and frames; no Python loop runs over
frames.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def peak_advances(mag: Tensor, n_fft: int, hop: int, floor: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Per-bin phase advance per frame and the bin each bin is locked to, both (B, K, T).

    ``mag`` is a linear magnitude (B, K, T) with ``K = n_fft // 2 + 1``. A bin with no peak
    above ``floor`` times its frame's maximum advances at its own centre frequency and is its
    own reference.
    """
    B, K, T = mag.shape
    log_mag = torch.log(mag.clamp(min=1e-7))
    below = torch.nn.functional.pad(log_mag[:, :-1], (0, 0, 1, 0), value=-1e4)
    above = torch.nn.functional.pad(log_mag[:, 1:], (0, 0, 0, 1), value=-1e4)
    peak = (log_mag > below) & (log_mag >= above) & (mag > floor * mag.amax(dim=1, keepdim=True))
    curvature = below - 2 * log_mag + above
    offset = torch.where(curvature < -1e-6, 0.5 * (below - above) / curvature.clamp(max=-1e-6), torch.zeros_like(curvature))
    bins = torch.arange(K, device=mag.device).view(1, K, 1).expand(B, K, T)
    # nearest peak below and above each bin (cummax / cummin over the bin axis)
    none_low, none_high = torch.full_like(bins, -4 * K), torch.full_like(bins, 5 * K)
    low = torch.where(peak, bins, none_low).cummax(dim=1).values
    high = torch.where(peak, bins, none_high).flip(1).cummin(dim=1).values.flip(1)
    ref = torch.where(bins - low <= high - bins, low, high)
    ref = torch.where((ref < 0) | (ref >= K), bins, ref)
    kappa = bins.to(mag.dtype) + torch.where(peak, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
    advance = (2 * math.pi * hop / n_fft) * torch.gather(kappa, 1, ref)
    return advance, ref


def locked_phase(cumulative: Tensor, ref: Tensor) -> Tensor:
    """Phase (B, K, T) from integrated advances (``cumsum`` of :func:`peak_advances`' first output)."""
    bins = torch.arange(ref.shape[1], device=ref.device).view(1, -1, 1)
    psi = torch.remainder(torch.gather(cumulative, 1, ref), 2 * math.pi)
    return psi.to(torch.float32) - math.pi * (bins - ref).to(torch.float32)


def phase_from_magnitude(mag: Tensor, n_fft: int, hop: int, floor: float = 1e-3) -> Tensor:
    """Locked phase-vocoder phase (B, K, T) for a linear magnitude (B, K, T), starting at zero."""
    advance, ref = peak_advances(mag, n_fft, hop, floor)
    return locked_phase(torch.cumsum(advance.double(), dim=-1), ref)


def inverse_stft(spec: Tensor, n_fft: int, hop: int, window: Tensor, length: int) -> Tensor:
    """``torch.istft(spec, n_fft, hop, n_fft, window, center=True, length=length)``, about 2x faster on CPU.

    ``torch.istft``'s overlap-add costs several times its inverse FFT; here the frames come from
    one ``irfft`` over the last (contiguous) axis, and with ``n_fft`` a multiple of ``hop`` the
    overlap-add is ``n_fft // hop`` shifted slice additions. Equal to ``torch.istft`` to float
    rounding (tested); other framings fall back to it.
    """
    B, _, T = spec.shape
    if n_fft % hop or window.shape[0] != n_fft:
        return torch.istft(spec, n_fft, hop, window.shape[0], window, center=True, length=length)
    r = n_fft // hop
    frames = (torch.fft.irfft(spec.transpose(1, 2), n=n_fft, dim=-1) * window).reshape(B, T, r, hop)
    out = frames.new_zeros(B, T + r - 1, hop)
    envelope = window.new_zeros(T + r - 1, hop)
    square = (window * window).reshape(r, hop)
    for j in range(r):  # r = 4 slices, not a loop over frames
        out[:, j : j + T] = out[:, j : j + T] + frames[:, :, j]
        envelope[j : j + T] += square[j]
    wave = (out / envelope.clamp(min=1e-11)).reshape(B, -1)
    return wave[:, n_fft // 2 : n_fft // 2 + length]


def refine_phase(
    mag: Tensor, angles: Tensor, n_iter: int, n_fft: int, hop: int, window: Tensor, momentum: float = 0.99
) -> Tensor:
    """``n_iter`` fast Griffin-Lim iterations (Perraudin et al. 2013) from unit ``angles``; returns the complex spectrum.

    Differentiable in ``mag`` (training can see through it); ``n_iter = 0`` returns ``mag * angles``.
    Each iteration couples a frame with its ``n_fft // hop - 1`` neighbours on each side, so
    ``n_iter`` iterations widen the receptive field by that many frames per side per iteration.
    """
    if n_iter <= 0:
        return mag * angles
    length = hop * (mag.shape[-1] - 1)
    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        wave = inverse_stft(mag * angles, n_fft, hop, window, length)
        rebuilt = torch.stft(wave, n_fft, hop, window.shape[0], window, center=True, return_complex=True)
        new = rebuilt - (momentum / (1 + momentum)) * prev
        angles = new / new.abs().clamp(min=1e-8)
        prev = rebuilt
    return mag * angles
