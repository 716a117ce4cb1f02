"""Token families generate, continue and inpaint through the one pipeline, the CLI and eval's batch path.

Why: issue 19 asks that ``cadenza generate --model LM_FOLDER`` take every option the diffusion
model takes. The pipeline decodes through the generator's own ``representation`` (its codec)
at the codec's frame rate while controls stay on the mel grid; these tests fail if the pipeline
assumed mel frames (lengths, known-frame masks, windows) or reached for a vocoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cadenza.audio import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from cadenza.cli import main
from cadenza.cli.train import run_training
from cadenza.errors import CadenzaError
from cadenza.pipeline import Cadenza, nearest_frames
from cadenza.protocols import GenerationRequest


@pytest.fixture(scope="module", params=["lm", "magnet"])
def token_model(request, toy_codec_dir: Path, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"pipe-{request.param}") / "run"
    return request.param, run_training(request.param, "debug", [f"codec={toy_codec_dir}", "log.progress=false"], out)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def test_nearest_frames_is_the_identity_on_one_grid_and_maps_time_across_grids() -> None:
    assert np.array_equal(nearest_frames(50, FRAME_RATE, 50, FRAME_RATE), np.arange(50))
    idx = nearest_frames(10, FRAME_RATE / 2, 19, FRAME_RATE)  # codec frame j sits at mel frame 2j
    assert np.array_equal(idx, np.minimum(2 * np.arange(10), 18))


def test_generation_decodes_through_the_codec_at_its_frame_rate(token_model) -> None:
    method, folder = token_model
    gen = Cadenza.load(folder)
    assert gen.vocoder is None and gen.frame_rate == pytest.approx(SAMPLE_RATE / 512)
    result = gen.run(gen.request("calm flute", dynamics="crescendo:-35:20", duration=1.0, seed=[0, 1]))
    assert result.wave.shape == (2, SAMPLE_RATE) and np.isfinite(result.wave).all()
    assert result.frames.dtype == torch.long and result.frames.shape == (2, 2, gen.frames_for(1.0))
    assert result.info["n_frames"] == 1 * SAMPLE_RATE // HOP_LENGTH + 1  # controls on the mel grid
    assert result.info["controls"]["dynamics"]["source"] and result.info["vocoder"]
    again = gen.run(gen.request("calm flute", dynamics="crescendo:-35:20", duration=1.0, seed=[0, 1]))
    assert torch.equal(result.frames, again.frames)


def test_long_outputs_are_windows_joined_on_the_codec_grid(token_model) -> None:
    _, folder = token_model
    gen = Cadenza.load(folder)
    gen.config["sampling"] = {**gen.sampling, "max_window_s": 1.0, "window_overlap_s": 0.25}
    windows: list[int] = []
    inner = gen.generator.sample
    gen.generator.sample = lambda req, cond, progress=None: (windows.append(int(cond["n_frames"])), inner(req, cond, progress))[1]
    result = gen.run(gen.request("x", duration=2.5))
    assert len(windows) >= 3 and max(windows) == gen.frames_for(1.0)
    assert result.frames.shape[-1] == gen.frames_for(2.5) and result.wave.shape == (int(2.5 * SAMPLE_RATE),)


def test_continuation_keeps_the_clips_codes(token_model, clip, toy_codec) -> None:
    _, folder = token_model
    gen = Cadenza.load(folder)
    result = gen.run(gen.request("x", audio=clip, duration=2.5, seed=4))
    given = toy_codec.encode(clip)[0]
    n_known = given.shape[-1] - 2
    assert result.frames.shape[-1] == gen.frames_for(2.5)
    assert torch.equal(result.frames[0, :, :n_known], given[:, :n_known])
    assert result.wave.shape == (int(2.5 * SAMPLE_RATE),) and result.info["task"] == "continue"


def test_inpainting_is_served_by_magnet_and_refused_clearly_by_the_lm(token_model, clip, toy_codec) -> None:
    method, folder = token_model
    gen = Cadenza.load(folder)
    request = gen.request("x", audio=clip, span=(0.5, 1.0), seed=2)
    if method == "lm":
        with pytest.raises(CadenzaError):
            gen.run(request)
        return
    result = gen.run(request)
    given = toy_codec.encode(clip)[0]
    keep = torch.from_numpy(request.known_mask[nearest_frames(given.shape[-1], gen.frame_rate, len(request.known_mask), FRAME_RATE)] > 0)
    assert 0 < int(keep.sum()) < keep.numel()
    assert torch.equal(result.frames[0][:, keep], given[:, keep])
    assert result.wave.shape == clip.shape and result.info["task"] == "inpaint"


def test_eval_batches_run_through_the_token_family(token_model) -> None:
    _, folder = token_model
    gen = Cadenza.load(folder)
    reqs = [GenerationRequest("x", duration=1.0, seeds=(s,), controls={"dynamics": "crescendo:-35:20"}) for s in (0, 1)]
    batch = gen.run_batch(reqs)
    alone = gen.run(reqs[1])
    assert len(batch) == 2 and torch.equal(batch[1].frames, alone.frames)


def test_the_cli_generates_with_a_token_model_and_refuses_a_vocoder(token_model, tmp_path: Path, capsys) -> None:
    _, folder = token_model
    out = tmp_path / "x.wav"
    assert main(["generate", "soft flute", "--model", str(folder), "--duration", "1", "--dynamics", "crescendo:-35:20", "--out", str(out)]) == 0
    wave, sr = sf.read(out)
    assert sr == SAMPLE_RATE and len(wave) == SAMPLE_RATE
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["decoding"]["temperature"] > 0 and "temperature" in capsys.readouterr().err  # decoding, not diffusion steps
    assert main(["generate", "x", "--model", str(folder), "--vocoder", "griffin-lim", "--duration", "1", "--out", str(tmp_path / "y.wav")]) != 0
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_eval_runs_a_token_model_and_reports_its_decoding(token_model, tmp_path: Path) -> None:
    from cadenza.eval.cases import make_created_cases
    from cadenza.eval.run import run_eval

    method, folder = token_model
    make_created_cases(tmp_path / "created", n=1, seed=0, duration=1.0)
    run_eval([tmp_path / "created"], tmp_path / "report", model=folder, subsets="three", embedder="none", max_figures=0, rhythm_tracker="dsp")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    decoding = data["config"]["decoding"]
    assert decoding["temperature"] > 0 and (("iterations" in decoding) == (method == "magnet"))
    header = (tmp_path / "report" / "report.md").read_text().splitlines()[2]
    assert "decoding temperature" in header and "steps" not in header


def test_evals_reference_row_round_trips_through_the_shipped_codec() -> None:
    from cadenza.eval.run import vocoder_round_trip

    gen = Cadenza.load("lm")  # the shipped LM and its real codec (encode answers (1, K, T) for one clip)
    audio = (0.1 * np.sin(np.linspace(0, 2000, SAMPLE_RATE))).astype(np.float32)
    out = vocoder_round_trip(gen, audio)
    assert out.shape == audio.shape and np.isfinite(out).all() and np.abs(out).max() > 0
