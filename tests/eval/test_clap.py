"""The small CLAP model: a training step lowers the loss, retrieval metrics, save/load, FAD embedder, tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadenza.audio import SAMPLE_RATE, num_frames, save_audio
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.eval.clap import Clap, ClapEmbedder, ClapModel, load_clap, retrieval_metrics, shipped_weights_available
from cadenza.eval.fad import fad
from cadenza.train.clap import ClapModule, CropBatches, contrastive_loss, load_corpus
from cadenza.train.runner import fit_folder

SR = SAMPLE_RATE


@pytest.fixture
def debug_config() -> dict:
    return load_config("clap", "debug")


def test_training_steps_lower_the_loss_on_a_fixed_batch(debug_config) -> None:
    torch.manual_seed(0)
    module = ClapModule(debug_config, torch.randn(4, debug_config["model"]["text_dim"]))
    mel = torch.randn(4, 128, 32) - 5
    caps = torch.arange(4)
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = module.training_step((mel, caps), 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert int(module.step_count) == 25


def test_contrastive_loss_treats_equal_captions_as_positives() -> None:
    logits = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    shared = contrastive_loss(logits, torch.tensor([0, 0, 1]))  # clips 0 and 1 share a caption
    distinct = contrastive_loss(logits, torch.tensor([0, 1, 2]))
    # with equal captions the best possible loss is the targets' entropy (2 ln 2 / 3 here), reached
    # by these logits; with distinct ids the same logits are penalised for the indistinguishable pair
    floor = 2 * np.log(2) / 3
    assert float(shared) == pytest.approx(floor, abs=1e-3)
    assert float(distinct) > 0.4
    assert float(contrastive_loss(logits, torch.tensor([0, 0, 1])) - contrastive_loss(logits * 2, torch.tensor([0, 0, 1]))) == pytest.approx(0, abs=1e-3)
    assert float(distinct) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.arange(3))), rel=1e-6)


def test_retrieval_metrics_perfect_random_and_chance(rng) -> None:
    text = np.linalg.qr(rng.standard_normal((16, 16)))[0]  # 16 orthonormal captions
    clip_caption = np.repeat(np.arange(8), 2)  # 16 clips, two per caption for the first 8 captions
    perfect = retrieval_metrics(text[clip_caption], text[:8], clip_caption)
    assert perfect["t2a_r@1"] == perfect["a2t_r@1"] == 1.0
    assert perfect["a2t_r@1_chance"] == pytest.approx(1 / 8)
    assert perfect["t2a_r@1_chance"] == pytest.approx(2 / 16)  # two relevant clips among 16
    assert perfect["t2a_r@10_chance"] == pytest.approx(1 - (6 * 5) / (16 * 15))  # 1 - C(14,10)/C(16,10)
    scores = [retrieval_metrics(rng.standard_normal((16, 16)), text[:8], clip_caption)["a2t_r@1"] for _ in range(200)]
    assert abs(np.mean(scores) - 1 / 8) < 0.03


def test_save_load_round_trip_scores_and_fad_embedder(tmp_path, debug_config, rng) -> None:
    torch.manual_seed(0)
    clap = Clap(ClapModel(debug_config["model"]), name="clap-debug")
    folder = clap.save(tmp_path / "clap", {"note": "test"})
    again = Clap.load(folder)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (SR // 2, SR // 3, SR // 2)]
    np.testing.assert_allclose(clap.embed_audio(clips), again.embed_audio(clips), atol=1e-6)
    emb = again.embed_audio(clips)
    assert emb.shape == (3, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # padding in a batch does not change a clip's embedding
    np.testing.assert_allclose(again.embed_audio(clips[1:2]), emb[1:2], atol=1e-5)
    score = again.text_audio_score(clips[0], "calm piano")
    assert isinstance(score, float) and -1.0 <= score <= 1.0
    assert again.text_audio_score(clips[:2], ["a", "b"]).shape == (2,)
    res = fad(clips, clips, embedder=ClapEmbedder(again))
    assert res.embedder == "clap-debug" and res.fad == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(CadenzaError, match="prompts"):
        again.text_audio_score(clips[:2], ["only one"])
    (folder / "config.json").write_text(json.dumps({"kind": "vocoder"}))
    with pytest.raises(CadenzaError, match="not a CLAP model"):
        Clap.load(folder)


def _tiny_dataset(folder, rng, n: int = 8) -> None:
    """A manifest of short noise-band clips whose captions name the band (no feature cache)."""
    rows = []
    for i in range(n):
        band = "low" if i % 2 == 0 else "high"
        t = np.arange(SR // 2) / SR
        f = 200.0 if band == "low" else 3000.0
        audio = (0.2 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        save_audio(folder / f"clip{i}.wav", audio)
        split = "train" if i < 6 else "valid"
        rows.append({
            "id": f"clip{i}", "path": f"clip{i}.wav", "duration": 0.5, "n_samples": t.size, "n_frames": num_frames(t.size),
            "caption": f"a {band} tone", "captions": [f"a {band} tone", f"{band} sound"], "tags": [band], "source": "user",
            "work": f"w{i}", "split": split, "bpm": None, "meter": None, "key": None, "programs": [], "controls": {"extracted": None},
        })
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_tiny_training_run_writes_a_loadable_model_and_resumes(tmp_path, debug_config, rng) -> None:
    _tiny_dataset(tmp_path, rng)
    corpus = load_corpus(tmp_path, "train")
    assert len(corpus) == 6 and corpus.mels[0].shape == (128, num_frames(SR // 2))
    batch, caps = next(iter(CropBatches(corpus, {"a low tone": 0, "low sound": 1, "a high tone": 2, "high sound": 3}, 4, 32, 0.0, 0)))
    assert batch.shape == (4, 128, 32) and caps.shape == (4,)
    run = tmp_path / "run"
    folder = fit_folder("clap", "debug", [f"data.corpus={tmp_path}"], run, threads=1)
    clap = Clap.load(folder)
    assert clap.embed_audio([np.zeros(SR // 4, np.float32)]).shape == (1, 16)
    assert json.loads((folder / "config.json").read_text())["train_step"] == debug_config["train"]["max_steps"]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert any("val_t2a_r@10" in entry for entry in log)  # the valid split was scored
    folder = fit_folder("clap", "debug", [f"data.corpus={tmp_path}", "train.max_steps=7"], run, threads=1)  # resumes at step 5
    assert json.loads((run / "run.json").read_text())["start_step"] == 5
    assert json.loads((folder / "config.json").read_text())["train_step"] == 7
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000000007"


def test_default_embedder_follows_shipped_weights(tmp_path, monkeypatch, debug_config, rng) -> None:
    import cadenza.eval.clap as clap_module
    from cadenza.eval import embedders

    def reset() -> None:
        clap_module._load_cached.cache_clear()
        embedders._cached.cache_clear()

    reset()
    try:
        monkeypatch.setattr(clap_module, "WEIGHTS_DIR", tmp_path / "absent")
        assert embedders.default_embedder_name() == "mel-stats"
        with pytest.raises(CadenzaError, match="no CLAP weights"):
            clap_module.load_clap()
        Clap(ClapModel(debug_config["model"]), name="clap-debug").save(tmp_path / "shipped")
        monkeypatch.setattr(clap_module, "WEIGHTS_DIR", tmp_path / "shipped")
        assert embedders.default_embedder_name() == "clap"
        clip = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)
        assert embedders.get_embedder("default").embed([clip]).shape == (1, 16)
        assert -1.0 <= clap_module.text_audio_score(clip, "noise") <= 1.0
    finally:
        reset()


@pytest.mark.skipif(not shipped_weights_available(), reason="no shipped CLAP weights")
def test_shipped_weights_load_and_score(rng) -> None:
    clap = load_clap()
    clip = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    emb = clap.embed_audio([clip])
    assert emb.shape == (1, clap.model.config["embed_dim"]) and np.isfinite(emb).all()
    scores = clap.text_audio_score([clip, clip], ["a calm piano piece", "an energetic reel on fiddle with drums"])
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0)
