"""ONNX export of the codec's networks (the vocoder that renders the mel exports on its own).

- ``codec_encoder.onnx``: padded waveform (B, 512·T + 1024) → latents (B, T, latent_dim)
  (pad with :meth:`CodecNet.pad`: zeros to a multiple of 512, then 512 on each side); the
  nearest-codebook search is a matmul and an argmin over the ``codebooks.npy`` array written
  beside it;
- ``codec_decoder.onnx``: codes (B, K, T) int64, any K ≤ codebooks → log-mel (B, 128, 2T + 1),
  which ``cadenza.representations.export_vocoder(..., fmt="onnx")`` (or the vocoder itself)
  turns into the waveform.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path
from cadenza.representations.codec.codec import Codec


class _Decoder(nn.Module):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.net = codec.net

    def forward(self, codes: Tensor) -> Tensor:
        return self.net.mel(self.net.dequantize(codes))


class _Encoder(nn.Module):
    """The encoder with its STFT as a strided convolution by the windowed Fourier basis (ONNX has no complex STFT output)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.encoder = codec.net.encoder
        c = codec.net.config
        n = torch.arange(c.n_fft, dtype=torch.float64)
        k = torch.arange(c.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / c.n_fft
        window = torch.hann_window(c.n_fft, dtype=torch.float64)
        self.register_buffer("basis", torch.cat([torch.cos(angle) * window, torch.sin(angle) * window]).float().unsqueeze(1))
        self.hop, self.bins = c.frame_hop, c.n_fft // 2 + 1

    def forward(self, padded: Tensor) -> Tensor:
        spec = nn.functional.conv1d(padded.unsqueeze(1), self.basis, stride=self.hop)
        mag = torch.sqrt(spec[:, : self.bins].square() + spec[:, self.bins :].square())
        return self.encoder.from_log_magnitude(torch.log(mag.clamp(min=1e-5)))


def export_codec(out_dir: str | os.PathLike, codec: Codec) -> list[Path]:
    """Write ``codec_encoder.onnx``, ``codec_decoder.onnx`` and ``codebooks.npy`` (K, size, D) into ``out_dir``."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CadenzaError("ONNX export needs the 'onnx' package", "pip install onnx (pip install .[export])") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = codec.net.eval()
    k = net.config.codebooks
    paths = []
    specs = (
        ("codec_encoder.onnx", _Encoder(codec), net.pad(torch.zeros(1, 16 * net.hop)), ["wave"], ["latents"], {"wave": {0: "batch", 1: "samples"}, "latents": {0: "batch", 1: "frames"}}),
        ("codec_decoder.onnx", _Decoder(codec), torch.zeros(1, k, 16, dtype=torch.long), ["codes"], ["logmel"],
         {"codes": {0: "batch", 1: "codebooks", 2: "frames"}, "logmel": {0: "batch", 2: "mel_frames"}}),
    )
    for name, module, example, inputs, outputs, axes in specs:
        path = out / name
        with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad():
            torch.onnx.export(module, (example,), str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
        paths.append(path)
    books = out / "codebooks.npy"
    with atomic_path(books, suffix=".npy") as tmp:
        np.save(tmp, torch.stack([layer.codebook for layer in net.quantizer.layers]).numpy())
    return [*paths, books]
