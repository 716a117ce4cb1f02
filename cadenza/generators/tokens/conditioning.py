"""Text and time-varying controls for the token models (shared by the AR LM and MAGNeT).

- **Text**: the same ``TextEmbedding`` the diffusion model gets (MiniLM token states, or the
  debug hash encoder). Its token states are projected to the model width and attended by every
  block (cross-attention, as MusicGen); the pooled sentence vector is projected and added to
  every position. A learned null prompt replaces the text for classifier-free guidance and for
  condition dropout in training (``cadenza.conditioning.cfg.replace_with_null``).
- **Controls**: melody (12-d pitch class), dynamics (dB), rhythm (beat/downbeat) with their
  per-frame masks, on the codec's frame grid. Each control has a per-frame MLP of
  ``value·mask ‖ mask``; its output is multiplied by the mask and the three are added to the
  input embeddings (melody added per frame as MusicGen-melody's chroma; dynamics and rhythm the
  same way). A free frame therefore adds exactly zero: "no control" and "mask 0 everywhere" are
  the same input, which is what makes control dropout and control-free guidance exact.
- **Frame rates**: controls arrive on the mel grid (``cadenza.audio.FRAME_RATE`` ≈ 86.13 fps,
  ``controls_to_tensors``) and are pooled to the codec's rate (≈ 43.07 fps) by
  ``resample_controls``: each mel frame goes to the codec frame nearest its centre; dynamics
  average, rhythm max-pools (a one-frame beat must survive), melody takes the majority pitch
  class, all over *given* frames only; a codec frame's mask is 1 if any of its frames is given.
- **Guidance**: ``GuidanceBranches`` batches the conditional branch, the null-text branch and
  one control-free branch per control group, the token counterpart of the diffusion model's
  ``GuidedDenoiser`` (``pred = uncond + s·(cond − uncond) + Σ_g s_g·m_g·(cond − without_g)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cadenza.audio.format import FRAME_RATE
from cadenza.conditioning.cfg import ControlScale, guidance_branches, guide_multi, null_text, replace_with_null
from cadenza.conditioning.controls import CONTROL_DIMS, normalize_dynamics
from cadenza.conditioning.text import TextEmbedding
from cadenza.controls.base import CONTROL_NAMES

POOLING = {"melody": "majority", "dynamics": "mean", "rhythm": "max"}


def _bins(n_src: int, n_dst: int, src_rate: float, dst_rate: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(destination bin of each source frame, in range?) by nearest frame centre in time."""
    t = torch.arange(n_src, device=device, dtype=torch.float64)
    idx = torch.floor(t * (dst_rate / src_rate) + 0.5).long()
    return idx.clamp(max=max(n_dst - 1, 0)), idx < n_dst


def resample_controls(
    controls: dict[str, torch.Tensor], n_frames: int, frame_rate: float, source_rate: float = FRAME_RATE
) -> dict[str, torch.Tensor]:
    """Controls ``{name: (B, T, d), name_mask: (B, T)}`` at ``source_rate`` → the same at ``frame_rate`` over ``n_frames``.

    Vectorised scatter-reductions over the time axis. A destination frame that no source frame
    falls into (a finer destination grid, or source controls shorter than ``n_frames``) copies
    the nearest source frame when it lies within the source, and is free beyond it.
    """
    first = controls[f"{CONTROL_NAMES[0]}_mask"]
    b, n_src = first.shape
    dev = first.device
    idx, inside = _bins(n_src, n_frames, source_rate, frame_rate, dev)
    counts = torch.zeros(n_frames, device=dev).index_add_(0, idx, inside.float())
    t_dst = torch.arange(n_frames, device=dev, dtype=torch.float64)
    nearest = torch.floor(t_dst * (source_rate / frame_rate) + 0.5).long()
    fill = (counts == 0) & (nearest < n_src)
    nearest = nearest.clamp(max=n_src - 1)
    out: dict[str, torch.Tensor] = {}
    for name in CONTROL_NAMES:
        value = controls[name].float()
        if value.dim() == 2:
            value = value.unsqueeze(-1)
        mask = controls[f"{name}_mask"].float() * inside.float()  # (B, T_src)
        d = value.shape[-1]
        weighted = value * mask[..., None]
        index = idx[None, :, None].expand(b, n_src, d)
        given = torch.zeros(b, n_frames, device=dev).scatter_reduce(1, idx[None].expand(b, n_src), mask, "amax", include_self=True)
        if POOLING[name] == "max":
            pooled = torch.zeros(b, n_frames, d, device=dev).scatter_reduce(1, index, weighted, "amax", include_self=True)
        else:
            total = torch.zeros(b, n_frames, d, device=dev).scatter_add(1, index, weighted)
            if POOLING[name] == "mean":
                weight = torch.zeros(b, n_frames, device=dev).scatter_add(1, idx[None].expand(b, n_src), mask)
                pooled = total / weight.clamp(min=1e-8)[..., None]
            else:  # majority: the pitch class given on most frames of the bin (one-hot), none when no frame is voiced
                pooled = torch.nn.functional.one_hot(total.argmax(-1), d).float() * (total.amax(-1, keepdim=True) > 0)
        pooled = torch.where(fill[None, :, None], value[:, nearest] * controls[f"{name}_mask"].float()[:, nearest, None], pooled)
        given = torch.where(fill[None, :], controls[f"{name}_mask"].float()[:, nearest], given)
        out[name] = pooled * given[..., None]
        out[f"{name}_mask"] = given
    return out


