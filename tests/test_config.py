import pytest
import torch

from cadenza.checkpoint import load_model_folder, save_model_folder
from cadenza.config import apply_overrides, load_config, parse_value, write_json_atomic
from cadenza.errors import CadenzaError


def test_overrides_parse_and_reject_typos():
    cfg = {"model": {"dim": 64, "name": "x"}, "lr": 1e-3}
    out = apply_overrides(cfg, ["model.dim=128", "lr=5e-4", "model.name=big"])
    assert out == {"model": {"dim": 128, "name": "big"}, "lr": 5e-4} and cfg["model"]["dim"] == 64
    with pytest.raises(CadenzaError, match="no such key"):
        apply_overrides(cfg, ["model.dmi=3"])
    with pytest.raises(CadenzaError, match="key=value"):
        apply_overrides(cfg, ["model.dim"])
    assert parse_value("[1, 2]") == [1, 2] and parse_value("true") is True and parse_value("abc") == "abc"


def test_load_config_from_path_and_errors(tmp_path):
    path = write_json_atomic(tmp_path / "c.json", {"a": 1})
    assert load_config("anything", path, ["a=2"]) == {"a": 2}
    with pytest.raises(CadenzaError, match="no vocoder config"):
        load_config("vocoder", "does-not-exist")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(CadenzaError, match="invalid JSON"):
        load_config("x", bad)


def test_model_folder_roundtrip_and_errors(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.zeros(4)}
    folder = save_model_folder(tmp_path / "m", state, {"dim": 4})
    loaded, config = load_model_folder(folder)
    assert config == {"dim": 4} and torch.equal(loaded["w"], state["w"])
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CadenzaError, match="cannot read weights"):
        load_model_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CadenzaError, match="missing config.json"):
        load_model_folder(folder)
    with pytest.raises(CadenzaError, match="no such model folder"):
        load_model_folder(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    with pytest.raises(CadenzaError, match="not a model folder"):
        load_model_folder(tmp_path / "other")
    run = tmp_path / "run"  # a training run: its config.json is the run's, the models are below it
    save_model_folder(run / "best", state, {"dim": 4})
    (run / "config.json").write_text("{}")
    with pytest.raises(CadenzaError, match="a training run's folder") as err:
        load_model_folder(run)
    assert str(run / "best") in err.value.hint
