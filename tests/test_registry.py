"""One loader for every model folder, a family registered from outside the package, and the
CLI's ``cadenza models``.

The toy family here is the worked example of docs/architecture.md: a new family is a builder
with ``@register_family``; from then on ``save_model`` / ``load_model`` / ``cadenza models``
serve it without a line of loader code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cadenza import registry
from cadenza.checkpoint import CONFIG_NAME, WEIGHTS_NAME, weights_digest
from cadenza.cli import main
from cadenza.errors import CadenzaError
from cadenza.registry import get_family, load_model, register_family, save_model, shipped_models, unregister_family


# ------------------------------------------------------------------------------------- the toy family
class ToyNet(nn.Module):
    """Frames → frames: a 1×1 convolution, enough to have weights that must fit a config."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ToyModel:
    """What a family hands its users: the network plus whatever inference needs."""

    def __init__(self, net: ToyNet, config: dict) -> None:
        self.net, self.gain = net, float(config.get("gain", 1.0))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * self.net(x)


@pytest.fixture
def toy_family():
    @register_family(kind="toy", type="toy-conv", title="toy model", wrap=lambda net, config, folder: ToyModel(net, config),
                     recognise=lambda config: "toy_channels" in config.get("model", {}), about="a 1x1 conv, for the tests")
    def build_toy(config: dict) -> ToyNet:
        """A toy network from its config."""
        return ToyNet(int(config["model"]["toy_channels"]))

    yield get_family("toy", "toy-conv")
    unregister_family("toy", "toy-conv")


@pytest.fixture
def toy_folder(toy_family, tmp_path) -> Path:
    torch.manual_seed(0)
    config = {"name": "tiny", "model": {"toy_channels": 4}, "gain": 2.0}
    return save_model(tmp_path / "toy", ToyNet(4), config, kind="toy")


def test_toy_family_saves_loads_and_runs(toy_folder: Path) -> None:
    config = json.loads((toy_folder / CONFIG_NAME).read_text())
    assert (config["kind"], config["type"]) == ("toy", "toy-conv")  # the folder names its family
    loaded = load_model(toy_folder)
    assert isinstance(loaded.model, ToyModel) and loaded.kind == "toy" and loaded.type == "toy-conv"
    assert not loaded.net.training and not any(p.requires_grad for p in loaded.net.parameters())
    x = torch.randn(1, 4, 5)
    torch.manual_seed(0)
    expected = 2.0 * ToyNet(4)(x)  # the same seeded init the folder was saved from
    assert torch.allclose(loaded.model(x), expected, atol=1e-6)
    assert loaded.model_id == f"cadenza-toy-tiny@{weights_digest(toy_folder)}"


