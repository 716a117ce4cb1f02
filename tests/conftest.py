"""Shared test settings: few threads (CI has 2 cores), offline model hubs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def debug_codec_folder(tmp_path_factory):
    """A debug-size codec with random weights and initialised codebooks (rendered by the shipped vocoder)."""
    from cadenza.config import load_config
    from cadenza.registry import save_model
    from cadenza.representations.codec import build_codec

    cfg = load_config("codec", "debug")
    torch.manual_seed(0)
    net = build_codec(cfg)
    with torch.no_grad():  # distinct random codebook vectors, marked initialised (k-means on noise is no better)
        for layer in net.quantizer.layers:
            layer._codebook.embed.normal_()
            layer._codebook.initted.fill_(True)
    return save_model(tmp_path_factory.mktemp("codec") / "debug", net, {**cfg, "vocoder": {"path": "default"}}, kind="codec")
