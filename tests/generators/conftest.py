"""A tiny debug generator (random weights, hash text encoder) shared by the generator tests."""

import pytest
import torch

from cadenza.config import load_config
from cadenza.conditioning.text import HashTextEncoder
from cadenza.generators import build_generator


@pytest.fixture(scope="module")
def debug_config() -> dict:
    return load_config("generator", "debug")


@pytest.fixture(scope="module")
def net(debug_config):
    torch.manual_seed(0)
    return build_generator(debug_config).eval()


@pytest.fixture(scope="module")
def text_encoder(debug_config):
    return HashTextEncoder(debug_config["model"]["text_dim"])


def _make_live(net) -> None:
    with torch.no_grad():
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)


@pytest.fixture(scope="module")
def make_live():
    """A function that gives every zero-initialised join random weights, as training would."""
    return _make_live


@pytest.fixture(scope="module")
def live_net(net):
    """The debug net with its zero joins given random weights (so controls and text matter)."""
    import copy

    live = copy.deepcopy(net)
    _make_live(live)
    return live

