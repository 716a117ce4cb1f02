"""The RVQ codec: shapes and lengths, exact chunking, bitrate arithmetic, fewer codebooks, training,
folders and token files (random debug-size weights + the shipped vocoder: seconds, not minutes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.errors import CadenzaError
from cadenza.protocols import Representation
from cadenza.registry import load_model
from cadenza.representations.codec import Codec, load_codec
from cadenza.representations.codec.tokens import check_tokens, load_tokens, save_tokens
from cadenza.representations.vocoder import WEIGHTS_DIR as VOCODER_DIR

pytestmark = pytest.mark.skipif(not (VOCODER_DIR / "model.safetensors").exists(), reason="the codec renders with the shipped vocoder")


def _tone(seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 22050)) / 22050
    return torch.from_numpy((0.3 * np.sin(2 * np.pi * rng.uniform(200, 600) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32))


@pytest.fixture(scope="module")
def folder(debug_codec_folder: Path) -> Path:
    return debug_codec_folder


@pytest.fixture(scope="module")
def codec(folder: Path) -> Codec:
    return load_codec(folder)


def test_is_a_discrete_representation_with_its_rates(codec: Codec) -> None:
    assert isinstance(codec, Representation) and codec.discrete
    assert codec.sample_rate == 22050 and codec.frame_rate == pytest.approx(22050 / 512)
    assert (codec.codebooks, codec.cardinality) == (4, 16)


@pytest.mark.parametrize("n", [1, 511, 512, 513, 22050, 3 * 22050 + 7])
def test_round_trip_shapes(codec: Codec, n: int) -> None:
    wave = _tone(n / 22050)[:n] if n > 1 else torch.zeros(1)
    codes = codec.encode(wave)
    t = math.ceil(n / 512)
    assert codes.shape == (1, 4, t) and codes.dtype == torch.int64 and 0 <= int(codes.min()) and int(codes.max()) < 16
    out = codec.decode(codes)
    assert out.shape == (1, 512 * t) and torch.isfinite(out).all()
    assert codec.decode(codes[0], n_samples=n).shape == (n,)


def test_batch_equals_one_by_one(codec: Codec) -> None:
    waves = torch.stack([_tone(1.0, 1), _tone(1.0, 2)])
    both = codec.encode(waves)
    assert torch.equal(both[1:], codec.encode(waves[1]))


def test_chunked_equals_whole(codec: Codec) -> None:
    wave = _tone(8.0, 3)  # 345 code frames; chunks of 40 with the encoder's context
    whole = codec.encode(wave, chunk_frames=10_000)
    chunked = codec.encode(wave, chunk_frames=40)
    z_whole = codec.net.latents(wave[None])
    close = (chunked == whole).float().mean()
    assert close > 0.99, close  # a code may flip only where two codebook vectors are equidistant to float rounding
    mel_whole = codec.decode_mel(whole, chunk_frames=10_000)
    mel_chunked = codec.decode_mel(whole, chunk_frames=40)
    assert torch.allclose(mel_whole, mel_chunked, atol=1e-4), (mel_whole - mel_chunked).abs().max()
    assert z_whole.shape[1] == whole.shape[-1]
    wave_whole, wave_chunked = codec.decode(whole, chunk_frames=10_000), codec.decode(whole, chunk_frames=40)  # the vocoder streams 176-frame chunks
    assert wave_whole.shape == wave_chunked.shape and (wave_whole - wave_chunked).abs().max() < 1e-3 * max(1.0, float(wave_whole.abs().max()))


def test_bitrate_arithmetic(codec: Codec) -> None:
    per_book = 4 * 22050 / 512  # log2(16) bits × 43.07 frames/s
    assert codec.bitrate() == pytest.approx(4 * per_book) and codec.bitrate(1) == pytest.approx(per_book)
    assert codec.n_q_for_kbps(per_book * 2.5 / 1000) == 2 and codec.n_q_for_kbps(100.0) == 4
    with pytest.raises(CadenzaError, match="below one codebook"):
        codec.n_q_for_kbps(0.1)
    for bad in (0, 5, 1.5, True, "2"):
        with pytest.raises(CadenzaError, match="n_q must be an integer from 1 to 4"):
            codec.bitrate(bad)


def test_fewer_codebooks_decode_and_are_a_prefix(codec: Codec) -> None:
    wave = _tone(1.0, 4)
    full = codec.encode(wave)
    for k in (1, 2, 3):
        part = codec.encode(wave, n_q=k)
        assert torch.equal(part, full[:, :k])  # residual quantization: the first k codes do not depend on the rest
        assert codec.decode(part).shape == (1, 512 * full.shape[-1])


@pytest.mark.parametrize("bad, words", [
    (np.zeros(0, np.float32), "empty"), (np.full(100, np.nan, np.float32), "NaN"), (np.zeros((2, 2, 10), np.float32), "1-D waveform"),
    (torch.zeros(1, 2, 10), "(samples,) or (batch, samples)"), (torch.zeros(10, dtype=torch.complex64), "real samples"),
])
def test_bad_waves_are_clear_errors(codec: Codec, bad, words: str) -> None:
    with pytest.raises(CadenzaError, match=None) as err:
        codec.encode(bad)
    assert words in err.value.message


@pytest.mark.parametrize("codes, words", [
    (torch.zeros(1, 5, 3, dtype=torch.long), "n_q must be"), (torch.full((1, 2, 3), 16), "out of range"),
    (torch.zeros(1, 2, 3), "integers"), (torch.zeros(2, 0, dtype=torch.long), "empty"), (torch.zeros(3, dtype=torch.long), "shape"),
])
def test_bad_codes_are_clear_errors(codec: Codec, codes, words: str) -> None:
    with pytest.raises(CadenzaError) as err:
        codec.decode(codes)
    assert words in err.value.message


def test_debug_config_trains_and_loss_falls(tmp_path: Path) -> None:
    from cadenza.train.runner import fit
    from cadenza.train.tasks import get_task, load_task_config

    task = get_task("codec")
    cfg = load_task_config(task, "debug", ["train.max_steps=24", "data.val_clips=0", "log.every_steps=4", "checkpoint.every_steps=0", "log.progress=false"])
    folder = fit(task, cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines() if "mel_l1" in line]
    assert log[-1]["mel_l1"] < 0.8 * log[0]["mel_l1"], [r["mel_l1"] for r in log]
    exported = json.loads((folder / "config.json").read_text())
    assert (exported["kind"], exported["type"]) == ("codec", "rvq-codec") and exported["vocoder"]["model_id"].startswith("cadenza-vocoder")
    assert "discriminator" not in exported and not any(k.startswith("vocoder") for k in load_model(folder).net.state_dict())


def test_wave_phase_trains_through_the_frozen_vocoder(tmp_path: Path) -> None:
    """From ``train.wave_start`` the decoded mel is rendered by the vocoder and scored with its losses and discriminators."""
    from cadenza.train.runner import fit
    from cadenza.train.tasks import get_task, load_task_config

    task = get_task("codec")
    cfg = load_task_config(task, "debug", ["train.max_steps=3", "train.wave_start=1", "loss.adv_weight=1.0", "data.val_clips=0",
                                           "log.every_steps=1", "checkpoint.every_steps=0", "log.progress=false"])
    fit(task, cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert "adv" not in log[0] and {"adv", "fm", "loss_d", "wave_mel_l1", "mrstft"} <= set(log[-1])
    assert all(math.isfinite(v) for row in log for v in row.values())


def test_save_load_and_damaged_folders(folder: Path, codec: Codec, tmp_path: Path, capsys) -> None:
    from cadenza.cli import main

    loaded = load_model(folder)
    assert loaded.family.key == "codec/rvq-codec" and loaded.model_id.startswith("cadenza-codec-debug@")
    wave = _tone(0.5)
    assert torch.equal(loaded.model.encode(wave), codec.encode(wave))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "config.json"):
        (broken / name).write_bytes((folder / name).read_bytes())
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["models", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    (broken / "model.safetensors").write_bytes(data)
    cfg = json.loads((folder / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "vocoder": {"path": str(tmp_path / "no-vocoder")}}))
    with pytest.raises(CadenzaError, match="renders its mel with the vocoder"):
        load_codec(broken)
    (broken / "config.json").write_text(json.dumps({**cfg, "vocoder": {"path": "default", "model_id": "cadenza-vocoder-other@000000000000"}}))
    with pytest.raises(CadenzaError, match="trained with vocoder cadenza-vocoder-other"):
        load_codec(broken)


def test_token_files_round_trip_and_refuse_mismatches(codec: Codec, folder: Path, tmp_path: Path) -> None:
    wave = _tone(1.0, 5)
    codes = codec.encode(wave, n_q=3)[0]
    path = save_tokens(tmp_path / "t.safetensors", codes, codec, wave.shape[-1])
    tok = load_tokens(path)
    check_tokens(tok, codec, path)
    assert tok.n_q == 3 and tok.n_samples == wave.shape[-1] and torch.equal(tok.codes, codes)
    assert codec.decode(tok.codes, n_samples=tok.n_samples).shape == wave.shape
    import copy

    net = copy.deepcopy(codec.net)
    with torch.no_grad():
        net.encoder.proj.weight.add_(0.1)  # another encoder: another token space
    other = Codec(net, codec.vocoder, codec.config, "cadenza-codec-other@123456789abc")
    with pytest.raises(CadenzaError, match="written by codec cadenza-codec-debug"):
        check_tokens(tok, other, path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 7])
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name, words in (("cut.safetensors", "not a readable token file"), ("empty.safetensors", "not a readable token file"), ("none.safetensors", "no such token file")):
        with pytest.raises(CadenzaError, match=words):
            load_tokens(tmp_path / name)
    from cadenza.checkpoint import save_safetensors_atomic

    save_safetensors_atomic(tmp_path / "foreign.safetensors", {"codes": codes.to(torch.int16)})
    with pytest.raises(CadenzaError, match="not a Cadenza codec token file"):
        load_tokens(tmp_path / "foreign.safetensors")
    save_tokens(tmp_path / "short.safetensors", codes, codec, wave.shape[-1] * 2)
    with pytest.raises(CadenzaError, match="code frames for"):
        load_tokens(tmp_path / "short.safetensors")


def test_building_the_codec_logs_no_deprecation_warning() -> None:
    """vector-quantize-pytorch 1.34 logs one warning per codebook for the old dead-code argument: loading must stay quiet."""
    from loguru import logger

    from cadenza.representations.codec.model import CodecNet, CodecNetConfig

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        net = CodecNet(CodecNetConfig(codebooks=3, codebook_size=16, dead_code_threshold=0.02))
    finally:
        logger.remove(sink)
    assert not [line for line in lines if "deprecated" in line], lines
    assert len(net.quantizer.layers) == 3


def test_a_decoder_retrained_on_frozen_tokens_keeps_the_token_space(folder: Path, codec: Codec, tmp_path: Path) -> None:
    """train.freeze_tokens: encoder and codebooks stay bit for bit, so old codes and token files still decode; a wider decoder is allowed."""
    from cadenza.representations.codec.tokens import TokenFile
    from cadenza.train.runner import fit
    from cadenza.train.tasks import get_task, load_task_config

    task = get_task("codec")
    cfg = load_task_config(task, "debug", ["train.max_steps=6", "data.val_clips=0", "log.every_steps=1", "checkpoint.every_steps=0", "log.progress=false",
                                           f"train.init_from={folder}", "train.freeze_tokens=true", 'train.init_parts=["encoder","quantizer"]',
                                           "model.decoder_dim=24"])
    retrained = load_codec(fit(task, cfg, tmp_path / "run"))
    assert retrained.model_id != codec.model_id and retrained.token_digest == codec.token_digest
    wave = _tone(0.7, 3)
    codes = codec.encode(wave)
    assert torch.equal(retrained.encode(wave), codes)
    assert not torch.allclose(retrained.decode_mel(codes), codec.decode_mel(codes))  # the decoder did learn (and is wider)
    path = save_tokens(tmp_path / "old.safetensors", codes[0], codec, wave.shape[-1])
    check_tokens(load_tokens(path), retrained, path)  # the old codec's file is the new one's too
    foreign = TokenFile(**{**vars(load_tokens(path)), "token_digest": "000000000000"})
    with pytest.raises(CadenzaError, match="written by codec"):
        check_tokens(foreign, retrained, path)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines() if "mel_l1" in line]
    assert all(row["commit"] == 0.0 for row in log)  # the codebooks are not trained


def test_token_models_accept_a_codec_with_their_token_space_only(codec: Codec) -> None:
    from cadenza.generators.tokens.generator import check_codec

    config = {"model": {"codebooks": codec.codebooks, "cardinality": codec.cardinality},
              "codec_info": {"model_id": "cadenza-codec-old@111111111111", "token_digest": codec.token_digest}}
    check_codec(config, codec, codec.model_id, None)  # another decoder, the same tokens
    with pytest.raises(CadenzaError, match="not the ones the model was trained on"):
        check_codec({**config, "codec_info": {**config["codec_info"], "token_digest": "222222222222"}}, codec, codec.model_id, None)
    with pytest.raises(CadenzaError, match="not the ones the model was trained on"):
        check_codec({**config, "codec_info": {"model_id": "cadenza-codec-old@111111111111"}}, codec, codec.model_id, None)


@pytest.mark.parametrize("overrides, words", [
    (["train.freeze_tokens=true"], "needs the encoder and codebooks"),
    (["train.freeze_tokens=true", "train.init_from=default", 'train.init_parts=["decoder"]'], "needs the encoder and codebooks"),
    (["train.init_from=/nonexistent/codec"], "cannot read"),
    (['train.init_parts=["encoder","nose"]', "train.init_from=default"], "not a codec part"),
    (["train.init_from=default"], "do not fit this config"),  # the shipped codec's sizes are not the debug config's
])
def test_bad_init_from_is_one_clear_error(overrides: list[str], words: str, tmp_path: Path) -> None:
    from cadenza.train.codec import CodecModule
    from cadenza.train.tasks import get_task, load_task_config

    cfg = load_task_config(get_task("codec"), "debug", overrides)
    with pytest.raises(CadenzaError, match=words):
        CodecModule(cfg)


def test_the_parts_init_from_loads_decide_whether_codebooks_are_k_means_initialised() -> None:
    """k-means is skipped only when the codebooks come from the loaded codec (``loaded_parts`` is what ``prepare`` asks)."""
    from cadenza.train.codec import CODEC_PARTS, loaded_parts

    assert loaded_parts({"init_parts": ["encoder"]}) == []  # nothing is loaded without init_from
    assert loaded_parts({"init_from": "default"}) == list(CODEC_PARTS)
    assert loaded_parts({"init_from": "default", "init_parts": "encoder"}) == ["encoder"]
    assert "quantizer" not in loaded_parts({"init_from": "default", "init_parts": ["encoder", "decoder"]})
