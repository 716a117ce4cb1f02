"""Discriminators and losses for training the vocoder (the HiFi-GAN / Vocos recipe).

- :class:`MultiPeriodDiscriminator` (HiFi-GAN): the waveform folded into 2-D with periods
  2, 3, 5, 7, 11, each judged by a stack of (k, 1) convolutions — catches periodic artefacts;
- :class:`MultiResolutionDiscriminator` (UnivNet / Vocos): magnitude spectrograms at three
  resolutions, each judged by a small 2-D conv stack — catches spectral smearing and buzz;
- hinge adversarial losses, feature matching (L1 between discriminator activations), the mel
  L1 loss, a multi-resolution STFT loss (spectral convergence + log-magnitude L1) and
  magnitude-weighted anti-wrapped phase losses (group delay and instantaneous frequency,
  after APNet, Ai & Ling 2023) used in the generator-only warm-up.

Channel widths are configurable: the CPU training config uses narrower stacks than the
papers' (which assume GPUs) so the adversarial phase fits a one-core budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

FeatureMaps = list[list[Tensor]]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN sub-discriminator for one period."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024), kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for i, c in enumerate(channels):
            s = stride if i < len(channels) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(c_in, c, (kernel_size, 1), (s, 1), padding=(kernel_size // 2, 0))))
            c_in = c
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:  # x: (B, N)
        b, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect")
        x = x.view(b, 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: Tensor) -> tuple[list[Tensor], FeatureMaps]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class ResolutionDiscriminator(nn.Module):
    """Vocos/UnivNet sub-discriminator on one STFT magnitude (frequency × time image)."""

    def __init__(self, n_fft: int, hop: int, channels: int = 32, num_layers: int = 4) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2)))]
        for _ in range(num_layers - 1):
            convs.append(weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, 3, padding=1)))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(x, self.n_fft, self.hop, self.n_fft, self.window, center=True, return_complex=True).abs()
        h = spec.unsqueeze(1)  # (B, 1, F, T)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            feats.append(h)
        h = self.post(h)
        feats.append(h)
        return h.flatten(1), feats


class MultiResolutionDiscriminator(nn.Module):
    def __init__(self, resolutions: Sequence[Sequence[int]] = ((2048, 512), (1024, 256), (512, 128)), channels: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(int(n), int(h), channels) for n, h in resolutions)

    def forward(self, x: Tensor) -> tuple[list[Tensor], FeatureMaps]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


# ---------------------------------------------------------------------------------------------- losses
def discriminator_hinge_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Hinge loss: push real scores above +1 and fake scores below -1 (averaged over sub-discriminators)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)) / len(real)


def generator_hinge_loss(fake: list[Tensor]) -> Tensor:
    return sum(F.relu(1 - f).mean() for f in fake) / len(fake)


def feature_matching_loss(real: FeatureMaps, fake: FeatureMaps) -> Tensor:
    """Mean L1 between discriminator activations on real and generated audio (real detached)."""
    total, count = 0.0, 0
    for r_maps, f_maps in zip(real, fake):
        for r, f in zip(r_maps, f_maps):
            total = total + (r.detach() - f).abs().mean()
            count += 1
    return total / max(count, 1)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over several STFT resolutions."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = ((512, 128), (1024, 256), (2048, 512))) -> None:
        super().__init__()
        self.resolutions = [(int(n), int(h)) for n, h in resolutions]
        for n, _ in self.resolutions:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        total = 0.0
        for n, h in self.resolutions:
            w = getattr(self, f"window_{n}")
            p = torch.stft(pred, n, h, n, w, center=True, return_complex=True).abs().clamp(min=1e-7)
            t = torch.stft(target, n, h, n, w, center=True, return_complex=True).abs().clamp(min=1e-7)
            sc = torch.linalg.norm(t - p, dim=(1, 2)) / torch.linalg.norm(t, dim=(1, 2)).clamp(min=1e-5)
            total = total + sc.mean() + (torch.log(t) - torch.log(p)).abs().mean()
        return total / len(self.resolutions)


def anti_wrap(x: Tensor) -> Tensor:
    """|x - 2π·round(x / 2π)|: the distance of a phase difference to the nearest multiple of 2π."""
    return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))


def phase_loss(pred_phase: Tensor, target_spec: Tensor) -> Tensor:
    """Magnitude-weighted group-delay + instantaneous-frequency loss on (B, F, T) phases.

    The absolute phase is not determined by a mel spectrogram, so (unlike APNet) only its
    derivatives are matched: along frequency (group delay, onset timing) and along time
    (instantaneous frequency, pitch). Bins are weighted by the target magnitude so the
    random phase of near-silent bins does not dominate.
    """
    target_phase = torch.angle(target_spec)
    mag = target_spec.abs()
    w = mag / mag.mean(dim=(1, 2), keepdim=True).clamp(min=1e-7)
    gd = anti_wrap(torch.diff(pred_phase, dim=1) - torch.diff(target_phase, dim=1))
    iaf = anti_wrap(torch.diff(pred_phase, dim=2) - torch.diff(target_phase, dim=2))
    return (gd * w[:, 1:]).mean() + (iaf * w[:, :, 1:]).mean()


# ---------------------------------------------------------------------------------------------- the GAN recipe
def build_discriminators(section: dict) -> tuple[MultiPeriodDiscriminator, MultiResolutionDiscriminator]:
    """The multi-period + multi-resolution pair from a config's ``discriminator`` section (HiFi-GAN/Vocos widths by default)."""
    mpd = MultiPeriodDiscriminator(section.get("periods", (2, 3, 5, 7, 11)), section.get("mpd_channels", (32, 128, 512, 1024, 1024)))
    mrd = MultiResolutionDiscriminator(section.get("mrd_resolutions", ((2048, 512), (1024, 256), (512, 128))), section.get("mrd_channels", 32))
    return mpd, mrd


def discriminator_step_loss(mpd: nn.Module, mrd: nn.Module, real: Tensor, fake: Tensor, mrd_weight: float = 0.1) -> Tensor:
    """The discriminators' hinge loss on real vs (detached) generated audio, the resolution one weighted by ``mrd_weight``."""
    real_p, _ = mpd(real)
    fake_p, _ = mpd(fake.detach())
    real_r, _ = mrd(real)
    fake_r, _ = mrd(fake.detach())
    return discriminator_hinge_loss(real_p, fake_p) + mrd_weight * discriminator_hinge_loss(real_r, fake_r)


def generator_adversarial_losses(mpd: nn.Module, mrd: nn.Module, real: Tensor, fake: Tensor, mrd_weight: float = 0.1) -> tuple[Tensor, Tensor]:
    """(hinge adversarial loss, feature-matching loss) of generated audio, the resolution discriminator weighted by ``mrd_weight``."""
    _, fm_rp = mpd(real)
    fake_p, fm_fp = mpd(fake)
    _, fm_rr = mrd(real)
    fake_r, fm_fr = mrd(fake)
    adv = generator_hinge_loss(fake_p) + mrd_weight * generator_hinge_loss(fake_r)
    fm = feature_matching_loss(fm_rp, fm_fp) + mrd_weight * feature_matching_loss(fm_rr, fm_fr)
    return adv, fm