class TokenConditioner(nn.Module):
    """Text → cross-attention memory + a global vector; controls → a per-frame vector added to the input."""

    def __init__(self, text_dim: int, dim: int, control_hidden: int = 64, null_tokens: int = 1) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, dim)
        self.pooled_proj = nn.Linear(text_dim, dim)
        self.null_tokens = nn.Parameter(torch.randn(null_tokens, text_dim) * 0.02)
        self.null_pooled = nn.Parameter(torch.zeros(text_dim))
        self.controls = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(d + 1, control_hidden), nn.SiLU(), nn.Linear(control_hidden, dim)) for name, d in CONTROL_DIMS.items()
        })

    def drop_text(self, text: TextEmbedding, drop: torch.Tensor) -> TextEmbedding:
        """The learned null prompt where ``drop`` (B,) is True (condition dropout, the unconditional branch)."""
        return replace_with_null(text, drop, self.null_tokens, self.null_pooled)

    def null(self, batch: int, length: int) -> TextEmbedding:
        return null_text(self.null_tokens, self.null_pooled, batch, length)

    def text(self, text: TextEmbedding) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(memory (B, L, dim), memory mask (B, L) bool, global vector (B, dim))."""
        return self.text_proj(text.tokens), text.mask.bool(), self.pooled_proj(text.pooled)

    def control_embedding(self, controls: dict[str, torch.Tensor] | None, batch: int, n_frames: int) -> torch.Tensor:
        """(B, n_frames, dim): Σ over controls of mask · MLP(value·mask ‖ mask); exactly 0 on free frames."""
        dim = self.pooled_proj.out_features
        w = self.pooled_proj.weight
        out = torch.zeros(batch, n_frames, dim, dtype=w.dtype, device=w.device)
        if controls is None:
            return out
        for name in CONTROL_NAMES:
            value = controls[name]
            value = value.unsqueeze(-1) if value.dim() == 2 else value
            mask = controls[f"{name}_mask"].to(w.dtype)[..., None]
            if name == "dynamics":
                value = normalize_dynamics(value)
            x = torch.cat([value.to(w.dtype) * mask, mask], dim=-1)
            out = out + mask * self.controls[name](x)
        return out

    def condition(self, text: TextEmbedding, controls: dict[str, torch.Tensor] | None, n_positions: int, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(memory, memory mask, per-position conditioning (B, n_positions, dim)).

        Position ``p`` carries the controls of frame ``p - shift`` (zero outside the frames) plus
        the global text vector: the AR LM uses ``shift=0`` on its delayed steps (step s emits level 0
        of frame s), MAGNeT positions are frames.
        """
        memory, mask, pooled = self.text(text)
        b = memory.shape[0]
        n_frames = controls[f"{CONTROL_NAMES[0]}_mask"].shape[1] if controls is not None else n_positions
        emb = self.control_embedding(controls, b, n_frames)
        cond = torch.zeros(b, n_positions, emb.shape[-1], dtype=emb.dtype, device=emb.device)
        lo, hi = shift, min(n_positions, n_frames + shift)
        if hi > lo:
            cond[:, lo:hi] = emb[:, : hi - lo]
        return memory, mask, cond + pooled[:, None, :]


class GuidanceBranches:
    """Every guidance branch in one batch (``cadenza.conditioning.cfg.guidance_branches``, the layout the
    diffusion sampler uses too): (text, controls); (null, controls) when ``cfg`` > 1; (text, controls
    without group g) per control group with a non-zero scale given somewhere.

    ``frame_masks[i]`` (B, T) is group i's union mask on the token frames; ``combine`` applies
    ``cadenza.conditioning.cfg.guide_multi`` to logits of the stacked branches.
    """

    def __init__(self, text: TextEmbedding, controls: dict[str, torch.Tensor], null: TextEmbedding, cfg: float | None, control_cfg: ControlScale) -> None:
        self.b = len(text)
        branches = guidance_branches(text, controls, lambda: null, cfg, control_cfg, CONTROL_NAMES)
        self.text_guided, self.scales, self.n = branches.text_guided, branches.scales, branches.n
        self.frame_masks = [m[:, 0] for m in branches.frame_masks]
        self.text, self.controls = branches.text, branches.controls

    def combine(self, logits: torch.Tensor, text_scale: float, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stacked-branch logits (n·B, …) → guided (B, …); ``masks[i]`` broadcasts group i's frame mask onto them."""
        parts = logits.chunk(self.n)
        if self.n == 1:
            return parts[0]
        uncond = parts[1] if self.text_guided else None
        without = parts[2:] if self.text_guided else parts[1:]
        return guide_multi(parts[0], uncond, text_scale, without, self.scales, masks)

