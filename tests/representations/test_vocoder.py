"""The vocoder's contracts: shapes, errors, chunked decoding, export, loading, the shipped model, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cadenza.audio import MelConfig, MelSpectrogram, load_audio, save_audio
from cadenza.checkpoint import WEIGHTS_NAME
from cadenza.cli import main as cli_main
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.representations.vocoder import (
    WEIGHTS_DIR,
    Vocoder,
    build_generator,
    export_vocoder,
    load_vocoder,
    mel_to_linear_log_map,
    save_vocoder,
)

HOP = 256


@pytest.fixture(scope="module")
def tiny() -> Vocoder:
    torch.manual_seed(0)
    config = load_config("vocoder", "tiny")
    gen = build_generator(config).eval()
    with torch.no_grad():  # random phases and residuals big enough that errors would show
        gen.head.weight.normal_(0, 0.5)
    return Vocoder(gen, config)


@pytest.fixture
def logmel(rng: np.random.Generator) -> torch.Tensor:
    t = np.arange(HOP * 120) / 22050
    audio = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2 + 0.01 * rng.standard_normal(t.size)
    return MelSpectrogram()(torch.from_numpy(audio.astype(np.float32)))


def test_shape_and_dtype_contract(tiny: Vocoder, logmel: torch.Tensor) -> None:
    T = logmel.shape[-1]
    one = tiny.decode(logmel)
    assert one.shape == (HOP * (T - 1),) and one.dtype == torch.float32
    batch = tiny.decode(torch.stack([logmel, logmel - 2.0]))
    assert batch.shape == (2, HOP * (T - 1)) and batch.dtype == torch.float32
    assert (batch[0] - one).abs().max() < 1e-4 * one.abs().max()  # items in a batch do not interact
    assert torch.isfinite(batch).all()
    assert tiny.decode(logmel.double().numpy()).dtype == torch.float32  # numpy and float64 accepted


@pytest.mark.parametrize(
    "bad, words",
    [
        (torch.zeros(64, 50), "64 mel bins"),
        (torch.zeros(50, 128), "transposed"),
        (torch.zeros(128), "(n_mels, frames)"),
        (torch.zeros(1, 1, 128, 50), "(n_mels, frames)"),
        (torch.full((128, 50), float("nan")), "NaN"),
        (torch.zeros(128, 1), "at least 2"),
        (torch.zeros(128, 50, dtype=torch.long), "real floats"),
    ],
)
def test_wrong_mel_gets_clear_error(tiny: Vocoder, bad: torch.Tensor, words: str) -> None:
    with pytest.raises(CadenzaError) as err:
        tiny.decode(bad)
    assert words in str(err.value)


@pytest.mark.parametrize("phase_mode, phase_iters, mel_iters", [("integrated", 0, 0), ("direct", 0, 0), ("locked", 0, 0), ("locked", 3, 0), ("locked", 3, 2)])
def test_chunked_equals_whole(logmel: torch.Tensor, phase_mode: str, phase_iters: int, mel_iters: int) -> None:
    torch.manual_seed(1)
    config = load_config("vocoder", "tiny")
    config["model"].update(phase_mode=phase_mode, phase_iters=phase_iters, mel_iters=mel_iters)
    gen = build_generator(config).eval()
    with torch.no_grad():
        gen.head.weight.normal_(0, 0.5)
    voc = Vocoder(gen, config)
    rf = voc.receptive_field
    # embedding + two k=7 blocks, + 3 frames per Griffin-Lim iteration and 2 for the stft's padding
    assert rf == 3 + 2 * 3 + (3 * phase_iters + 2 if phase_iters else 0)
    x = torch.cat([logmel, logmel.flip(-1), logmel], dim=-1)[None].repeat(2, 1, 1)  # 363 frames, batch 2
    whole = voc.decode(x)
    scale = whole.abs().max()
    for chunk in (64, 101):  # the running phase is carried across several chunk boundaries
        chunked = voc.decode_chunked(x, chunk_frames=chunk, overlap_frames=2 * rf)
        assert chunked.shape == whole.shape
        assert (chunked - whole).abs().max() <= 1e-5 * scale
    # too little context is no longer exact at the chunk edges: the check above can fail
    rough = voc.decode_chunked(x, chunk_frames=64, overlap_frames=2)
    assert (rough - whole).abs().max() > 1e-3 * scale
    assert torch.equal(voc.decode_chunked(x[:, :, :50], chunk_frames=64), voc.decode(x[:, :, :50]))  # short: one pass
    with pytest.raises(CadenzaError):
        voc.decode_chunked(x, chunk_frames=16, overlap_frames=16)


def test_locked_phase_sustains_any_pitch() -> None:
    """"locked" mode holds a 440 Hz tone (between the 86 Hz frame-rate multiples) from magnitude alone."""
    config = load_config("vocoder", "tiny")
    config["model"].update(phase_mode="locked", phase_iters=0)
    gen = build_generator(config).eval()
    t = np.arange(256 * 200) / 22050
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32))
    mag = MelSpectrogram().magnitude(tone[None])
    log_mag = torch.log(mag.clamp(min=1e-5))
    phase, _ = gen.locked(log_mag, torch.zeros_like(log_mag))
    wave = gen.istft(log_mag, torch.cos(phase), torch.sin(phase))[0].numpy()
    spectrum = np.abs(np.fft.rfft(wave[5000:45000] * np.hanning(40000)))
    assert abs(np.argmax(spectrum) * 22050 / 40000 - 440.0) < 2.0
    assert np.abs(wave[5000:45000]).max() > 0.4  # the lobe's bins add up: no cancellation between them


def test_integrated_phase_sustains_any_pitch() -> None:
    """A constant phase advance gives a steady sinusoid between the 86 Hz multiples of the frame rate."""
    config = load_config("vocoder", "tiny")
    gen = build_generator(config).eval()
    nb, k = gen.n_bins, 20  # bin 20 = 430.7 Hz; aim at 440 Hz, between frame-rate harmonics 430.7 and 516.8 Hz
    T = 200
    log_mag = torch.full((1, nb, T), -20.0)
    log_mag[:, k] = 0.0
    advance = torch.full((1, nb, T), 2 * math.pi * 440.0 * 256 / 22050)
    phase, _ = gen.phase(advance, torch.zeros(1, nb, T))
    wave = gen.istft(log_mag, torch.cos(phase), torch.sin(phase))[0].numpy()
    spectrum = np.abs(np.fft.rfft(wave[5000:45000] * np.hanning(40000)))
    peak_hz = np.argmax(spectrum) * 22050 / 40000
    assert abs(peak_hz - 440.0) < 2.0


def test_torchscript_export_equals_eager(tiny: Vocoder, logmel: torch.Tensor, tmp_path) -> None:
    path = export_vocoder(tmp_path, "torchscript", vocoder=tiny)
    scripted = torch.jit.load(str(path))
    x = torch.stack([logmel, logmel - 1.0])  # a batch and a length different from the trace example
    with torch.no_grad():
        assert torch.allclose(scripted(x), tiny.decode(x), atol=1e-5)
    with pytest.raises(CadenzaError):
        export_vocoder(tmp_path, "tflite", vocoder=tiny)


def test_onnx_spectrum_export_plus_istft_equals_eager(tiny: Vocoder, logmel: torch.Tensor, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = export_vocoder(tmp_path, "onnx", vocoder=tiny)
    x = torch.stack([logmel, logmel - 1.0])
    real, imag = ort.InferenceSession(str(path)).run(None, {"logmel": x.numpy()})
    spec = torch.complex(torch.from_numpy(real), torch.from_numpy(imag))
    m = tiny.mel_config
    wave = torch.istft(spec, m.n_fft, m.hop_length, m.win_length, torch.hann_window(m.win_length), center=True, length=m.hop_length * (x.shape[-1] - 1))
    eager = tiny.decode(x)
    assert (wave - eager).abs().max() <= 1e-4 * eager.abs().max()


def test_onnx_head_export_of_locked_mode_equals_eager(logmel: torch.Tensor, tmp_path) -> None:
    """"locked" mode exports the network (log-mel → log-magnitude, phase residual); from_head finishes."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(2)
    config = load_config("vocoder", "tiny")
    config["model"].update(phase_mode="locked", phase_iters=2)
    gen = build_generator(config).eval()
    with torch.no_grad():
        gen.head.weight.normal_(0, 0.5)
    voc = Vocoder(gen, config)
    path = export_vocoder(tmp_path, "onnx", vocoder=voc)
    assert path.name == "vocoder_head.onnx"
    x = torch.stack([logmel, logmel - 1.0])
    log_mag, residual = ort.InferenceSession(str(path)).run(None, {"logmel": x.numpy()})
    with torch.no_grad():
        wave = gen.from_head(torch.from_numpy(log_mag), torch.from_numpy(residual))
    eager = voc.decode(x)
    assert (wave - eager).abs().max() <= 1e-3 * eager.abs().max()


