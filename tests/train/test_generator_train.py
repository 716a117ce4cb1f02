"""Generator training: the loss falls on a fixed batch, train_generator is the runner and resumes, the CLI trains."""

import json

import pytest
import torch

from cadenza.cli import main
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.generators import load_generator
from cadenza.train.generator import GeneratorModule, SyntheticClips, collate, train_generator


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config("generator", "debug", ["data.frames=32", "data.synthetic_clips=8", "train.checkpoint_minutes=100"])


def _eval_loss(module: GeneratorModule, batch: dict) -> float:
    module.generator.manual_seed(123)  # the same timesteps, noise, masks and text dropout every time
    with torch.no_grad():
        return float(module.loss_on(batch))


@pytest.fixture
def one_thread():
    """One torch thread: two OpenMP threads on a busy 2-core machine make this test several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_few_steps_reduce_loss_on_a_fixed_batch(config, one_thread):
    torch.manual_seed(0)
    module = GeneratorModule(config)
    batch = collate([SyntheticClips(4, 32, seed=3)[i] for i in range(4)])
    opt = torch.optim.Adam(module.net.parameters(), lr=2e-3)
    before = _eval_loss(module, batch)
    for _ in range(15):
        opt.zero_grad()
        module.generator.manual_seed(123)  # fixed batch: same clips, timesteps, noise and masks each step
        module.loss_on(batch).backward()
        opt.step()
    after = _eval_loss(module, batch)
    assert after < 0.7 * before, (before, after)


def test_synthetic_clips_are_consistent():
    item = SyntheticClips(2, 40, seed=0)[1]
    assert item["mel"].shape == (128, 40) and item["melody"].shape == (40, 12) and item["rhythm"].shape == (40, 2)
    assert torch.all(item["melody"].sum(1) == 1) and item["rhythm"][0, 0] == 1  # a beat on the first onset
    again = SyntheticClips(2, 40, seed=0)[1]
    assert torch.equal(item["mel"], again["mel"]) and item["caption"] == again["caption"]


def test_train_generator_is_the_runner_and_resumes(config, tmp_path):
    cfg = {**config, "train": {**config["train"], "max_steps": 4, "log_every": 2, "ema_decay": 0.9}}
    folder = train_generator(cfg, tmp_path)
    ckpt = tmp_path / "checkpoints" / "step-000000004"
    assert json.loads((ckpt / "state.json").read_text())["progress"]["step"] == 4 and (ckpt / "COMPLETE").exists()
    net, saved, _ = load_generator(folder)
    assert saved["trained"]["steps"] == 4 and saved["model"] == cfg["model"]
    assert torch.count_nonzero(net.mel_mean) > 0  # a fresh run fits the mel statistics before training
    with pytest.raises(CadenzaError, match="--resume"):
        train_generator(cfg, tmp_path)
    cfg["train"]["max_steps"] = 6
    train_generator(cfg, tmp_path, resume=True)
    assert json.loads((tmp_path / "run.json").read_text())["start_step"] == 4
    lines = [x for x in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "loss" in x]  # not the val_ lines
    assert [x["step"] for x in lines] == [2, 4, 6]


def test_base_only_phase_then_adapter_copy(config):
    cfg = {**config, "train": {**config["train"], "base_only_steps": 2}}
    module = GeneratorModule(cfg)
    batch = collate([SyntheticClips(2, 32, seed=3)[i] for i in range(2)])
    phases = []
    for _ in range(3):
        module.training_step(batch, 0)
        phases.append(module.last_phase)
        module.step_count += 1  # what the runner's after_step does
    assert phases == ["base", "base", "joint"]
    adapter, encoder = module.net.adapter.encoder.state_dict(), module.net.base.encoder.state_dict()
    assert all(torch.equal(adapter[k], encoder[k]) for k in encoder)  # at the switch the adapter became a copy


def test_cli_train_generator(tmp_path, capsys):
    rc = main(["train", "generator", "debug", "train.max_steps=2", "data.frames=32", "data.synthetic_clips=4", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "model" / "model.safetensors").exists() and (tmp_path / "model" / "config.json").exists()
    assert main(["train", "generator", "debug", "train.nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "no such key" in capsys.readouterr().err


def test_mel_standardisation_stats(config):
    module = GeneratorModule(config)
    data = SyntheticClips(6, 32, seed=1)
    module.fit_mel_stats(data, n_items=6)
    from cadenza.audio import normalize_log_mel

    x = torch.cat([normalize_log_mel(data[i]["mel"]).clamp(-1, 1) for i in range(6)], dim=-1)
    z = module.net.standardize(x)
    busy = module.net.mel_std > 0.05  # bins with some variation (the floor guards silent ones)
    assert torch.allclose(z.mean(-1), torch.zeros(128), atol=1e-4)
    assert torch.allclose(z.std(-1, unbiased=False)[busy], torch.ones(int(busy.sum())), atol=1e-3)
    assert torch.allclose(module.net.destandardize(z), x, atol=1e-5)
    assert torch.equal(module.ema.mel_mean, module.net.mel_mean) if module.ema is not None else True
