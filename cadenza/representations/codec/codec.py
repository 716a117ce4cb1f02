"""``Codec``: waveform ↔ residual-VQ tokens, the discrete ``Representation`` token LMs sample in.

A codec model folder holds the encoder, quantizer and mel decoder (``model.safetensors`` +
``config.json``); its config's ``vocoder`` section names the mel vocoder that renders the
decoded mel (``"default"``: the shipped ``cadenza/weights/vocoder``) and the vocoder's model id
the codec was trained against, so a folder whose vocoder is missing or was swapped for another
fails to load with one clear error rather than decoding to the wrong sound.

Long inputs are encoded and decoded in fixed chunks of code frames with a margin of context
on each side that is computed and thrown away (``encoder_context`` / ``decoder_context``: the
networks' receptive fields), so chunked output equals whole-clip output up to float rounding
and memory is bounded by the chunk; the vocoder streams the mel the same way
(:meth:`Vocoder.decode_chunked`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cadenza.errors import CadenzaError
from cadenza.registry import get_family, load_model, register_family
from cadenza.representations.codec.model import CodecNet, CodecNetConfig
from cadenza.representations.vocoder import Vocoder, load_vocoder, resolve_vocoder_dir

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights" / "codec"
CHUNK_FRAMES = 1024  # code frames per chunk (23.8 s of audio)
MIN_VOCODER_FRAMES = 9  # mel frames the vocoder needs at least: its STFTs reflect-pad n_fft/2 samples, so more than 2 hops


@dataclass
class Codec:
    """An eval-mode codec network + the vocoder that renders its mel: the inference API.

    ``encode(wave, n_q)`` → LongTensor (B, n_q, T) of codes in ``[0, cardinality)``;
    ``decode(codes)`` → waveform (B, 512·T) (pass ``n_samples`` to cut it to the input length).
    Any ``n_q`` in ``1..codebooks`` decodes (quantizer dropout trained every prefix), at
    ``bitrate(n_q)`` bits per second.
    """

    net: CodecNet
    vocoder: Vocoder
    config: dict = field(default_factory=dict)
    model_id: str = ""
    discrete = True  # a Representation (cadenza.protocols) of integer codes

    @cached_property
    def token_digest(self) -> str:
        """What fixes the token space (encoder + codebooks, :meth:`CodecNet.token_digest`): codecs that share it give every clip the same codes."""
        return self.net.token_digest()

    @property
    def sample_rate(self) -> int:
        return int(self.net.config.sample_rate)

    @property
    def hop(self) -> int:
        return self.net.hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def codebooks(self) -> int:
        return int(self.net.config.codebooks)

    @property
    def cardinality(self) -> int:
        return int(self.net.config.codebook_size)

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second with the first ``n_q`` codebooks: n_q · log2(cardinality) · frame_rate."""
        return self.check_n_q(n_q) * math.log2(self.cardinality) * self.frame_rate

    def n_q_for_kbps(self, kbps: float) -> int:
        """The most codebooks whose bitrate is at most ``kbps`` kilobits per second."""
        per_book = math.log2(self.cardinality) * self.frame_rate / 1000
        if not (isinstance(kbps, (int, float)) and math.isfinite(kbps)) or kbps < per_book:
            raise CadenzaError(f"bitrate {kbps!r} kbps is below one codebook ({per_book:.3f} kbps)",
                               f"choose {per_book:.2f} to {per_book * self.codebooks:.2f} kbps")
        return min(self.codebooks, int(math.floor(kbps / per_book + 1e-9)))

    def check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.codebooks
        if isinstance(n_q, bool) or not isinstance(n_q, (int, np.integer)) or not 1 <= int(n_q) <= self.codebooks:
            raise CadenzaError(f"n_q must be an integer from 1 to {self.codebooks}, got {n_q!r}", f"this codec has {self.codebooks} codebooks")
        return int(n_q)

    # ---- encode --------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, wave: Tensor | np.ndarray, n_q: int | None = None, chunk_frames: int = CHUNK_FRAMES) -> Tensor:
        """Waveform (N,) or (B, N) at :attr:`sample_rate` → codes (B, n_q, ceil(N / 512)) (int64).

        Chunked: each chunk of ``chunk_frames`` code frames is encoded with ``encoder_context``
        frames of context on each side, which are dropped; the result equals encoding in one piece.
        """
        k = self.check_n_q(n_q)
        x = _check_wave(wave)
        net, hop, half = self.net, self.hop, self.net.config.n_fft // 2
        total = net.n_codes(x.shape[-1])
        padded = net.pad(x)
        ctx = net.encoder_context
        step = max(int(chunk_frames), 1)
        codes = []
        for a in range(0, total, step):
            b = min(a + step, total)
            lo, hi = max(a - ctx, 0), min(b + ctx, total)
            z = net.encoder(padded[:, lo * hop : hi * hop + 2 * half - net.config.frame_hop])  # frames lo..hi, see model.py
            codes.append(net.quantize(z[:, a - lo : b - lo], k))
        return torch.cat(codes, dim=-1)

    # ---- decode --------------------------------------------------------------------------
    @torch.inference_mode()
    def decode_mel(self, codes: Tensor | np.ndarray, chunk_frames: int = CHUNK_FRAMES) -> Tensor:
        """Codes (B, K, T) or (K, T) → the log-mel (B, n_mels, 2T + 1) the vocoder renders (chunked, exact)."""
        c = self.check_codes(codes)
        net, ctx, total = self.net, self.net.decoder_context, c.shape[-1]
        step = max(int(chunk_frames), 1)
        parts = []
        for a in range(0, total, step):
            b = min(a + step, total)
            lo, hi = max(a - ctx, 0), min(b + ctx, total)
            mel = net.decoder(net.dequantize(c[..., lo:hi]))
            parts.append(mel[..., 2 * (a - lo) : 2 * (b - lo)])
        mel = torch.cat(parts, dim=-1)
        return torch.cat([mel, mel[..., -1:]], dim=-1)

    @torch.inference_mode()
    def decode(self, codes: Tensor | np.ndarray, n_samples: int | None = None, chunk_frames: int = CHUNK_FRAMES) -> Tensor:
        """Codes (B, K, T) or (K, T), any K ≤ codebooks → waveform (B, 512·T), or (B, n_samples) when given."""
        squeeze = torch.as_tensor(codes).dim() == 2
        mel = self.decode_mel(codes, chunk_frames)
        length = self.hop * (mel.shape[-1] - 1) // 2  # 512·T samples for 2T + 1 mel frames
        short = MIN_VOCODER_FRAMES - mel.shape[-1]
        if short > 0:  # the vocoder's reflect-padded STFTs need more than n_fft/2 samples: hold the last frame, then cut
            mel = torch.cat([mel, mel[..., -1:].expand(*mel.shape[:-1], short)], dim=-1)
        wave = self.vocoder.decode_chunked(mel, chunk_frames=max(4 * self.vocoder.receptive_field, 2 * chunk_frames))[..., :length]
        if n_samples is not None:
            n = int(n_samples)
            if not 0 < n <= wave.shape[-1]:
                raise CadenzaError(f"n_samples {n} does not fit {codes.shape[-1]} code frames (at most {wave.shape[-1]})", "the token file is damaged")
            wave = wave[..., :n]
        return wave.squeeze(0) if squeeze else wave

    def check_codes(self, codes: Tensor | np.ndarray) -> Tensor:
        """(B, K, T) or (K, T) integer codes in range, K ≤ codebooks → (B, K, T) int64."""
        c = torch.as_tensor(codes)
        if c.dim() == 2:
            c = c.unsqueeze(0)
        if c.dim() != 3:
            raise CadenzaError(f"codes must be (batch, codebooks, frames) or (codebooks, frames), got shape {tuple(c.shape)}")
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise CadenzaError(f"codes must be integers, got {c.dtype}")
        if c.shape[-1] == 0 or c.shape[1] == 0:
            raise CadenzaError("codes are empty (no frames or no codebooks)")
        self.check_n_q(int(c.shape[1]))
        lo, hi = int(c.min()), int(c.max())
        if lo < 0 or hi >= self.cardinality:
            raise CadenzaError(f"codes out of range [{lo}, {hi}] for a codebook of {self.cardinality}", "these codes are from another codec, or damaged")
        return c.long()


