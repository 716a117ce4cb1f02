"""A Vocos-style neural vocoder: log-mel → waveform through an inverse STFT, fast on a CPU.

Design (after Siuzdak 2023, "Vocos"; code written for Cadenza):

- a ``Conv1d`` (k=7) embeds the log-mel, already rescaled to about [-1, 1] with the fixed
  constants of :func:`cadenza.audio.normalize_log_mel`;
- a ConvNeXt backbone keeps the frame rate: each block is a depthwise conv (k=7), LayerNorm,
  a pointwise MLP (GELU) and a learned per-channel layer scale on the residual branch;
- an inverse-STFT head predicts, per frame, the log-magnitude and a phase angle of the
  1024-point spectrum; the spectrum ``exp(log_mag) * (cos φ + i sin φ)`` goes through
  ``torch.istft`` (n_fft 1024, hop 256, Hann window, ``center=True``).

The choices that differ from Vocos, all for music and a CPU training budget (measured in
``docs/vocoder/README.md``):

- **locked phase** (``phase_mode: "locked"``, the shipped config): the phase is the phase
  vocoder's locked phase of the predicted magnitude (:mod:`cadenza.audio.phase`: peaks,
  interpolated frequencies, integrated advances, bins locked to their peak) plus a predicted
  residual, followed by ``phase_iters`` fast Griffin-Lim iterations. A network with a finite
  receptive field that predicts the phase frame by frame (Vocos, ``"direct"``) outputs the same
  phase every frame in the middle of a sustained note, a signal periodic in the hop: only
  multiples of 86 Hz can be held. ``"integrated"`` (a predicted advance, summed) is the
  learnt alternative, kept for comparison;
- **magnitude skip**: the head's log-magnitude is a *residual* on a fixed mel → linear map of
  the input: ``skip_map: "pinv"`` (shipped) is the log of the filter bank's pseudo-inverse,
  which re-analyses to the input mel; ``"mean"`` is the smooth weighted mean of the covering
  log-mels, corrected for the Slaney filter area;
- ``center=True`` framing (instead of Vocos' "same" padding), which lines the predicted frames
  up one-to-one with :class:`cadenza.audio.MelSpectrogram`'s frames so a spectrum-level loss
  against the target STFT is possible.

**Output length**: ``hop * (T - 1)`` samples for ``T`` frames (the same as
:func:`cadenza.audio.griffin_lim`); a clip of ``n`` samples has ``T = n // hop + 1`` frames, so
the output is the clip cut to a multiple of the hop (at most 255 samples shorter).

The spectrum parameters have a finite receptive field (embedding ±3 frames, each block ±3,
each refinement iteration ±3), and the running phase sums are carried, so
:meth:`Vocoder.decode_chunked` can stream long inputs in chunks whose middles are exact.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from torch import Tensor, nn

from cadenza.audio import phase_kernels
from cadenza.audio.mel import MelConfig, MelSpectrogram, _mel_pinv, mel_spread, mel_target, normalize_log_mel
from cadenza.audio.phase import MelTarget, integrate_locked, inverse_stft, peak_advances, refine_phase
from cadenza.checkpoint import save_model_folder
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path
from cadenza.registry import get_family, load_model, register_family

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "vocoder"
MAX_MAGNITUDE = 100.0  # clip on exp(log_mag): a guard against blow-ups early in training


@dataclass(frozen=True)
class GeneratorConfig:
    """Size of the generator; saved in the ``model`` section of the vocoder config."""

    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    kernel_size: int = 7
    layer_scale_init: float | None = None  # None → 1 / num_layers (Vocos)
    magnitude_skip: bool = True
    skip_map: str = "mean"  # "mean": weighted mean of log-mels (smooth); "pinv": log of the filter bank's pseudo-inverse (mel-consistent)
    phase_mode: str = "direct"  # "direct": the phase per frame (Vocos); "integrated": cumsum of a predicted advance + a local term;
    # "locked": the phase vocoder's locked phase of the predicted magnitude (cadenza.audio.phase) + a predicted residual
    phase_iters: int = 0  # fast Griffin-Lim iterations on the predicted spectrum before the istft (0: none)
    mel_iters: int = 0  # of those, the last ones that are mel-consistent (cadenza.audio.phase.MelTarget; inference only)
    mel_relax: float = 1.0  # over-relaxation of the mel-consistent steps, in (0, 2)
    peak_floor: float = 1e-3  # "locked": peaks below this fraction of the frame's maximum are not sinusoids

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise CadenzaError(
                f"vocoder config: unknown model key(s) {', '.join(sorted(unknown))}",
                f"known keys: {', '.join(cls.__dataclass_fields__)}",
            )
        config = cls(**data)
        if config.phase_mode not in ("integrated", "direct", "locked"):
            raise CadenzaError(f"vocoder config: unknown phase_mode '{config.phase_mode}'", "use 'direct', 'integrated' or 'locked'")
        if config.phase_iters < 0:
            raise CadenzaError(f"vocoder config: phase_iters must be >= 0, got {config.phase_iters}", "0 turns the refinement off")
        if not 0.0 < config.mel_relax < 2.0:
            raise CadenzaError(f"vocoder config: mel_relax must lie in (0, 2), got {config.mel_relax}", "1 is the plain projection")
        if not 0 <= config.mel_iters <= config.phase_iters:
            raise CadenzaError(
                f"vocoder config: mel_iters must lie in [0, phase_iters = {config.phase_iters}], got {config.mel_iters}",
                "mel_iters counts the last refinement iterations that are mel-consistent",
            )
        if config.skip_map not in ("mean", "pinv"):
            raise CadenzaError(f"vocoder config: unknown skip_map '{config.skip_map}'", "use 'mean' or 'pinv'")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → pointwise MLP → layer scale, with a residual connection."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale_init: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init)))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) → (B, T, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(conv_frames_major(x, self.dwconv)))))
        return x + self.gamma * y


def conv_frames_major(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` over time on frame-major input (B, T, C_in) → (B, T, C_out), with no transposed copies.

    Why: the ConvNeXt MLP and LayerNorm want (B, T, C) and a Conv1d wants (B, C, T); the
    transposes between them were copies. A 1-row channels-last ``conv2d`` reads (B, T, C)
    memory as it is (17 % off the network's time on CPU) and computes the same convolution.
    """
    y = nn.functional.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
                             stride=(1, conv.stride[0]), padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), groups=conv.groups)
    return y.squeeze(2).transpose(1, 2)


