"""The user-facing ``Cadenza`` API and ``cadenza generate``, end to end with a tiny debug model."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cadenza import Cadenza
from cadenza.audio import SAMPLE_RATE, frames_for_duration
from cadenza.checkpoint import save_model_folder
from cadenza.cli import main
from cadenza.config import load_config
from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError
from cadenza.eval.adherence import control_adherence
from cadenza.generators import build_generator

FAST = {"steps": 2}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():  # an untrained net outputs exactly zero; give it some life
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    folder = tmp_path_factory.mktemp("debug_model")
    save_model_folder(folder, net.state_dict(), cfg)
    return folder


@pytest.fixture(scope="module")
def gen(model_dir):
    return Cadenza.load(model_dir)


def test_generate_shapes_and_info(gen):
    wave, sr = gen.generate("calm piano", duration=1.0, seed=3, **FAST)
    assert sr == SAMPLE_RATE == 22050 and wave.shape == (SAMPLE_RATE,) and wave.dtype == np.float32
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 0.99 + 1e-6
    info = gen.last_info
    assert info["seed"] == 3 and info["steps"] == 2 and info["prompt"] == "calm piano"
    assert info["model_id"].startswith("cadenza-generator-debug@") and info["vocoder"] == "griffin-lim"
    assert not any(c["given"] for c in info["controls"].values())


def test_seeds_reproducible(gen):
    a, _ = gen.generate("calm piano", duration=0.5, seed=1, **FAST)
    b, _ = gen.generate("calm piano", duration=0.5, seed=1, **FAST)
    c, _ = gen.generate("calm piano", duration=0.5, seed=2, **FAST)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    batch, _ = gen.generate("calm piano", duration=0.5, seed=[1, 2], **FAST)
    assert batch.shape == (2, a.shape[0])


def test_controls_fitted_and_partial(gen):
    # a note string longer than the clip is cropped; a rest leaves the melody free there
    gen.generate("x", melody="C4:0.5 R:0.5 E4:8", bpm=120, dynamics="crescendo", duration=1.0, **FAST)
    c = gen.last_info["controls"]
    assert c["melody"]["given"] and 0.3 < c["melody"]["coverage"] < 0.8
    assert c["dynamics"]["coverage"] == 1.0 and c["rhythm"]["source"].startswith("bpm 120")
    assert gen.last_controls.n_frames == frames_for_duration(1.0)


def test_wrong_length_or_range_is_a_clear_error(gen):
    n = frames_for_duration(1.0)
    with pytest.raises(CadenzaError, match="frames"):
        gen.generate("x", dynamics=np.full(n + 5, -20.0), duration=1.0, **FAST)
    with pytest.raises(CadenzaError, match="dynamics out of range"):
        gen.generate("x", dynamics=np.full(n, 40.0), duration=1.0, **FAST)
    with pytest.raises(CadenzaError, match="rhythm"):
        gen.generate("x", rhythm=np.full((n, 2), 3.0), duration=1.0, **FAST)
    with pytest.raises(CadenzaError, match="pitch classes"):
        gen.generate("x", melody=np.full(n, 14), duration=1.0, **FAST)
    with pytest.raises(CadenzaError, match="duration"):
        gen.generate("x", duration=-1)
    with pytest.raises(CadenzaError, match="cfg"):
        gen.generate("x", cfg=float("nan"))


def test_no_shipped_model_message(monkeypatch, tmp_path):
    import cadenza.generators.model as model

    monkeypatch.setattr(model, "WEIGHTS_DIR", tmp_path / "none")
    with pytest.raises(CadenzaError) as err:
        Cadenza.load()
    assert "no shipped generator" in err.value.message and "cadenza train generator" in err.value.hint


def test_generate_extract_compare(gen):
    wave, sr = gen.generate("folk tune", melody="C4:1 E4:1 G4:1 C5:1", dynamics="swell", bpm=120, duration=2.0, seed=0, **FAST)
    extracted = gen.extract_controls(wave, sr)
    asked = gen.last_controls
    assert extracted.n_frames == asked.n_frames
    scores = control_adherence(asked, extracted)
    assert set(scores) == {"melody_acc", "dynamics_r", "beat_f1", "downbeat_f1"}
    assert 0 <= scores["melody_acc"] <= 1 and -1 <= scores["dynamics_r"] <= 1 and 0 <= scores["beat_f1"] <= 1
    # and the extracted controls can drive a new generation
    again, _ = gen.generate("folk tune", controls=extracted, **FAST)
    assert again.shape == ((extracted.n_frames - 1) * 256,)  # the ControlSet's length


def test_continue_keeps_the_given_clip(gen):
    clip = (0.3 * np.sin(2 * np.pi * 330 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    out, sr = gen.continue_audio(clip, "more of the same", duration=1.5, **FAST)
    assert out.shape == (int(1.5 * SAMPLE_RATE),)
    np.testing.assert_allclose(out[: SAMPLE_RATE - 4096], clip[: SAMPLE_RATE - 4096], atol=1e-6)
    assert gen.last_info["task"] == "continue"
    with pytest.raises(CadenzaError, match="total duration"):
        gen.continue_audio(clip, "x", duration=0.5)


def test_inpaint_changes_only_the_span(gen):
    clip = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    out, _ = gen.inpaint(clip, 0.4, 0.6, "x", **FAST)
    assert out.shape == clip.shape
    keep = np.r_[0 : int(0.3 * SAMPLE_RATE), int(0.7 * SAMPLE_RATE) : SAMPLE_RATE]
    np.testing.assert_allclose(out[keep], clip[keep], atol=1e-6)
    assert not np.allclose(out[int(0.45 * SAMPLE_RATE) : int(0.55 * SAMPLE_RATE)], clip[int(0.45 * SAMPLE_RATE) : int(0.55 * SAMPLE_RATE)])
    with pytest.raises(CadenzaError, match="inpainting span"):
        gen.inpaint(clip, 0.8, 2.0, "x")


def test_long_output_uses_windows(gen):
    # the debug config's window is 4 s: 9 s needs three windows joined by inpainting
    wave, _ = gen.generate("x", duration=9.0, steps=1)
    assert wave.shape == (9 * SAMPLE_RATE,) and np.isfinite(wave).all()


def test_cli_generate_writes_wav_and_json(model_dir, tmp_path):
    out = tmp_path / "song.wav"
    rc = main([
        "generate", "calm piano", "--out", str(out), "--model", str(model_dir), "--duration", "1", "--seed", "7",
        "--steps", "2", "--cfg", "2.5", "--melody", "C4:1 D4:1", "--bpm", "100", "--dynamics", "decrescendo",
    ])
    assert rc == 0
    audio, sr = sf.read(out)
    assert sr == 22050 and len(audio) == 22050
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["prompt"] == "calm piano" and info["seed"] == 7 and info["steps"] == 2 and info["cfg"] == 2.5
    assert info["controls"]["melody"]["given"] and info["controls"]["rhythm"]["given"]
    assert "model_id" in info and info["timings"]["total_s"] > 0


def test_cli_controls_from_and_continue(model_dir, tmp_path):
    ref = tmp_path / "ref.wav"
    t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(ref, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SAMPLE_RATE)
    out = tmp_path / "follow.wav"
    assert main(["generate", "x", "--out", str(out), "--model", str(model_dir), "--steps", "1", "--controls-from", str(ref), "--use", "melody,dynamics"]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["controls_from"]["use"] == ["melody", "dynamics"] and not info["controls"]["rhythm"]["given"]
    assert abs(info["duration_s"] - 1.2) < 0.02  # defaults to the reference's length
    cont = tmp_path / "cont.wav"
    assert main(["generate", "x", "--out", str(cont), "--model", str(model_dir), "--steps", "1", "--continue", str(ref), "--duration", "2"]) == 0
    assert abs(sf.info(cont).duration - 2.0) < 1e-3


def test_cli_errors_are_one_line(model_dir, tmp_path, capsys):
    assert main(["generate", "x", "--out", str(tmp_path / "a.txt"), "--model", str(model_dir)]) == 2
    assert "unsupported output format" in " ".join(capsys.readouterr().err.split())
    assert main(["generate", "x", "--out", str(tmp_path / "a.wav"), "--model", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in " ".join(capsys.readouterr().err.split())


def _same_scores(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and np.isnan(a[k]) and np.isnan(b[k])) or a[k] == b[k] for k in a
    )


def test_evaluate_is_the_eval_metric(gen):
    from cadenza.eval.adherence import score_clip

    wave, sr = gen.generate("folk tune", melody="C4:1 E4:1 G4:1 C5:1", dynamics="swell", bpm=120, duration=2.0, **FAST)
    asked = gen.last_controls
    scores = gen.evaluate(wave, sr, asked, rhythm_tracker="dsp")
    assert _same_scores(scores, score_clip(asked, wave, sr, rhythm_tracker="dsp"))
    assert {"melody_accuracy", "dynamics_r", "beat_f1", "downbeat_f1"} <= scores.keys()
    # torch in, and the creator inputs generate takes (fitted to the audio's length) give the same
    assert _same_scores(gen.evaluate(torch.from_numpy(wave), sr, asked, rhythm_tracker="dsp"), scores)
    again = gen.evaluate(wave, sr, melody="C4:1 E4:1 G4:1 C5:1", dynamics="swell", bpm=120, rhythm_tracker="dsp")
    assert _same_scores(again, scores)


def test_evaluate_tells_right_from_wrong(gen):
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    c5 = (0.3 * np.sin(2 * np.pi * 523.25 * t)).astype(np.float32)
    right = gen.evaluate(c5, SAMPLE_RATE, melody="C5:8", bpm=120)
    wrong = gen.evaluate(c5, SAMPLE_RATE, melody="F#5:8", bpm=120)
    assert right["melody_accuracy"] > 0.9 and wrong["melody_accuracy"] < 0.1
    at_44k = gen.evaluate(torch.from_numpy(np.repeat(c5, 2)), 44100, melody="C5:8", bpm=120)  # resampled first
    assert at_44k["melody_accuracy"] > 0.9 and abs(at_44k["n_frames"] - right["n_frames"]) <= 1


def test_evaluate_errors(gen):
    wave = np.zeros(SAMPLE_RATE, np.float32)
    with pytest.raises(CadenzaError, match="no controls"):
        gen.evaluate(wave, SAMPLE_RATE)
    longer = ControlSet.empty(frames_for_duration(3.0)).with_control("dynamics", gen.extract_controls(np.ones(3 * SAMPLE_RATE, np.float32) * 0.1))
    with pytest.raises(CadenzaError, match="frames"):
        gen.evaluate(wave, SAMPLE_RATE, longer)
    with pytest.raises(CadenzaError, match="pitch classes"):
        gen.evaluate(wave, SAMPLE_RATE, melody=np.full(frames_for_duration(1.0), 14))


def test_control_guidance_through_the_api_and_cli(gen, model_dir, tmp_path, capsys):
    common = dict(melody="C4:0.5 E4:0.5", dynamics="crescendo", bpm=120, duration=1.0, seed=4, **FAST)
    off, _ = gen.generate("calm piano", control_cfg=0, **common)
    default, _ = gen.generate("calm piano", **common)  # the debug config sets no control_cfg: off
    assert np.array_equal(off, default) and gen.last_info["control_cfg"] == 0.0
    on, _ = gen.generate("calm piano", control_cfg="melody=3,rhythm=1", **common)
    assert gen.last_info["control_cfg"] == {"melody": 3.0, "rhythm": 1.0} and not np.allclose(on, off)
    again, _ = gen.generate("calm piano", control_cfg={"melody": 3, "rhythm": 1}, **common)
    assert np.array_equal(on, again)
    clip = np.zeros(SAMPLE_RATE, np.float32)
    gen.continue_audio(clip, "x", duration=1.5, control_cfg=2, bpm=90, steps=1)
    assert gen.last_info["control_cfg"] == 2.0
    gen.inpaint(clip, 0.2, 0.6, "x", control_cfg=2, bpm=90, steps=1)
    assert gen.last_info["control_cfg"] == 2.0
    with pytest.raises(CadenzaError, match="control_cfg"):
        gen.generate("x", control_cfg="tempo=2", **common)
    out = tmp_path / "g.wav"
    assert main(["generate", "x", "--out", str(out), "--model", str(model_dir), "--steps", "1", "--duration", "1", "--bpm", "90", "--control-cfg", "2.5"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["control_cfg"] == 2.5
    assert "control cfg 2.5" in " ".join(capsys.readouterr().err.split())
    assert main(["generate", "x", "--out", str(out), "--model", str(model_dir), "--control-cfg", "much"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "control_cfg" in err and "Traceback" not in err
