"""Fréchet Audio Distance (Kilgour et al. 2019) with a pluggable embedder.

Each set of clips is embedded, modelled as a Gaussian (mean, covariance), and compared with the
Fréchet distance ``|mu_r - mu_g|² + tr(S_r + S_g - 2 (S_r S_g)^½)``. The matrix square root uses
``scipy.linalg.sqrtm``; if it is not finite (near-singular covariances, e.g. fewer clips than
dimensions) both covariances get ``eps·I`` added and it is retried; a small imaginary part from
round-off is discarded, a large one is an error.

Sample-size bias: the plug-in estimate is biased **upward** for small N (the covariance and mean
of a finite sample are noisy, and the noise adds distance; the bias shrinks roughly like 1/N).
So FAD values are comparable only at equal N and with the same embedder: every ``FADResult``
records both. ``fad_infinity`` (Chong & Forsyth 2020's FID-∞ idea) fits FAD against 1/N over
random subsets of the generated set and extrapolates to N → ∞, which removes most of the bias.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.linalg

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.io import resample
from cadenza.errors import CadenzaError
from cadenza.eval.embedders import AudioEmbedder, check_waveforms, get_embedder

DEFAULT_EPS = 1e-6
IMAG_TOLERANCE = 1e-3


@dataclass
class GaussianStats:
    """Mean and covariance of a set of embeddings, and how many there were."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def from_embeddings(cls, emb: np.ndarray) -> "GaussianStats":
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 2:
            raise CadenzaError(f"embeddings must be a 2-D (clips, dims) array, got shape {emb.shape}")
        if emb.shape[0] < 2:
            raise CadenzaError(f"FAD needs at least 2 clips per set to estimate a covariance, got {emb.shape[0]}", "use more clips (hundreds for stable numbers)")
        if not np.isfinite(emb).all():
            raise CadenzaError("embeddings contain NaN or infinite values", "check the audio and the embedder")
        return cls(emb.mean(axis=0), np.cov(emb, rowvar=False).reshape(emb.shape[1], emb.shape[1]), emb.shape[0])


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = DEFAULT_EPS) -> float:
    """Fréchet distance between two Gaussians (clamped at 0 against round-off)."""
    if a.mu.shape != b.mu.shape:
        raise CadenzaError(f"embedding sizes differ ({a.mu.size} vs {b.mu.size})", "embed both sets with the same embedder")
    diff = a.mu - b.mu
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular input; we check the result ourselves
        covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
        if not np.isfinite(covmean).all():
            offset = np.eye(a.sigma.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((a.sigma + offset) @ (b.sigma + offset))
    if not np.isfinite(covmean).all():
        raise CadenzaError("the covariance square root is not finite even after regularisation", "use more clips or a lower-dimensional embedder")
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.abs(covmean).max()))
        if np.abs(covmean.imag).max() > IMAG_TOLERANCE * scale:
            raise CadenzaError(
                f"the covariance square root has a large imaginary part ({np.abs(covmean.imag).max():.3g})",
                "the covariances are ill-conditioned: use more clips or a lower-dimensional embedder",
            )
        covmean = covmean.real
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


@dataclass
class FADResult:
    """A FAD value with what it depends on: the embedder and both sample sizes."""

    fad: float
    embedder: str
    n_reference: int
    n_generated: int
    dim: int
    fad_inf: float | None = None
    fad_inf_points: list[tuple[int, float]] = field(default_factory=list)
    note: str = "FAD is biased upward for small N; compare values only at equal N and with the same embedder"

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        inf = f", FAD-inf {self.fad_inf:.4g}" if self.fad_inf is not None else ""
        return f"FAD {self.fad:.4g} ({self.embedder}, N_ref={self.n_reference}, N_gen={self.n_generated}{inf})"


def fad_infinity(
    reference: np.ndarray, generated: np.ndarray, n_points: int = 10, min_n: int | None = None, seed: int = 0
) -> tuple[float, list[tuple[int, float]]]:
    """Extrapolate FAD to infinitely many generated clips: least-squares line of FAD vs 1/N at N → ∞.

    Random subsets of ``generated`` of ``n_points`` sizes between ``min_n`` (default N/4, at
    least 2) and N are scored against the full reference statistics. Returns (intercept, points).
    """
    generated = np.asarray(generated, np.float64)
    n = generated.shape[0]
    lo = max(2, n // 4 if min_n is None else min_n)
    if n < 4 or lo >= n:
        raise CadenzaError(f"FAD-inf needs at least 4 generated clips and min_n < N (got N={n}, min_n={lo})", "use more clips")
    ref = GaussianStats.from_embeddings(reference)
    rng = np.random.default_rng(seed)
    sizes = np.unique(np.linspace(lo, n, n_points).astype(int))
    points = []
    for size in sizes:
        sub = generated[rng.choice(n, size=size, replace=False)]
        points.append((int(size), frechet_distance(ref, GaussianStats.from_embeddings(sub))))
    x = 1.0 / np.array([p[0] for p in points], np.float64)
    y = np.array([p[1] for p in points], np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), points


def fad_from_embeddings(reference: np.ndarray, generated: np.ndarray, embedder: str, with_inf: bool = False, seed: int = 0) -> FADResult:
    """FAD between two embedding matrices (clips × dims); ``embedder`` names where they came from."""
    ref = GaussianStats.from_embeddings(reference)
    gen = GaussianStats.from_embeddings(generated)
    result = FADResult(frechet_distance(ref, gen), embedder, ref.n, gen.n, int(ref.mu.size))
    if with_inf:
        result.fad_inf, result.fad_inf_points = fad_infinity(reference, generated, seed=seed)
    return result


def embed_audio(waveforms: Sequence[np.ndarray], embedder: AudioEmbedder, sample_rate: int = SAMPLE_RATE, what: str = "audio") -> np.ndarray:
    """Resample clips to the embedder's rate and embed them."""
    clips = [resample(w, int(sample_rate), embedder.sample_rate) for w in check_waveforms(waveforms, what)]
    emb = np.asarray(embedder.embed(clips), np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(clips):
        raise CadenzaError(f"embedder '{embedder.name}' returned shape {emb.shape} for {len(clips)} clips", "embed() must return (clips, dims)")
    return emb


def fad(
    reference: Sequence[np.ndarray],
    generated: Sequence[np.ndarray],
    embedder: str | AudioEmbedder = "default",
    sample_rate: int = SAMPLE_RATE,
    with_inf: bool = False,
    seed: int = 0,
) -> FADResult:
    """FAD between a reference and a generated set of mono clips (lists of waveforms)."""
    emb = get_embedder(embedder)
    ref = embed_audio(reference, emb, sample_rate, "reference")
    gen = embed_audio(generated, emb, sample_rate, "generated")
    result = fad_from_embeddings(ref, gen, emb.name, with_inf=with_inf, seed=seed)
    if not math.isfinite(result.fad):
        raise CadenzaError("FAD came out non-finite", "check the clips for silence-only or damaged audio")
    return result