def test_mel_to_linear_map_tracks_the_spectrum(rng: np.random.Generator) -> None:
    """The magnitude skip starts at the right level and slope: per-bin mean log-magnitude within 0.25."""
    mel = MelSpectrogram()
    weights, offset = mel_to_linear_log_map(MelConfig())
    assert weights.shape == (513, 128) and torch.allclose(weights.sum(1), torch.ones(513))
    brown = torch.from_numpy((np.cumsum(rng.standard_normal(22050)) * 0.002).astype(np.float32))  # a steep slope
    true = torch.log(mel.magnitude(brown[None])[0].clamp(min=1e-5)).mean(1)
    logmel = mel(brown)
    est = (weights @ logmel + offset[:, None]).mean(1)
    assert (est - true).abs().mean() < 0.25
    assert (true - true.mean()).abs().mean() > 0.5  # a flat guess would be far off
    assert ((weights @ logmel).mean(1) - true).abs().mean() > 2.0  # and so would the map without its area offset


def test_pinv_skip_reanalyses_to_the_input_mel(rng: np.random.Generator) -> None:
    """The "pinv" skip is mel-consistent: its magnitude, pushed back through the filter bank, gives
    the input mel (where the smooth "mean" map is biased), and an unknown map name is refused."""
    mel = MelSpectrogram()
    t = np.arange(22050) / 22050
    audio = sum(0.2 / k * np.sin(2 * np.pi * 196 * k * t) for k in range(1, 8)) + 0.003 * rng.standard_normal(t.size)
    logmel = mel(torch.from_numpy(audio.astype(np.float32)))[None]
    config = load_config("vocoder", "tiny")

    def refit(skip_map: str) -> float:
        gen = build_generator({**config, "model": {**config["model"], "skip_map": skip_map}})
        back = torch.log((mel.mel_basis @ torch.exp(gen.skip_magnitude(logmel))).clamp(min=1e-5))
        return float((back - logmel).abs().mean())

    assert refit("pinv") < 0.1
    assert refit("mean") > 2 * refit("pinv")
    with pytest.raises(CadenzaError, match="skip_map"):
        build_generator({**config, "model": {**config["model"], "skip_map": "nnls"}})


