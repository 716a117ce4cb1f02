"""MusicGen's delay interleaving of K parallel codebooks, built and reverted exactly.

Why: an RVQ codec gives K token streams per frame; predicting all K of a frame at once ignores
that level k refines level k-1. The delay pattern (Copet et al. 2023) shifts codebook ``k`` right
by ``k`` steps, so one autoregressive step emits level 0 of frame ``s``, level 1 of frame
``s-1``, … and every level is predicted after the coarser levels of its own frame. A sequence of
``T`` frames becomes ``T + K - 1`` steps; the positions that fall outside the frames hold a
special "empty" id (``pad_id``) that is never a target.

Everything here is a gather over index grids (no loops), and works for any trailing layout
``(..., K, T)`` and any dtype, so the same functions delay codes, masks and per-frame weights.
"""

from __future__ import annotations

import torch


def delay_frame_index(codebooks: int, steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K, S) long: the frame that delayed position (k, s) holds, ``s - k`` (may fall outside the frames)."""
    s = torch.arange(steps, device=device)
    k = torch.arange(codebooks, device=device)
    return s[None, :] - k[:, None]


def delay_valid_mask(codebooks: int, n_frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K, T + K - 1) bool: True where the delayed sequence holds a real token (not the empty id)."""
    frame = delay_frame_index(codebooks, n_frames + codebooks - 1, device)
    return (frame >= 0) & (frame < n_frames)


def build_delay(codes: torch.Tensor, pad_id: int | float | bool) -> torch.Tensor:
    """(..., K, T) → (..., K, T + K - 1): codebook k shifted right by k, ``pad_id`` where no frame falls."""
    *lead, k, t = codes.shape
    frame = delay_frame_index(k, t + k - 1, codes.device)
    valid = (frame >= 0) & (frame < t)
    idx = frame.clamp(0, max(t - 1, 0)).expand(*lead, k, t + k - 1)
    if t == 0:
        return torch.full((*lead, k, k - 1), pad_id, dtype=codes.dtype, device=codes.device)
    gathered = codes.gather(-1, idx)
    return torch.where(valid, gathered, torch.full_like(gathered, pad_id))


def revert_delay(delayed: torch.Tensor) -> torch.Tensor:
    """(..., K, S) → (..., K, S - K + 1): the inverse of ``build_delay`` (frame t of level k is at step t + k)."""
    *lead, k, s = delayed.shape
    t = s - k + 1
    if t < 0:
        raise ValueError(f"a delayed sequence of {s} steps cannot hold {k} codebooks")
    idx = (torch.arange(t, device=delayed.device)[None, :] + torch.arange(k, device=delayed.device)[:, None]).expand(*lead, k, t)
    return delayed.gather(-1, idx)
