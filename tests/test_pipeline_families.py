"""A generator family registered from a test generates through the one pipeline, the CLI and eval.

Why: issue 18 asks that a new family plug in without touching pipeline code. The toy family
below is defined only here: a 1x1 conv from the dynamics control to 128 mel bands plus seeded
noise. If the pipeline reached past the ``Generator`` protocol (a ControlNet attribute, its
samplers), one of these calls would fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from cadenza.audio import SAMPLE_RATE, frames_for_duration
from cadenza.cli import main
from cadenza.errors import CadenzaError
from cadenza.pipeline import Cadenza, GenerationResult
from cadenza.protocols import GenerationRequest, Generator
from cadenza.registry import register_family, save_model, unregister_family

N_MELS = 128
TOY_CONFIG = {
    "name": "toy", "text_encoder": "hash", "vocoder": "griffin-lim", "griffin_lim_iters": 4,
    "model": {"text_dim": 32, "n_mels": N_MELS},
    "sampling": {"duration": 1.0, "steps": 3, "cfg": 1.0, "max_window_s": 1.0, "window_overlap_s": 0.25},
}


class ToyMelNet(nn.Module):
    """Dynamics (dB, one channel) → normalised mel frames."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(1, n_mels, 1)

    def forward(self, dynamics: torch.Tensor) -> torch.Tensor:
        return self.proj(dynamics)


class ToyGenerator:
    """A ``protocols.Generator`` with no diffusion: frames = tanh(conv(dynamics / 40)) + seeded noise, known frames kept."""

    def __init__(self, net: ToyMelNet) -> None:
        self.net = net
        self.calls: list[int] = []

    def sample(self, request: GenerationRequest, conditions: Mapping[str, Any], progress: Any = None) -> torch.Tensor:
        n, b = int(conditions["n_frames"]), len(request.seeds)
        dyn = conditions["controls"]["dynamics"] * conditions["controls"]["dynamics_mask"][..., None]  # (1 or B, n, 1)
        base = torch.tanh(self.net(dyn.expand(b, -1, -1).transpose(1, 2) / 40.0))
        noise = torch.stack([torch.randn(N_MELS, n, generator=g) for g in conditions["generators"]])
        x = (0.6 * base + 0.1 * noise).clamp(-1, 1)
        if "known" in conditions:
            mask = conditions["known_mask"][:, None, :]
            x = mask * conditions["known"] + (1 - mask) * x
        for step in range(int(request.steps)):
            if progress is not None:
                progress(step + 1, int(request.steps))
        self.calls.append(n)
        return x


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Iterator[Path]:
    @register_family(kind="generator", type="toy-mel", title="toy generator", about="a test family", wrap=lambda net, config, folder: ToyGenerator(net))
    def build_toy(config: dict) -> ToyMelNet:
        return ToyMelNet(int(config["model"]["n_mels"]))

    torch.manual_seed(0)
    folder = save_model(tmp_path_factory.mktemp("toy") / "model", build_toy(TOY_CONFIG), TOY_CONFIG, kind="generator", type="toy-mel")
    yield folder
    unregister_family("generator", "toy-mel")


@pytest.fixture(scope="module")
def toy(toy_dir: Path) -> Cadenza:
    return Cadenza.load(toy_dir)


def test_the_toy_family_generates_through_the_pipeline(toy: Cadenza) -> None:
    assert isinstance(toy.generator, ToyGenerator) and isinstance(toy.generator, Generator)
    assert toy.model_id.startswith("cadenza-generator-toy@")
    calls: list[tuple[int, int]] = []
    result = toy.run(GenerationRequest("calm", duration=2.5, seeds=(0, 1), controls={"dynamics": "crescendo"}), lambda d, t: calls.append((d, t)))
    assert isinstance(result, GenerationResult) and result.wave.shape == (2, int(round(2.5 * SAMPLE_RATE)))
    assert result.sample_rate == SAMPLE_RATE and np.isfinite(result.wave).all() and not np.allclose(result.wave[0], result.wave[1])
    n = frames_for_duration(2.5)
    assert result.frames.shape == (2, N_MELS, n) and result.controls.n_frames == n
    # 1 s windows overlapping by 0.25 s: three windows, progress counted over all of them
    assert len(toy.generator.calls[-3:]) == 3 and calls[-1] == (9, 9)
    info = result.info
    assert info["task"] == "generate" and info["steps"] == 3 and info["sampler"] == "default" and info["vocoder"] == "griffin-lim"
    assert info["controls"]["dynamics"]["given"] and info["model_id"] == toy.model_id
    assert toy.last_info == {}  # run() stores nothing on the pipeline
    # the same request gives the same audio; the controls reach the toy generator
    again = toy.run(GenerationRequest("calm", duration=2.5, seeds=(0, 1), controls={"dynamics": "crescendo"}))
    other = toy.run(GenerationRequest("calm", duration=2.5, seeds=(0, 1), controls={"dynamics": "decrescendo"}))
    assert np.array_equal(result.wave, again.wave) and not np.allclose(result.frames, other.frames)