def test_save_load_roundtrip_and_errors(tiny: Vocoder, logmel: torch.Tensor, tmp_path) -> None:
    folder = save_vocoder(tmp_path / "voc", tiny.generator, tiny.config)
    loaded = load_vocoder(folder, precision="fp32")
    assert not loaded.generator.training and loaded.precision == "fp32"
    assert torch.allclose(loaded.decode(logmel), tiny.decode(logmel), atol=1e-6)
    with pytest.raises(CadenzaError, match="no such model folder"):
        load_vocoder(tmp_path / "missing")
    (folder / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(CadenzaError, match="corrupt"):
        load_vocoder(folder)
    config = json.loads((folder / "config.json").read_text())
    save_vocoder(folder, tiny.generator, tiny.config)
    config["model"]["dim"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CadenzaError, match="do not match"):
        load_vocoder(folder)


def test_bf16_network_is_close_to_fp32_and_precision_is_checked(tiny: Vocoder, logmel: torch.Tensor, tmp_path) -> None:
    """bfloat16 autocast changes only the network's rounding: the predicted spectrum stays close to
    float32's, the output is float32, exports stay float32, and a wrong precision name is a clear error."""
    from cadenza.representations.vocoder import export_vocoder, resolve_precision

    folder = save_vocoder(tmp_path / "voc", tiny.generator, tiny.config)
    fp32, bf16 = load_vocoder(folder, precision="fp32"), load_vocoder(folder, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a, b = fp32.decode(logmel), bf16.decode(logmel)
    assert b.dtype == torch.float32 and b.shape == a.shape
    with torch.no_grad():  # (the fixture's random phases make waveforms incomparable sample by sample)
        mag_a, mag_b = fp32.generator.head_params(logmel[None])[0], bf16.generator.head_params(logmel[None])[0]
    assert mag_b.dtype == torch.float32 and not torch.equal(mag_a, mag_b)  # bf16 really ran
    assert (mag_a - mag_b).abs().mean() < 0.02 and (mag_a - mag_b).abs().max() < 0.2
    auto = load_vocoder(folder)
    assert auto.precision == resolve_precision("auto")
    assert resolve_precision("auto", "cuda") == "fp32"
    traced = torch.jit.load(str(export_vocoder(tmp_path / "ts", vocoder=bf16)))
    with torch.no_grad():
        assert torch.allclose(traced(logmel[None])[0], a, atol=1e-5)  # exported in float32
    assert bf16.precision == "bf16"  # and the vocoder it exported is left as it was
    with pytest.raises(CadenzaError, match="precision"):
        load_vocoder(folder, precision="fp16")


def test_mel_consistent_iterations_match_the_input_mel(logmel: torch.Tensor, tmp_path) -> None:
    """The last mel_iters iterations project onto the input mel: the output re-analyses closer to
    it than the plain refinement with the same iteration count; training's call (no log-mel) is
    the plain refinement; mel_iters outside [0, phase_iters] is a config error."""
    torch.manual_seed(2)
    config = load_config("vocoder", "tiny")
    config["model"].update(phase_mode="locked", skip_map="pinv", phase_iters=6, mel_iters=5)
    gen = build_generator(config).eval()
    mel = MelSpectrogram()
    x = logmel[None]
    with torch.no_grad():
        spectrum = gen.spectrum(x)
        plain = gen.synthesize(*spectrum)  # no log-mel: what training runs
        consistent = gen(x)

    def mel_l1(wave: torch.Tensor) -> float:
        return float((mel(wave) - x[..., : mel(wave).shape[-1]]).abs().mean())

    assert torch.equal(plain, gen.synthesize(*spectrum, logmel=x, mel_iters=0))
    assert mel_l1(consistent) < 0.8 * mel_l1(plain)
    with torch.no_grad():  # the exports carry the mel-consistent iterations (the input mel is the model's input)
        traced = torch.jit.load(str(export_vocoder(tmp_path, "torchscript", vocoder=Vocoder(gen, config))))
        assert torch.allclose(traced(x), consistent, atol=1e-5)
    for bad in (-1, 7):
        with pytest.raises(CadenzaError, match="mel_iters"):
            build_generator({**config, "model": {**config["model"], "mel_iters": bad}})


def test_griffin_lim_mel_iterations_improve_the_reanalysis(logmel: torch.Tensor) -> None:
    from cadenza.audio import griffin_lim

    mel = MelSpectrogram()
    plain = griffin_lim(logmel, n_iter=12, init="locked")
    consistent = griffin_lim(logmel, n_iter=12, init="locked", mel_iters=6)
    assert plain.shape == consistent.shape
    assert float((mel(consistent) - logmel).abs().mean()) < 0.8 * float((mel(plain) - logmel).abs().mean())
    with pytest.raises(CadenzaError, match="mel_iters"):
        griffin_lim(logmel, n_iter=4, mel_iters=-2)


# ------------------------------------------------------------------------------------ shipped model
shipped = pytest.mark.skipif(
    not (WEIGHTS_DIR / "config.json").exists(), reason="no shipped vocoder (weights ship only when they beat Griffin-Lim)"
)


@shipped
def test_shipped_folder_loads_with_canonical_mel() -> None:
    voc = load_vocoder("default")
    assert MelConfig.from_dict(voc.config["mel"]) == MelConfig()
    assert voc.mel_config == MelConfig()
    assert (WEIGHTS_DIR / WEIGHTS_NAME).stat().st_size <= 20 * 2**20
    training = voc.config["training"]
    assert training["steps"] > 0 and training["heldout_mel_l1"] < training["heldout_griffin_lim_mel_l1"]


@shipped
def test_shipped_silence_in_gives_silence_out() -> None:
    voc = load_vocoder("default")
    silent = torch.full((128, 87), math.log(1e-5))  # log-mel at the floor: digital silence
    wave = voc.decode(silent)
    assert wave.abs().max() < 1e-3  # below -60 dBFS


# ------------------------------------------------------------------------------------ CLI
def test_cli_vocode_mel_audio_and_griffin_lim(tiny: Vocoder, logmel: torch.Tensor, tmp_path) -> None:
    folder = save_vocoder(tmp_path / "voc", tiny.generator, tiny.config)
    np.save(tmp_path / "a.npy", logmel.numpy())
    assert cli_main(["vocode", str(tmp_path / "a.npy"), "--out", str(tmp_path / "a.wav"), "--model", str(folder)]) == 0
    out = load_audio(tmp_path / "a.wav")
    assert out.shape == (HOP * (logmel.shape[-1] - 1),)
    # two audio files round trip into a folder; a long input is chunked
    rng = np.random.default_rng(1)
    save_audio(tmp_path / "b.wav", (0.1 * rng.standard_normal(22050)).astype(np.float32))
    save_audio(tmp_path / "c.wav", (0.1 * rng.standard_normal(11025)).astype(np.float32))
    args = ["vocode", str(tmp_path / "b.wav"), str(tmp_path / "c.wav"), "--out", str(tmp_path / "res"), "--model", str(folder), "--chunk-frames", "40"]
    assert cli_main(args) == 0
    assert load_audio(tmp_path / "res" / "b.wav").shape == (22016,)
    assert load_audio(tmp_path / "res" / "c.wav").shape == (11008,)  # 11025 // 256 * 256
    assert cli_main(["vocode", str(tmp_path / "a.npy"), "--out", str(tmp_path / "gl.wav"), "--griffin-lim"]) == 0
    assert load_audio(tmp_path / "gl.wav").shape == out.shape


def test_cli_vocode_bad_input_is_one_line_error(tiny: Vocoder, tmp_path, capsys) -> None:
    folder = save_vocoder(tmp_path / "voc", tiny.generator, tiny.config)
    np.save(tmp_path / "bad.npy", np.zeros((80, 30), np.float32))
    assert cli_main(["vocode", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "x.wav"), "--model", str(folder)]) == 2
    assert "80 mel bins" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert cli_main(["vocode", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "x.wav"), "--model", str(tmp_path / "nope")]) == 2
    assert "no such model folder" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.wav").exists()


