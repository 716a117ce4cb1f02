"""Audio embedders for Fréchet Audio Distance, behind one small protocol and a name registry.

FAD is only as meaningful as the embedding it is computed in, and numbers from different
embedders are not comparable, so every embedder has a ``name`` that goes into every report.

- ``clap``: the audio tower of Cadenza's small CLAP model (``cadenza.eval.clap``), used by
  default when its weights ship in ``cadenza/weights/clap/``;
- ``mel-stats``: a deterministic, non-learned fallback so FAD always works: per-band mean and
  standard deviation over time of the canonical 128-band log-mel (256 numbers), mapped to
  ``dim`` dimensions by a fixed Gaussian random projection (seed 0). Fewer dimensions mean a
  better-conditioned covariance for the few hundred clips an evaluation usually has. It sees
  spectral balance and its variability, not musical structure: a sanity check, not VGGish.

Register more with ``register_embedder(name, factory)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.io import check_waveform
from cadenza.audio.mel import MelSpectrogram
from cadenza.errors import CadenzaError


@runtime_checkable
class AudioEmbedder(Protocol):
    """Maps mono waveforms (at ``sample_rate``) to one vector each."""

    name: str
    sample_rate: int

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float64 embeddings, one row per waveform."""
        ...


def check_waveforms(waveforms: Sequence[np.ndarray], what: str = "audio") -> list[np.ndarray]:
    """Validate a list of mono clips (finite, 1-D, non-empty) and return them as float32."""
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    out = []
    for i, w in enumerate(waveforms):
        w = check_waveform(w, f"{what}[{i}]")
        if w.ndim != 1:
            raise CadenzaError(f"{what}[{i}] has shape {w.shape}; embedders take mono clips", "mix down with cadenza.audio.to_mono")
        out.append(w)
    if not out:
        raise CadenzaError(f"no {what} clips to embed", "pass at least one waveform")
    return out


class MelStatsEmbedder:
    """``mel-stats``: per-band log-mel mean/std → fixed random projection (no training, deterministic)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        if dim < 1:
            raise CadenzaError(f"mel-stats dimension must be positive, got {dim}")
        self.dim = dim
        self.name = "mel-stats" if (dim, seed) == (64, 0) else f"mel-stats-d{dim}-s{seed}"
        self.mel = MelSpectrogram()
        n = 2 * self.mel.config.n_mels
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((n, dim)) / np.sqrt(dim)

    def features(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 256) per-band mean and std of the log-mel over time, before projection."""
        rows = []
        with torch.inference_mode():
            for w in check_waveforms(waveforms):
                logmel = self.mel(torch.from_numpy(w)).double()  # (128, T)
                rows.append(torch.cat([logmel.mean(dim=1), logmel.std(dim=1, correction=0)]).numpy())
        return np.stack(rows)

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self.features(waveforms) @ self.projection


_REGISTRY: dict[str, Callable[[], AudioEmbedder]] = {}


def register_embedder(name: str, factory: Callable[[], AudioEmbedder]) -> None:
    """Make an embedder available by name (``factory`` is called once, on first use)."""
    if not name or not isinstance(name, str):
        raise CadenzaError(f"embedder name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory
    _cached.cache_clear()


def embedder_names() -> list[str]:
    return sorted(_REGISTRY)


def default_embedder_name() -> str:
    """``clap`` when its weights ship with the package, else ``mel-stats``."""
    from cadenza.eval.clap import shipped_weights_available

    return "clap" if shipped_weights_available() else "mel-stats"


@lru_cache(maxsize=8)
def _cached(name: str) -> AudioEmbedder:
    return _REGISTRY[name]()


def get_embedder(embedder: str | AudioEmbedder = "default") -> AudioEmbedder:
    """An embedder object, by registered name (``default`` picks ``default_embedder_name()``)."""
    if not isinstance(embedder, str):
        if not isinstance(embedder, AudioEmbedder):
            raise CadenzaError(f"{type(embedder).__name__} is not an audio embedder", "it needs name, sample_rate and embed(waveforms)")
        return embedder
    name = default_embedder_name() if embedder == "default" else embedder
    if name not in _REGISTRY:
        raise CadenzaError(f"unknown audio embedder '{name}'", f"choose one of: {', '.join(embedder_names())}")
    return _cached(name)


def _clap_factory() -> AudioEmbedder:
    from cadenza.eval.clap import ClapEmbedder

    return ClapEmbedder.from_pretrained()


register_embedder("mel-stats", MelStatsEmbedder)
register_embedder("clap", _clap_factory)
