"""Debug token models train on the shared runner, save, load through the registry with their codec, and sample."""

import json
from pathlib import Path

import pytest
import torch

from cadenza.cli.train import run_training
from cadenza.conditioning.controls import controls_to_tensors
from cadenza.conditioning.text import HashTextEncoder
from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError
from cadenza.protocols import GenerationRequest, Generator
from cadenza.registry import load_model
from toy_codec import save_toy_codec


@pytest.fixture(scope="module", params=["lm", "magnet"])
def trained(request, toy_codec_dir: Path, tmp_path_factory) -> tuple[str, Path, Path]:
    out = tmp_path_factory.mktemp(request.param) / "run"
    folder = run_training(request.param, "debug", [f"codec={toy_codec_dir}", "log.progress=false"], out)
    return request.param, out, folder


def test_a_debug_model_trains_with_falling_loss(trained) -> None:
    method, out, folder = trained
    losses = [row["loss"] for row in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in row]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1  # from about ln(16) = 2.77
    config = json.loads((folder / "config.json").read_text())
    assert config["type"] == ("token-lm" if method == "lm" else "magnet")
    assert config["model"]["codebooks"] == 2 and config["model"]["cardinality"] == 16  # filled from the codec
    assert config["codec_info"]["frame_rate"] == pytest.approx(22050 / 512)


def test_the_saved_folder_loads_and_samples_under_the_pipeline_contract(trained, toy_codec) -> None:
    method, _, folder = trained
    loaded = load_model(folder, kind="generator")
    gen = loaded.model
    assert isinstance(gen, Generator) and loaded.model_id.startswith(f"cadenza-{method}-debug@")
    assert gen.representation.codebooks == 2 and gen.representation.cardinality == 16
    n_mel = 87  # one second on the mel grid
    cs = ControlSet.empty(n_mel)
    cs.dynamics[:], cs.dynamics_mask[:] = -20.0, 1.0
    n = gen.frames_for(1.0)
    text = HashTextEncoder(32).encode(["calm flute"])
    conditions = {"text": text, "controls": controls_to_tensors(cs), "n_frames": n}
    calls = []
    codes = gen.sample(GenerationRequest("calm flute", seeds=(0, 1)), conditions, lambda d, t: calls.append((d, t)))
    again = gen.sample(GenerationRequest("calm flute", seeds=(0, 1)), conditions)
    assert codes.shape == (2, 2, n) and torch.equal(codes, again) and calls[-1][0] == calls[-1][1]
    wave = gen.representation.decode(codes)
    assert wave.shape[0] == 2 and torch.isfinite(wave).all()
    known = toy_codec.encode(torch.randn(1, 22050) * 0.1)[..., :n]
    mask = torch.zeros(1, n)
    mask[:, :10] = 1
    cont = gen.sample(GenerationRequest("x", seeds=(3,)), {**conditions, "known": known, "known_mask": mask})
    assert torch.equal(cont[..., :10], known[..., :10])


def test_missing_or_mismatched_codecs_are_one_clear_error(trained, tmp_path: Path) -> None:
    _, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())

    def load_with(codec: str) -> None:
        (copy / "config.json").write_text(json.dumps({**config, "codec": codec}))
        load_model(copy)

    with pytest.raises(CadenzaError, match="codec 'nowhere' is missing"):
        load_with("nowhere")
    with pytest.raises(CadenzaError, match="2 codebooks of 32 codes but the model was built for 2 of 16"):
        load_with(str(save_toy_codec(tmp_path / "wide", cardinality=32)))
    with pytest.raises(CadenzaError, match="not the ones the model was trained on"):
        load_with(str(save_toy_codec(tmp_path / "other", seed=7)))
    save_toy_codec(copy / "codec")  # relative to the model folder, the same weights as trained with
    load_with("codec")


def test_a_config_whose_codec_does_not_fit_the_model_fails_before_training(toy_codec_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="model.codebooks is 4 but the codec has 2 codebooks"):
        run_training("lm", "debug", [f"codec={toy_codec_dir}", "model.codebooks=4", "log.progress=false"], tmp_path / "run")


def test_a_model_may_use_a_prefix_of_the_codecs_levels(toy_codec_family, tmp_path: Path) -> None:
    codec = save_toy_codec(tmp_path / "codec3", codebooks=3)
    folder = run_training("lm", "debug", [f"codec={codec}", "model.codebooks=2", "log.progress=false"], tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["codebooks"] == 2 and config["codec_info"]["codec_codebooks"] == 3
    gen = load_model(folder).model
    full = load_model(codec).model
    wave = torch.randn(1, 22050) * 0.1
    assert gen.representation.codebooks == 2 and torch.equal(gen.representation.encode(wave), full.encode(wave)[:, :2])
    n = gen.frames_for(0.5)
    codes = gen.sample(GenerationRequest("x", seeds=(0,)), {"text": HashTextEncoder(32).encode(["x"]), "n_frames": n})
    assert codes.shape == (1, 2, n) and gen.representation.decode(codes).shape == (1, n * 512)


def test_magnet_starts_from_an_lm_and_refuses_another_shape(trained, toy_codec_dir: Path, tmp_path: Path) -> None:
    from cadenza.config import load_config
    from cadenza.train.tokens import TokenModule, resolve_codec

    method, _, folder = trained
    if method != "lm":
        pytest.skip("the warm start goes from the LM")
    config = load_config("magnet", "debug")
    config["codec"] = str(toy_codec_dir)
    resolve_codec(config)
    config["train"]["init_from"] = str(folder)
    module = TokenModule(config, "magnet")
    lm = load_model(folder).net
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in module.net.state_dict().items())
    config["model"]["dim"] = int(config["model"]["dim"]) * 2
    with pytest.raises(CadenzaError, match="another network shape"):
        TokenModule(config, "magnet")
