"""Fréchet Audio Distance: closed forms, zero against itself, monotone in added noise, embedder registry."""

from __future__ import annotations

import numpy as np
import pytest

from cadenza.audio import SAMPLE_RATE
from cadenza.errors import CadenzaError
from cadenza.eval.embedders import MelStatsEmbedder, embedder_names, get_embedder, register_embedder
from cadenza.eval.fad import FADResult, GaussianStats, fad, fad_from_embeddings, fad_infinity, frechet_distance

SR = SAMPLE_RATE


def tone_set(rng: np.random.Generator, n: int = 8, seconds: float = 0.5) -> list[np.ndarray]:
    """Harmonic tones of random pitch and level: a small, varied 'music' set."""
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for _ in range(n):
        f = 440 * 2 ** (rng.integers(-12, 12) / 12)
        wave = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5))
        clips.append((rng.uniform(0.05, 0.3) * wave).astype(np.float32))
    return clips


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians(rng) -> None:
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    v1, v2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    a, b = GaussianStats(mu1, np.diag(v1), 100), GaussianStats(mu2, np.diag(v2), 100)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_agrees_with_symmetric_eigen_formula(rng) -> None:
    x, y = rng.standard_normal((300, 6)), rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 1
    a, b = GaussianStats.from_embeddings(x), GaussianStats.from_embeddings(y)
    w, v = np.linalg.eigh(a.sigma)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ b.sigma @ root_a), 0, None)))
    expected = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-7)


def test_singular_covariances_stay_finite(rng) -> None:
    x, y = rng.standard_normal((4, 16)), rng.standard_normal((4, 16))  # N < D: rank-deficient
    value = fad_from_embeddings(x, y, "raw").fad
    assert np.isfinite(value) and value > 0


def test_fad_against_itself_is_zero_and_grows_with_noise(rng) -> None:
    clips = tone_set(rng)
    emb = MelStatsEmbedder()
    assert fad(clips, clips, embedder=emb).fad == pytest.approx(0.0, abs=1e-6)
    noise = [rng.standard_normal(c.size).astype(np.float32) for c in clips]
    values = [fad(clips, [c + level * z for c, z in zip(clips, noise)], embedder=emb).fad for level in (0.003, 0.01, 0.03, 0.1)]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[0] > 0


def test_result_names_embedder_and_sample_sizes(rng) -> None:
    clips = tone_set(rng, n=6)
    res = fad(clips, clips[:4], embedder="mel-stats")
    assert isinstance(res, FADResult)
    assert (res.embedder, res.n_reference, res.n_generated, res.dim) == ("mel-stats", 6, 4, 64)
    text = str(res)
    assert "mel-stats" in text and "N_ref=6" in text and "N_gen=4" in text
    assert "biased upward" in res.to_dict()["note"]


def test_fad_infinity_removes_small_sample_bias(rng) -> None:
    ref = rng.standard_normal((4000, 8))
    gen = rng.standard_normal((200, 8))  # same distribution: the true FAD is 0
    finite = fad_from_embeddings(ref, gen, "raw", with_inf=True)
    assert finite.fad > 0.01
    assert abs(finite.fad_inf) < 0.5 * finite.fad
    inf, points = fad_infinity(ref, gen)
    assert inf == pytest.approx(finite.fad_inf) and points == finite.fad_inf_points  # seeded: reproducible
    _, five = fad_infinity(ref, gen, n_points=5)
    assert [n for n, _ in five] == [50, 87, 125, 162, 200]
    assert five[0][1] > five[-1][1]  # fewer clips, more bias


def test_registry_and_custom_embedder(rng) -> None:
    assert {"mel-stats", "clap"} <= set(embedder_names())

    class Loudness:
        name = "rms"
        sample_rate = 16000

        def embed(self, waveforms):
            return np.array([[np.sqrt(np.mean(w**2)), np.abs(w).max()] for w in waveforms])

    register_embedder("rms", Loudness)
    clips = tone_set(rng, n=5)
    res = fad(clips, [0.5 * c for c in clips], embedder="rms")
    assert res.embedder == "rms" and res.dim == 2 and res.fad > 0
    assert get_embedder(Loudness()).name == "rms"


def test_mel_stats_is_deterministic_and_sees_spectral_changes(rng) -> None:
    clips = tone_set(rng, n=3)
    a, b = MelStatsEmbedder().embed(clips), MelStatsEmbedder().embed(clips)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 64)
    assert not np.allclose(a[0], MelStatsEmbedder().embed([clips[0][::2].copy()])[0])


def test_errors_are_cadenza_errors(rng) -> None:
    clips = tone_set(rng, n=3)
    with pytest.raises(CadenzaError, match="at least 2 clips"):
        fad(clips, clips[:1], embedder="mel-stats")
    with pytest.raises(CadenzaError, match="unknown audio embedder"):
        fad(clips, clips, embedder="vggish-please")
    with pytest.raises(CadenzaError, match="embedding sizes differ"):
        fad_from_embeddings(rng.standard_normal((5, 3)), rng.standard_normal((5, 4)), "raw")
    with pytest.raises(CadenzaError, match="NaN"):
        fad(clips, [clips[0], np.full(100, np.nan, np.float32)], embedder="mel-stats")
    with pytest.raises(CadenzaError, match="not an audio embedder"):
        get_embedder(object())