def _check_wave(wave: Tensor | np.ndarray) -> Tensor:
    """(N,) or (B, N) finite float samples → (B, N) float32."""
    from cadenza.audio.io import check_waveform

    x = torch.from_numpy(check_waveform(np.asarray(wave), "waveform")) if isinstance(wave, np.ndarray) else torch.as_tensor(wave)
    if x.is_complex() or not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32)):
        raise CadenzaError(f"waveform must hold real samples, got {x.dtype}")
    x = x.float()
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise CadenzaError(f"waveform must be (samples,) or (batch, samples), got shape {tuple(x.shape)}", "mix to mono first")
    if x.shape[-1] == 0:
        raise CadenzaError("waveform is empty")
    if not torch.isfinite(x).all():
        raise CadenzaError("waveform contains NaN or infinite values", "clean the signal before encoding")
    return x


# ---- the family -----------------------------------------------------------------------------
def _vocoder_of(config: dict, folder: Path) -> Vocoder:
    """The vocoder a codec config names, checked against the id it was trained with."""
    section = config.get("vocoder") or {}
    name = section.get("path", "default") if isinstance(section, dict) else str(section)
    where = resolve_vocoder_dir(name)
    if not where.is_absolute() and not where.exists() and (folder / where).exists():
        where = folder / where  # a vocoder folder given relative to the codec's own folder
    try:
        vocoder = load_vocoder(where, precision=str(section.get("precision", "auto")) if isinstance(section, dict) else "auto")
    except CadenzaError as err:
        raise CadenzaError(f"{folder}: the codec renders its mel with the vocoder '{name}', which does not load ({err.message})",
                           "install the shipped vocoder (cadenza/weights/vocoder) or set vocoder.path in the codec's config.json") from None
    expected = section.get("model_id") if isinstance(section, dict) else None
    if expected:
        got = get_family("vocoder", "vocos-mel").model_id(vocoder.config, where)
        if got != expected:
            raise CadenzaError(f"{folder}: the codec was trained with vocoder {expected}, but '{name}' is {got}",
                               "point vocoder.path at the vocoder it was trained with, or retrain the codec")
    return vocoder


