"""``cadenza codec encode|decode``: the round trip, bitrate choice, and one error line for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cadenza.audio import load_audio, save_audio
from cadenza.cli import main
from cadenza.representations.vocoder import WEIGHTS_DIR as VOCODER_DIR

pytestmark = pytest.mark.skipif(not (VOCODER_DIR / "model.safetensors").exists(), reason="the codec renders with the shipped vocoder")


@pytest.fixture
def song(tmp_path: Path) -> Path:
    t = np.arange(int(1.3 * 44100)) / 44100
    return save_audio(tmp_path / "song.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 44100)  # another rate: resampled


def _one_error(capsys, words: str) -> None:
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "Traceback" not in err and words in err, err


def test_encode_decode_round_trip(debug_codec_folder: Path, song: Path, tmp_path: Path, capsys) -> None:
    tokens, out = tmp_path / "song.safetensors", tmp_path / "back.wav"
    assert main(["codec", "encode", str(song), "--model", str(debug_codec_folder), "--out", str(tokens), "--bitrate-kbps", "0.4"]) == 0
    assert "2 codebooks" in capsys.readouterr().err  # 0.4 kbps / 0.172 kbps per 16-entry codebook
    assert main(["codec", "decode", str(tokens), "--model", str(debug_codec_folder), "--out", str(out)]) == 0
    assert load_audio(out).shape == (int(1.3 * 22050),)


@pytest.mark.parametrize("args, words", [
    (["--n-q", "9"], "n_q must be an integer from 1 to 4"),
    (["--n-q", "2", "--bitrate-kbps", "1"], "not both"),
    (["--bitrate-kbps", "0.01"], "below one codebook"),
])
def test_encode_refuses_bad_options(debug_codec_folder: Path, song: Path, tmp_path: Path, capsys, args: list[str], words: str) -> None:
    assert main(["codec", "encode", str(song), "--model", str(debug_codec_folder), "--out", str(tmp_path / "t.safetensors"), *args]) == 2
    _one_error(capsys, words)


def test_encode_refuses_bad_audio(debug_codec_folder: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file at all")
    for name, words in (("empty.wav", "file is empty"), ("junk.wav", "cannot decode audio"), ("none.wav", "no such file")):
        assert main(["codec", "encode", str(tmp_path / name), "--model", str(debug_codec_folder), "--out", str(tmp_path / "t.safetensors")]) == 2
        _one_error(capsys, words)


def test_decode_refuses_damaged_and_foreign_tokens(debug_codec_folder: Path, song: Path, tmp_path: Path, capsys) -> None:
    tokens = tmp_path / "t.safetensors"
    assert main(["codec", "encode", str(song), "--model", str(debug_codec_folder), "--out", str(tokens)]) == 0
    capsys.readouterr()
    data = tokens.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-5])
    assert main(["codec", "decode", str(tmp_path / "cut.safetensors"), "--model", str(debug_codec_folder), "--out", str(tmp_path / "o.wav")]) == 2
    _one_error(capsys, "not a readable token file")
    from safetensors.torch import load_file, save_file

    def variant(name: str, key: str) -> Path:
        """The same network with one tensor changed: another model id."""
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_bytes((debug_codec_folder / "config.json").read_bytes())
        state = load_file(str(debug_codec_folder / "model.safetensors"))
        state[key] = state[key] + 1
        save_file(state, str(folder / "model.safetensors"))
        return folder

    # another decoder, the same encoder and codebooks: the same token space, so the file decodes
    assert main(["codec", "decode", str(tokens), "--model", str(variant("decoder", "decoder.head.bias")), "--out", str(tmp_path / "d.wav")]) == 0
    capsys.readouterr()
    assert main(["codec", "decode", str(tokens), "--model", str(variant("encoder", "encoder.proj.bias")), "--out", str(tmp_path / "o.wav")]) == 2
    _one_error(capsys, "written by codec cadenza-codec-debug@")


def test_onnx_export_matches_the_codec(debug_codec_folder: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    from cadenza.representations.codec import load_codec

    assert main(["codec", "export", "--model", str(debug_codec_folder), "--out", str(tmp_path)]) == 0
    codec = load_codec(debug_codec_folder)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(9000).astype(np.float32) * 0.1)[None]
    latents = ort.InferenceSession(str(tmp_path / "codec_encoder.onnx")).run(None, {"wave": codec.net.pad(wave).numpy()})[0]
    assert np.allclose(latents, codec.net.latents(wave).numpy(), atol=1e-4)
    codes = codec.encode(wave)[:, :3]
    mel = ort.InferenceSession(str(tmp_path / "codec_decoder.onnx")).run(None, {"codes": codes.numpy()})[0]
    assert np.allclose(mel, codec.decode_mel(codes).numpy(), atol=1e-3)
    assert np.load(tmp_path / "codebooks.npy").shape == (4, 16, 8)
