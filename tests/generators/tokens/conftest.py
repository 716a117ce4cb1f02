"""Fixtures of the token tests: the toy codec (``tests/toy_codec.py``) registered per module, tiny token networks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cadenza.conditioning.text import HashTextEncoder
from cadenza.generators.tokens.net import TokenModelConfig, TokenNet
from cadenza.generators.tokens.transformer import TransformerConfig
from toy_codec import ToyCodec, save_toy_codec, toy_codec_registered


@pytest.fixture(scope="module")
def toy_codec_family() -> Iterator[None]:
    with toy_codec_registered():
        yield


@pytest.fixture(scope="module")
def toy_codec_dir(toy_codec_family, tmp_path_factory) -> Path:
    return save_toy_codec(tmp_path_factory.mktemp("codec") / "toy")


@pytest.fixture(scope="module")
def toy_codec(toy_codec_dir: Path) -> ToyCodec:
    from cadenza.registry import load_model

    return load_model(toy_codec_dir).model


def tiny_net(codebooks: int = 3, cardinality: int = 16, seed: int = 0) -> TokenNet:
    torch.manual_seed(seed)
    cfg = TokenModelConfig(TransformerConfig(codebooks, cardinality, dim=32, layers=2, heads=2, ff_mult=2.0), text_dim=16, control_hidden=8)
    net = TokenNet(cfg).eval()
    with torch.no_grad():  # a trained-looking spread of logits, so guidance and sampling differences show
        net.transformer.heads.weight.mul_(20.0)
    return net


@pytest.fixture(scope="module")
def net() -> TokenNet:
    return tiny_net()


@pytest.fixture(scope="module")
def text() -> object:
    return HashTextEncoder(16).encode(["calm flute", "fast drums"])