def test_cli_vocode_schedule_and_precision_options(tmp_path, capsys, logmel: torch.Tensor) -> None:
    """--phase-iters/--mel-iters/--precision reach the vocoder; a wrong value is an error, never a quiet Griffin-Lim."""
    config = load_config("vocoder", "tiny")
    config["model"].update(phase_mode="locked", skip_map="pinv", phase_iters=4, mel_iters=3)
    folder = save_vocoder(tmp_path / "voc", build_generator(config).eval(), config)
    np.save(tmp_path / "a.npy", logmel.numpy())
    base = ["vocode", str(tmp_path / "a.npy"), "--model", str(folder)]
    assert cli_main([*base, "--out", str(tmp_path / "fast.wav"), "--phase-iters", "2", "--mel-iters", "0", "--precision", "fp32"]) == 0
    assert "(fp32)" in capsys.readouterr().err  # the console writes to stderr
    assert cli_main([*base, "--out", str(tmp_path / "full.wav")]) == 0
    fast, full = load_audio(tmp_path / "fast.wav"), load_audio(tmp_path / "full.wav")
    assert fast.shape == full.shape and not np.allclose(fast, full)
    for bad, words in ((["--mel-iters", "9"], "mel_iters"), (["--phase-iters", "-1"], "phase_iters"), (["--precision", "fp16"], "precision")):
        assert cli_main([*base, "--out", str(tmp_path / "x.wav"), *bad]) == 2
        assert words in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.wav").exists()