def mel_to_linear_log_map(mel: MelConfig) -> tuple[Tensor, Tensor]:
    """A fixed map ``log|X| ≈ A @ logmel + c`` from log-mel bands to linear-frequency bins.

    ``A`` is the transposed filter bank with rows normalised to sum to 1 (a bin takes the
    weighted mean of the log-mels of the bands covering it; uncovered edge bins copy their
    nearest covered neighbour); ``c`` removes the filter area, since a flat magnitude ``m``
    reads ``m * sum(filter)`` in a Slaney-normalised band.
    """
    fb = librosa.filters.mel(sr=mel.sample_rate, n_fft=mel.n_fft, n_mels=mel.n_mels, fmin=mel.f_min, fmax=mel.f_max)
    fb = fb.astype(np.float64)  # (n_mels, n_bins)
    weights = mel_spread(mel).double().numpy()  # (n_bins, n_mels), rows summing to 1
    log_area = np.log(np.maximum(fb.sum(axis=1), 1e-12))  # (n_mels,)
    offset = -(weights @ log_area)
    return torch.from_numpy(weights).float(), torch.from_numpy(offset).float()


class VocosGenerator(nn.Module):
    """Log-mel (B, n_mels, T) → waveform (B, hop * (T - 1)). See the module docstring."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig(), mel: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.config, self.mel_config = config, mel
        dim = config.dim
        scale = config.layer_scale_init if config.layer_scale_init is not None else 1.0 / config.num_layers
        self.embed = nn.Conv1d(mel.n_mels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, config.intermediate_dim, config.kernel_size, scale) for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.n_bins = mel.n_fft // 2 + 1
        n_out = 3 if config.phase_mode == "integrated" else 2
        self.head = nn.Linear(dim, n_out * self.n_bins)
        nb = self.n_bins
        with torch.no_grad():
            if config.magnitude_skip:  # start the residual near zero so the fixed map is the initial magnitude
                self.head.weight[:nb].mul_(0.01)
                self.head.bias[:nb].zero_()
            if config.phase_mode == "locked":  # the residual on the locked phase starts at zero
                self.head.weight[nb:].zero_()
                self.head.bias[nb:].zero_()
            if config.phase_mode == "integrated":
                # advance starts at each bin's own centre frequency (2π k hop / n_fft per frame): a
                # stationary sinusoid per bin; the local term starts at random phases (no pulse train)
                k = torch.arange(nb, dtype=torch.float64)
                self.head.weight[nb : 2 * nb].mul_(0.01)
                self.head.bias[nb : 2 * nb] = torch.remainder(2 * math.pi * k * mel.hop_length / mel.n_fft, 2 * math.pi).float()
                self.head.bias[2 * nb :].uniform_(-math.pi, math.pi)
        weights, offset = mel_to_linear_log_map(mel)
        self.register_buffer("skip_weight", weights, persistent=False)
        self.register_buffer("skip_offset", offset, persistent=False)
        self.register_buffer("skip_pinv", _mel_pinv(mel).clone(), persistent=False)
        self.register_buffer("window", torch.hann_window(mel.win_length), persistent=False)
        # the network (embed → backbone → head) in bfloat16 autocast: a runtime choice, not a config one
        # (see resolve_precision and the bf16 property); the skip map, phase and istft stay float32
        self._bf16_network: nn.ModuleDict | None = None

    @property
    def bf16(self) -> bool:
        """Whether the network runs in bfloat16 (set after the weights are loaded and moved)."""
        return self._bf16_network is not None

    @bf16.setter
    def bf16(self, on: bool) -> None:
        """Switch bfloat16 inference on or off.

        On builds a twin of the network whose convolution and linear weights are cast to
        bfloat16 once, exactly what autocast casts them to on every call (2 ms of a 10 s decode);
        the twin is not a submodule, so ``state_dict``, training and exports see only the
        float32 weights.
        """
        twin = None
        if on:
            network = nn.ModuleDict(dict(embed=self.embed, norm=self.norm, blocks=self.blocks, final_norm=self.final_norm, head=self.head))
            twin = copy.deepcopy(network)
            for module in twin.modules():
                if isinstance(module, (nn.Linear, nn.Conv1d)):
                    module.to(torch.bfloat16)
        object.__setattr__(self, "_bf16_network", twin)  # object's setattr: nn.Module's would register a submodule

    @property
    def receptive_field(self) -> int:
        """Frames on each side that influence one frame of the predicted spectrum parameters.

        (In "integrated" phase mode the phase also carries the running sum of all earlier
        advances; :meth:`Vocoder.decode_chunked` carries that sum from chunk to chunk.)
        """
        network = 3 + self.config.num_layers * (self.config.kernel_size // 2)
        if self.config.phase_iters:  # each Griffin-Lim iteration reaches n_fft/hop - 1 frames further, +2 for the stft's padding
            network += self.config.phase_iters * (self.mel_config.n_fft // self.mel_config.hop_length - 1) + 2
        return network

    def skip_magnitude(self, logmel: Tensor) -> Tensor:
        """The fixed log-magnitude the head's output is a residual on, (B, n_fft//2+1, T).

        "mean" is smooth across bins (each bin the weighted mean of the covering log-mels);
        "pinv" is ``log(max(P @ exp(logmel), 1e-5))`` with ``P`` the filter bank's
        pseudo-inverse, which re-analyses to the input mel: with the true phase it scores a
        mel L1 of 0.118 on held-out corpus clips against the smooth map's 0.188.
        """
        if self.config.skip_map == "pinv":
            return torch.log(torch.clamp(torch.matmul(self.skip_pinv, torch.exp(logmel)), min=1e-5))
        return torch.matmul(self.skip_weight, logmel) + self.skip_offset[:, None]

    def head_params(self, logmel: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-frame (log_mag, a, b), each (B, n_fft//2+1, T): the local (finite receptive field) part.

        "integrated": ``a`` is the phase advance per frame and ``b`` a local phase term;
        "direct": ``a`` is the phase itself and ``b`` is None; "locked": ``a`` is the residual on the
        locked phase (see :meth:`spectrum`) and ``b`` is None.
        """
        net = self._bf16_network if self._bf16_network is not None else self
        with torch.autocast(logmel.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = net.norm(conv_frames_major(normalize_log_mel(logmel).transpose(1, 2), net.embed))  # (B, T, dim)
            for block in net.blocks:
                x = block(x)
            h = net.head(net.final_norm(x)).transpose(1, 2)
        h = h.float()
        nb = self.n_bins
        log_mag = h[:, :nb]
        if self.config.magnitude_skip:
            log_mag = log_mag + self.skip_magnitude(logmel)
        log_mag = torch.clamp(log_mag, max=math.log(MAX_MAGNITUDE))
        if self.config.phase_mode == "integrated":
            return log_mag, h[:, nb : 2 * nb], h[:, 2 * nb :]
        return log_mag, h[:, nb:], None

    def phase(self, a: Tensor, b: Tensor | None, offset: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Phase per frame and the running phase after the last frame (to continue in the next chunk).

        Integrated mode: ``φ_t = (offset + Σ_{τ≤t} a_τ) mod 2π + b_t``; the sum runs in float64 so
        minutes of audio keep their phase exact. This lets a frame-rate network sustain a tone
        of any frequency (a constant advance), which a phase predicted frame by frame from a
        stationary input cannot: it would be periodic in the hop (multiples of 86 Hz).
        """
        if b is None:
            return a, None
        cum = torch.cumsum(a.double(), dim=-1)
        if offset is not None:
            cum = cum + offset
        cum = torch.remainder(cum, 2 * math.pi)
        return cum.to(a.dtype) + b, cum[..., -1:]

    def locked(self, log_mag: Tensor, residual: Tensor, anchor: tuple[int, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """"locked" mode: the phase vocoder's locked phase of ``exp(log_mag)`` plus ``residual``.

        The magnitude is detached: peak picking is not differentiable, and the network learns the
        phase through the residual. Returns the phase and the integrated advances (float64) so
        :meth:`Vocoder.decode_chunked` can carry them: with ``anchor = (i, value)`` the running
        sum is shifted so that it equals ``value`` at frame ``i - 1``.
        """
        m = self.mel_config
        advance, ref = peak_advances(torch.exp(log_mag.detach()), m.n_fft, m.hop_length, self.config.peak_floor)
        start = None
        if anchor is not None and anchor[0] > 0:  # the running sum through frame i - 1 becomes ``value``
            i, value = anchor
            start = value[..., 0] - advance[..., :i].double().sum(dim=-1)
        phase, cumulative = integrate_locked(advance, ref, start)
        return phase + residual, cumulative

    def spectrum(self, logmel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Predicted (log_mag, cos φ, sin φ), each (B, n_fft//2+1, T): the part before the istft."""
        log_mag, a, b = self.head_params(logmel)
        if self.config.phase_mode == "locked":
            phase, _ = self.locked(log_mag, a)
        else:
            phase, _ = self.phase(a, b)
        return log_mag, torch.cos(phase), torch.sin(phase)

    def synthesize(
        self, log_mag: Tensor, cos: Tensor, sin: Tensor, phase_iters: int | None = None, logmel: Tensor | None = None,
        mel_iters: int | None = None,
    ) -> Tensor:
        """Spectrum parts → waveform, after ``phase_iters`` (default: the config's) Griffin-Lim iterations.

        Given the input ``logmel``, the last ``mel_iters`` (default: the config's, at most
        ``phase_iters``) iterations are mel-consistent; training passes no ``logmel``, so its
        refinement stays the plain, differentiable one.
        """
        n = self.config.phase_iters if phase_iters is None else int(phase_iters)
        if n <= 0:
            return self.istft(log_mag, cos, sin)
        m = self.mel_config
        spec = refine_phase(torch.exp(log_mag), torch.complex(cos, sin), n, m.n_fft, m.hop_length, self.window,
                            mel=self.mel_target(logmel, mel_iters))
        return inverse_stft(spec, m.n_fft, m.hop_length, self.window, m.hop_length * (log_mag.shape[-1] - 1))

    def mel_target(self, logmel: Tensor | None, mel_iters: int | None = None) -> MelTarget | None:
        """The mel-consistency target for ``logmel`` (None without a log-mel or with no mel iterations)."""
        k = self.config.mel_iters if mel_iters is None else int(mel_iters)
        return None if logmel is None or k <= 0 else mel_target(logmel, self.mel_config, k, self.config.mel_relax)

    def istft(self, log_mag: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Spectrum parts → waveform of ``hop * (T - 1)`` samples."""
        mag = torch.exp(log_mag)
        spec = torch.complex(mag * cos, mag * sin)
        m = self.mel_config
        return inverse_stft(spec, m.n_fft, m.hop_length, self.window, m.hop_length * (log_mag.shape[-1] - 1))

    def forward(self, logmel: Tensor) -> Tensor:
        return self.synthesize(*self.spectrum(logmel), logmel=logmel)

    def from_head(self, log_mag: Tensor, residual: Tensor, logmel: Tensor | None = None) -> Tensor:
        """"locked" mode: waveform from the head's outputs (what ``vocoder_head.onnx`` gives).

        Pass the ``logmel`` that went into the head for the config's mel-consistent iterations
        (without it, the refinement is the plain one).
        """
        phase, _ = self.locked(log_mag, residual)
        return self.synthesize(log_mag, torch.cos(phase), torch.sin(phase), logmel=logmel)


def check_logmel(logmel: Tensor | np.ndarray, n_mels: int) -> tuple[Tensor, bool]:
    """Validate a log-mel and return it as float32 (B, n_mels, T) plus whether it was 2-D."""
    if isinstance(logmel, np.ndarray):
        logmel = torch.from_numpy(np.ascontiguousarray(logmel))
    if not isinstance(logmel, torch.Tensor):
        raise CadenzaError(f"log-mel must be a tensor or numpy array, got {type(logmel).__name__}")
    if logmel.dim() not in (2, 3):
        raise CadenzaError(
            f"log-mel must be (n_mels, frames) or (batch, n_mels, frames), got shape {tuple(logmel.shape)}",
            "compute it with cadenza.audio.MelSpectrogram",
        )
    squeeze = logmel.dim() == 2
    logmel = logmel.unsqueeze(0) if squeeze else logmel
    if logmel.shape[1] != n_mels:
        hint = "it looks transposed: pass (n_mels, frames)" if logmel.shape[2] == n_mels else "compute it with cadenza.audio.MelSpectrogram"
        raise CadenzaError(f"log-mel has {logmel.shape[1]} mel bins, the vocoder expects {n_mels}", hint)
    if logmel.shape[2] < 2:
        raise CadenzaError(f"log-mel has {logmel.shape[2]} frame(s); at least 2 are needed", "give a longer spectrogram")
    if not logmel.is_floating_point() or logmel.is_complex():
        raise CadenzaError(f"log-mel must hold real floats, got {logmel.dtype}")
    if not torch.isfinite(logmel).all():
        raise CadenzaError("log-mel contains NaN or infinite values", "clean the spectrogram (e.g. clamp at log(1e-5))")
    return logmel.float(), squeeze


@dataclass
class Vocoder:
    """An eval-mode generator plus the config it was built from; the inference API."""

    generator: VocosGenerator
    config: dict = field(default_factory=dict)
    discrete = False  # a Representation (cadenza.protocols): continuous log-mel frames

    @property
    def mel_config(self) -> MelConfig:
        return self.generator.mel_config

    @property
    def sample_rate(self) -> int:
        return int(self.mel_config.sample_rate)

    @property
    def frame_rate(self) -> float:
        return self.mel_config.sample_rate / self.mel_config.hop_length

    @torch.inference_mode()
    def encode(self, wave: Tensor | np.ndarray) -> Tensor:
        """Waveform (B, N) or (N,) at :attr:`sample_rate` → the log-mel frames :meth:`decode` takes.

        Why here: with ``encode`` the vocoder is a ``Representation`` (mel ↔ wave), the
        interface every generator family samples in; the mel is the model's own front end.
        """
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32) if isinstance(wave, np.ndarray) else wave).float()
        return _front_end(self.mel_config)(x)

    @property
    def receptive_field(self) -> int:
        return self.generator.receptive_field

    @property
    def precision(self) -> str:
        """"bf16" when the network runs under bfloat16 autocast, else "fp32"."""
        return "bf16" if self.generator.bf16 else "fp32"

    @torch.inference_mode()
    def decode(self, logmel: Tensor | np.ndarray) -> Tensor:
        """Log-mel (B, n_mels, T) or (n_mels, T) → waveform (B, hop*(T-1)) or (hop*(T-1),)."""
        x, squeeze = check_logmel(logmel, self.mel_config.n_mels)
        wave = self.generator(x)
        return wave.squeeze(0) if squeeze else wave

    @torch.inference_mode()
    def decode_chunked(self, logmel: Tensor | np.ndarray, chunk_frames: int = 512, overlap_frames: int | None = None) -> Tensor:
        """Decode long inputs in chunks of ``chunk_frames`` frames that overlap by ``overlap_frames``.

        Each chunk's spectrum is predicted with ``overlap_frames // 2`` frames of context on
        each side, which are then dropped; the kept frames tile the input and are overlap-added
        into the output with the synthesis window, which crossfades neighbouring chunks exactly
        as inside one chunk. The running phase is carried from chunk to chunk. With
        ``overlap_frames >= 2 * receptive_field`` the result equals :meth:`decode` up to float
        rounding (the default); memory stays bounded by the chunk size plus the output.
        """
        x, squeeze = check_logmel(logmel, self.mel_config.n_mels)
        gen, m = self.generator, self.mel_config
        rf = self.receptive_field
        overlap = 2 * rf + 2 if overlap_frames is None else int(overlap_frames)
        half = overlap // 2
        if overlap < 0 or chunk_frames <= 2 * half + 1:
            raise CadenzaError(
                f"chunk_frames ({chunk_frames}) must be larger than overlap_frames ({overlap}) + 1, overlap non-negative",
                f"e.g. chunk_frames={max(4 * rf, 256)}, overlap_frames={2 * rf + 2}",
            )
        T = x.shape[-1]
        if T <= chunk_frames:
            wave = gen(x)
            return wave.squeeze(0) if squeeze else wave
        n_fft, hop = m.n_fft, m.hop_length
        total = (T - 1) * hop + n_fft  # the centred-frame signal before trimming n_fft // 2 on each side
        out = torch.zeros(x.shape[0], total, dtype=torch.float32, device=x.device)
        env = torch.zeros(total, dtype=torch.float32, device=x.device)
        offset: Tensor | None = None
        start = 0
        while True:
            end = min(start + chunk_frames, T)
            log_mag, a, b = gen.head_params(x[:, :, start:end])
            lo = 0 if start == 0 else half
            hi = end - start if end == T else end - start - half
            if gen.config.phase_mode == "locked":  # phase and refinement on the whole chunk (context included), then cut
                phase, cumulative = gen.locked(log_mag, a, None if offset is None else (lo, offset))
                offset = cumulative[..., hi - 1 : hi]
                spec = refine_phase(torch.exp(log_mag), torch.polar(torch.ones_like(phase), phase), gen.config.phase_iters,
                                    n_fft, hop, gen.window, mel=gen.mel_target(x[:, :, start:end]))[..., lo:hi]
            else:
                phase, offset = gen.phase(a[..., lo:hi], None if b is None else b[..., lo:hi], offset)
                spec = torch.polar(torch.exp(log_mag[..., lo:hi]), phase)
                if gen.config.phase_iters:
                    raise CadenzaError("chunked decoding with phase_iters > 0 needs phase_mode 'locked'", "decode in one piece, or set phase_iters to 0")
            frames = torch.fft.irfft(spec, n=n_fft, dim=1) * gen.window[None, :, None]  # (B, n_fft, F)
            n_frames = frames.shape[-1]
            length = (n_frames - 1) * hop + n_fft
            fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
            s0 = (start + lo) * hop
            out[:, s0 : s0 + length] += nn.functional.fold(frames, **fold).reshape(x.shape[0], length)
            w2 = (gen.window**2)[None, :, None].expand(1, n_fft, n_frames)
            env[s0 : s0 + length] += nn.functional.fold(w2, **fold).reshape(length)
            if end == T:
                break
            start = start + hi - half
        cut = slice(n_fft // 2, n_fft // 2 + hop * (T - 1))
        wave = out[:, cut] / env[cut].clamp(min=1e-11)
        return wave.squeeze(0) if squeeze else wave


def _front_end(mel: MelConfig) -> MelSpectrogram:
    """The mel front end of a config (cached: its filterbank takes a few ms to build)."""
    key = tuple(sorted(mel.to_dict().items()))
    if key not in _FRONT_ENDS:
        _FRONT_ENDS[key] = MelSpectrogram(mel)
    return _FRONT_ENDS[key]


_FRONT_ENDS: dict[tuple, MelSpectrogram] = {}


def _is_vocoder_config(config: dict) -> bool:
    """A vocoder config written before ``kind``/``type`` existed: a ``mel`` section beside ``model``."""
    return isinstance(config.get("mel"), dict) and isinstance(config.get("model"), dict) and "diffusion" not in config


@register_family(
    kind="vocoder", type="vocos-mel", title="vocoder", shipped=WEIGHTS_DIR, recognise=_is_vocoder_config,
    wrap=lambda net, config, folder: Vocoder(net, config), task="vocoder", task_module="cadenza.train.vocoder",
    about="Vocos-style mel vocoder: ConvNeXt magnitude + locked phase + mel-consistent Griffin-Lim",
)
def build_generator(config: dict) -> VocosGenerator:
    """A generator from a vocoder config dict (``model`` + ``mel`` sections)."""
    if not isinstance(config, dict) or "model" not in config:
        raise CadenzaError("vocoder config has no 'model' section", "use cadenza.config.load_config('vocoder', 'default')")
    mel = MelConfig.from_dict(config.get("mel", {}))
    return VocosGenerator(GeneratorConfig.from_dict(config["model"]), mel)


def resolve_vocoder_dir(name_or_path: str | os.PathLike = "default") -> Path:
    """'default' → the shipped folder; anything else is a model folder path."""
    if str(name_or_path) in ("default", "shipped"):
        return WEIGHTS_DIR
    return Path(name_or_path)


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """"auto" → "bf16" on a CPU with AMX tiles (bfloat16 matmuls in hardware), else "fp32".

    Why: on such a CPU the network runs 2x faster in bfloat16 at the same held-out quality
    (mel L1 0.1312 against 0.1311, ``docs/vocoder/README.md``); on CPUs without AMX bfloat16
    is emulated or barely faster, so float32 stays the default there. GPUs keep float32.
    """
    if precision not in PRECISIONS:
        raise CadenzaError(f"unknown vocoder precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if torch.device(device).type != "cpu":
        return "fp32"
    try:
        return "bf16" if torch.cpu._is_amx_tile_supported() else "fp32"
    except (AttributeError, RuntimeError):  # a private torch probe: absent in other builds means no
        return "fp32"


def load_vocoder(
    name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu", precision: str = "auto",
    phase_iters: int | None = None, mel_iters: int | None = None,
) -> Vocoder:
    """Load a vocoder folder (model.safetensors + config.json) as an eval-mode :class:`Vocoder`.

    ``precision``: "fp32", "bf16" (the network under bfloat16 autocast) or "auto" (see
    :func:`resolve_precision`); :attr:`Vocoder.precision` tells which one runs.
    ``phase_iters`` / ``mel_iters`` override the config's refinement schedule (inference only,
    the weights are the same): the shipped 7 / 6 is the quality schedule, 8 / 0 the fast one
    (``docs/vocoder/README.md`` has both measured).
    """
    resolved = resolve_precision(precision, device)
    if torch.device(device).type == "cpu":  # numba's one-time start-up overlaps the loading and the first network pass
        phase_kernels.warm_up_in_background()
    folder = resolve_vocoder_dir(name_or_path)
    hint = (
        "no vocoder is shipped in this build: train one with scripts/train_vocoder.py (docs/vocoder/README.md) and pass "
        "its folder (--model DIR), or use --griffin-lim"
    ) if str(name_or_path) in ("default", "shipped") else None
    schedule = {k: v for k, v in (("phase_iters", phase_iters), ("mel_iters", mel_iters)) if v is not None}

    def with_schedule(config: dict) -> dict:
        if not schedule or not isinstance(config.get("model"), dict):
            return config
        model = {**config["model"], **schedule}
        if "mel_iters" not in schedule:  # fewer iterations than the config's mel-consistent ones: all of them are
            model["mel_iters"] = min(model.get("mel_iters", 0), model["phase_iters"])
        return {**config, "model": model}

    try:  # the one weight check every family shares (cadenza.registry)
        vocoder = load_model(folder, kind="vocoder", config_hook=with_schedule).model
    except CadenzaError as err:
        absent = any(words in err.message for words in ("no such model folder", "missing", "not a model folder"))
        raise (CadenzaError(err.message, hint) if hint and absent else err) from None
    generator = vocoder.generator
    generator.to(device).eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    generator.bf16 = resolved == "bf16"
    return vocoder


def save_vocoder(folder: str | os.PathLike, generator: VocosGenerator, config: dict) -> Path:
    """Write a generator-only model folder (atomic safetensors + config.json)."""
    config = get_family("vocoder", "vocos-mel").stamp(config)
    config["model"] = generator.config.to_dict()
    config["mel"] = generator.mel_config.to_dict()
    return save_model_folder(folder, generator.state_dict(), config)


class _SpectrumOnly(nn.Module):
    """Generator up to the spectrum: the ONNX-exportable part (the istft runs outside)."""

    def __init__(self, generator: VocosGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, logmel: Tensor) -> tuple[Tensor, Tensor]:
        log_mag, cos, sin = self.generator.spectrum(logmel)
        mag = torch.exp(log_mag)
        return mag * cos, mag * sin


class _HeadOnly(nn.Module):
    """"locked" mode's ONNX-exportable part: log-mel → (log-magnitude, phase residual).

    The locked phase needs ``cummax``, which ONNX lacks; :meth:`VocosGenerator.from_head` finishes.
    """

    def __init__(self, generator: VocosGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, logmel: Tensor) -> tuple[Tensor, Tensor]:
        log_mag, residual, _ = self.generator.head_params(logmel)
        return log_mag, residual


def export_vocoder(
    out_dir: str | os.PathLike, fmt: str = "torchscript", name_or_path: str | os.PathLike = "default", vocoder: Vocoder | None = None
) -> Path:
    """Export the generator as TorchScript (``vocoder.ts``: log-mel → waveform) or ONNX.

    ONNX: ``torch.istft`` has no ONNX operator, so ``vocoder_spectrum.onnx`` maps log-mel
    (B, n_mels, T) to the real and imaginary spectrum (B, n_fft//2+1, T); run an inverse STFT
    (Hann window, n_fft 1024, hop 256, centred, length hop*(T-1)) on it outside, as in the
    model card. In "locked" phase mode (no ONNX ``cummax``) it is ``vocoder_head.onnx``:
    log-mel → (log-magnitude, phase residual), finished by :meth:`VocosGenerator.from_head`.
    Needs the ``onnx`` package (``pip install .[export]``).
    """
    voc = vocoder if vocoder is not None else load_vocoder(name_or_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    example = torch.full((1, voc.mel_config.n_mels, 64), -5.0)
    gen = voc.generator.eval()
    bf16, gen.bf16 = gen.bf16, False  # exports are float32: the traced graph and ONNX file must not depend on the exporting CPU
    try:
        return _export(gen, out, example, fmt)
    finally:
        gen.bf16 = bf16


def _export(gen: VocosGenerator, out: Path, example: Tensor, fmt: str) -> Path:
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(gen, example, check_trace=False)
        path = out / "vocoder.ts"
        with atomic_path(path) as tmp:  # a failed save leaves neither a half file nor a stray temp file
            traced.save(str(tmp))
        return path
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise CadenzaError("ONNX export needs the 'onnx' package", "pip install onnx, or export --format torchscript") from None
        locked = gen.config.phase_mode == "locked"
        path = out / ("vocoder_head.onnx" if locked else "vocoder_spectrum.onnx")
        names = ["log_mag", "phase_residual"] if locked else ["real", "imag"]
        with atomic_path(path, suffix=".onnx") as tmp:
            torch.onnx.export(
                (_HeadOnly if locked else _SpectrumOnly)(gen), (example,), str(tmp), input_names=["logmel"], output_names=names,
                dynamic_axes={name: {0: "batch", 2: "frames"} for name in ["logmel", *names]},
                opset_version=17, dynamo=False,
            )
        return path
    raise CadenzaError(f"unknown export format '{fmt}'", "use 'torchscript' or 'onnx'")
