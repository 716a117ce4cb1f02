"""The codec network: waveform encoder → residual VQ → log-mel decoder (rendered by a frozen vocoder).

Why this shape (``docs/codec/README.md`` has the measurements):

- **encoder**: the log-magnitude of a fixed STFT of the waveform (n_fft 1024, hop 256, zero
  padding; an FFT costs a tenth of the same learned strided convolution, measured 88 M against
  9 M multiply-adds per second of audio, which the 50x-real-time goal could not afford), a
  learned linear embedding of its 513 bins, ConvNeXt blocks at 86 Hz, a learned merge of frame
  pairs to hop 512 (43 Hz) and more ConvNeXt blocks, projected to a small latent;
- **quantizer**: ``vector_quantize_pytorch.ResidualVQ`` with quantizer dropout (one model serves
  1..K codebooks), k-means initialisation and dead-code replacement;
- **decoder**: ConvNeXt blocks at 43 Hz, a split of every frame into two (back to hop 256) and
  ConvNeXt blocks at 86 Hz, ending in the 128-band log-mel of the shipped vocoder's front end.
  The waveform is the frozen vocoder's rendering of that mel (``cadenza.representations.codec``),
  so training needs no waveform synthesis per step: a CPU-hour budget buys many more steps.

Frame layout: a clip of ``n`` samples is zero-padded to ``n_pad = 512·T`` (``T = ceil(n/512)``
code frames), then by 512 on each side; the front end yields ``2T + 1`` frames (the vocoder's
``center=True`` grid of ``n_pad``), the encoder keeps pairs ``(2t, 2t+1)`` → ``T`` code frames,
and the decoder gives ``2T`` mel frames plus a copy of the last, ``2T + 1`` frames, which the
vocoder renders as exactly ``n_pad`` samples. Every stage has a finite receptive field
(:attr:`CodecNet.encoder_context`, :attr:`CodecNet.decoder_context`), which is what makes
chunked encoding/decoding exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cadenza.audio.mel import denormalize_log_mel, normalize_log_mel
from cadenza.errors import CadenzaError
from cadenza.representations.vocoder import ConvNeXtBlock


@dataclass(frozen=True)
class CodecNetConfig:
    """Sizes of the codec network; saved in the ``model`` section of a codec config."""

    sample_rate: int = 22050
    n_fft: int = 1024  # the front end's STFT size (samples)
    frame_hop: int = 256  # the front end's and the vocoder's hop (86.13 Hz)
    dim: int = 192
    intermediate_dim: int = 576
    kernel_size: int = 7
    encoder_pre_layers: int = 1  # ConvNeXt blocks at 86 Hz before the stride-2 merge
    encoder_layers: int = 3  # at 43 Hz
    decoder_layers: int = 4  # at 43 Hz
    decoder_post_layers: int = 2  # at 86 Hz, after the split
    latent_dim: int = 32  # the codebook vectors' size
    decoder_dim: int | None = None  # the decoder's width (None: ``dim``); a decoder can be retrained wider on frozen tokens
    decoder_intermediate_dim: int | None = None  # its ConvNeXt MLP width (None: ``intermediate_dim``)
    codebooks: int = 8
    codebook_size: int = 1024
    n_mels: int = 128
    kmeans_iters: int = 10
    dead_code_threshold: float = 2.0
    ema_decay: float = 0.99
    commitment_weight: float = 1.0

    @property
    def hop(self) -> int:
        """Samples per code frame (512: 43.07 Hz)."""
        return 2 * self.frame_hop

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecNetConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise CadenzaError(f"codec config: unknown model key(s) {', '.join(sorted(unknown))}", f"known keys: {', '.join(cls.__dataclass_fields__)}")
        config = cls(**data)
        if config.n_fft % config.frame_hop or config.n_fft < 2 * config.frame_hop:
            raise CadenzaError(f"codec config: n_fft ({config.n_fft}) must be a multiple of frame_hop ({config.frame_hop}), at least twice it")
        for key in ("codebooks", "codebook_size", "dim", "latent_dim", "n_mels", "decoder_dim", "decoder_intermediate_dim"):
            if getattr(config, key) is not None and int(getattr(config, key)) < 1:
                raise CadenzaError(f"codec config: {key} must be positive, got {getattr(config, key)}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blocks(config: CodecNetConfig, n: int, dim: int | None = None, intermediate: int | None = None) -> nn.ModuleList:
    scale = 1.0 / max(n, 1)
    dim, intermediate = dim or config.dim, intermediate or config.intermediate_dim
    return nn.ModuleList(ConvNeXtBlock(dim, intermediate, config.kernel_size, scale) for _ in range(n))


class CodecEncoder(nn.Module):
    """Padded waveform (B, N) → latents (B, T, latent_dim) at hop 512 (see the module docstring)."""

    def __init__(self, config: CodecNetConfig) -> None:
        super().__init__()
        self.config = config
        self.n_bins = config.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.embed = nn.Linear(self.n_bins, config.dim)
        self.pre = _blocks(config, config.encoder_pre_layers)
        self.merge = nn.Linear(2 * config.dim, config.dim)  # frame pairs (2t, 2t+1) → one code frame
        self.blocks = _blocks(config, config.encoder_layers)
        self.proj = nn.Linear(config.dim, config.latent_dim)

    def forward(self, padded: Tensor) -> Tensor:
        return self.from_log_magnitude(self.log_magnitude(padded))

    def log_magnitude(self, padded: Tensor) -> Tensor:
        """(B, N) → the front end's (B, n_fft/2+1, frames) log-magnitude STFT (no centring: ``padded`` is padded)."""
        c = self.config
        spec = torch.stft(padded, c.n_fft, c.frame_hop, c.n_fft, self.window, center=False, return_complex=True)
        return torch.log(spec.abs().clamp(min=1e-5))  # the mel's log scale

    def from_log_magnitude(self, logmag: Tensor) -> Tensor:
        """The learned part: log-magnitude frames → latents (B, frames // 2, latent_dim)."""
        logmag = logmag[..., : logmag.shape[-1] // 2 * 2]  # whole frame pairs only (the odd last frame never counts)
        x = self.embed(normalize_log_mel(logmag).transpose(1, 2))  # (B, frames, dim); no LayerNorm: it would erase the level
        for block in self.pre:
            x = block(x)
        b, f, d = x.shape
        x = x.reshape(b, f // 2, 2 * d)
        x = self.merge(x)
        for block in self.blocks:
            x = block(x)
        return self.proj(x)


class CodecDecoder(nn.Module):
    """Quantized latents (B, T, latent_dim) → log-mel (B, n_mels, 2T) at hop 256."""

    def __init__(self, config: CodecNetConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.decoder_dim or config.dim
        intermediate = config.decoder_intermediate_dim or config.intermediate_dim
        self.embed = nn.Linear(config.latent_dim, dim)
        self.blocks = _blocks(config, config.decoder_layers, dim, intermediate)
        self.split = nn.Linear(dim, 2 * dim)  # one code frame → two mel frames
        self.post = _blocks(config, config.decoder_post_layers, dim, intermediate)
        self.head = nn.Linear(dim, config.n_mels)

    def forward(self, z: Tensor) -> Tensor:
        x = self.embed(z)
        for block in self.blocks:
            x = block(x)
        b, t, d = x.shape
        x = self.split(x).reshape(b, 2 * t, d)
        for block in self.post:
            x = block(x)
        return denormalize_log_mel(self.head(x)).transpose(1, 2)  # the head works in the vocoder's [-1, 1] scale


def _dead_code_kwargs(config: CodecNetConfig) -> dict[str, float]:
    """The quantizer's dead-code threshold under the name the installed vector-quantize-pytorch reads.

    Why: newer releases (1.34) renamed ``threshold_ema_dead_code`` to ``dead_code_threshold_ratio``
    and log a deprecation warning per codebook (12 lines on every ``load_codec``) for the old
    name; they map the old value to the ratio as ``value / codebook_size`` when it is ≥ 1 and
    keep it otherwise, which is what this does, so behaviour is the same under either name.
    """
    import inspect

    from vector_quantize_pytorch import VectorQuantize

    value = float(config.dead_code_threshold)
    if "dead_code_threshold_ratio" in inspect.signature(VectorQuantize.__init__).parameters:
        return {"dead_code_threshold_ratio": value / config.codebook_size if value >= 1.0 else value}
    return {"threshold_ema_dead_code": value}


class CodecNet(nn.Module):
    """Encoder + ResidualVQ + decoder; :meth:`encode` / :meth:`decode` work on whole padded clips."""

    def __init__(self, config: CodecNetConfig = CodecNetConfig()) -> None:
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.config = config
        self.encoder = CodecEncoder(config)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim, num_quantizers=config.codebooks, codebook_size=config.codebook_size,
            quantize_dropout=True, kmeans_init=True, kmeans_iters=config.kmeans_iters,
            decay=config.ema_decay, commitment_weight=config.commitment_weight, **_dead_code_kwargs(config),
        )
        self.decoder = CodecDecoder(config)

    # ---- geometry ------------------------------------------------------------------------
    @property
    def hop(self) -> int:
        return self.config.hop

    def n_codes(self, n_samples: int) -> int:
        """Code frames for a clip of ``n_samples`` (at least one)."""
        return max(1, -(-int(n_samples) // self.hop))

    @property
    def encoder_context(self) -> int:
        """Code frames on each side that influence one code frame (the chunked encoder's margin)."""
        c = self.config
        half = c.kernel_size // 2
        pre = math.ceil((c.encoder_pre_layers * half + (c.n_fft // c.frame_hop - 1)) / 2)
        return pre + c.encoder_layers * half + 1

    @property
    def decoder_context(self) -> int:
        """Code frames on each side that influence the mel frames of one code frame."""
        c = self.config
        half = c.kernel_size // 2
        return c.decoder_layers * half + math.ceil(c.decoder_post_layers * half / 2) + 1

    def pad(self, wave: Tensor) -> Tensor:
        """(B, n) → (B, 512·T + 1024): zeros to a whole number of code frames, then n_fft/2 on each side."""
        n = wave.shape[-1]
        right = self.n_codes(n) * self.hop - n
        half = self.config.n_fft // 2
        return nn.functional.pad(wave, (half, half + right))

    # ---- the three stages ----------------------------------------------------------------
    def latents(self, wave: Tensor) -> Tensor:
        """(B, n) → continuous latents (B, T, latent_dim)."""
        return self.encoder(self.pad(wave))

    def quantize(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """Latents (B, T, D) → codes (B, K, T): nearest codebook vector of each residual, first ``n_q`` codebooks.

        Why not the quantizer's own forward: at inference it also runs its training bookkeeping;
        this is the same nearest-neighbour search (argmin of ``|e|² - 2 r·e``) as one matmul per
        codebook, and it never touches the codebooks.
        """
        k = self.config.codebooks if n_q is None else int(n_q)
        codes = []
        residual = z
        for layer in self.quantizer.layers[:k]:
            book = layer.codebook  # (size, D)
            idx = torch.argmin(book.square().sum(-1) - 2 * residual @ book.T, dim=-1)  # (B, T)
            residual = residual - book[idx]
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def dequantize(self, codes: Tensor, n_q: Tensor | None = None) -> Tensor:
        """Codes (B, K, T), any K ≤ codebooks → the summed codebook vectors (B, T, latent_dim).

        ``n_q`` (B,) in 1..K keeps only each clip's first ``n_q[b]`` levels: quantizer dropout for
        a decoder trained on frozen tokens, one random prefix per clip, so it learns every bitrate.
        """
        k = codes.shape[1]
        books = torch.stack([layer.codebook for layer in self.quantizer.layers[:k]])  # (K, size, D)
        vectors = books[torch.arange(k, device=codes.device)[None, :, None], codes]  # (B, K, T, D)
        if n_q is not None:
            keep = (torch.arange(k, device=codes.device)[None, :] < n_q[:, None]).to(vectors.dtype)  # (B, K)
            vectors = vectors * keep[:, :, None, None]
        return vectors.sum(dim=1)

    def token_digest(self) -> str:
        """Short sha256 of what fixes the token space: the encoder's weights and the codebooks.

        Why: the codes a clip gets depend on these alone, so a decoder retrained on frozen tokens
        keeps the digest, and token models trained on the old decoder's tokens stay valid with it.
        """
        import hashlib

        h = hashlib.sha256()
        state = self.encoder.state_dict()
        for name in sorted(state):
            h.update(name.encode())
            h.update(state[name].detach().float().contiguous().cpu().numpy().tobytes())
        for i, layer in enumerate(self.quantizer.layers):
            h.update(f"codebook.{i}".encode())
            h.update(layer.codebook.detach().float().contiguous().cpu().numpy().tobytes())
        return h.hexdigest()[:12]

    def mel(self, zq: Tensor) -> Tensor:
        """Quantized latents (B, T, D) → log-mel (B, n_mels, 2T + 1) on the vocoder's grid (last frame repeated)."""
        m = self.decoder(zq)
        return torch.cat([m, m[..., -1:]], dim=-1)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass on (B, n): (log-mel (B, n_mels, 2T+1), codes (B, T, K), commitment loss)."""
        z = self.latents(wave)
        zq, idx, commit = self.quantizer(z)
        return self.mel(zq), idx, commit.sum()
