"""A toy discrete codec for tests: registered only by the tests that use it (imported by name: tests/ is on sys.path).

A fixed random projection of 512-sample frames to 8 numbers, quantised by K residual
nearest-neighbour codebooks: deterministic, ≈ 43.07 frames/s like the real codec, and loadable
through ``registry.load_model`` so the token families' codec handling is exercised end to end
without the codec branch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cadenza.registry import register_family, save_model, unregister_family

HOP = 512
SR = 22050


class ToyCodecNet(nn.Module):
    def __init__(self, codebooks: int, cardinality: int, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(HOP, dim, generator=g) / HOP**0.5)
        scale = 0.5 ** torch.arange(codebooks, dtype=torch.float32)[:, None, None]
        self.register_buffer("books", torch.randn(codebooks, cardinality, dim, generator=g) * 0.05 * scale)


class ToyCodec:
    """``encode`` (B, N) → codes (B, K, N // 512 + 1); ``decode`` codes → (B, T · 512)."""

    sample_rate = SR
    frame_rate = SR / HOP
    discrete = True

    def __init__(self, net: ToyCodecNet) -> None:
        self.net = net
        self.codebooks, self.cardinality = int(net.books.shape[0]), int(net.books.shape[1])

    def encode(self, wave: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        x = x[None] if x.dim() == 1 else x
        t = x.shape[-1] // HOP + 1
        frames = torch.nn.functional.pad(x, (0, t * HOP - x.shape[-1])).view(x.shape[0], t, HOP) @ self.net.proj
        codes = []
        for book in self.net.books:  # residual levels (K of them), each vectorised over batch and frames
            idx = torch.cdist(frames, book[None].expand(frames.shape[0], -1, -1)).argmin(-1)
            codes.append(idx)
            frames = frames - book[idx]
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        vec = sum(self.net.books[k][codes[:, k]] for k in range(codes.shape[1]))  # any prefix of the levels, as RVQ
        return (vec @ torch.linalg.pinv(self.net.proj)).reshape(codes.shape[0], -1)


@contextmanager
def toy_codec_registered() -> Iterator[None]:
    """The family ``codec/toy-rvq`` while the block runs (unregistered after, so listings elsewhere do not see it)."""

    @register_family(kind="codec", type="toy-rvq", title="toy codec", wrap=lambda net, config, folder: ToyCodec(net))
    def build(config: dict) -> ToyCodecNet:
        m = config["model"]
        return ToyCodecNet(int(m["codebooks"]), int(m["cardinality"]), seed=int(m.get("seed", 0)))

    try:
        yield
    finally:
        unregister_family("codec", "toy-rvq")


def save_toy_codec(folder: Path, codebooks: int = 2, cardinality: int = 16, seed: int = 0) -> Path:
    """A toy codec model folder (the family must be registered)."""
    config = {"name": "toy", "model": {"codebooks": codebooks, "cardinality": cardinality, "seed": seed}}
    return save_model(folder, ToyCodecNet(codebooks, cardinality, seed=seed), config, kind="codec", type="toy-rvq")