def test_toy_family_is_listed_and_checked_by_the_cli(toy_folder: Path, capsys) -> None:
    assert main(["models"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "toy" in out and "toy-conv" in out and "test_registry" in out
    assert main(["models", str(toy_folder)]) == 0
    out = capsys.readouterr().out
    assert f"toy/toy-conv cadenza-toy-tiny@{weights_digest(toy_folder)}" in out


def test_a_config_without_kind_is_recognised_by_its_contents(toy_folder: Path) -> None:
    config = json.loads((toy_folder / CONFIG_NAME).read_text())
    (toy_folder / CONFIG_NAME).write_text(json.dumps({k: v for k, v in config.items() if k not in ("kind", "type")}))
    assert load_model(toy_folder).family.key == "toy/toy-conv"
    (toy_folder / CONFIG_NAME).write_text(json.dumps({"model": {"width": 3}}))
    with pytest.raises(CadenzaError, match="names no 'kind' and matches no known model family"):
        load_model(toy_folder)


# ------------------------------------------------------------------------------------- damaged folders
def _damage(folder: Path, how: str) -> None:
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if how == "truncated weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "bad JSON":
        config.write_text(config.read_text()[:-10])
    elif how == "wrong kind":
        config.write_text(json.dumps({**json.loads(config.read_text()), "kind": "vocoder", "type": "vocos-mel"}))
    elif how == "unknown kind":
        config.write_text(json.dumps({**json.loads(config.read_text()), "kind": "spaceship"}))
    elif how == "missing weights":
        weights.unlink()
    elif how == "missing config":
        config.unlink()
    elif how == "weights of another shape":
        cfg = json.loads(config.read_text())
        cfg["model"]["toy_channels"] = 6
        config.write_text(json.dumps(cfg))
    else:
        raise AssertionError(how)


DAMAGE = ["truncated weights", "bad JSON", "wrong kind", "unknown kind", "missing weights", "missing config", "weights of another shape"]
WORDS = {
    "truncated weights": "corrupt or truncated", "bad JSON": "invalid JSON", "wrong kind": "vocoder config: unknown model key(s) toy_channels",
    "unknown kind": "unknown model kind 'spaceship'", "missing weights": "missing model.safetensors",
    "missing config": "missing config.json", "weights of another shape": "weights do not match",
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_folder_is_one_error_line_in_the_cli(toy_folder: Path, how: str, capsys) -> None:
    _damage(toy_folder, how)
    with pytest.raises(CadenzaError):
        load_model(toy_folder)
    assert main(["models", str(toy_folder)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("error:")]) == 1 and "Traceback" not in err
    assert WORDS[how] in " ".join(err.split())


def test_a_folder_of_another_kind_is_refused_by_each_loader(toy_folder: Path) -> None:
    """Every family's own loader goes through the one check: a toy folder is nobody else's model."""
    from cadenza.controls.beat_tracker import NeuralBeatTracker
    from cadenza.eval.clap import Clap
    from cadenza.generators.model import load_generator
    from cadenza.representations.vocoder import load_vocoder

    for load, title in ((load_generator, "generator"), (load_vocoder, "vocoder"), (NeuralBeatTracker.load, "beat tracker"), (Clap.load, "CLAP")):
        with pytest.raises(CadenzaError, match=f"not a {title} model folder"):
            load(toy_folder)


# ------------------------------------------------------------------------------------- shipped models
SHIPPED = {m.family.key: m for m in shipped_models()}
EXPECTED_TYPE = {
    "generator/music-controlnet": "ControlNetGenerator", "generator/token-lm": "TokenLMGenerator",
    "generator/magnet": "MagnetGenerator", "vocoder/vocos-mel": "Vocoder", "codec/rvq-codec": "Codec",
    "beats/beat-tcn": "NeuralBeatTracker", "clap/clap-cnn": "Clap", "instruments/instrument-cnn": "InstrumentClassifier",
}


@pytest.mark.parametrize("key", sorted(EXPECTED_TYPE))
def test_every_shipped_folder_loads_through_the_one_loader(key: str) -> None:
    if key not in SHIPPED:
        pytest.skip(f"no shipped {key} in this copy")
    model = SHIPPED[key]
    config = model.config
    assert (config["kind"], config["type"]) == (model.family.kind, model.family.type)
    loaded = load_model(model.folder)
    assert loaded.family is model.family and loaded.model_id == model.model_id
    assert loaded.model_id.endswith("@" + weights_digest(model.folder))
    assert type(loaded.model).__name__ == EXPECTED_TYPE[key]


def test_every_shipped_family_is_checked_here() -> None:
    """A newly shipped family must join EXPECTED_TYPE (and so the load test above)."""
    assert set(SHIPPED) <= set(EXPECTED_TYPE)


def test_the_shipped_generator_id_is_the_pipelines() -> None:
    if "generator/music-controlnet" not in SHIPPED:
        pytest.skip("no shipped generator")
    from cadenza.generators.model import WEIGHTS_DIR, weights_digest as gen_digest

    config = json.loads((WEIGHTS_DIR / CONFIG_NAME).read_text())
    assert SHIPPED["generator/music-controlnet"].model_id == f"{config['model_id']}@{gen_digest(WEIGHTS_DIR)}"


def test_a_shipped_folder_without_kind_still_loads_and_a_damaged_copy_is_one_error(tmp_path, capsys) -> None:
    """Users' old folders carry no kind/type (the beat tracker's said kind 'cadenza-beat-tcn')."""
    if "beats/beat-tcn" not in SHIPPED:
        pytest.skip("no shipped beat tracker")
    old = tmp_path / "old"
    shutil.copytree(SHIPPED["beats/beat-tcn"].folder, old)
    config = json.loads((old / CONFIG_NAME).read_text())
    (old / CONFIG_NAME).write_text(json.dumps({k: v for k, v in config.items() if k not in ("kind", "type")}))
    assert load_model(old).family.key == "beats/beat-tcn"
    (old / CONFIG_NAME).write_text(json.dumps({**{k: v for k, v in config.items() if k != "type"}, "kind": "cadenza-beat-tcn"}))
    assert load_model(old, kind="beats").family.key == "beats/beat-tcn"
    _damage(old, "truncated weights")
    assert main(["models", str(old)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "corrupt or truncated" in err


def test_shipped_weights_are_the_committed_bytes() -> None:
    """Only config.json gained keys: the digests are the ones recorded before the registry."""
    expected = {"generator/music-controlnet": "09b31516f742", "vocoder/vocos-mel": "9ff582d79859",
                "beats/beat-tcn": "eb52c365cbcb", "clap/clap-cnn": "d6217a57b22c", "instruments/instrument-cnn": "8184d1755955"}
    for key, digest in expected.items():
        if key in SHIPPED:
            assert weights_digest(SHIPPED[key].folder) == digest, key


# ------------------------------------------------------------------------------------- tasks
def test_every_trainable_family_has_its_task_registered_where_it_is_defined() -> None:
    from cadenza.train.tasks import TASKS, get_task

    tasks = registry.tasks()
    assert {f.task for f in registry.families() if f.task} <= set(tasks)
    assert sorted(TASKS) == sorted(tasks) and set(TASKS) >= {"generator", "vocoder", "beats", "clap"}
    for name in ("generator", "vocoder", "beats", "clap"):
        assert type(get_task(name)).__module__ == f"cadenza.train.{name}"
    with pytest.raises(CadenzaError, match="unknown model 'nope'"):
        get_task("nope")


# ------------------------------------------------------------------------------------- the docs
def test_architecture_doc_examples_run(tmp_path) -> None:
    """docs/architecture.md's Python blocks, in order (its worked example registers the toy family)."""
    import re

    doc = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {"tmp": tmp_path}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/architecture.md block {i + 1}", "exec"), namespace)
        assert main(["models"]) == 0
    finally:
        unregister_family("toy", "toy-conv")
    assert "toy/toy-conv" not in {f.key for f in registry.families()}
