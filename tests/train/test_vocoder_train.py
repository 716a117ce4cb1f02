"""Vocoder training: runner steps train G and D and validate on held-out crops, the losses learn, data loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.audio import save_audio
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.representations.discriminators import anti_wrap, phase_loss
from cadenza.train.vocoder import RandomCropDataset, VocoderModule, heldout_crops, read_manifest


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


def test_two_runner_steps_train_generator_and_discriminators_and_validate(manifest, tmp_path) -> None:
    import lightning as L
    from safetensors.torch import load_file

    from cadenza.train.runner import fit
    from cadenza.train.tasks import get_task, load_task_config

    task = get_task("vocoder")  # tiny: gan_start=1, so step 0 is warm-up and step 1 adversarial
    config = load_task_config(task, "tiny", [f"train.data={manifest}", "train.max_steps=2", "data.val_clips=1", "data.val_seconds=0.3"])
    L.seed_everything(config["train"].get("seed", 0), verbose=False)
    start = VocoderModule(config).state_dict()  # the runner seeds and builds the module the same way
    fit(task, config, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "step-000000002"
    after = load_file(str(ckpt / "model.safetensors"))
    for part in ("generator.", "mpd.", "mrd."):  # the warm-up and the GAN step both ran
        assert any(not torch.equal(start[k], after[k]) for k in start if k.startswith(part)), part
    state = json.loads((ckpt / "state.json").read_text())
    assert state["progress"]["step"] == 2 and len(state["optimizers"]) == 2  # both Adam states saved
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {"loss_d", "adv", "fm", "mel_l1"} <= set(log[0]) and all(np.isfinite(v) for v in log[0].values())
    val = [x["val_mel_l1"] for x in log if "val_mel_l1" in x]
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert val and best["metric"] == "val_mel_l1" and best["value"] == pytest.approx(val[-1], abs=1e-6)  # held-out crops from the test split (the log rounds to 6 decimals)


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


def test_validation_crops_never_come_from_training_clips(manifest) -> None:
    """``valid`` is used for choosing; a manifest without one falls back to ``test``, not to its last (train) clips."""
    test = heldout_crops(manifest, 3, 0.2, seed=0, split="test")
    valid = heldout_crops(manifest, 3, 0.2, seed=0, split="valid")
    assert test.shape[0] == 1 and torch.equal(valid, test)


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


def test_train_vocoder_script_trains_through_the_runner_and_its_tools_read_the_run(manifest, tmp_path, monkeypatch) -> None:
    import importlib.util
    import sys

    from cadenza.train.state import CheckpointManager

    spec = importlib.util.spec_from_file_location("train_vocoder", str(Path(__file__).resolve().parents[2] / "scripts" / "train_vocoder.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = tmp_path / "run"
    common = ["--manifest", str(manifest), "--run", str(run), "--val-clips", "1", "--val-seconds", "0.3"]
    for steps in (1, 2):  # the second call resumes by itself
        monkeypatch.setattr(sys, "argv", ["train_vocoder.py", "train", *common, "--config", "tiny", "--set", f"train.max_steps={steps}"])
        script.main()
    assert [p.name for p in CheckpointManager(run).folders()] == ["step-000000001", "step-000000002"]
    assert json.loads((run / "run.json").read_text())["resumed_from"].endswith("step-000000001")
    state, config, hours = script.trained_generator(run, "best")
    gen = script.build_generator(config)
    gen.load_state_dict(state)  # the best checkpoint's generator, as `ship` builds it
    assert config["training"]["steps"] in (1, 2) and hours is not None
    out = tmp_path / "examples"
    monkeypatch.setattr(sys, "argv", ["train_vocoder.py", "examples", "--manifest", str(manifest), "--model", str(run / "model"), "--out", str(out), "--clips", "1", "--seconds", "0.3"])
    script.main()
    assert sorted(p.name for p in out.iterdir()) == ["clip0_griffinlim.flac", "clip0_original.flac", "clip0_vocoder.flac"]


def test_read_manifest_per_work_keeps_that_many_clips_of_each_work(tmp_path) -> None:
    from cadenza.train.vocoder import read_manifest

    rows = [{"path": "a0.flac", "work": "a", "split": "test"}, {"path": "a1.flac", "work": "a", "split": "test"},
            {"path": "b0.flac", "work": "b", "split": "test"}, {"path": "c0.flac", "split": "test"}, {"path": "c1.flac", "split": "test"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = lambda clips: [p.name for p in clips]  # noqa: E731
    assert names(read_manifest(tmp_path / "manifest.jsonl", "test", per_work=1)) == ["a0.flac", "b0.flac", "c0.flac", "c1.flac"]
    assert len(read_manifest(tmp_path / "manifest.jsonl", "test")) == 5
