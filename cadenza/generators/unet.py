"""A 1-D UNet over time with mel bins as channels: the diffusion backbone.

Why 1-D: on a CPU a 2-D UNet over the (128 × T) spectrogram image spends most of its time on
large feature maps; treating the 128 mel bins as channels and convolving over time only is
several times faster at the same parameter count (measured in ``benchmarks/generator_arch.py``
and recorded in the model card). The network is fully convolutional in time (GroupNorm,
stride-2 down/up-sampling, no positional embeddings), so a model trained on 3-second crops
generates any length; inputs whose length is not a multiple of the total down-sampling factor
are padded internally and cropped back.

Conditioning: the diffusion timestep and the pooled text vector drive every ResNet block by
AdaGN (scale and shift after the second GroupNorm); the text token states enter the inner
stages by cross-attention. The encoder and decoder are separate methods so the ControlNet
adapter (``cadenza.generators.controlnet``) can copy the encoder and inject residuals on each
skip connection and on the middle block.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.errors import CadenzaError


@dataclass
class UNetConfig:
    """Shape of the backbone; stored in the model folder's config under ``model``."""

    n_mels: int = 128
    channels: list[int] = field(default_factory=lambda: [128, 192, 256])
    blocks_per_stage: int = 2
    attn_stages: list[bool] = field(default_factory=lambda: [False, True, True])
    heads: int = 4
    groups: int = 16
    text_dim: int = 384
    emb_dim: int = 256
    dropout: float = 0.0
    mid_attention: bool = True

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.attn_stages):
            raise CadenzaError(
                f"model.channels has {len(self.channels)} stages but model.attn_stages has {len(self.attn_stages)}",
                "give one attention flag per stage",
            )
        bad = [c for c in self.channels if c % self.groups or c % self.heads]
        if bad:
            raise CadenzaError(f"model.channels {bad} not divisible by groups={self.groups} and heads={self.heads}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) diffusion timesteps: (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock1D(nn.Module):
    """GroupNorm → SiLU → conv, AdaGN from the embedding, GroupNorm → SiLU → conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).unsqueeze(-1).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class CrossAttention1D(nn.Module):
    """Frames attend to text token states (padding tokens masked out); residual."""

    def __init__(self, channels: int, text_dim: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.ctx_norm = nn.LayerNorm(text_dim)
        self.heads = heads
        self.q = nn.Linear(channels, channels, bias=False)
        self.kv = nn.Linear(text_dim, 2 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        q = self.q(self.norm(x).transpose(1, 2))  # (B, T, C)
        k, v = self.kv(self.ctx_norm(ctx)).chunk(2, dim=-1)  # (B, L, C)
        split = lambda z: z.reshape(b, z.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        attn_mask = ctx_mask[:, None, None, :].bool()  # True = attend
        a = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask)
        a = a.transpose(1, 2).reshape(b, t, c)
        return x + self.out(a).transpose(1, 2)


class Stage(nn.Module):
    """``n`` ResNet blocks at one resolution, each optionally followed by cross-attention."""

    def __init__(self, c_in: int, c_out: int, n: int, cfg: UNetConfig, attention: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock1D(c_in if i == 0 else c_out, c_out, cfg.emb_dim, cfg.groups, cfg.dropout) for i in range(n)
        )
        self.attns = nn.ModuleList(
            CrossAttention1D(c_out, cfg.text_dim, cfg.heads, cfg.groups) if attention else nn.Identity() for _ in range(n)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        for block, attn in zip(self.blocks, self.attns):
            x = block(x, emb)
            if not isinstance(attn, nn.Identity):
                x = attn(x, ctx, ctx_mask)
        return x


class MidBlock(nn.Module):
    """ResBlock → (cross-attention) → ResBlock at the lowest resolution."""

    def __init__(self, channels: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.block1 = ResBlock1D(channels, channels, cfg.emb_dim, cfg.groups, cfg.dropout)
        self.attn = CrossAttention1D(channels, cfg.text_dim, cfg.heads, cfg.groups) if cfg.mid_attention else None
        self.block2 = ResBlock1D(channels, channels, cfg.emb_dim, cfg.groups, cfg.dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        x = self.block1(x, emb)
        if self.attn is not None:
            x = self.attn(x, ctx, ctx_mask)
        return self.block2(x, emb)


class UNetEncoder(nn.Module):
    """Embeddings, input conv, down stages and middle block: the part the ControlNet copies."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim))
        self.text_mlp = nn.Sequential(nn.Linear(cfg.text_dim, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim))
        self.conv_in = nn.Conv1d(cfg.n_mels, ch[0], 3, padding=1)
        self.stages = nn.ModuleList(
            Stage(ch[i], ch[i], cfg.blocks_per_stage, cfg, cfg.attn_stages[i]) for i in range(len(ch))
        )
        self.downs = nn.ModuleList(nn.Conv1d(ch[i], ch[i + 1], 3, stride=2, padding=1) for i in range(len(ch) - 1))
        self.mid = MidBlock(ch[-1], cfg)

    def embed(self, t: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Timestep + pooled-text embedding that drives AdaGN in every block."""
        return self.time_mlp(timestep_embedding(t, self.cfg.channels[0])) + self.text_mlp(pooled)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor,
        hint: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, n_mels, T) → (middle features, one skip per stage). ``hint`` is added after ``conv_in``."""
        h = self.conv_in(x)
        if hint is not None:
            h = h + hint
        skips = []
        for i, stage in enumerate(self.stages):
            h = stage(h, emb, ctx, ctx_mask)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.mid(h, emb, ctx, ctx_mask), skips


class UNetDecoder(nn.Module):
    """Up stages that consume the encoder's skips, and the output projection."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.ups = nn.ModuleList(nn.Conv1d(ch[i + 1], ch[i], 3, padding=1) for i in range(len(ch) - 1))
        self.stages = nn.ModuleList(
            Stage(2 * ch[i], ch[i], cfg.blocks_per_stage, cfg, cfg.attn_stages[i]) for i in range(len(ch))
        )
        self.norm_out = nn.GroupNorm(cfg.groups, ch[0])
        self.conv_out = nn.Conv1d(ch[0], cfg.n_mels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor
    ) -> torch.Tensor:
        for i in reversed(range(len(self.stages))):
            if i < len(self.ups):
                h = self.ups[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = self.stages[i](torch.cat([h, skips[i]], dim=1), emb, ctx, ctx_mask)
        return self.conv_out(F.silu(self.norm_out(h)))


class UNet1D(nn.Module):
    """The base diffusion model: predicts v (or ε) for a noisy normalised mel given t and text."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = UNetEncoder(cfg)
        self.decoder = UNetDecoder(cfg)

    def pad_length(self, n_frames: int) -> int:
        """Smallest length ≥ ``n_frames`` that the down-sampling path divides exactly."""
        f = self.cfg.downsample_factor
        return -(-n_frames // f) * f

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor,
        pooled: torch.Tensor,
        residuals: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``residuals``: one tensor per skip plus one for the middle block (from the adapter), or None."""
        n = x.shape[-1]
        pad = self.pad_length(n) - n
        if pad:
            x = F.pad(x, (0, pad))
        emb = self.encoder.embed(t, pooled)
        h, skips = self.encoder(x, emb, ctx, ctx_mask)
        if residuals is not None:
            *skip_res, mid_res = residuals
            skips = [s + r for s, r in zip(skips, skip_res)]
            h = h + mid_res
        out = self.decoder(h, skips, emb, ctx, ctx_mask)
        return out[..., :n] if pad else out