def test_the_toy_family_continues_and_inpaints_through_the_one_known_mask_path(toy: Cadenza) -> None:
    clip, _ = toy.generate("x", duration=1.0, seed=2)
    longer, sr = toy.continue_audio(clip, "more", duration=2.0, seed=3)
    assert longer.shape == (2 * sr,) and toy.last_info["task"] == "continue"
    np.testing.assert_allclose(longer[: sr // 2], clip[: sr // 2], atol=1e-6)  # the clip is kept, away from the seam
    fixed, _ = toy.inpaint(longer, 0.5, 1.0, "fix", seed=1)
    assert fixed.shape == longer.shape and toy.last_info["task"] == "inpaint" and toy.last_info["span_s"] == [0.5, 1.0]
    np.testing.assert_allclose(fixed[int(1.3 * sr):], longer[int(1.3 * sr):], atol=1e-6)
    assert not np.allclose(fixed[int(0.6 * sr): int(0.9 * sr)], longer[int(0.6 * sr): int(0.9 * sr)])


def test_the_toy_family_has_no_diffusion_samplers_to_check(toy: Cadenza) -> None:
    toy.run(toy.request("x", duration=0.5, sampler="anything"))  # the toy names no samplers: any name is its business
    with pytest.raises(CadenzaError, match="sampler"):
        toy.run(GenerationRequest("x", duration=0.5, sampler=5))  # type: ignore[arg-type]
    with pytest.raises(CadenzaError, match="unknown control 'chords'"):
        toy.run(GenerationRequest("x", duration=0.5, controls={"chords": "C:4"}))


def test_the_toy_family_generates_through_the_cli(toy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "toy.wav"
    argv = ["generate", "calm", "--model", str(toy_dir), "--out", str(out), "--duration", "1.5", "--dynamics", "swell", "--seed", "4", "--quiet"]
    assert main(argv) == 0
    wave, sr = sf.read(out, dtype="float32")
    info = json.loads(out.with_suffix(".json").read_text())
    assert sr == SAMPLE_RATE and len(wave) == int(1.5 * sr) and info["model_id"].startswith("cadenza-generator-toy@")
    assert info["seed"] == 4 and info["controls"]["dynamics"]["given"] and info["output"] == str(out)


def test_the_toy_family_runs_through_eval(toy_dir: Path, tmp_path: Path) -> None:
    from cadenza.eval.cases import make_created_cases

    make_created_cases(tmp_path / "cases", n=1, seed=0, duration=1.0)
    out = tmp_path / "report"
    argv = ["eval", str(tmp_path / "cases"), "--model", str(toy_dir), "--out", str(out), "--subsets", "paper", "--embedder", "none", "--threads", "1"]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["model_id"].startswith("cadenza-generator-toy@") and data["config"]["sampler"] == "default" and data["config"]["steps"] == 3
    rows = {r["row"] for t in data["tables"].values() for r in t}
    assert "none" in rows and (out / "report.md").is_file()


def test_dynamics_guidance_is_refused_where_the_generator_cannot_apply_it(toy: Cadenza) -> None:
    """A family without the loudness correction gets 0 by default and a clear error when asked for it."""
    assert not toy.supports_dynamics_guidance
    assert toy.resolve(toy.request("a tune")).dynamics_guidance == 0.0
    assert toy.resolve(toy.request("a tune", dynamics_guidance=0)).dynamics_guidance == 0.0
    with pytest.raises(CadenzaError, match="cannot apply dynamics guidance"):
        toy.request("a tune", dynamics_guidance=0.5)


def test_downbeat_guidance_is_refused_where_the_generator_has_no_such_branch(toy: Cadenza) -> None:
    """Like dynamics guidance: 0 by default for a family without the branch, a clear error when asked for it."""
    assert toy.resolve(toy.request("a tune")).downbeat_cfg == 0.0
    with pytest.raises(CadenzaError, match="has no downbeat guidance"):
        toy.request("a tune", downbeat_cfg=3)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 1e6, "lots"])
def test_bad_downbeat_scales_are_one_clear_error(toy: Cadenza, bad) -> None:
    with pytest.raises(CadenzaError, match="downbeat_cfg"):
        toy.request("a tune", downbeat_cfg=bad)
