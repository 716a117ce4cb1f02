"""encode_corpus: a corpus encoded once into token shards (resumable), read back by TokenDataset; bad files are clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cadenza.controls.base import ControlSet
from cadenza.data.manifest import write_manifest
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.data import TokenDataset, encode_corpus

SR = 22050


def _corpus(folder: Path, n_train: int = 5, n_valid: int = 2) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_train + n_valid):
        n = SR * (1 if i % 2 else 2) // 2 * 2  # two clip lengths: batched per length
        cid = f"clip{i:02d}"
        wave = (0.1 * np.sin(2 * np.pi * (220 + 30 * i) * np.arange(n) / SR)).astype(np.float32)
        sf.write(folder / f"{cid}.flac", wave, SR)
        t = n // 256 + 1
        cs = ControlSet.empty(t)
        cs.melody[np.arange(t), i % 12] = 1
        cs.melody_mask[:], cs.dynamics[:], cs.dynamics_mask[: t // 2] = 1, -20.0 - i, 1
        cs.rhythm[::20, 0], cs.rhythm_mask[:] = 1.0, 1
        cs.save(folder / f"{cid}.npz")
        rows.append({
            "id": cid, "path": f"{cid}.flac", "duration": n / SR, "n_samples": n, "n_frames": t, "caption": f"tone {i}",
            "captions": [f"tone {i}", f"sine {i}"], "tags": [], "source": "user", "work": cid, "split": "train" if i < n_train else "valid",
            "bpm": None, "meter": None, "key": None, "programs": [], "controls": {"score": None, "extracted": f"{cid}.npz"},
        })
    write_manifest(folder, rows)
    return folder


def test_encode_read_resume_and_bad_files(toy_codec, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    out = tmp_path / "tokens"
    index = encode_corpus(corpus, toy_codec, out, shard_size=2, batch_size=2, codec_id="toy")
    assert index["codec"]["codebooks"] == 2 and index["splits"]["train"]["clips"] == 5 and len(index["splits"]["train"]["shards"]) == 3
    ds = TokenDataset(out, "train", frames=30, codebooks=2, cardinality=16, random_crop=False, random_caption=False)
    item = ds[0]
    wave, _ = sf.read(corpus / "clip00.flac", dtype="float32")
    expect = toy_codec.encode(torch.from_numpy(wave[None]))[0]
    assert torch.equal(item["codes"], expect[:, :30]) and item["caption"] == "tone 0" and item["valid"].sum() == 30
    assert item["melody"].argmax(-1).eq(0).all() and item["melody_mask"].eq(1).all()
    whole = TokenDataset(out, "train", random_crop=False)[0]  # 2 s: 87 codec frames, dynamics given on the first half
    assert whole["codes"].shape == (2, 87) and whole["dynamics"][0, 0] == -20.0
    assert whole["dynamics_mask"][:40].eq(1).all() and whole["dynamics_mask"][46:].eq(0).all()
    assert item["rhythm"][:, 0].max() == 1.0  # beats survive the pooling to the codec rate
    longer = TokenDataset(out, "valid", frames=80)
    assert longer[0]["valid"].sum() == 44 and longer[0]["codes"].shape == (2, 80) and longer[0]["codes"][:, 44:].eq(0).all()  # a short clip is padded, marked invalid

    shard = out / "train-00000.safetensors"
    stamp = shard.stat().st_mtime_ns
    encode_corpus(corpus, toy_codec, out, shard_size=2, batch_size=2, codec_id="toy")
    assert shard.stat().st_mtime_ns == stamp  # done shards are skipped

    with pytest.raises(CadenzaError, match="have 2 codebooks, the model 4"):
        TokenDataset(out, "train", codebooks=4)
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CadenzaError, match="train-00000.safetensors: unreadable token shard"):
        TokenDataset(out, "train")
    shard.unlink()  # what the hint says: delete it and encode again
    encode_corpus(corpus, toy_codec, out, shard_size=2, batch_size=2, codec_id="toy")
    assert torch.equal(TokenDataset(out, "train", random_crop=False)[0]["codes"], expect)
    (out / "train-00001.json").write_text("{not json")
    with pytest.raises(CadenzaError, match="train-00001.json: invalid JSON"):
        TokenDataset(out, "train")
    (out / "index.json").unlink()
    with pytest.raises(CadenzaError, match="no token shards"):
        TokenDataset(out, "train")


def test_codes_outside_the_codec_range_are_refused(toy_codec, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    corpus = _corpus(tmp_path, 2, 0)
    out = tmp_path / "tokens"
    encode_corpus(corpus, toy_codec, out, splits=("train",), codec_id="toy")
    path = out / "train-00000.safetensors"
    arrays = load_file(str(path))
    arrays["codes"][0, 3] = 99
    save_file(arrays, str(path))
    with pytest.raises(CadenzaError, match="codes outside 0..15"):
        TokenDataset(out, "train", random_crop=False)[0]


def test_training_from_a_corpus_encodes_it_first(toy_codec_dir: Path, tmp_path: Path) -> None:
    from cadenza.cli.train import run_training

    corpus = _corpus(tmp_path, 4, 2)
    tokens = tmp_path / "tok"
    overrides = [f"codec={toy_codec_dir}", "data.source=corpus", f"data.corpus={corpus}", f"data.tokens={tokens}",
                 "data.frames=24", "data.batch_size=2", "train.max_steps=4", "log.progress=false"]
    folder = run_training("magnet", "debug", overrides, tmp_path / "run")
    assert (tokens / "index.json").is_file() and (folder / "model.safetensors").is_file()
    logs = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any("val_loss" in row for row in logs)  # the valid split is the held-out set
