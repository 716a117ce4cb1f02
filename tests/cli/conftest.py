"""Fixtures for the CLI tests: a tiny debug generator (fast to load and sample) and a short song."""

from __future__ import annotations

import pytest
import torch

from cadenza.audio import save_audio
from cadenza.checkpoint import save_model_folder
from cadenza.config import load_config
from cadenza.controls.plot import demo_signal
from cadenza.generators import build_generator


@pytest.fixture(scope="session")
def debug_model(tmp_path_factory):
    """An untrained debug-config generator folder: enough to run every verb end to end in a second."""
    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("debug_model")
    save_model_folder(folder, build_generator(cfg).state_dict(), cfg)
    return folder


@pytest.fixture
def two_songs(tmp_path):
    return [save_audio(tmp_path / "in" / f"{name}.wav", demo_signal(1.5, seed=i)) for i, name in enumerate(("a", "b"))]