def _wrap(net: CodecNet, config: dict, folder: Path) -> Codec:
    vocoder = _vocoder_of(config, folder)
    family = get_family("codec", "rvq-codec")
    return Codec(net, vocoder, config, family.model_id(config, folder))


@register_family(
    kind="codec", type="rvq-codec", title="codec", shipped=WEIGHTS_DIR, wrap=_wrap, task="codec", task_module="cadenza.train.codec",
    about="RVQ neural codec: waveform encoder, residual VQ with quantizer dropout, mel decoder + the frozen mel vocoder",
)
def build_codec(config: dict) -> CodecNet:
    """A codec network from a codec config (its ``model`` section)."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CadenzaError("codec config has no 'model' section", "use cadenza/configs/codec/small.json")
    return CodecNet(CodecNetConfig.from_dict(config["model"]))


def resolve_codec_dir(name_or_path: str | os.PathLike = "default") -> Path:
    """'default' → the shipped folder; anything else is a model folder path."""
    return WEIGHTS_DIR if str(name_or_path) in ("default", "shipped") else Path(name_or_path)


def load_codec(name_or_path: str | os.PathLike = "default") -> Codec:
    """Load a codec folder as an eval-mode :class:`Codec` (the vocoder it names is loaded too)."""
    folder = resolve_codec_dir(name_or_path)
    try:
        return load_model(folder, kind="codec").model
    except CadenzaError as err:
        if str(name_or_path) in ("default", "shipped") and any(w in err.message for w in ("no such model folder", "missing", "not a model folder")):
            raise CadenzaError(err.message, "no codec is shipped in this build: train one (cadenza train codec small --out runs/codec) and pass its folder") from None
        raise
