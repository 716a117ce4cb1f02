"""Run every Python block of docs/python-api.md, in order, against a tiny debug model."""

import re
from pathlib import Path

import pytest
import torch

from cadenza import Cadenza
from cadenza.checkpoint import save_model_folder
from cadenza.config import load_config
from cadenza.generators import build_generator

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


@pytest.fixture(scope="module")
def debug_model(tmp_path_factory):
    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    folder = tmp_path_factory.mktemp("debug_model")
    save_model_folder(folder, net.state_dict(), cfg)
    return folder


def test_python_api_examples_run(debug_model, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    real_load = Cadenza.load.__func__

    def load(cls, model=None, **kwargs):  # the docs say Cadenza.load(); tests use the debug model
        return real_load(cls, debug_model if model is None else model, **kwargs)

    monkeypatch.setattr(Cadenza, "load", classmethod(load))
    namespace: dict = {}
    for i, block in enumerate(blocks):
        # few sampling steps keep the run short; the calls are otherwise exactly as documented
        code = block.replace("seed=", "steps=2, seed=")
        try:
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the failing block
            pytest.fail(f"docs/python-api.md block {i} failed: {type(exc).__name__}: {exc}\n{block}")
    assert "scores" in namespace and "melody_accuracy" in namespace["scores"]
    assert namespace["hum"]["melody_accuracy"] > 0.9  # Cadenza.evaluate, as documented
