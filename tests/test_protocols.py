"""The existing classes satisfy the protocols, and do what the protocols promise (real round trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE, frames_for_duration
from cadenza.controls.registry import CONTROL_NAMES, CONTROLS, control, frame_shapes
from cadenza.errors import CadenzaError
from cadenza.protocols import Control, GenerationRequest, Generator, Representation


def _tone(seconds: float = 1.0, freq: float = 440.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------------------- representation
@pytest.fixture(scope="module")
def vocoder():
    from cadenza.representations.vocoder import WEIGHTS_DIR, load_vocoder

    if not (WEIGHTS_DIR / "model.safetensors").exists():
        pytest.skip("no shipped vocoder")
    return load_vocoder("default", precision="fp32")


def test_the_vocoder_is_a_representation_and_round_trips(vocoder) -> None:
    assert isinstance(vocoder, Representation)
    assert vocoder.sample_rate == SAMPLE_RATE and vocoder.frame_rate == pytest.approx(FRAME_RATE) and vocoder.discrete is False
    wave = _tone(1.0) + _tone(1.0, 660.0, 0.05)
    frames = vocoder.encode(wave)
    assert frames.shape == (128, len(wave) // 256 + 1)
    back = vocoder.decode(frames).numpy()
    assert abs(len(back) - len(wave)) <= 256
    again = vocoder.encode(back[: len(wave)])
    n = min(frames.shape[-1], again.shape[-1]) - 4  # the last frames see the edge padding
    assert float((again[:, 2:n] - frames[:, 2:n]).abs().mean()) < 0.3  # log-mel L1 (the shipped vocoder's held-out figure is 0.07)
    batch = vocoder.encode(np.stack([wave, wave]))
    assert batch.shape == (2, *frames.shape) and torch.allclose(batch[0], frames, atol=1e-5)


# ------------------------------------------------------------------------------------- controls
def test_every_registered_control_is_a_control() -> None:
    assert CONTROL_NAMES == ("melody", "dynamics", "rhythm")
    assert frame_shapes() == {"melody": (12,), "dynamics": (), "rhythm": (2,)}
    for name in CONTROL_NAMES:
        spec = control(name)
        assert isinstance(spec, Control) and spec.name == name
    assert [control(n).dim for n in CONTROL_NAMES] == [12, 1, 2]
    with pytest.raises(CadenzaError, match="unknown control 'chords'"):
        control("chords")


def test_control_set_and_conditioning_read_the_registry() -> None:
    from cadenza.conditioning.controls import CONTROL_DIMS, controls_to_tensors
    from cadenza.controls.base import FRAME_FIELDS, ControlSet

    assert CONTROL_DIMS == {n: CONTROLS[n].dim for n in CONTROL_NAMES}
    assert FRAME_FIELDS == ("melody", "melody_mask", "dynamics", "dynamics_mask", "rhythm", "rhythm_mask")
    tensors = controls_to_tensors(ControlSet.empty(7))
    for name in CONTROL_NAMES:
        assert tensors[name].shape == (1, 7, CONTROLS[name].dim) and tensors[f"{name}_mask"].shape == (1, 7)


def test_melody_extract_render_score_round_trip() -> None:
    melody = control("melody")
    n = frames_for_duration(2.0)
    rendered = melody.render("A4:2 A4:2", n, bpm=120)  # two beats each at 120 bpm: the whole 2 s
    assert rendered.n_frames == n and rendered.given() == ["melody"]
    assert melody.mask(rendered).sum() > 0.9 * n and set(rendered.pitch_classes()[melody.mask(rendered) > 0]) == {9}
    got = melody.extract(_tone(2.0, 440.0), SAMPLE_RATE)
    assert got.given() == ["melody"]  # only this control was measured
    scores = melody.score(rendered, got)
    assert set(scores) >= {"melody_accuracy"} and all(k.startswith("melody_") for k in scores)
    assert scores["melody_accuracy"] > 0.9
    wrong = melody.score(melody.render("C4:2 C4:2", n, bpm=120), got)
    assert wrong["melody_accuracy"] < 0.1


def test_dynamics_extract_and_score() -> None:
    dynamics = control("dynamics")
    wave = _tone(2.0, 440.0, 0.1) * np.linspace(0.1, 1.0, 2 * SAMPLE_RATE, dtype=np.float32)  # a 20 dB crescendo
    got = dynamics.extract(wave, SAMPLE_RATE)
    values = dynamics.values(got)[dynamics.mask(got) > 0]
    assert values[-10] - values[10] > 12  # louder at the end
    rendered = dynamics.render("crescendo", got.n_frames)
    assert dynamics.score(rendered, got)["dynamics_r"] > 0.9
    assert dynamics.score(dynamics.render("decrescendo", got.n_frames), got)["dynamics_r"] < -0.9


def test_rhythm_renders_from_a_creator_file(tmp_path) -> None:
    from cadenza.controls.files import rhythm_from_bpm, save_csvs

    rhythm = control("rhythm")
    n = frames_for_duration(4.0)
    save_csvs(rhythm_from_bpm(120, 4, n), tmp_path)
    cs = rhythm.render(tmp_path / "rhythm.csv", n)
    assert cs.given() == ["rhythm"] and len(cs.beats) == 8
    scores = rhythm.score(cs, cs)
    assert scores["beat_f1"] == pytest.approx(1.0) and scores["downbeat_f1"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- request
def test_generation_request_checks_and_defaults() -> None:
    req = GenerationRequest("calm piano", seeds=3)
    assert req.seeds == (3,) and req.task == "generate" and req.controls == {}
    filled = req.with_defaults({"steps": 15, "cfg": 3.0, "sampler": "ddim", "duration": 6.0})
    assert (filled.steps, filled.cfg, filled.sampler, filled.duration) == (15, 3.0, "ddim", 6.0)
    assert GenerationRequest("x", steps=4).with_defaults({"steps": 15}).steps == 4
    wave = np.zeros(SAMPLE_RATE, np.float32)
    assert GenerationRequest("x", known_audio=wave).task == "continue"
    assert GenerationRequest("x", known_audio=wave, known_mask=np.array([1, 1, 0, 0])).task == "continue"
    assert GenerationRequest("x", known_audio=wave, known_mask=np.array([1, 0, 0, 1])).task == "inpaint"
    for bad in ({"seeds": ()}, {"seeds": (1.5,)}, {"duration": -1.0}, {"known_mask": np.ones(3)}):
        with pytest.raises(CadenzaError):
            GenerationRequest("x", **bad)
    with pytest.raises(CadenzaError):
        GenerationRequest(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- generator
def test_the_controlnet_adapter_is_a_generator_and_samples_what_the_pipeline_samples(tmp_path) -> None:
    from cadenza.checkpoint import save_model_folder
    from cadenza.conditioning.controls import controls_to_tensors
    from cadenza.config import load_config
    from cadenza.controls.files import rhythm_from_bpm
    from cadenza.generators import build_generator
    from cadenza.generators.adapter import ControlNetGenerator
    from cadenza.pipeline import Cadenza

    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():  # an untrained net outputs exactly zero; give it some life
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    gen = Cadenza.load(save_model_folder(tmp_path / "m", net.state_dict(), cfg))
    adapter = ControlNetGenerator(gen.net, gen.config)
    assert isinstance(adapter, Generator)
    n = frames_for_duration(1.0)
    cs = rhythm_from_bpm(120, 4, n).fit_length(n)
    request = GenerationRequest("calm piano", seeds=(0, 1), steps=2, cfg=3.0, sampler="ddim")
    calls: list[tuple[int, int]] = []
    conditions = {"text": gen.text_encoder.encode([request.prompt]), "controls": controls_to_tensors(cs), "n_frames": n}
    mine = adapter.sample(request, conditions, lambda done, total: calls.append((done, total)))
    theirs = gen.run(GenerationRequest("calm piano", duration=1.0, seeds=(0, 1), steps=2, cfg=3.0, sampler="ddim", control_set=cs, control_cfg=0)).frames
    assert mine.shape == (2, gen.net.n_mels, n) and torch.equal(mine, theirs)
    assert calls[-1] == (2, 2)