def test_missing_default_vocoder_points_to_training_and_griffin_lim(tmp_path, monkeypatch) -> None:
    import cadenza.representations.vocoder as vocoder_module

    monkeypatch.setattr(vocoder_module, "WEIGHTS_DIR", tmp_path / "absent")
    with pytest.raises(CadenzaError) as err:
        load_vocoder("default")
    assert "no such model folder" in err.value.message and "--griffin-lim" in err.value.hint


def test_frame_major_convolution_equals_conv1d() -> None:
    from cadenza.representations.vocoder import conv_frames_major

    torch.manual_seed(0)
    for conv in (torch.nn.Conv1d(8, 8, 7, padding=3, groups=8), torch.nn.Conv1d(5, 6, 7, padding=3)):
        x = torch.randn(2, 5 if conv.groups == 1 else 8, 30)
        assert torch.allclose(conv_frames_major(x.transpose(1, 2), conv), conv(x).transpose(1, 2), atol=1e-6)


def test_bf16_twin_is_not_part_of_the_weights() -> None:
    from cadenza.representations.vocoder import VocosGenerator, GeneratorConfig

    gen = VocosGenerator(GeneratorConfig(dim=16, intermediate_dim=32, num_layers=1)).eval()
    keys = set(gen.state_dict())
    gen.bf16 = True
    assert gen.bf16 and set(gen.state_dict()) == keys and all(p.dtype == torch.float32 for p in gen.parameters())
    mel = torch.randn(1, 128, 20) - 4
    with torch.inference_mode():
        fast = gen.head_params(mel)[0]
        gen.bf16 = False
        exact = gen.head_params(mel)[0]
    assert not gen.bf16 and torch.allclose(fast, exact, atol=0.1)
