"""Vocoder training: Lightning steps run and learn, the train state round-trips without pickle, data loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadenza.audio import save_audio
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.representations.discriminators import anti_wrap, phase_loss
from cadenza.train.vocoder import RandomCropDataset, TrainStateCheckpoint, VocoderModule, make_trainer, read_manifest


@pytest.fixture
def manifest(tmp_path, rng: np.random.Generator):
    rows = []
    t = np.arange(8192) / 22050
    for i in range(3):
        audio = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.02 * rng.standard_normal(t.size)
        save_audio(tmp_path / f"c{i}.wav", audio.astype(np.float32))
        rows.append({"path": f"c{i}.wav", "split": "train" if i < 2 else "test"})
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_two_lightning_steps_change_generator_and_discriminators(manifest, tmp_path) -> None:
    torch.manual_seed(0)
    config = load_config("vocoder", "tiny")  # gan_start=1: step 0 is warm-up, step 1 is adversarial
    module = VocoderModule(config)
    gen0, mpd0, mrd0 = _params(module.generator), _params(module.mpd), _params(module.mrd)
    data = RandomCropDataset(read_manifest(manifest, "train"), config["train"]["crop_samples"], seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=config["train"]["batch_size"])
    ckpt = TrainStateCheckpoint(tmp_path / "run", every_s=1e9, log_every=0)
    make_trainer(config["train"]["max_steps"], [ckpt]).fit(module, loader)
    assert int(module.step_count) == 2
    assert any(not torch.equal(gen0[k], v) for k, v in _params(module.generator).items())
    assert any(not torch.equal(mpd0[k], v) for k, v in _params(module.mpd).items())  # the GAN step ran
    assert any(not torch.equal(mrd0[k], v) for k, v in _params(module.mrd).items())
    assert {"loss_d", "adv", "fm", "mel_l1"} <= set(module.last_log)
    assert all(np.isfinite(v) for v in module.last_log.values())

    # the train state (weights + Adam moments) was saved as safetensors + JSON and restores exactly
    meta = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert meta["step"] == 2 and len(meta["optimizers"]) == 2
    fresh = VocoderModule(config)
    opts = fresh.configure_optimizers()
    step = fresh.load_train_state(tmp_path / "run", opts)
    assert step == 2 and int(fresh.step_count) == 2
    for k, v in module.generator.state_dict().items():
        assert torch.equal(fresh.generator.state_dict()[k], v)
    first = next(iter(opts[0].state.values()))
    assert first["exp_avg"].abs().sum() > 0


def test_warmup_steps_reduce_mel_loss(manifest) -> None:
    """A few generator-only steps on one fixed batch must lower the mel L1 (the losses are wired right)."""
    torch.manual_seed(0)
    config = load_config("vocoder", "tiny", ["train.gan_start=1000000", "train.lr=0.003", "train.lr_warmup_steps=1", "train.max_steps=1000"])
    module = VocoderModule(config)
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts  # drive training_step by hand, without a Trainer
    module.manual_backward = lambda loss: loss.backward()
    data = RandomCropDataset(read_manifest(manifest, "train"), 4096, seed=0)
    batch = torch.stack([x for _, x in zip(range(2), iter(data))])
    losses = []
    for i in range(12):
        module.training_step(batch, i)
        losses.append(module.last_log["mel_l1"])
    assert losses[-1] < 0.8 * losses[0]


def test_phase_loss_ignores_constant_offset_and_sees_errors() -> None:
    rng = np.random.default_rng(0)
    phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, (1, 20, 30))).float()
    spec = torch.polar(torch.ones_like(phase), phase)
    assert phase_loss(phase + 1.234, spec) < 1e-4  # the absolute phase is free
    assert phase_loss(phase + 2 * np.pi, spec) < 1e-4  # wrapping is ignored
    assert phase_loss(phase + 0.5 * torch.randn_like(phase), spec) > 0.1
    assert torch.allclose(anti_wrap(torch.tensor([0.0, 2 * np.pi, np.pi, -3 * np.pi])), torch.tensor([0.0, 0.0, np.pi, np.pi]), atol=1e-5)


def test_manifest_and_crops(manifest, tmp_path) -> None:
    assert [p.name for p in read_manifest(manifest, "train")] == ["c0.wav", "c1.wav"]
    assert [p.name for p in read_manifest(manifest)] == ["c0.wav", "c1.wav", "c2.wav"]
    data = RandomCropDataset(read_manifest(manifest), 4096, seed=3)
    crops = [x for _, x in zip(range(5), iter(data))]
    assert all(c.shape == (4096,) and c.dtype == torch.float32 and c.abs().max() <= 0.99 for c in crops)
    with pytest.raises(CadenzaError, match="no clip of at least"):
        RandomCropDataset(read_manifest(manifest), 100_000)
    with pytest.raises(CadenzaError, match="no such manifest"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"split": "train"}\n')
    with pytest.raises(CadenzaError, match="no 'path'"):
        read_manifest(tmp_path / "bad.jsonl")
