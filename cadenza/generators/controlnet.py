"""The ControlNet adapter and the full text + controls generator network.

``ControlAdapter`` is a trainable copy of the base UNet's encoder (embeddings, input conv, down
stages, middle block), initialised from the base weights. The controls enter it through
``ControlEncoder`` (per-control MLPs, stacked, one zero conv) added after its input conv, and
its outputs join the base through zero-initialised 1×1 convolutions on every skip connection
and on the middle block. All joins start at exactly zero, so attaching a fresh adapter leaves
the base model's prediction bit-for-bit unchanged, and training grows the control pathway from
there (Zhang et al. 2023; Wu et al. 2023).

``MusicControlNet`` bundles base + adapter + the learned null prompt used for classifier-free
guidance, pads inputs to the down-sampling factor, and is what the sampler calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.conditioning.cfg import replace_with_null
from cadenza.conditioning.controls import ControlEncoder, empty_controls, pad_controls
from cadenza.conditioning.text import TextEmbedding
from cadenza.controls.registry import CONTROL_NAMES, control
from cadenza.generators.unet import UNet1D, UNetConfig, UNetEncoder


def zero_conv(channels: int) -> nn.Conv1d:
    conv = nn.Conv1d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


@dataclass
class GeneratorConfig:
    """Network hyper-parameters (the config's ``model`` section)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    control_hidden: int = 64
    null_tokens: int = 1
    controls: tuple[str, ...] = CONTROL_NAMES  # the controls it reads, in channel order; older configs name none: the shipped three

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        return cls(
            unet=UNetConfig.from_dict(data),
            control_hidden=int(data.get("control_hidden", 64)),
            null_tokens=int(data.get("null_tokens", 1)),
            controls=tuple(control(str(n)).name for n in data.get("controls", CONTROL_NAMES)),
        )

    def to_dict(self) -> dict:
        out = {**self.unet.to_dict(), "control_hidden": self.control_hidden, "null_tokens": self.null_tokens}
        if self.controls != CONTROL_NAMES:  # written only when it differs, so existing configs and checkpoints stay byte-identical
            out["controls"] = list(self.controls)
        return out


class ControlAdapter(nn.Module):
    """Trainable encoder copy fed the controls; returns zero-conv residuals for the base."""

    def __init__(self, cfg: UNetConfig, control_hidden: int, controls: tuple[str, ...] = CONTROL_NAMES) -> None:
        super().__init__()
        self.encoder = UNetEncoder(cfg)
        self.controls = ControlEncoder(control_hidden, cfg.channels[0], names=controls)
        self.zero_skips = nn.ModuleList(zero_conv(c) for c in cfg.channels)
        self.zero_mid = zero_conv(cfg.channels[-1])

    def init_from_base(self, base_encoder: UNetEncoder) -> None:
        """Start the adapter's encoder as an exact copy of the (trained) base encoder."""
        self.encoder.load_state_dict(base_encoder.state_dict())

    def hint(self, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the controls add to the adapter's input features (exactly zero while the zero conv is fresh)."""
        return self.controls(controls)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding, controls: dict[str, torch.Tensor]
    ) -> list[torch.Tensor]:
        emb = self.encoder.embed(t, text.pooled)
        h, skips = self.encoder(x, emb, text.tokens, text.mask, hint=self.hint(controls))
        return [zc(s) for zc, s in zip(self.zero_skips, skips)] + [self.zero_mid(h)]


class MusicControlNet(nn.Module):
    """Base UNet + ControlNet adapter + learned null prompt: predicts v for noisy normalised mels."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.base = UNet1D(cfg.unet)
        self.adapter = ControlAdapter(cfg.unet, cfg.control_hidden, cfg.controls)
        self.adapter.init_from_base(self.base.encoder)
        self.null_tokens = nn.Parameter(torch.randn(cfg.null_tokens, cfg.unet.text_dim) * 0.02)
        self.null_pooled = nn.Parameter(torch.zeros(cfg.unet.text_dim))
        # per-bin statistics of the normalised training mels: diffusion runs on standardised mels
        self.register_buffer("mel_mean", torch.zeros(cfg.unet.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.unet.n_mels))

    @property
    def n_mels(self) -> int:
        return self.cfg.unet.n_mels

    @property
    def control_names(self) -> tuple[str, ...]:
        """The controls this network was trained on, in its channel order."""
        return self.cfg.controls

    def pad_length(self, n_frames: int) -> int:
        return self.base.pad_length(n_frames)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised mel (…, n_mels, T) in [-1, 1] → zero-mean, unit-variance per bin.

        Why: v-prediction with the cosine schedule is tuned for unit-variance data; the
        normalised log-mel has a std of about 0.3 and a strong spectral tilt, which leaves the
        network to learn a large linear denoiser by itself (a first run without this produced
        noise after 2,000 steps). With standardised data the schedule's own skip path is the
        right Wiener filter and the network only models the structure.
        """
        return (x - self.mel_mean[:, None]) / self.mel_std[:, None]

    def destandardize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``standardize``."""
        return x * self.mel_std[:, None] + self.mel_mean[:, None]

    @torch.no_grad()
    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 0.05) -> None:
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=floor))

    def drop_text(self, text: TextEmbedding, drop: torch.Tensor) -> TextEmbedding:
        """Condition dropout / unconditional branch: the null prompt where ``drop`` is True."""
        return replace_with_null(text, drop, self.null_tokens, self.null_pooled)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: TextEmbedding,
        controls: dict[str, torch.Tensor] | None = None,
        use_adapter: bool = True,
    ) -> torch.Tensor:
        """x (B, n_mels, T), t (B,) → prediction (B, n_mels, T). ``controls=None`` means all free."""
        n = x.shape[-1]
        length = self.pad_length(n)
        if length != n:
            x = F.pad(x, (0, length - n))
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        residuals = None
        if use_adapter:
            controls = empty_controls(x.shape[0], length, x.device) if controls is None else pad_controls(controls, length)
            residuals = self.adapter(x, t, text, controls)
        out = self.base(x, t, text.tokens, text.mask, text.pooled, residuals=residuals)
        return out[..., :n]
